"""Templates for admins: templates list, templates preview NAME, templates validate.

Admins edit the files in ``[templates] dir``; these commands show what each template may
use, what a mail will look like, and prove every template renders in the sandbox before
``serve`` will start with it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select

from gateway.cli.base import build, echo_json, main, with_config
from gateway.compose import compose, new_message_id
from gateway.models import Case
from gateway.render import Renderer, RenderError


@main.group()
def templates() -> None:
    """Outbound mail templates: list, preview, validate."""


def _renderer(settings: Any) -> Renderer:
    return Renderer(Path(settings.templates.dir))


@templates.command("list")
@with_config
@click.option("--json", "as_json", is_flag=True)
def templates_list(settings: Any, as_json: bool) -> None:
    """Each template with its version and the variables its three files use."""
    renderer = _renderer(settings)
    rows = [
        {"name": name, "version": renderer.version(name), **renderer.variables(name)}
        for name in renderer.names()
    ]
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        click.echo(f"{row['name']}  (version {row['version']})")
        click.echo(f"    variables: {', '.join(row['variables']) or '-'}")
        if row["paths"]:
            click.echo(f"    uses: {', '.join(row['paths'])}")


@templates.command("preview")
@with_config
@click.argument("name")
@click.option("--case", "reference", help="render against this case instead of the sample")
@click.option("--to", "to", help="recipient address (default: the case's raiser or the sample's)")
def templates_preview(settings: Any, name: str, reference: str | None, to: str | None) -> None:
    """Print the full MIME message NAME would produce (nothing is queued or sent)."""
    renderer = _renderer(settings)
    if name not in renderer.names():
        click.echo(f"cpsd-gateway: no template {name!r} in {renderer.template_dir}", err=True)
        sys.exit(1)
    try:
        context: dict[str, Any] = renderer.sample(name)
    except RenderError as exc:
        click.echo(f"cpsd-gateway: {renderer.template_dir / exc.filename}: {exc.problem}", err=True)
        sys.exit(1)
    recipient = to or str(context.get("recipient", {}).get("address", "") or "")
    if reference:
        app = build(settings)
        try:
            with app.sessions() as session:
                case = session.scalar(select(Case).where(Case.reference == reference))
                if case is None:
                    click.echo(f"cpsd-gateway: no case {reference}", err=True)
                    sys.exit(1)
                context, recipient = _case_context(app, case, context, to)
        finally:
            app.close()
    try:
        rendered = renderer.render(name, context)
    except RenderError as exc:
        click.echo(
            f"cpsd-gateway: {renderer.template_dir / exc.filename}"
            f"{f':{exc.line}' if exc.line else ''}: {exc.problem}",
            err=True,
        )
        sys.exit(1)
    reference_for_id = str(context.get("case", {}).get("reference") or "") or None
    composed = compose(
        rendered,
        mail_from=settings.outbound.from_address,
        from_name=settings.outbound.from_name,
        to=[recipient or settings.gateway.staff_mailbox],
        message_id=new_message_id(settings.message_id_domain, reference_for_id),
        reply_to=settings.gateway.mailboxes[0],
        loop_id=settings.gateway.installation_id,
    )
    click.echo(composed.raw.decode("utf-8", "replace").replace("\r\n", "\n"), nl=False)


def _case_context(
    app: Any, case: Case, sample: dict[str, Any], to: str | None
) -> tuple[dict[str, Any], str]:
    """The sample with the real case (and its raiser as recipient) put in its place."""
    from gateway.views import case_context

    context = dict(sample)
    context["case"] = case_context(case)
    if "parent" in context:
        context["parent"] = context["case"]
    address = to or case.raised_by_address or ""
    party = app.directory.by_address(address) if address else None
    if "recipient" in context:
        context["recipient"] = {"address": address, "party": party.name if party else ""}
    return context, address


@templates.command("validate")
@with_config
def templates_validate(settings: Any) -> None:
    """Render every template against its sample in the sandbox; exit 1 naming what failed."""
    renderer = _renderer(settings)
    results = renderer.validate_all()
    if not results:
        click.echo(f"cpsd-gateway: no templates in {renderer.template_dir}", err=True)
        sys.exit(1)
    for name, problems in results.items():
        if not problems:
            click.echo(f"ok      {name}")
        for problem in problems:
            click.echo(f"FAILED  {problem}")
    failed = sum(1 for problems in results.values() if problems)
    if failed:
        click.echo(f"{failed} of {len(results)} templates do not validate", err=True)
        sys.exit(1)


def first_problem(settings: Any) -> str | None:
    """For ``serve``: the first template problem, or None when every template validates."""
    for problems in _renderer(settings).validate_all().values():
        if problems:
            return problems[0]
    return None
