"""Plain-data views of cases: dicts for templates (never ORM objects) and for --json output."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.models import Case, Event, ExternalReference, Message, Outbox


def iso(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


FACT_KEYS = (
    "mpans",
    "invalid_mpans",
    "transaction_ids",
    "timestamps",
    "error_codes",
    "interface_ids",
    "evidence",
    "root_cause",
)


def facts_context(facts: dict[str, list[str]] | None) -> dict[str, list[str]]:
    """Every fact key present (templates run with StrictUndefined), values as lists of text."""
    facts = facts or {}
    return {key: [str(v) for v in facts.get(key, [])] for key in FACT_KEYS}


def case_context(case: Case) -> dict[str, Any]:
    """What templates may see of a case: strings and numbers only (sandbox rule B43)."""
    return {
        "reference": case.reference,
        "subject": case.subject,
        "state": case.state,
        "priority": case.priority,
        "summary": case.summary or "",
        "impact": case.impact or "",
        "resolution": case.resolution or "",
        "opened_at": iso(case.opened_at) or "",
        "due_at": iso(case.due_at) or "",
    }


def case_summary(session: Session, case: Case) -> dict[str, Any]:
    parent = session.get(Case, case.parent_id) if case.parent_id else None
    children = session.scalars(select(Case.reference).where(Case.parent_id == case.id))
    return {
        "reference": case.reference,
        "state": case.state,
        "priority": case.priority,
        "raised_by": case.raised_by_party or case.raised_by_address,
        "parent": parent.reference if parent else None,
        "children": list(children),
        "subject": case.subject,
        "opened_at": iso(case.opened_at),
        "due_at": iso(case.due_at),
    }


def case_detail(session: Session, case: Case) -> dict[str, Any]:
    detail = case_summary(session, case)
    detail["external_references"] = list(
        session.scalars(
            select(ExternalReference.reference).where(ExternalReference.case_id == case.id)
        )
    )
    messages: list[dict[str, Any]] = []
    for row in session.scalars(select(Message).where(Message.case_id == case.id)):
        messages.append(
            {
                "direction": "in",
                "message_id": row.message_id,
                "from": row.from_address,
                "to": list(row.envelope_to or []),
                "subject": row.subject,
                "matched_by": row.matched_by,
                "authentication": row.authentication,
                "at": iso(row.received_at),
            }
        )
    for out in session.scalars(select(Outbox).where(Outbox.case_id == case.id)):
        messages.append(
            {
                "direction": "out",
                "message_id": out.message_id,
                "from": out.mail_from,
                "to": list(out.recipients),
                "subject": out.subject,
                "matched_by": None,
                "at": iso(out.sent_at or out.created_at),
                "template": out.template,
                "status": out.status,
            }
        )
    messages.sort(key=lambda m: m["at"] or "")
    detail["messages"] = messages
    # The audit trail in the order it was recorded (ids), not by wall-clock time, which a
    # clock stepped back (NTP, a restored VM) would reorder (reliability.md F17).
    detail["events"] = [
        {"at": iso(e.at), "kind": e.kind, "actor": e.actor, "detail": e.detail}
        for e in session.scalars(select(Event).where(Event.case_id == case.id).order_by(Event.id))
    ]
    return detail
