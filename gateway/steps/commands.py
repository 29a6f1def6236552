"""Staff commands: read the top lines of a staff reply (quote-stripped) for #commands."""

from __future__ import annotations

from gateway.commands import parse
from gateway.context import Deps, MessageContext, Stop


def commands(ctx: MessageContext, deps: Deps) -> Stop | None:
    if ctx.sender is None or ctx.sender.kind != "staff" or ctx.case is None:
        return None
    assert ctx.analysis is not None
    ctx.commands = parse(ctx.analysis.reply_text or ctx.analysis.body_text)
    return None
