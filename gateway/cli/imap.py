"""IMAP from the command line: `poll --once`, one pass over every configured mailbox.

Continuous polling (IDLE, reconnects with backoff) lives in `serve`, next to the SMTP
listener and the one worker; `poll --once` is for cron, back-fills and operators' checks.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from gateway.cli.base import build, echo_json, main, with_config


@main.command()
@with_config
@click.option("--once", is_flag=True, help="one pass over every mailbox, then exit")
@click.option("--mailbox", "names", multiple=True, help="only this [[imap]] name (may be repeated)")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per mailbox, in a list")
def poll(settings: Any, once: bool, names: tuple[str, ...], as_json: bool) -> None:
    """One IMAP pass: import new mail, move it to the processed or quarantine folder."""
    from gateway.ingress.imap import MailboxPoller, processing_for, terminal_progress

    if not once:
        click.echo(
            "cpsd-gateway poll: continuous polling runs inside `serve`; use --once", err=True
        )
        sys.exit(2)
    mailboxes = [m for m in settings.imap if not names or m.name in names]
    unknown = sorted(set(names) - {m.name for m in settings.imap})
    if unknown or not mailboxes:
        what = f"no [[imap]] mailbox named {', '.join(unknown)}" if unknown else "no [[imap]]"
        click.echo(f"cpsd-gateway: {settings.source}: {what} mailbox configured", err=True)
        sys.exit(2)
    # Progress and reconnect lines are log lines: show them, but not imapclient's chatter.
    logging.getLogger("gateway.ingress.imap").setLevel(logging.INFO)
    logging.getLogger("imapclient").setLevel(logging.WARNING)
    app = build(settings)
    results = []
    try:
        app.accept_in_child_process()
        for mailbox in mailboxes:
            poller = MailboxPoller(
                app,
                mailbox,
                processing=processing_for(app, under_serve=False),
                progress=terminal_progress,
            )
            results.append(poller.run_once())
        app.deliverer.deliver_due()  # acknowledgements go out now, as `ingest` does
    finally:
        app.close()
    if as_json:
        echo_json([r.to_json() for r in results])
    for result in results:
        t = result.tally
        counts = (
            f"{t.imported} imported, {t.duplicates} duplicates, "
            f"{t.quarantined} quarantined, {t.failed} failed"
        )
        if result.error is not None:
            done = f" (before that: {counts})" if t.total else ""
            click.echo(f"cpsd-gateway: {result.mailbox}: {result.error}{done}", err=True)
        elif not as_json:
            click.echo(f"{result.mailbox}: {counts}")
    sys.exit(1 if any(r.error is not None for r in results) else 0)
