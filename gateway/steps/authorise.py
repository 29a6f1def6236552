"""Party isolation: a message may touch a case only if its sender is on that case or staff."""

from __future__ import annotations

from gateway import cases
from gateway.context import Deps, MessageContext, Stop


def authorise(ctx: MessageContext, deps: Deps) -> Stop | None:
    if ctx.case is None or ctx.sender is None or ctx.sender.kind == "staff" or ctx.released:
        return None
    party = ctx.sender.party
    if party is not None and party.id in cases.party_ids(deps.session, ctx.case):
        return None
    who = f"{party.name} ({party.id})" if party else "an unknown party"
    return Stop(
        "quarantined",
        f"sender {ctx.sender.label} of {who} is not a party on {ctx.case.reference} "
        f"it referenced (matched by {ctx.matched_by})",
    )
