"""Cases: cases list (with --breaching), case show, case raise, and major incidents."""

from __future__ import annotations

import getpass
import mimetypes
import sys
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select

from gateway import actions
from gateway.cli.base import build, echo_json, main, with_config
from gateway.context import Operator
from gateway.lifecycle import OPEN_STATES
from gateway.lifecycle import breaching as sla_status
from gateway.models import Case, utcnow
from gateway.steps.reply import queue
from gateway.views import case_detail, case_summary
from parsers.identifiers import find_identifiers
from parsers.mpan import validate_core


@main.group()
def cases() -> None:
    """Read cases."""


@cases.command("list")
@with_config
@click.option("--json", "as_json", is_flag=True)
@click.option("--state", help="only cases in this state")
@click.option("--breaching", is_flag=True, help="only open cases past or near their targets")
def cases_list(settings: Any, as_json: bool, state: str | None, breaching: bool) -> None:
    app = build(settings)
    now = utcnow()
    with app.sessions() as session:
        query = select(Case).order_by(Case.id)
        if state:
            query = query.where(Case.state == state)
        if breaching:
            query = query.where(Case.state.in_([s.value for s in OPEN_STATES]))
        rows = []
        for found in session.scalars(query):
            row = case_summary(session, found)
            row["sla"] = sla_status(now, found.opened_at, found.due_at, settings.sla.warn_fraction)
            if not breaching or row["sla"]:
                rows.append(row)
    app.close()
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        flag = f" [{row['sla']}]" if row["sla"] else ""
        click.echo(
            f"{row['reference']}  {row['state']:<15} {row['priority']}  "
            f"{(row['raised_by'] or '-'):<12} due {row['due_at'] or '-'}{flag}  {row['subject']}"
        )


@main.group()
def case() -> None:
    """Work with one case."""


@case.command("show")
@with_config
@click.argument("reference")
@click.option("--json", "as_json", is_flag=True)
def case_show(settings: Any, reference: str, as_json: bool) -> None:
    app = build(settings)
    with app.sessions() as session:
        found = session.scalar(select(Case).where(Case.reference == reference.upper()))
        detail = case_detail(session, found) if found else None
    app.close()
    if detail is None:
        click.echo(f"cpsd-gateway: no case {reference}", err=True)
        sys.exit(1)
    if as_json:
        echo_json(detail)
        return
    click.echo(f"{detail['reference']}  {detail['subject']}")
    click.echo(
        f"  state {detail['state']}, priority {detail['priority']}, raised by {detail['raised_by']}"
    )
    click.echo(f"  opened {detail['opened_at']}, due {detail['due_at'] or '-'}")
    if detail["parent"]:
        click.echo(f"  parent {detail['parent']}")
    if detail["children"]:
        click.echo(f"  children {', '.join(detail['children'])}")
    if detail["external_references"]:
        click.echo(f"  their references {', '.join(detail['external_references'])}")
    click.echo("  mail:")
    for message in detail["messages"]:
        arrow = "<-" if message["direction"] == "in" else "->"
        who = message["from"] if message["direction"] == "in" else ", ".join(message["to"])
        how = f" (matched by {message['matched_by']})" if message.get("matched_by") else ""
        if message.get("authentication") not in (None, "pass"):
            how += f" [sender {message['authentication']}]"
        click.echo(f"    {message['at']}  {arrow} {who}: {message['subject']}{how}")
    click.echo("  trail:")
    for event in detail["events"]:
        click.echo(f"    {event['at']}  {event['kind']:<28} {event['actor']}: {event['detail']}")


