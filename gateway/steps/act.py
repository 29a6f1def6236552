"""Case actions: raise a case, or add the message to its case and do what it asks.

Parties' messages update their case (and may resolve a child case); staff messages
carry commands or an update for the other party. Every effect is an audit event, and
every mail an Outgoing that the reply step queues in this same transaction.
"""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import func, select

from gateway import actions, cases, sla
from gateway.context import Deps, MessageContext, Outgoing, Stop
from gateway.lifecycle import OPEN_STATES, State
from gateway.models import Case, ExternalReference
from gateway.views import case_context
from parsers.autoreply import is_out_of_office

# How a party's own desk says it has finished (ServiceNow, Zendesk, people).
_RESOLVED = re.compile(
    r"\b(?:has\s+been\s+(?:resolved|closed|fixed)|status:\s*(?:resolved|closed)|"
    r"(?:incident|case|ticket|request)\s+(?:is\s+)?(?:now\s+)?(?:resolved|closed))\b",
    re.IGNORECASE,
)


def act(ctx: MessageContext, deps: Deps) -> Stop | None:
    assert ctx.sender is not None and ctx.analysis is not None
    if ctx.case is None:
        if ctx.automatic:
            return Stop("ignored", f"automatic message ({ctx.automatic}) matched no case")
        if ctx.row.sent_copy:  # staff's own mail from the Sent folder never raises a case
            return Stop("ignored", "a copy from the shared mailbox's sent folder matched no case")
        if (held := _over_new_case_limit(ctx, deps)) is not None:
            return held
        _raise(ctx, deps)
    elif ctx.sender.kind == "staff":
        _record(ctx, deps)
        _staff(ctx, deps)
    else:
        if ctx.case.state == State.CLOSED and not ctx.automatic:
            follow = actions.reopen_or_follow_up(ctx, deps, ctx.case)
            ctx.case_created = follow is not ctx.case
            ctx.case = follow
        _record(ctx, deps)
        _party(ctx, deps)
    ctx.row.case = ctx.case  # by relationship: a case opened here has no id until the flush
    ctx.row.matched_by = ctx.matched_by
    ctx.outcome = "case_created" if ctx.case_created else "case_updated"
    return None


def _over_new_case_limit(ctx: MessageContext, deps: Deps) -> Stop | None:
    """Hold a sender's new case past their hourly limit (B51): no person raises cases
    that fast, a runaway script or a loop does. Staff release what is real.

    Mail written over an hour before it reached us is history (a shared mailbox's
    backlog read for the first time), not a flood, and is not held. The limit is a
    safety net for known, authenticated parties, so trusting their Date here is fine.
    """
    limit = deps.settings.gateway.max_new_cases_per_sender_per_hour
    sender = ctx.sender
    assert sender is not None and ctx.analysis is not None
    if limit <= 0 or ctx.released or sender.kind == "staff" or sender.address is None:
        return None
    hour_ago = deps.now - timedelta(hours=1)
    if ctx.analysis.date is not None and ctx.analysis.date < hour_ago:
        return None
    raised = deps.session.scalar(
        select(func.count())
        .select_from(Case)
        .where(
            Case.opened_at >= hour_ago,
            func.lower(Case.raised_by_address) == sender.address.lower(),
        )
    )
    if (raised or 0) < limit:
        return None
    return Stop(
        "quarantined",
        f"rate limit: {raised} new cases from {sender.address} in the last hour "
        f"(at most {limit}); held for staff to release",
    )


