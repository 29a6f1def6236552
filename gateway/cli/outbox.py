"""Outbound mail: outbox list, outbox flush, outbox retry."""

from __future__ import annotations

import getpass
import sys
from typing import Any

import click
from sqlalchemy import select

from gateway.cli.base import build, echo_json, main, with_config
from gateway.models import Outbox
from gateway.outbound import describe_row, requeue

STATUSES = ("pending", "sending", "sent", "failed", "held", "bounced")


@main.group()
def outbox() -> None:
    """Outbound mail: see, deliver and re-queue."""


@outbox.command("list")
@with_config
@click.option("--json", "as_json", is_flag=True)
@click.option("--status", type=click.Choice(STATUSES), help="only rows in this state")
def outbox_list(settings: Any, as_json: bool, status: str | None) -> None:
    """Every outbox row with its attempts, last error and template version."""
    app = build(settings)
    with app.sessions() as session:
        query = select(Outbox).order_by(Outbox.id)
        if status:
            query = query.where(Outbox.status == status)
        rows = [describe_row(o) for o in session.scalars(query)]
    app.close()
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        error = f"  last error: {row['last_error']}" if row["last_error"] else ""
        click.echo(
            f"{row['id']:>6}  {row['status']:<8} attempts {row['attempts']}  "
            f"{row['template']}@{row['template_version'][:8]}  "
            f"{', '.join(row['to'])}  {row['subject']}{error}"
        )


@outbox.command("flush")
@with_config
@click.option("--all", "waiting", is_flag=True, help="also rows still waiting for their next retry")
def outbox_flush(settings: Any, waiting: bool) -> None:
    """Deliver what is due now (exit 1 if anything tried was not sent)."""
    app = build(settings)
    results = app.deliverer.deliver_due(limit=10_000, waiting=waiting)
    app.close()
    sent = sum(1 for r in results if r.status == "sent")
    click.echo(f"{sent} sent, {len(results) - sent} not sent")
    sys.exit(0 if sent == len(results) else 1)


@outbox.command("retry")
@with_config
@click.argument("row_id", type=int)
@click.option("--operator", help="who is asking (recorded on the case); default cli:<user>")
def outbox_retry(settings: Any, row_id: int, operator: str | None) -> None:
    """Re-queue a failed row (only its failed recipients get it again) or release a held one."""
    app = build(settings)
    try:
        with app.sessions.begin() as session:
            row = requeue(
                session,
                row_id,
                retry_for=app.deliverer.retry_for,
                actor=operator or f"cli:{getpass.getuser()}",
            )
            to = [r["address"] for r in describe_row(row)["recipients"] if r["status"] != "sent"]
    except (LookupError, ValueError) as exc:
        click.echo(f"cpsd-gateway: {exc}", err=True)
        sys.exit(1)
    finally:
        app.close()
    app.mail_ready.set()
    click.echo(f"outbox row {row_id} queued again for {', '.join(to)}")
