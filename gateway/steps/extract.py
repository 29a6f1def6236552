"""Parse (bounded) and extract facts with parsers/; nothing here touches cases."""

from __future__ import annotations

from gateway.context import Deps, MessageContext, Stop
from parsers.analysis import analyse
from parsers.mime import header_text, parse_bounded


def parse(ctx: MessageContext, deps: Deps) -> Stop | None:
    """Refuse what the stdlib parser cannot handle in bounded time (reliability.md B13-B20).

    The worker usually hands the message over already parsed and analysed
    (gateway/prepare.py); these steps do the work themselves when it could not.
    """
    if ctx.parsed is None:
        ctx.parsed = parse_bounded(ctx.raw, deps.analysis_options.limits)
    if ctx.parsed.message is None:
        return Stop("quarantined", "message not parsed: " + "; ".join(ctx.parsed.problems))
    if ctx.analysis is not None:  # prepared: the analysis read it the same way
        ctx.row.subject = ctx.analysis.subject
    else:
        ctx.row.subject = header_text(ctx.parsed.message, "Subject") or ""
    return None


def extract(ctx: MessageContext, deps: Deps) -> Stop | None:
    if ctx.analysis is None:
        ctx.analysis = analyse(
            ctx.raw, deps.analysis_options, envelope_from=ctx.row.envelope_from, parsed=ctx.parsed
        )
    return None
