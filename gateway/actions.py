"""What a case does: lifecycle moves, staff commands, child cases, notices.

Every change goes through ``transition`` or ``cases.record`` so it leaves an audit event
naming the message or person behind it; every mail is an ``Outgoing`` on the context,
queued by the reply step in the same transaction.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from gateway import cases, sla
from gateway.commands import Command, help_lines
from gateway.context import Acting, Deps, Outgoing
from gateway.lifecycle import OPEN_STATES, State, TransitionError, can_close, move
from gateway.models import Case, CaseParty, Message, Outbox
from gateway.views import case_context, facts_context
from parsers.evidence import evidence_files
from parsers.mime import parse_bounded


class Refused(Exception):
    """A command the lifecycle or the directory does not allow; the text says why."""


def transition(ctx: Acting, deps: Deps, case: Case, target: State, detail: str = "") -> None:
    if case.state == target:
        return
    try:
        new = move(case.state, target)
    except TransitionError as exc:
        raise Refused(f"{case.reference}: {exc}") from None
    before = case.state
    case.state = new.value
    if new is State.RESOLVED or new is State.REDIRECTED:
        case.resolved_at = deps.now
    if new is State.CLOSED:
        case.closed_at = deps.now
    text = f"{before} → {new.value}" + (f": {detail}" if detail else "")
    log(ctx, deps, case, "state_changed", text)


def counterparty(deps: Deps, case: Case) -> list[str]:
    """Who hears about a case: its raiser, or for a child case the party it was raised to."""
    if case.parent_id is None and case.raised_by_address:
        return [case.raised_by_address]
    assignees = deps.session.scalars(
        select(CaseParty.party_id).where(CaseParty.case_id == case.id, CaseParty.role == "assignee")
    )
    contacts = [p.contact for a in assignees if (p := deps.directory.by_id(a)) is not None]
    return contacts or ([case.raised_by_address] if case.raised_by_address else [])


def open_children(deps: Deps, case: Case) -> list[Case]:
    children = deps.session.scalars(select(Case).where(Case.parent_id == case.id))
    return [c for c in children if c.state in OPEN_STATES]


def notice(ctx: Acting, case: Case, template: str, to: list[str], **extra: Any) -> None:
    if to:
        ctx.outgoing.append(
            Outgoing(
                template, tuple(to), {"case": case_context(case), **extra}, case, kind="notice"
            )
        )


def tell_staff(ctx: Acting, deps: Deps, case: Case, headline: str, text: str = "") -> None:
    """Staff hear about cases by mail and answer with their normal client (commands or text)."""
    notice(
        ctx,
        case,
        "staff_notice",
        [deps.settings.gateway.staff_mailbox],
        headline=headline,
        text=text[:20_000],
        sender=ctx.actor,
    )


def command_help(ctx: Acting, deps: Deps, case: Case, problems: list[str]) -> None:
    assert ctx.reply_address is not None
    ctx.outgoing.append(
        Outgoing(
            "command_help",
            (ctx.reply_address,),
            {"case": case_context(case), "problems": problems, "commands": help_lines()},
            case,
            kind="auto_reply",
        )
    )
    log(ctx, deps, case, "commands_refused", "; ".join(problems))


def apply(ctx: Acting, deps: Deps, case: Case, command: Command) -> None:
    handler = _HANDLERS[command.name]
    handler(ctx, deps, case, command.argument)


def resolve(ctx: Acting, deps: Deps, case: Case, summary: str) -> None:
    transition(ctx, deps, case, State.RESOLVED, summary)
    case.resolution = summary
    notice(ctx, case, "resolution", counterparty(deps, case))
    if case.parent_id is not None:
        _child_resolved(ctx, deps, case)


def _child_resolved(ctx: Acting, deps: Deps, child: Case) -> None:
    """CPSD: the original case stays open until the case between the services is resolved."""
    parent = deps.session.get(Case, child.parent_id)
    if parent is None:
        return
    log(ctx, deps, parent, "child_resolved", f"{child.reference}: {child.resolution or ''}")
    still_open = [c for c in open_children(deps, parent) if c.id != child.id]
    tell_staff(
        ctx,
        deps,
        parent,
        f"{child.reference} was resolved by the party it was raised to",
        child.resolution or "",
    )
    if not still_open and parent.state in OPEN_STATES:
        transition(ctx, deps, parent, State.RESOLVED, f"child {child.reference} resolved")
        parent.resolution = child.resolution
        notice(ctx, parent, "resolution", counterparty(deps, parent))


def _triage(ctx: Acting, deps: Deps, case: Case, _: str) -> None:
    transition(ctx, deps, case, State.TRIAGE)


def _priority(ctx: Acting, deps: Deps, case: Case, value: str) -> None:
    before = case.priority
    case.priority = value
    sla.set_due(case, deps.settings)
    log(ctx, deps, case, "priority_changed", f"{before} → {value}")


def _assign(ctx: Acting, deps: Deps, case: Case, name: str) -> None:
    party = deps.directory.resolve(name)
    if party is None:
        known = ", ".join(p.id for p in deps.directory.parties)
        raise Refused(f"no party called {name!r} (known: {known})")
    raise_child(ctx, deps, case, party.id, attachments=raiser_evidence(deps, case))


def raiser_evidence(deps: Deps, case: Case) -> tuple[tuple[str, str, bytes], ...]:
    """The attachments of the message that raised the case, to go with a child case."""
    first = first_message(deps, case)
    if first is None:
        return ()
    parsed = parse_bounded(deps.store.get(deps.session, first.sha256))
    return tuple(evidence_files(parsed.message)) if parsed.message is not None else ()


def raise_child(
    ctx: Acting,
    deps: Deps,
    parent: Case | None,
    party_id: str,
    *,
    summary: str | None = None,
    impact: str | None = None,
    attachments: tuple[tuple[str, str, bytes], ...] = (),
    facts: dict[str, list[str]] | None = None,
) -> Case:
    """A case from Elexon to a party's nominated mailbox, as a child of the raiser's case.

    Without a parent it is a case Elexon raises on its own behalf (e.g. from the CLI).
    """
    party = deps.directory.by_id(party_id)
    if party is None:
        raise Refused(f"no party {party_id}")
    child = cases.open_case(
        deps.session,
        prefix=deps.settings.gateway.reference_prefix,
        subject=parent.subject if parent else (summary or "CPSD case")[:200],
        party_id=None,
        address=None,
        priority=parent.priority if parent else deps.settings.sla.default_priority,
        summary=summary or (parent.summary if parent else None),
        impact=impact or (parent.impact if parent else None),
        now=deps.now,
        parent=parent,
    )
    merged = dict(parent.facts or {}) if parent else {}
    for key, values in (facts or {}).items():
        merged[key] = list(dict.fromkeys([*merged.get(key, []), *values]))
    child.facts = merged
    child.raised_by_party = "ELEXON"
    cases.add_party(deps.session, child, party.id, "assignee")
    sla.set_due(child, deps.settings)
    serves = f" for {parent.reference}" if parent else ""
    log(ctx, deps, child, "case_raised", f"raised to {party.name} ({party.contact}){serves}")
    transition(ctx, deps, child, State.ASSIGNED, f"to {party.id}")
    if parent is not None:
        cases.add_party(deps.session, parent, party.id, "assignee")
        log(ctx, deps, parent, "child_raised", f"{child.reference} to {party.name}")
        if parent.state != State.ASSIGNED:
            transition(ctx, deps, parent, State.ASSIGNED, f"child {child.reference} to {party.id}")
    ctx.outgoing.append(
        Outgoing(
            "outbound_case",
            (party.contact,),
            {
                "case": case_context(child),
                "parent": case_context(parent) if parent else case_context(child),
                "party": {"id": party.id, "name": party.name},
                "facts": facts_context(child.facts),
            },
            child,
            kind="outbound_case",
            attachments=attachments,
        )
    )
    return child


def _awaiting(ctx: Acting, deps: Deps, case: Case, _: str) -> None:
    transition(ctx, deps, case, State.AWAITING_PARTY)


def _resolve(ctx: Acting, deps: Deps, case: Case, summary: str) -> None:
    resolve(ctx, deps, case, summary)


def _close(ctx: Acting, deps: Deps, case: Case, _: str) -> None:
    reason = can_close(case.state, len(open_children(deps, case)))
    if reason:
        raise Refused(f"{case.reference} cannot close: {reason}")
    transition(ctx, deps, case, State.CLOSED)
    notice(ctx, case, "closure", counterparty(deps, case))


def _redirect(ctx: Acting, deps: Deps, case: Case, name: str) -> None:
    desk = deps.directory.desk(name)
    if desk is None:
        known = ", ".join(d.id for d in deps.directory.desks)
        raise Refused(f"no desk called {name!r} (known: {known})")
    transition(ctx, deps, case, State.REDIRECTED, desk.name)
    case.redirected_to = desk.name
    case.resolution = f"Redirected to the {desk.name}: {desk.covers}."
    notice(ctx, case, "redirect", counterparty(deps, case), desk=desk.to_json())


def _note(ctx: Acting, deps: Deps, case: Case, text: str) -> None:
    log(ctx, deps, case, "note", text)


def _major(ctx: Acting, deps: Deps, case: Case, _: str) -> None:
    case.major = True
    log(ctx, deps, case, "major_incident_flagged")


_HANDLERS = {
    "triage": _triage,
    "priority": _priority,
    "assign": _assign,
    "awaiting": _awaiting,
    "resolve": _resolve,
    "close": _close,
    "redirect": _redirect,
    "note": _note,
    "major": _major,
}


def reopen_or_follow_up(ctx: Acting, deps: Deps, case: Case) -> Case:
    """A reply to a closed case reopens it within the window; later it starts a linked case."""
    window = timedelta(days=deps.settings.gateway.reopen_days)
    if case.closed_at is not None and deps.now - case.closed_at <= window:
        transition(ctx, deps, case, State.TRIAGE, "reopened by a reply within the reopen window")
        return case
    follow_up = cases.open_case(
        deps.session,
        prefix=deps.settings.gateway.reference_prefix,
        subject=case.subject,
        party_id=case.raised_by_party,
        address=ctx.reply_address or case.raised_by_address,
        priority=case.priority,
        now=deps.now,
    )
    follow_up.facts = {**(case.facts or {}), "follows": [case.reference]}
    sla.set_due(follow_up, deps.settings)
    log(
        ctx,
        deps,
        case,
        "follow_up_raised",
        f"a reply after the reopen window became {follow_up.reference}",
    )
    log(ctx, deps, follow_up, "case_raised", f"follows closed case {case.reference}")
    return follow_up


def log(ctx: Acting, deps: Deps, case: Case, kind: str, detail: str = "") -> None:
    """One audit event naming the message or person acting."""
    cases.record(
        deps.session,
        case,
        kind,
        actor=ctx.actor,
        at=deps.now,
        detail=detail,
        message_row_id=ctx.message_row_id,
    )


def first_message(deps: Deps, case: Case) -> Message | None:
    return deps.session.scalar(
        select(Message).where(Message.case_id == case.id).order_by(Message.id).limit(1)
    )


def declare_major(ctx: Acting, deps: Deps, title: str) -> Case:
    """A major incident is a case of Elexon's own, flagged major, with its notices threaded."""
    case = cases.open_case(
        deps.session,
        prefix=deps.settings.gateway.reference_prefix,
        subject=title[:200],
        party_id="ELEXON",
        address=None,
        priority="P1",
        now=deps.now,
    )
    case.major = True
    sla.set_due(case, deps.settings)
    log(ctx, deps, case, "major_incident_declared", title)
    transition(ctx, deps, case, State.TRIAGE, "major incident")
    return case


