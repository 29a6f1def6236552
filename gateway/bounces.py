"""Link a delivery status notification to the outbound mail it is about.

By our Message-ID in the returned headers first (exact), else by the failed recipient
and time (the newest mail to that address in the last week). The outbox row is marked
bounced with the reason and status code, and the case's trail says so.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import cases
from gateway.models import Case, Outbox
from parsers.bounce import Bounce

WINDOW = timedelta(days=7)


def link(session: Session, bounce: Bounce, now: datetime) -> Outbox | None:
    row = _by_message_id(session, bounce) or _by_recipient(session, bounce, now)
    if row is None:
        return None
    status = next((r.status for r in bounce.recipients if r.status), None)
    row.status = "bounced" if bounce.permanent else row.status
    row.last_error = f"{'bounced' if bounce.permanent else 'delayed'}: {bounce.reason}"[:2000]
    case = session.get(Case, row.case_id) if row.case_id is not None else None
    if case is not None:
        verb = "bounced" if bounce.permanent else "delayed"
        cases.record(
            session,
            case,
            f"{row.template}_{verb}",
            actor="bounce",
            at=now,
            detail=f"to {', '.join(row.recipients)}: {status or ''} {bounce.reason}".strip(),
        )
    return row


def _by_message_id(session: Session, bounce: Bounce) -> Outbox | None:
    if not bounce.original_message_id:
        return None
    return session.scalar(select(Outbox).where(Outbox.message_id == bounce.original_message_id))


def _by_recipient(session: Session, bounce: Bounce, now: datetime) -> Outbox | None:
    failed = {r.address.lower() for r in bounce.recipients if r.address}
    if not failed:
        return None
    recent = session.scalars(
        select(Outbox)
        .where(Outbox.created_at >= now - WINDOW, Outbox.status.in_(["sent", "sending", "pending"]))
        .order_by(Outbox.id.desc())
        .limit(1000)
    )
    return next((r for r in recent if failed & {a.lower() for a in r.recipients}), None)