def _raise(ctx: MessageContext, deps: Deps) -> None:
    assert ctx.sender is not None and ctx.analysis is not None
    fields = ctx.analysis.fields
    case = cases.open_case(
        deps.session,
        prefix=deps.settings.gateway.reference_prefix,
        subject=ctx.row.subject or ctx.analysis.subject,
        party_id=ctx.sender.party.id if ctx.sender.party else None,
        address=ctx.sender.address,
        priority=fields.priority or deps.settings.sla.default_priority,
        summary=fields.summary,
        impact=fields.impact,
        now=deps.now,
        flush=False,  # nothing below queries by case.id; the reply step's query flushes
    )
    case.facts = _facts(ctx)
    sla.set_due(case, deps.settings)
    ctx.case, ctx.case_created, ctx.matched_by = case, True, "new"
    _record(ctx, deps)
    cases.record(
        deps.session,
        case,
        "case_raised",
        actor=ctx.sender.label,
        at=deps.now,
        detail="; ".join([case.subject, *ctx.notes]),
        message_row_id=ctx.row.id,
    )
    problems = list(ctx.analysis.problems) if ctx.sender.kind == "party" else []
    if problems:
        actions.transition(ctx, deps, case, State.INFO_REQUIRED, "; ".join(problems))
        _reply(ctx, case, "info_required", problems=problems)
    else:
        _reply(ctx, case, "acknowledgement")
    actions.tell_staff(ctx, deps, case, f"New case from {_who(ctx)}", ctx.analysis.body_text)


def _party(ctx: MessageContext, deps: Deps) -> None:
    assert ctx.case is not None and ctx.sender is not None and ctx.analysis is not None
    case = ctx.case
    _learn_external_references(ctx, deps)
    # A party's desk tool (ServiceNow and the like) writes automatically; what it says about
    # a case we raised to it still matters. Other automatic mail (out of office) is only kept.
    is_assignee = case.parent_id is not None and ctx.sender.party is not None
    if ctx.automatic and (not is_assignee or _out_of_office(ctx)):
        return
    text = ctx.analysis.reply_text or ctx.analysis.body_text
    if case.state == State.INFO_REQUIRED and ctx.sender.address == case.raised_by_address:
        actions.transition(ctx, deps, case, State.TRIAGE, "the raiser sent more information")
    if is_assignee and case.state in OPEN_STATES and _RESOLVED.search(f"{ctx.row.subject}\n{text}"):
        actions.resolve(ctx, deps, case, _first_lines(text))
        return
    if not ctx.case_created:
        actions.tell_staff(ctx, deps, case, f"Update from {_who(ctx)}", text)


def _staff(ctx: MessageContext, deps: Deps) -> None:
    assert ctx.case is not None and ctx.analysis is not None
    case = ctx.case
    parsed = ctx.commands
    if parsed is not None and parsed.errors:
        if not ctx.row.sent_copy:
            actions.command_help(ctx, deps, case, list(parsed.errors))
        ctx.reason = "commands refused: " + "; ".join(parsed.errors)
        return
    if parsed is not None and parsed.commands:
        queued = len(ctx.outgoing)
        savepoint = deps.session.begin_nested()
        try:
            for command in parsed.commands:
                actions.apply(ctx, deps, case, command)
        except actions.Refused as exc:
            savepoint.rollback()
            del ctx.outgoing[queued:]
            if not ctx.row.sent_copy:
                actions.command_help(ctx, deps, case, [str(exc)])
            ctx.reason = f"commands refused: {exc}"
            return
        savepoint.commit()
        return
    text = ctx.analysis.reply_text.strip()
    if ctx.row.sent_copy:
        _not_relayed(ctx, deps, case, "sent from the shared mailbox; not relayed")
        return
    if not text:
        return
    # Reply-all from Outlook: the party already has this mail from staff directly; relay
    # it only to whoever of the case's contacts it was not addressed to.
    addressed = {a.lower() for a in (*ctx.analysis.to, *ctx.analysis.cc)}
    contacts = actions.counterparty(deps, case)
    missing = [a for a in contacts if a.lower() not in addressed]
    if len(missing) < len(contacts):
        reached = ", ".join(sorted(set(contacts) - set(missing)))
        _not_relayed(
            ctx, deps, case, f"staff wrote to the party directly; not relayed to {reached}"
        )
    if missing:
        actions.notice(ctx, case, "update", missing, text=text)
        ctx.outgoing[-1:] = [_as_update(o) for o in ctx.outgoing[-1:]]


def _not_relayed(ctx: MessageContext, deps: Deps, case: Case, detail: str) -> None:
    cases.record(
        deps.session,
        case,
        "staff_reply_recorded",
        actor=ctx.sender.label if ctx.sender else "",
        at=deps.now,
        detail=detail,
        message_row_id=ctx.row.id,
    )


