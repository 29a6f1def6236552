"""Who sent it: a party in the directory, Elexon staff, or nobody we know.

Identity is the single From addr-spec as parsers/addresses.py reads it (never parseaddr,
never a display name); anything ambiguous is quarantined rather than guessed.
"""

from __future__ import annotations

from gateway.context import Deps, MessageContext, Sender, Stop
from parsers.addresses import address_list


def identify(ctx: MessageContext, deps: Deps) -> Stop | None:
    assert ctx.analysis is not None
    # The analysis read From with parsers.addresses.sender (as addr_spec, or the problem).
    problem = ctx.analysis.sender_problem
    if ctx.analysis.from_address is None or problem is not None:
        problem = problem or "no usable From address"
        ctx.sender = Sender("invalid", None, problem=problem)
        return Stop("quarantined", f"sender cannot be trusted: {problem}")
    address = ctx.analysis.from_address.lower()  # parsers.addresses.Address.key
    ctx.row.from_address = address
    party = deps.directory.by_address(address)
    if deps.settings.gateway.is_staff(address):
        ctx.sender = Sender("staff", address, party)
    elif party is not None:
        ctx.sender = Sender("party", address, party)
    else:
        ctx.sender = Sender("unknown", address)
        if not ctx.released:
            return Stop("quarantined", f"sender {address} is not in the party directory")
    ctx.row.sender_kind = ctx.sender.kind
    ctx.row.sender_party = party.id if party else None
    _note_other_reply_to(ctx, address)
    return None


def _note_other_reply_to(ctx: MessageContext, address: str) -> None:
    """Reply-To is never where our mail goes (B50): we answer the From address and the
    case's parties. A different Reply-To is shown on the case for a person to judge."""
    assert ctx.parsed is not None and ctx.parsed.message is not None
    others = sorted({a.key for a in address_list(ctx.parsed.message, "Reply-To", 5)} - {address})
    if others:
        ctx.notes.append(f"Reply-To {', '.join(others)} differs from From; mail goes to {address}")