def major_recipients(deps: Deps, case: Case, roles: tuple[str, ...]) -> list[str]:
    """Everyone told at the start is told again; a new incident goes to the roles named."""
    earlier = deps.session.scalars(
        select(Outbox.recipients).where(
            Outbox.case_id == case.id, Outbox.template == "major_incident"
        )
    )
    told = list(dict.fromkeys(r for recipients in earlier for r in recipients))
    if told:
        return told
    wanted = {r.lower() for r in roles}
    return list(
        dict.fromkeys(
            p.contact
            for p in deps.directory.parties
            if p.role.value != "elexon" and (not wanted or p.role.value in wanted)
        )
    )


def major_notice(
    ctx: Acting,
    deps: Deps,
    case: Case,
    recipients: list[str],
    *,
    phase: str,
    message: str,
    roles: list[str],
) -> None:
    context = {"case": case_context(case), "phase_label": phase, "message": message, "roles": roles}
    for address in recipients:
        ctx.outgoing.append(Outgoing("major_incident", (address,), context, case, kind="notice"))
    log(
        ctx,
        deps,
        case,
        f"major_incident_{phase.replace(' ', '_')}",
        f"{len(recipients)} recipients: {message[:200]}",
    )


def end_major(ctx: Acting, deps: Deps, case: Case, message: str) -> None:
    case.resolution = message
    transition(ctx, deps, case, State.RESOLVED, "major incident ended")
    transition(ctx, deps, case, State.CLOSED, "major incident ended")