def _as_update(outgoing: Outgoing) -> Outgoing:
    return Outgoing(outgoing.template, outgoing.to, outgoing.context, outgoing.case, kind="update")


def _record(ctx: MessageContext, deps: Deps) -> None:
    assert ctx.case is not None and ctx.sender is not None
    if ctx.automatic:
        kind, suffix = "automatic_message_received", f" ({ctx.automatic}; not answered)"
    elif ctx.row.sent_copy:
        kind, suffix = "staff_sent_copy_received", " (from the shared mailbox's sent folder)"
    elif ctx.released:
        kind, suffix = "message_released", " (released from quarantine)"
    else:
        kind, suffix = "message_received", ""
    detail = (ctx.row.subject or "") + suffix
    if ctx.matched_by and ctx.matched_by != "new":
        detail += f" [matched by {ctx.matched_by}]"
    if ctx.notes and not ctx.case_created:  # a new case's notes go on "case_raised"
        detail += "; " + "; ".join(ctx.notes)
    cases.record(
        deps.session,
        ctx.case,
        kind,
        actor=ctx.sender.label,
        at=ctx.row.received_at,
        detail=detail,
        message_row_id=ctx.row.id,
    )


def _learn_external_references(ctx: MessageContext, deps: Deps) -> None:
    assert ctx.case is not None and ctx.sender is not None and ctx.analysis is not None
    party = ctx.sender.party
    if party is None:
        return
    known = set(
        deps.session.scalars(
            ExternalReference.__table__.select()
            .with_only_columns(ExternalReference.reference)
            .where(ExternalReference.party_id == party.id)
        )
    )
    for reference in ctx.analysis.external_references[:10]:
        if reference in known:
            continue
        deps.session.add(
            ExternalReference(
                case_id=ctx.case.id, party_id=party.id, reference=reference, learned_at=deps.now
            )
        )
        known.add(reference)
        cases.record(
            deps.session,
            ctx.case,
            "external_reference_learned",
            actor=ctx.sender.label,
            at=deps.now,
            detail=f"{party.name} calls this {reference}",
            message_row_id=ctx.row.id,
        )


def _reply(ctx: MessageContext, case: object, template: str, **extra: object) -> None:
    assert ctx.sender is not None and ctx.sender.address is not None and ctx.case is not None
    ctx.outgoing.append(
        Outgoing(
            template,
            (ctx.sender.address,),
            {
                "case": case_context(ctx.case),
                "recipient": {"address": ctx.sender.address, "party": _party_name(ctx)},
                **extra,
            },
            ctx.case,
            kind="auto_reply",
        )
    )


def _facts(ctx: MessageContext) -> dict[str, list[str]]:
    """What the raiser gave us, kept on the case for the notices and child cases."""
    assert ctx.analysis is not None
    a = ctx.analysis
    return {
        "mpans": [m.core for m in a.mpans if m.valid][:50],
        "invalid_mpans": [f"{m.core} ({m.problem})" for m in a.mpans if not m.valid][:20],
        "transaction_ids": [t.value for t in a.transaction_ids][:50],
        "timestamps": [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in a.timestamps][:20],
        "error_codes": list(a.error_codes)[:20],
        "interface_ids": list(a.interface_ids)[:20],
        "evidence": [e.filename for e in a.evidence][:40],
        "root_cause": [a.fields.root_cause] if a.fields.root_cause else [],
    }


def _out_of_office(ctx: MessageContext) -> bool:
    message = ctx.parsed.message if ctx.parsed else None
    return message is not None and is_out_of_office(message)


def _who(ctx: MessageContext) -> str:
    assert ctx.sender is not None
    party = ctx.sender.party
    return f"{party.name} ({ctx.sender.label})" if party else ctx.sender.label


def _party_name(ctx: MessageContext) -> str:
    assert ctx.sender is not None
    return ctx.sender.party.name if ctx.sender.party else ""


def _first_lines(text: str, limit: int = 500) -> str:
    return " ".join(text.strip().split())[:limit] or "resolved by the assigned party"
