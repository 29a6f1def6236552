"""Administration: the party directory, quarantine, the database schema."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select

from gateway.cli.base import build, echo_json, main, with_config
from gateway.models import Message
from gateway.views import iso


@main.group()
def parties() -> None:
    """The party directory."""


@parties.command("list")
@with_config
@click.option("--json", "as_json", is_flag=True)
def parties_list(settings: Any, as_json: bool) -> None:
    from gateway.parties import load_directory

    directory = load_directory(Path(settings.parties.file))
    if as_json:
        echo_json(
            {
                "mailboxes": list(settings.gateway.mailboxes),
                "staff_domains": list(settings.gateway.staff_domains),
                "parties": [p.to_json() for p in directory.parties],
                "desks": [d.to_json() for d in directory.desks],
            }
        )
        return
    for party in directory.parties:
        click.echo(f"{party.id:<12} {party.role.value:<24} {party.contact:<40} {party.name}")


@main.group()
def quarantine() -> None:
    """Messages held back, and why."""


@quarantine.command("list")
@with_config
@click.option("--json", "as_json", is_flag=True)
def quarantine_list(settings: Any, as_json: bool) -> None:
    app = build(settings)
    with app.sessions() as session:
        rows = [
            {
                "id": m.id,
                "from": m.from_address or m.envelope_from,
                "subject": m.subject,
                "message_id": m.message_id,
                "reason": m.reason,
                "at": iso(m.processed_at or m.received_at),
            }
            for m in session.scalars(
                select(Message).where(Message.status == "quarantined").order_by(Message.id)
            )
        ]
    app.close()
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        click.echo(f"{row['id']:>6}  {row['at']}  {row['from'] or '-'}  {row['subject'] or ''}")
        click.echo(f"        {row['reason']}")


@quarantine.command("release")
@with_config
@click.argument("message_row_ids", type=int, nargs=-1, required=True)
def quarantine_release(settings: Any, message_row_ids: tuple[int, ...]) -> None:
    """Let held messages through: the directory and party checks are lifted for them."""
    from gateway.ingress.imap import released_copy_mover
    from gateway.worker import reset_for_reprocess

    app = build(settings)
    held_back = False
    for message_row_id in dict.fromkeys(message_row_ids):
        with app.sessions.begin() as session:
            row = session.get(Message, message_row_id)
            if row is None or row.status != "quarantined":
                click.echo(f"cpsd-gateway: message {message_row_id} is not in quarantine", err=True)
                held_back = True
                continue
            reset_for_reprocess(session, message_row_id, release=True)
            source, message_id, key = row.source, row.message_id, row.content_key
        done = app.worker.process([message_row_id])
        for item in done:
            click.echo(
                f"{item.message_row_id}: {item.outcome} {item.reference or ''} {item.reason or ''}"
            )
        # Read from a shared mailbox: its copy sits in the quarantine folder on the server.
        mover = released_copy_mover(app, source)
        if mover is not None and all(d.outcome not in ("failed", "quarantined") for d in done):
            click.echo(mover.move_released(message_id, key))
        held_back = held_back or any(d.outcome in ("failed", "quarantined") for d in done)
    app.deliverer.deliver_due()
    app.close()
    sys.exit(1 if held_back else 0)


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@with_config
def db_upgrade(settings: Any) -> None:
    """Apply migrations."""
    app = build(settings)
    app.close()
    click.echo("database is at the latest revision")
