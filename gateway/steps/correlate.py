"""Find the case a message belongs to. A match only proposes a case; authorise decides.

Strategies run in order and the first hit wins; the case records which one matched.
Each is a small function of the context, with its own table of tests.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select

from gateway import cases
from gateway.context import Deps, MessageContext, Stop
from gateway.models import Case, ExternalReference, Message, Outbox
from parsers.identifiers import find_case_references

Strategy = Callable[[MessageContext, Deps], Case | None]


def by_thread(ctx: MessageContext, deps: Deps) -> Case | None:
    """In-Reply-To / References against every Message-ID we stored, inbound and outbound."""
    assert ctx.analysis is not None
    ids = list(ctx.analysis.in_reply_to_ids)
    if not ids:
        return None
    found: dict[str, int] = {}
    for sent_id, case_id in deps.session.execute(
        select(Outbox.message_id, Outbox.case_id).where(Outbox.message_id.in_(ids))
    ):
        if case_id is not None:
            found.setdefault(sent_id, case_id)
    for message_id, case_id in deps.session.execute(
        select(Message.message_id, Message.case_id).where(
            Message.message_id.in_(ids), Message.case_id.is_not(None), Message.id != ctx.row.id
        )
    ):
        if message_id is not None and case_id is not None:
            found.setdefault(message_id, case_id)
    for message_id in ids:  # In-Reply-To first, then the newest References
        if message_id in found:
            return deps.session.get(Case, found[message_id])
    return None


def by_subject(ctx: MessageContext, deps: Deps) -> Case | None:
    """Our reference anywhere in the subject, whatever prefixes and banners surround it."""
    return _first_case(ctx, deps, find_case_references(ctx.row.subject or "", _prefix(deps)))


def by_plus_address(ctx: MessageContext, deps: Deps) -> Case | None:
    """``cpsd+CPSD-000123@…`` when the deployment allows plus-addressing."""
    if not deps.settings.gateway.plus_addressing:
        return None
    assert ctx.analysis is not None
    ours = {m.lower().partition("@") for m in deps.settings.gateway.mailboxes}
    tags: list[str] = []
    for address in [*ctx.row.envelope_to, *ctx.analysis.to, *ctx.analysis.cc]:
        local, _, domain = address.lower().partition("@")
        base, plus, tag = local.partition("+")
        if plus and (base, "@", domain) in ours:
            tags.append(tag)
    return _first_case(ctx, deps, find_case_references(" ".join(tags), _prefix(deps)))


def by_body_reference(ctx: MessageContext, deps: Deps) -> Case | None:
    """Our watermark line in the body, quoted or not (our templates write one)."""
    assert ctx.analysis is not None
    return _first_case(ctx, deps, list(ctx.analysis.references))


def by_external_reference(ctx: MessageContext, deps: Deps) -> Case | None:
    """The other desk's own ticket number, learned earlier from that same party."""
    assert ctx.analysis is not None and ctx.sender is not None
    if ctx.sender.party is None or not ctx.analysis.external_references:
        return None
    case_id = deps.session.scalar(
        select(ExternalReference.case_id)
        .where(
            ExternalReference.party_id == ctx.sender.party.id,
            ExternalReference.reference.in_(ctx.analysis.external_references),
        )
        .order_by(ExternalReference.id.desc())
        .limit(1)
    )
    return deps.session.get(Case, case_id) if case_id is not None else None


STRATEGIES: tuple[tuple[str, Strategy], ...] = (
    ("thread", by_thread),
    ("subject_reference", by_subject),
    ("plus_address", by_plus_address),
    ("body_reference", by_body_reference),
    ("external_reference", by_external_reference),
)


def correlate(ctx: MessageContext, deps: Deps) -> Stop | None:
    for name, strategy in STRATEGIES:
        case = strategy(ctx, deps)
        if case is not None:
            ctx.case, ctx.matched_by = case, name
            return None
    assert ctx.analysis is not None
    if ctx.analysis.kind == "reply":
        ctx.notes.append("looks like a reply but matched no case: it may belong to another case")
    return None


def _prefix(deps: Deps) -> str:
    return deps.settings.gateway.reference_prefix


def _first_case(ctx: MessageContext, deps: Deps, references: list[str]) -> Case | None:
    for reference in references[:20]:
        case = cases.by_reference(deps.session, reference)
        if case is not None:
            return case
        ctx.notes.append(f"names {reference}, which is not a case here")
    return None
