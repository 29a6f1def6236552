"""The outbox: every mail we send is a row first, rendered once, then delivered after commit.

Rows are written in the same transaction as the case change that caused them, so a
crash can neither send a mail for a change that never happened nor lose one for a
change that did. Delivery reuses the stored bytes, so the Message-ID never changes
between attempts (reliability.md I5).
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.compose import AutoSubmitted, compose, new_message_id
from gateway.models import Case, Event, Outbox, utcnow
from gateway.render import Renderer


class TemporaryFailure(Exception):
    """Try again later (connection refused, 4xx)."""


class PermanentFailure(Exception):
    """Never retry (5xx)."""


class Transport(Protocol):
    def send(self, mail_from: str, recipients: Sequence[str], raw: bytes, row_id: int) -> None: ...


class MaildirTransport:
    """Writes each mail as ``<row id>.eml``: a re-send after a crash overwrites, never doubles."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def send(self, mail_from: str, recipients: Sequence[str], raw: bytes, row_id: int) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
            with os.fdopen(fd, "wb") as handle:
                handle.write(raw)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.directory / f"{row_id:08d}.eml")
        except OSError as exc:
            raise TemporaryFailure(f"cannot write to {self.directory}: {exc}") from exc


@dataclass(frozen=True)
class Identity:
    """How our mail presents itself: From, Message-ID domain and loop marker."""

    mail_from: str
    from_name: str
    message_id_domain: str
    loop_id: str


def enqueue(
    session: Session,
    renderer: Renderer,
    identity: Identity,
    *,
    template: str,
    context: dict[str, object],
    to: Sequence[str],
    case: Case | None,
    kind: str,
    auto_submitted: AutoSubmitted,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    cause_message_id: int | None = None,
    priority: int = 5,
    actor: str = "gateway",
) -> Outbox:
    """Render, compose and store one outbound mail in the caller's transaction."""
    rendered = renderer.render(template, context)
    message_id = new_message_id(identity.message_id_domain, case.reference if case else None)
    composed = compose(
        rendered,
        mail_from=identity.mail_from,
        from_name=identity.from_name,
        to=to,
        message_id=message_id,
        in_reply_to=in_reply_to,
        references=references,
        auto_submitted=auto_submitted,
        loop_id=identity.loop_id,
    )
    now = utcnow()
    row = Outbox(
        case_id=case.id if case else None,
        message_id=composed.message_id,
        kind=kind,
        template=template,
        template_version=rendered.version,
        mail_from=identity.mail_from,
        recipients=list(to),
        subject=rendered.subject,
        raw=composed.raw,
        priority=priority,
        status="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
        cause_message_id=cause_message_id,
    )
    session.add(row)
    session.flush()
    if case is not None:
        session.add(
            Event(
                case_id=case.id,
                at=now,
                kind=f"{template}_queued",
                actor=actor,
                detail=f"to {', '.join(to)}: {rendered.subject}",
                outbox_row_id=row.id,
            )
        )
    return row


@dataclass(frozen=True)
class Delivery:
    row_id: int
    status: str
    error: str | None = None


class Deliverer:
    """Delivers due rows in order of priority and age, with backoff on temporary failure."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        transport: Transport,
        *,
        retry_for: timedelta = timedelta(hours=48),
        base_delay: float = 30.0,
        max_delay: float = 3600.0,
    ) -> None:
        self._sessions = sessions
        self._transport = transport
        self._retry_for = retry_for
        self._base_delay = base_delay
        self._max_delay = max_delay

    def due(self, session: Session, now: datetime, limit: int) -> list[Outbox]:
        return list(
            session.scalars(
                select(Outbox)
                .where(Outbox.status == "pending", Outbox.next_attempt_at <= now)
                .order_by(Outbox.priority, Outbox.id)
                .limit(limit)
            )
        )

    def deliver_due(self, limit: int = 100) -> list[Delivery]:
        with self._sessions() as session:
            rows = [
                (r.id, r.mail_from, list(r.recipients), r.raw)
                for r in self.due(session, utcnow(), limit)
            ]
        return [self._deliver(*row) for row in rows]

    def _deliver(self, row_id: int, mail_from: str, recipients: list[str], raw: bytes) -> Delivery:
        error: str | None = None
        status = "sent"
        try:
            self._transport.send(mail_from, recipients, raw, row_id)
        except PermanentFailure as exc:
            status, error = "failed", str(exc)
        except TemporaryFailure as exc:
            status, error = "pending", str(exc)
        with self._sessions.begin() as session:
            row = session.get(Outbox, row_id)
            assert row is not None
            row.attempts += 1
            row.last_error = error
            now = utcnow()
            if status == "sent":
                row.status, row.sent_at = "sent", now
            elif status == "failed" or now - row.created_at > self._retry_for:
                row.status = status = "failed"
            else:
                row.next_attempt_at = now + timedelta(seconds=self._backoff(row.attempts))
            if row.case_id is not None and status != "pending":
                verb = "delivered" if status == "sent" else "failed"
                session.add(
                    Event(
                        case_id=row.case_id,
                        at=now,
                        kind=f"{row.template}_{verb}",
                        actor="outbound",
                        detail=f"to {', '.join(row.recipients)}" + (f": {error}" if error else ""),
                        outbox_row_id=row.id,
                    )
                )
        return Delivery(row_id, status, error)

    def _backoff(self, attempts: int) -> float:
        """Exponential with full jitter: retries from many rows never line up."""
        ceiling = min(self._max_delay, self._base_delay * 2 ** min(attempts - 1, 20))
        return random.uniform(ceiling / 2, ceiling)
