"""Outbound mail: outbox list, outbox flush."""

from __future__ import annotations

import sys
from typing import Any

import click
from sqlalchemy import select

from gateway.cli.base import build, echo_json, main, with_config
from gateway.models import Outbox
from gateway.views import iso


@main.group()
def outbox() -> None:
    """Outbound mail: see and deliver."""


@outbox.command("list")
@with_config
@click.option("--json", "as_json", is_flag=True)
@click.option("--status", help="pending, sent or failed")
def outbox_list(settings: Any, as_json: bool, status: str | None) -> None:
    app = build(settings)
    with app.sessions() as session:
        query = select(Outbox).order_by(Outbox.id)
        if status:
            query = query.where(Outbox.status == status)
        rows = [
            {
                "id": o.id,
                "status": o.status,
                "template": o.template,
                "template_version": o.template_version,
                "to": list(o.recipients),
                "subject": o.subject,
                "message_id": o.message_id,
                "attempts": o.attempts,
                "last_error": o.last_error,
                "created_at": iso(o.created_at),
                "sent_at": iso(o.sent_at),
            }
            for o in session.scalars(query)
        ]
    app.close()
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        error = f"  last error: {row['last_error']}" if row["last_error"] else ""
        click.echo(
            f"{row['id']:>6}  {row['status']:<8} attempts {row['attempts']}  "
            f"{', '.join(row['to'])}  {row['subject']}{error}"
        )


@outbox.command("flush")
@with_config
def outbox_flush(settings: Any) -> None:
    """Deliver what is due now."""
    app = build(settings)
    results = app.deliverer.deliver_due(limit=10_000)
    app.close()
    sent = sum(1 for r in results if r.status == "sent")
    click.echo(f"{sent} sent, {len(results) - sent} not sent")
    sys.exit(0 if sent == len(results) else 1)
