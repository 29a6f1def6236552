"""Messages in: serve, ingest, inspect, reprocess."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from gateway.cli.base import build, echo_json, main, with_config
from gateway.inbox import Envelope


@main.command()
@with_config
def serve(settings: Any) -> None:
    """Run SMTP ingress, the worker and outbound delivery until SIGTERM."""
    from gateway.cli.templates import first_problem
    from gateway.ingress.smtp_tls import server_context
    from gateway.serve import serve as run

    # Refuse to start with a template that does not render (B44: test-render before use).
    if problem := first_problem(settings):
        click.echo(f"cpsd-gateway: not starting, a template does not validate: {problem}", err=True)
        sys.exit(2)

    tls_context = server_context(settings)  # a bad certificate: one line, exit 2
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd: a line per command
    sys.exit(run(build(settings), tls_context))


def _process(app: Any, message_row_id: int) -> tuple[dict[str, Any], bool]:
    """One ingested message through the worker: its result line, and whether the command
    did what was asked. Stored but not processed here, it says so and why: "received"."""
    from gateway.db import DatabaseUnavailable

    try:
        processed = app.worker.process([message_row_id])
    except DatabaseUnavailable as exc:
        reason = f"stored; not processed yet, the database failed ({exc})"
        return {"outcome": "received", "reference": None, "reason": reason}, False
    if not processed:  # `serve` (or another ingest) claimed it first and is on it
        reason = "stored; another worker is processing it"
        return {"outcome": "received", "reference": None, "reason": reason}, True
    done = processed[0]
    result = {"outcome": done.outcome, "reference": done.reference, "reason": done.reason}
    return result, done.outcome != "failed"


@main.command()
@with_config
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="JSON lines")
def ingest(settings: Any, paths: tuple[Path, ...], as_json: bool) -> None:
    """Feed .eml files, Maildirs or mboxes through inbox.accept and the pipeline."""
    from gateway.ingress.files import IngestPathError, read_paths

    app = build(settings)
    failed = False
    try:
        for item in read_paths(list(paths)):
            accepted = app.inbox.accept(item.raw, Envelope(), item.source)
            if accepted.duplicate:
                result = {"outcome": "duplicate", "reference": None, "reason": "already accepted"}
            else:
                result, ok = _process(app, accepted.message_row_id)
                failed = failed or not ok
            line = {"sha256": accepted.sha256, "message_id": accepted.message_id, **result}
            if as_json:
                click.echo(json.dumps(line, ensure_ascii=False))
            else:
                reference = f" {line['reference']}" if line["reference"] else ""
                reason = f" ({line['reason']})" if line["reason"] else ""
                click.echo(f"{item.source}: {line['outcome']}{reference}{reason}")
        app.deliverer.deliver_due()
    except IngestPathError as exc:
        click.echo(f"cpsd-gateway: {exc}", err=True)
        sys.exit(2)
    finally:
        app.close()
    sys.exit(1 if failed else 0)


@main.command()
@with_config
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="print the JSON object (the default)")
def inspect(settings: Any, path: Path, as_json: bool) -> None:
    """Parse one message without touching the database."""
    from gateway.parties import load_directory
    from parsers.analysis import AnalysisOptions, analyse

    directory = load_directory(Path(settings.parties.file))
    options = AnalysisOptions(
        known_mpids=directory.mpids,
        reference_prefix=settings.gateway.reference_prefix,
        own_domains=frozenset({settings.message_id_domain}),
    )
    result = analyse(path.read_bytes(), options)
    echo_json(result.to_json())
    sys.exit(1 if result.message is None else 0)


@main.command()
@with_config
@click.argument("message_row_id", type=int)
def reprocess(settings: Any, message_row_id: int) -> None:
    """Run a stored message through the pipeline again (after a fix or a failure)."""
    from gateway.worker import reset_for_reprocess

    app = build(settings)
    with app.sessions.begin() as session:
        row = reset_for_reprocess(session, message_row_id)
    if row is None:
        click.echo(f"cpsd-gateway: no message {message_row_id}", err=True)
        sys.exit(1)
    done = app.worker.process([message_row_id])
    app.deliverer.deliver_due()
    app.close()
    for item in done:
        click.echo(
            f"{item.message_row_id}: {item.outcome} {item.reference or ''} {item.reason or ''}"
        )
    sys.exit(1 if any(d.outcome == "failed" for d in done) else 0)
