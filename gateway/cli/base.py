"""The root command group and what every command shares: --config, exit code 2 on bad
settings, one line and exit code 1 when the database is unavailable."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import click

from gateway import app as app_module
from gateway.db import database_unavailable
from gateway.settings import SettingsError, config_path, load

F = TypeVar("F", bound=Callable[..., Any])


def with_config(func: F) -> F:
    """Every command takes --config; the value may also come before the command name."""

    @click.option("--config", "config", type=click.Path(dir_okay=False), help="settings file")
    @click.pass_context
    @functools.wraps(func)
    def wrapper(ctx: click.Context, config: str | None, *args: Any, **kwargs: Any) -> Any:
        chosen = config or (ctx.obj or {}).get("config")
        try:
            settings = load(config_path(chosen))
            return ctx.invoke(func, settings, *args, **kwargs)
        except SettingsError as exc:
            click.echo(f"cpsd-gateway: {exc}", err=True)
            ctx.exit(2)
        except Exception as exc:
            if not database_unavailable(exc):
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            click.echo(
                f"cpsd-gateway: database unavailable: {type(exc).__name__}: {first}", err=True
            )
            ctx.exit(1)

    return wrapper  # type: ignore[return-value]


def build(settings: Any, *, migrate: bool = True) -> app_module.App:
    return app_module.build(settings, migrate=migrate)


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


@click.group()
@click.option("--config", "config", type=click.Path(dir_okay=False), help="settings file")
@click.option("-v", "--verbose", is_flag=True, help="log at INFO level")
@click.pass_context
def main(ctx: click.Context, config: str | None, verbose: bool) -> None:
    """Email gateway of the MHHS Cross-Party Service Desk."""
    ctx.obj = {"config": config}
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
