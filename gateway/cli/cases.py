"""Reading cases: cases list, case show."""

from __future__ import annotations

import sys
from typing import Any

import click
from sqlalchemy import select

from gateway.cli.base import build, echo_json, main, with_config
from gateway.models import Case
from gateway.views import case_detail, case_summary


@main.group()
def cases() -> None:
    """Read cases."""


@cases.command("list")
@with_config
@click.option("--json", "as_json", is_flag=True)
@click.option("--state", help="only cases in this state")
def cases_list(settings: Any, as_json: bool, state: str | None) -> None:
    app = build(settings)
    with app.sessions() as session:
        query = select(Case).order_by(Case.id)
        if state:
            query = query.where(Case.state == state)
        rows = [case_summary(session, c) for c in session.scalars(query)]
    app.close()
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        click.echo(
            f"{row['reference']}  {row['state']:<15} {row['priority']}  "
            f"{(row['raised_by'] or '-'):<12} {row['subject']}"
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
    click.echo("  trail:")
    for event in detail["events"]:
        click.echo(f"    {event['at']}  {event['kind']:<28} {event['actor']}: {event['detail']}")
