"""Queue what the effect steps asked to send, each in its proper thread.

Nothing automatic is ever answered (RFC 3834), and X-Auto-Response-Suppress on the
incoming message silences our automatic replies to it. Notices and updates keep the
thread with their recipient so they land in the conversation the party already has.
"""

from __future__ import annotations

from sqlalchemy import select

from gateway import actions, outbound
from gateway.compose import MAX_REFERENCES
from gateway.context import Deps, MessageContext, Outgoing, Stop
from gateway.models import Case, Message, Outbox
from parsers.autoreply import suppressed_auto_responses


def reply(ctx: MessageContext, deps: Deps) -> Stop | None:
    if not ctx.outgoing:
        return None
    suppressed: frozenset[str] = frozenset()
    if ctx.parsed is not None and ctx.parsed.message is not None:
        suppressed = suppressed_auto_responses(ctx.parsed.message)
    for item in ctx.outgoing:
        if item.kind == "auto_reply" and (ctx.automatic or {"ALL", "AUTOREPLY"} & suppressed):
            ctx.notes.append(
                f"{item.template} not sent: the message asked for no automatic replies"
            )
            continue
        if ctx.unverified and not _only_staff(deps, item.to):
            # A forged message must not reach real parties through us (B48).
            if item.case is not None:
                actions.log(
                    ctx,
                    deps,
                    item.case,
                    f"{item.template}_withheld",
                    f"to {', '.join(item.to)}: sender not verified ({ctx.unverified})",
                )
            continue
        queue(
            deps,
            item,
            actor=ctx.actor,
            cause_message_id=ctx.row.id,
            answering=ctx.row.message_id,
            new_case=ctx.case_created and item.case is ctx.case,
        )
    return None


def _only_staff(deps: Deps, to: tuple[str, ...]) -> bool:
    staff_mailbox = deps.identity.staff_mailbox.lower()
    return all(a.lower() == staff_mailbox or deps.settings.gateway.is_staff(a) for a in to)


def queue(
    deps: Deps,
    item: Outgoing,
    *,
    actor: str,
    cause_message_id: int | None = None,
    answering: str | None = None,
    new_case: bool = False,
) -> None:
    """Queue one mail in the caller's transaction; ``answering`` is the Message-ID replied
    to, ``new_case`` says the case was opened by it (so nothing was exchanged on it yet)."""
    in_reply_to, references = _thread(deps, item, answering, new_case)
    outbound.enqueue(
        deps.session,
        deps.renderer,
        deps.identity,
        template=item.template,
        context=item.context,
        to=list(item.to),
        case=item.case,
        kind=item.kind,
        auto_submitted="auto-replied" if item.kind == "auto_reply" else "auto-generated",
        in_reply_to=in_reply_to,
        references=references,
        cause_message_id=cause_message_id,
        actor=actor,
        attachments=item.attachments,
    )


def _thread(
    deps: Deps, item: Outgoing, answering: str | None, new_case: bool
) -> tuple[str | None, list[str]]:
    """Continue the conversation the recipient already has on this case, if any."""
    if item.kind == "auto_reply" and answering:
        earlier = _exchanged(deps, item.case, item.to) if item.case and not new_case else []
        chain = [m for m in earlier if m != answering] + [answering]
        return answering, chain[-MAX_REFERENCES:]
    if item.case is None or new_case:
        return None, []
    chain = _exchanged(deps, item.case, item.to)
    return (chain[-1] if chain else None), chain[-MAX_REFERENCES:]


def _exchanged(deps: Deps, case: Case, to: tuple[str, ...]) -> list[str]:
    """Message-IDs of mail between us and these recipients on this case, oldest first."""
    wanted = {a.lower() for a in to}
    found: list[tuple[object, str]] = []
    for received_at, message_id, sender in deps.session.execute(
        select(Message.received_at, Message.message_id, Message.from_address).where(
            Message.case_id == case.id, Message.message_id.is_not(None)
        )
    ):
        if sender in wanted and message_id:
            found.append((received_at, message_id))
    for created_at, message_id, recipients in deps.session.execute(
        select(Outbox.created_at, Outbox.message_id, Outbox.recipients).where(
            Outbox.case_id == case.id
        )
    ):
        if wanted & {r.lower() for r in recipients}:
            found.append((created_at, message_id))
    found.sort(key=lambda pair: pair[0])  # type: ignore[arg-type,return-value]
    return list(dict.fromkeys(m for _, m in found))
