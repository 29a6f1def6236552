"""Case records: creation with a human reference, parties on a case, and the audit trail.

Only the worker's transaction calls these; each change is paired with an Event naming
the message or person behind it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from gateway.models import Case, CaseParty, Counter, Event

_NEXT = update(Counter).where(Counter.name == bindparam("counter"))


def next_reference(session: Session, prefix: str) -> str:
    """Allocate ``PREFIX-000123``; the counter row is locked by the write, so numbers never repeat."""
    name = f"case:{prefix}"
    # One statement (RETURNING: SQLite >= 3.35, PostgreSQL) on the session's connection:
    # nothing in the session holds a Counter to keep in step and nothing pending can
    # change the answer, so the ORM's update machinery and autoflush are not needed.
    value = session.connection().scalar(
        _NEXT.values(value=Counter.value + 1).returning(Counter.value), {"counter": name}
    )
    if value is None:
        session.add(Counter(name=name, value=1))
        session.flush()
        value = 1
    return f"{prefix}-{value:06d}"


def open_case(
    session: Session,
    *,
    prefix: str,
    subject: str,
    party_id: str | None,
    address: str | None,
    priority: str,
    now: datetime,
    summary: str | None = None,
    impact: str | None = None,
    parent: Case | None = None,
    flush: bool = True,
) -> Case:
    """A new case with the next reference. ``flush=False`` leaves it without an id until
    the transaction's next flush: for a caller that names it only by relationship
    (``Event.case``, ``Outbox.case``, ``Message.case``) and never queries by ``case.id``
    meanwhile — the worker raising a case, where the flush cost a tenth of its time."""
    case = Case(
        reference=next_reference(session, prefix),
        state="raised",
        priority=priority,
        subject=subject[:998] or "(no subject)",
        summary=summary,
        impact=impact,
        raised_by_party=party_id,
        raised_by_address=address,
        parent_id=parent.id if parent else None,
        opened_at=now,
        updated_at=now,
    )
    session.add(case)
    if flush:
        session.flush()
    if party_id:  # a case this new has no parties to look up
        session.add(CaseParty(case=case, party_id=party_id, role="raiser"))
    return case


def add_party(session: Session, case: Case, party_id: str, role: str) -> None:
    exists = session.scalar(
        select(CaseParty.id).where(CaseParty.case_id == case.id, CaseParty.party_id == party_id)
    )
    if exists is None:
        session.add(CaseParty(case_id=case.id, party_id=party_id, role=role))


def party_ids(session: Session, case: Case) -> set[str]:
    return set(session.scalars(select(CaseParty.party_id).where(CaseParty.case_id == case.id)))


def record(
    session: Session,
    case: Case,
    kind: str,
    *,
    actor: str,
    at: datetime,
    detail: str = "",
    message_row_id: int | None = None,
) -> Event:
    event = Event(
        case=case,
        at=at,
        kind=kind,
        actor=actor[:320],
        detail=detail,
        message_row_id=message_row_id,
    )
    session.add(event)
    case.updated_at = max(case.updated_at, at)
    return event


def by_reference(session: Session, reference: str) -> Case | None:
    return session.scalar(select(Case).where(Case.reference == reference.upper()))