@case.command("raise")
@with_config
@click.option("--party", required=True, help="party id, MPID or name (its nominated mailbox)")
@click.option("--parent", help="the raiser's case this child case serves")
@click.option("--summary", required=True, help="a clear description of the issue")
@click.option("--impact", required=True, help="who or what is affected, and since when")
@click.option("--mpan", "mpans", multiple=True, help="an MPAN core or full supply number")
@click.option("--transaction", "transactions", multiple=True, help="a DIP transaction ID")
@click.option(
    "--attach",
    "attachments",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="evidence file",
)
@click.option("--as", "operator", default=None, help="who is raising it (for the audit trail)")
def case_raise(
    settings: Any,
    party: str,
    parent: str | None,
    summary: str,
    impact: str,
    mpans: tuple[str, ...],
    transactions: tuple[str, ...],
    attachments: tuple[Path, ...],
    operator: str | None,
) -> None:
    """Raise a case to an external party's nominated mailbox, as a child of a case."""
    cores = []
    for value in mpans:
        core = "".join(ch for ch in value if ch.isalnum()).removeprefix("S")[-13:]
        problem = validate_core(core)
        if problem:
            raise click.BadParameter(f"{value}: {problem}", param_hint="--mpan")
        cores.append(core)
    for value in transactions:
        if not find_identifiers(f"Transaction ID: {value}").transaction_ids:
            raise click.BadParameter(
                f"{value!r} is not a transaction ID", param_hint="--transaction"
            )
    files = tuple(
        (
            path.name,
            mimetypes.guess_type(path.name)[0] or "application/octet-stream",
            path.read_bytes(),
        )
        for path in attachments
    )
    app = build(settings)
    found = app.directory.resolve(party)
    if found is None:
        raise click.BadParameter(f"no party {party!r} in the directory", param_hint="--party")
    acting = Operator(actor=operator or f"cli:{getpass.getuser()}")
    with app.sessions.begin() as session:
        deps = app.make_deps(session)
        parent_case = None
        if parent:
            parent_case = session.scalar(select(Case).where(Case.reference == parent.upper()))
            if parent_case is None:
                click.echo(f"cpsd-gateway: no case {parent}", err=True)
                sys.exit(1)
        child = actions.raise_child(
            acting,
            deps,
            parent_case,
            found.id,
            summary=summary,
            impact=impact,
            attachments=files,
            facts={
                "mpans": cores,
                "transaction_ids": list(transactions),
                "evidence": [f[0] for f in files],
            },
        )
        for item in acting.outgoing:
            queue(deps, item, actor=acting.actor)
        reference = child.reference
    app.deliverer.deliver_due()
    app.close()
    click.echo(f"{reference} raised to {found.name} ({found.contact})")


@main.group()
def major() -> None:
    """Major incidents: notices to every party's nominated contact, in one thread."""


PHASES = {"start": "declared", "update": "update", "end": "ended"}


def _send_major(
    app: Any,
    reference: str | None,
    phase: str,
    title: str | None,
    message: str,
    roles: tuple[str, ...],
    operator: str,
) -> tuple[str, int]:
    acting = Operator(actor=operator)
    with app.sessions.begin() as session:
        deps = app.make_deps(session)
        if reference is None:
            case = actions.declare_major(acting, deps, title or "Major incident")
        else:
            case = session.scalar(select(Case).where(Case.reference == reference.upper()))
            if case is None or not case.major:
                raise click.BadParameter(f"{reference} is not a major incident", param_hint="REF")
        recipients = actions.major_recipients(deps, case, roles)
        if not recipients:
            raise click.BadParameter("no party has that role", param_hint="--role")
        actions.major_notice(
            acting, deps, case, recipients, phase=PHASES[phase], message=message, roles=list(roles)
        )
        if phase == "end":
            actions.end_major(acting, deps, case, message)
        for item in acting.outgoing:
            queue(deps, item, actor=acting.actor)
        return case.reference, len(recipients)


@major.command("start")
@with_config
@click.option("--title", required=True)
@click.option("--message", required=True)
@click.option("--role", "roles", multiple=True, help="only parties of these roles (default: all)")
@click.option("--as", "operator", default=None)
def major_start(
    settings: Any, title: str, message: str, roles: tuple[str, ...], operator: str | None
) -> None:
    app = build(settings)
    reference, count = _send_major(
        app, None, "start", title, message, roles, operator or f"cli:{getpass.getuser()}"
    )
    app.close()
    click.echo(f"{reference}: major incident declared; {count} notices queued")


@major.command("update")
@with_config
@click.argument("reference")
@click.option("--message", required=True)
@click.option("--as", "operator", default=None)
def major_update(settings: Any, reference: str, message: str, operator: str | None) -> None:
    app = build(settings)
    reference, count = _send_major(
        app, reference, "update", None, message, (), operator or f"cli:{getpass.getuser()}"
    )
    app.close()
    click.echo(f"{reference}: {count} update notices queued")


@major.command("end")
@with_config
@click.argument("reference")
@click.option("--message", required=True)
@click.option("--as", "operator", default=None)
def major_end(settings: Any, reference: str, message: str, operator: str | None) -> None:
    app = build(settings)
    reference, count = _send_major(
        app, reference, "end", None, message, (), operator or f"cli:{getpass.getuser()}"
    )
    app.close()
    click.echo(f"{reference}: major incident ended; {count} notices queued")
