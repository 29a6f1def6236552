"""The message pipeline: one ordered tuple of small steps over one typed context.

Guards and classification may stop a message early with a reason; the effect steps run
to the end inside the worker's transaction, so a message's case change, outbox rows and
status commit together or not at all.
"""

from __future__ import annotations

from gateway.context import Deps, MessageContext, Step
from gateway.steps import (
    act,
    authenticate,
    authorise,
    commands,
    correlate,
    extract,
    guards,
    reply,
    sender,
)

# Extraction runs before the guards (the design card has it after the sender step): the
# guards use its classification (bounce, auto-reply), so each message is parsed and
# analysed exactly once.
STEPS: tuple[Step, ...] = (
    extract.parse,
    extract.extract,
    guards.loops,
    sender.identify,
    authenticate.authenticate,
    correlate.correlate,
    authorise.authorise,
    commands.commands,
    act.act,
    reply.reply,
)


def run(ctx: MessageContext, deps: Deps, pipeline: tuple[Step, ...] = STEPS) -> None:
    for step in pipeline:
        stop = step(ctx, deps)
        if stop is not None:
            ctx.outcome, ctx.reason = stop.outcome, stop.reason
            return
