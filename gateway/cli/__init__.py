"""The `cpsd-gateway` command. Names and JSON shapes are a contract (shared/design.md).

Exit codes: 0 success, 1 the thing asked for failed, 2 bad usage or configuration.
Each module registers its commands on ``main``.
"""

from gateway.cli import admin, cases, mail, outbox
from gateway.cli import imap as imap  # registers `poll`
from gateway.cli import templates as templates_cli
from gateway.cli.base import main

__all__ = ["admin", "cases", "mail", "main", "outbox", "templates_cli"]
