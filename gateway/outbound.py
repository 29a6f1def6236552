"""The outbox: every mail we send is a row first, rendered once, then delivered after commit.

Rows are written in the same transaction as the case change that caused them, so a
crash can neither send a mail for a change that never happened nor lose one for a
change that did. Delivery reuses the stored bytes, so the Message-ID never changes
between attempts (reliability.md I5).

Delivery is at-least-once with a small window (F14, F16):

1. claim: ``pending → sending`` with ``claimed_at`` and ``lease_until``, a conditional
   UPDATE committed *before* the SMTP transaction (two workers can never both claim a
   row; the attempt is counted even if we die);
2. the SMTP transaction, bounded in time by the transport so it ends inside the lease;
3. record: ``sent`` (or deferred / failed) committed right after the relay's answer.

A crash between 2 and 3 leaves the row ``sending``; once its lease has run out the next
pass (or the next start) puts it back to ``pending`` and it is sent once more with the
same bytes. A crash before 2 costs one counted attempt, nothing more. Step 3 of one row
and step 1 of the row after next share one transaction, which runs on a helper thread
while the next row's SMTP transaction is under way (see ``Deliverer.deliver_due``).

Per recipient: the relay's answer to each address is kept in ``recipient_status``;
only addresses not yet ``sent`` or ``failed`` are sent to on the next attempt, so a
relay that takes two recipients and refuses one with 4xx gets a retry for that one only.
A row is ``sent`` when every recipient has it, ``failed`` when none is left to retry and
at least one refused it for good (5xx, or still 4xx when ``retry_for`` ran out). A failed
row is recorded on its case and staff are told by mail (``staff_alert``); a failed alert
is only logged and recorded, never alerted about, so alerts cannot loop.

Automatic replies are rate-limited per recipient (I5): past
``max_automatic_per_recipient_per_hour`` a new one is stored ``held`` (never sent) and
staff are told once per burst.
"""

from __future__ import annotations

import logging
import os
import random
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, Engine, bindparam, insert, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from gateway.compose import Attachment, AutoSubmitted, compose, new_message_id
from gateway.models import AutomaticRecipient, Case, Event, Outbox, utcnow
from gateway.render import Renderer

log = logging.getLogger(__name__)
_T = TypeVar("_T")

ALERT_TEMPLATE = "staff_alert"
ALERT_KIND = "alert"
RATE_WINDOW = timedelta(hours=1)


class DeliveryFailure(Exception):
    """The relay did not take the mail. ``refused`` carries per-recipient answers already
    known when the transaction broke off (e.g. one RCPT refused with 550 before DATA
    failed with 451), so they are not lost with the exception."""

    def __init__(self, text: str, refused: Mapping[str, tuple[int, str]] | None = None) -> None:
        super().__init__(text)
        self.refused: dict[str, tuple[int, str]] = dict(refused or {})


class TemporaryFailure(DeliveryFailure):
    """Try again later (connection refused, 4xx, dropped connection)."""


class PermanentFailure(DeliveryFailure):
    """Never retry (5xx): the relay refused the message itself."""


class RelayUnavailable(TemporaryFailure):
    """The relay could not be reached or would not start a session: nothing was sent.

    The rest of the pass is deferred too rather than dialling a dead relay per row (F13).
    """


@dataclass(frozen=True)
class SendResult:
    """What the relay said: its answer to the message and any recipients it refused."""

    reply: str = "250 accepted"
    refused: Mapping[str, tuple[int, str]] = field(default_factory=dict)


class Transport(Protocol):
    def send(
        self, mail_from: str, recipients: Sequence[str], raw: bytes, row_id: int
    ) -> SendResult | None: ...

    def close(self) -> None: ...


class MaildirTransport:
    """Writes each mail as ``<row id>.eml``: a re-send after a crash overwrites, never doubles."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def send(
        self, mail_from: str, recipients: Sequence[str], raw: bytes, row_id: int
    ) -> SendResult:
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
        return SendResult(reply=f"written to {self.directory}")

    def close(self) -> None:
        """Nothing is held open between mails."""


@dataclass(frozen=True)
class Identity:
    """How our mail presents itself and the sending policy every caller gets for free.

    From, Reply-To (the shared mailbox, so answers come back to the gateway), the
    Message-ID domain and loop marker; where staff alerts go and the per-recipient rate
    limit for automatic replies (0 = no limit). Callers pass ``deps.identity`` and need
    not know about any of it.
    """

    mail_from: str
    from_name: str
    message_id_domain: str
    loop_id: str
    reply_to: str = ""
    staff_mailbox: str = ""
    max_automatic_per_recipient_per_hour: int = 0


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
    attachments: Sequence[Attachment] = (),
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
        reply_to=identity.reply_to or None,
        attachments=attachments,
    )
    now = utcnow()
    limited = _over_rate_limit(session, identity, kind, to, now)
    row = Outbox(
        case=case,
        message_id=composed.message_id,
        kind=kind,
        template=template,
        template_version=rendered.version,
        mail_from=identity.mail_from,
        recipients=list(to),
        subject=rendered.subject,
        raw=composed.raw,
        priority=priority,
        status="held" if limited else "pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
        cause_message_id=cause_message_id,
        last_error=limited.reason if limited else None,
    )
    session.add(row)  # flushed with the rest of the transaction, or before a query
    if kind == "auto_reply":
        session.add_all(
            AutomaticRecipient(outbox=row, address=address, at=now)
            for address in sorted({a.lower() for a in to})
        )
    if case is not None:
        verb = "held" if limited else "queued"
        reason = f" ({limited.reason})" if limited else ""
        session.add(
            Event(
                case=case,
                at=now,
                kind=f"{template}_{verb}"[:40],
                actor=actor,
                detail=f"to {', '.join(to)}: {rendered.subject}{reason}",
                outbox_row=row,
            )
        )
    if limited and limited.first:
        session.flush()  # the alert names this row by its id
        queue_staff_alert(
            session,
            renderer,
            identity,
            about=row,
            case=case,
            kind="rate_limited",
            headline=f"Automatic mail to {limited.address} held",
            reason=limited.reason,
        )
    return row


@dataclass(frozen=True)
class _Limited:
    address: str
    reason: str
    first: bool  # the first held mail of this burst: staff hear about this one only


def _over_rate_limit(
    session: Session, identity: Identity, kind: str, to: Sequence[str], now: datetime
) -> _Limited | None:
    """Is an automatic reply to any of ``to`` over the per-hour limit? (I5, RFC 3834 §2)"""
    limit = identity.max_automatic_per_recipient_per_hour
    if kind != "auto_reply" or limit <= 0:
        return None
    wanted = {a.lower() for a in to}
    # What this transaction has not flushed is read from memory (rows added, statuses
    # changed): flushing for this query cost the worker a flush per message. So the
    # query goes to the session's connection, past the ORM's autoflush.
    stored = (
        session.connection()
        .execute(
            select(AutomaticRecipient.address, Outbox.id, Outbox.status)
            .join(Outbox, Outbox.id == AutomaticRecipient.outbox_id)
            .where(
                AutomaticRecipient.address.in_(wanted),
                AutomaticRecipient.at >= now - RATE_WINDOW,
            )
        )
        .all()
    )
    recent = [(address, _status_now(session, row_id, status)) for address, row_id, status in stored]
    recent += [
        (row.address, row.outbox.status)
        for row in session.new
        if isinstance(row, AutomaticRecipient)
        and row.address in wanted
        and row.at >= now - RATE_WINDOW
    ]
    for address in to:
        key = address.lower()
        mine = [status for recipient, status in recent if recipient == key]
        counted = sum(1 for status in mine if status != "held")
        if counted >= limit:
            return _Limited(
                address,
                f"rate limit: {counted} automatic mails to {address} in the last hour "
                f"(at most {limit}); held, not sent",
                first="held" not in mine,
            )
    return None


def _status_now(session: Session, row_id: int, stored: str) -> str:
    loaded = session.identity_map.get(Session.identity_key(Outbox, row_id))
    return loaded.status if isinstance(loaded, Outbox) else stored


def queue_staff_alert(
    session: Session,
    renderer: Renderer,
    identity: Identity,
    *,
    about: Outbox,
    case: Case | None,
    kind: str,
    headline: str,
    reason: str,
) -> Outbox | None:
    """Tell staff by mail about an outbox row that needs a person; never about an alert.

    Runs in a savepoint of the caller's transaction: a broken ``staff_alert`` template or
    an unset staff mailbox costs the alert (logged), never the record of the failure.
    """
    if about.kind == ALERT_KIND or about.template == ALERT_TEMPLATE:
        log.error(
            "staff alert %s not delivered (%s); not alerting about an alert", about.id, reason
        )
        return None
    if not identity.staff_mailbox:
        log.error("outbox row %s needs staff (%s) but no staff_mailbox is set", about.id, reason)
        return None
    from gateway.views import case_context  # views imports the models only; late for clarity

    statuses = about.recipient_status or {}
    context: dict[str, object] = {
        "alert": {"kind": kind, "headline": headline, "reason": reason},
        "mail": {
            "outbox_id": about.id,
            "to": list(about.recipients),
            "subject": about.subject,
            "template": about.template,
            "kind": about.kind,
            "message_id": about.message_id,
            "attempts": about.attempts,
            "status": about.status,
            "recipients": [
                {
                    "address": address,
                    "status": statuses.get(address, {}).get("status", "pending"),
                    "reply": statuses.get(address, {}).get("reply", ""),
                }
                for address in about.recipients
            ],
        },
        "case": case_context(case) if case is not None else None,
    }
    try:
        with session.begin_nested():
            return enqueue(
                session,
                renderer,
                identity,
                template=ALERT_TEMPLATE,
                context=context,
                to=[identity.staff_mailbox],
                case=case,
                kind=ALERT_KIND,
                auto_submitted="auto-generated",
                priority=2,
                actor="outbound",
            )
    except Exception:
        log.exception("could not queue a staff alert about outbox row %s", about.id)
        return None


def requeue(session: Session, row_id: int, *, retry_for: timedelta, actor: str) -> Outbox:
    """``outbox retry``: a failed row goes back to pending for the recipients that failed,
    and a held one (over the automatic-mail rate limit) is released: a person decided it
    should go after all.

    Recipients that already have it stay ``sent`` and are not sent to again. The retry
    window starts again from now. LookupError if there is no such row, ValueError if it
    is neither failed nor held.
    """
    row = session.get(Outbox, row_id)
    if row is None:
        raise LookupError(f"no outbox row {row_id}")
    if row.status not in ("failed", "held"):
        raise ValueError(f"outbox row {row_id} is {row.status}, not failed or held")
    verb = "released" if row.status == "held" else "requeued"
    now = utcnow()
    statuses = {
        address: state
        for address, state in (row.recipient_status or {}).items()
        if state.get("status") == "sent"
    }
    again = [a for a in row.recipients if a not in statuses]
    row.recipient_status = statuses
    row.status = "pending"
    row.next_attempt_at = now
    row.retry_until = now + retry_for
    row.lease_until = None
    if row.case_id is not None:
        session.add(
            Event(
                case_id=row.case_id,
                at=now,
                kind=f"{row.template}_{verb}"[:40],
                actor=actor,
                detail=f"outbox row {row.id} to {', '.join(again)} (was: {row.last_error})",
                outbox_row_id=row.id,
            )
        )
    return row


@dataclass(frozen=True)
class Delivery:
    row_id: int
    status: str  # sent | pending (deferred) | failed
    error: str | None = None


# The hot path runs these prepared Core statements on one connection per pass: a claim
# and the record of the previous row's answer share one short transaction (one commit
# per row), which is what keeps delivery close to a bare SMTP loop (bench/delivery.py).
_SNAPSHOT_COLUMNS = (
    Outbox.id,
    Outbox.mail_from,
    Outbox.recipients,
    Outbox.recipient_status,
    Outbox.raw,
    Outbox.attempts,
    Outbox.created_at,
    Outbox.retry_until,
    Outbox.sent_at,
    Outbox.case_id,
    Outbox.template,
    Outbox.kind,
)
_SNAPSHOT = select(*_SNAPSHOT_COLUMNS).where(Outbox.id == bindparam("b_id"))
_CLAIM = (
    update(Outbox)
    .where(Outbox.id == bindparam("b_id"), Outbox.status == "pending")
    .values(
        status="sending",
        claimed_at=bindparam("b_now"),
        lease_until=bindparam("b_lease"),
        attempts=Outbox.attempts + 1,
    )
)
_CLAIM_DUE = _CLAIM.where(Outbox.next_attempt_at <= bindparam("b_now"))
_RECORD = (
    update(Outbox)
    .where(Outbox.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        attempts=bindparam("b_attempts"),
        recipient_status=bindparam("b_statuses"),
        last_error=bindparam("b_error"),
        sent_at=bindparam("b_sent_at"),
        next_attempt_at=bindparam("b_next_at"),
        lease_until=None,
    )
)
_EVENT = insert(Event).values(
    case_id=bindparam("b_case_id"),
    at=bindparam("b_at"),
    kind=bindparam("b_kind"),
    actor="outbound",
    detail=bindparam("b_detail"),
    outbox_row_id=bindparam("b_row_id"),
)


@dataclass(frozen=True)
class _Claim:
    """What the worker needs of a row it holds: bytes, envelope and its delivery state."""

    row_id: int
    mail_from: str
    recipients: list[str]
    statuses: dict[str, dict[str, str]]
    raw: bytes
    attempts: int
    created_at: datetime
    retry_until: datetime | None
    sent_at: datetime | None
    case_id: int | None
    template: str
    kind: str

    @classmethod
    def of(cls, row: Any) -> _Claim:
        return cls(
            row.id,
            row.mail_from,
            list(row.recipients),
            dict(row.recipient_status or {}),
            row.raw,
            row.attempts,
            row.created_at,
            row.retry_until,
            row.sent_at,
            row.case_id,
            row.template,
            row.kind,
        )

    @property
    def to_send(self) -> list[str]:
        """Recipients without a final answer: the accepted are never sent to twice."""
        done = {a for a, s in self.statuses.items() if s.get("status") in ("sent", "failed")}
        return [a for a in self.recipients if a not in done]


@dataclass
class _Outcome:
    """Per recipient: ("sent" | "deferred" | "failed", the relay's answer)."""

    states: dict[str, tuple[str, str]]
    relay_down: bool = False
    summary: str = ""


class _Database:
    """One helper thread with its own connection: the Deliverer's transactions, in order."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-db")
        self._conn: Connection | None = None

    def submit(self, fn: Callable[..., _T], *args: Any) -> Future[_T]:
        return self._pool.submit(self._run, fn, *args)

    def call(self, fn: Callable[..., _T], *args: Any) -> _T:
        return self.submit(fn, *args).result()

    def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        if self._conn is None:
            self._conn = self._engine.connect()
        return fn(self._conn, *args)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> _Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.submit(self._close).result()
        self._pool.shutdown(wait=True)


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
        lease: timedelta = timedelta(minutes=5),
        renderer: Renderer | None = None,
        identity: Identity | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._sessions = sessions
        self._engine: Engine = sessions.kw["bind"]
        self._transport = transport
        self._retry_for = retry_for
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._lease = lease
        self._renderer = renderer
        self._identity = identity
        self._clock = clock
        self._lock = threading.Lock()

    @property
    def retry_for(self) -> timedelta:
        return self._retry_for

    def due(
        self, conn: Session | Connection, now: datetime, limit: int, *, waiting: bool = False
    ) -> list[int]:
        """Ids of rows to try now, most urgent first (priority, then age)."""
        query = select(Outbox.id).where(Outbox.status == "pending")
        if not waiting:
            query = query.where(Outbox.next_attempt_at <= now)
        query = query.order_by(Outbox.priority, Outbox.created_at, Outbox.id).limit(limit)
        return list(conn.scalars(query))

    def release_expired(self) -> int:
        """Rows left ``sending`` by a worker that died (lease over) go back to pending.

        Called at the start of every pass, so at startup too: the interrupted row is sent
        once more, with the same stored bytes and Message-ID.
        """
        now = self._clock()
        with self._engine.begin() as conn:
            released = conn.execute(
                update(Outbox)
                .where(
                    Outbox.status == "sending",
                    or_(Outbox.lease_until.is_(None), Outbox.lease_until <= now),
                )
                .values(
                    status="pending",
                    next_attempt_at=now,
                    lease_until=None,
                    last_error="interrupted while sending (lease ran out); sending again "
                    "with the same Message-ID",
                )
            ).rowcount
        if released:
            log.warning("%d outbox rows were interrupted mid-send; sending them again", released)
        return int(released or 0)

    def deliver_due(self, limit: int = 100, *, waiting: bool = False) -> list[Delivery]:
        """One pass: claim, send and record each due row; ``waiting`` also takes rows
        still in their backoff (an operator's ``outbox flush --all``).

        The database work runs on one helper thread with its own connection, one
        transaction at a time and in order, so it overlaps the SMTP transaction of the
        next row: when the relay answers row N, the transaction recording that answer
        (and claiming row N+2) starts at once while row N+1, claimed by the previous
        transaction, goes to the relay. A row is only ever sent after its claim has
        committed; a crash can leave at most the row in SMTP and the row whose record was
        committing to be sent once more, and one claimed row unsent until its lease ends.
        """
        with self._lock:
            self.release_expired()
            results: list[Delivery] = []
            with self._engine.connect() as conn:
                due = self._due_ids(conn, limit, waiting)
            if not due:
                return results  # the common idle pass: no helper thread, one query
            ids = iter(due)
            with _Database(self._engine) as db:
                claims = deque(db.call(self._claim_more, ids, 2, waiting))
                inflight: Future[tuple[Delivery, list[_Claim]]] | None = None

                def collect() -> None:
                    nonlocal inflight
                    if inflight is not None:
                        delivery, more = inflight.result()
                        inflight = None
                        results.append(delivery)
                        claims.extend(more)

                try:
                    while claims or inflight is not None:
                        if not claims:
                            collect()
                            continue
                        claim = claims.popleft()
                        outcome = self._send(claim)
                        collect()
                        if outcome.relay_down:
                            results += db.call(self._stand_down, claim, outcome, list(claims), ids)
                            claims.clear()
                            break
                        inflight = db.submit(self._step, claim, outcome, ids, waiting)
                    collect()
                finally:
                    try:
                        self._transport.close()
                    except Exception:
                        log.exception("closing the transport failed")
            return results

    def _due_ids(self, conn: Connection, limit: int, waiting: bool) -> list[int]:
        with conn.begin():
            return self.due(conn, self._clock(), limit, waiting=waiting)

    def _step(
        self,
        conn: Connection,
        claim: _Claim,
        outcome: _Outcome,
        queue: Iterator[int],
        waiting: bool,
    ) -> tuple[Delivery, list[_Claim]]:
        """One transaction: record the relay's answer for the row just sent (right after
        it came), and claim one more row for the SMTP transaction after next."""
        now = self._clock()
        with conn.begin():
            delivery = self._settle(conn, claim, outcome.states, now)
            return delivery, self._claim_in(conn, queue, 1, waiting, now)

    def _claim_more(
        self, conn: Connection, queue: Iterator[int], count: int, waiting: bool
    ) -> list[_Claim]:
        now = self._clock()
        with conn.begin():
            return self._claim_in(conn, queue, count, waiting, now)

    def _claim_in(
        self, conn: Connection, queue: Iterator[int], count: int, waiting: bool, now: datetime
    ) -> list[_Claim]:
        """Claim up to ``count`` rows: a conditional UPDATE, so two workers never both win."""
        claimed: list[_Claim] = []
        if count <= 0:
            return claimed
        statement = _CLAIM if waiting else _CLAIM_DUE
        returning = self._engine.dialect.update_returning
        for row_id in queue:
            params = {"b_id": row_id, "b_now": now, "b_lease": now + self._lease}
            if returning:
                row = conn.execute(statement.returning(*_SNAPSHOT_COLUMNS), params).first()
            elif conn.execute(statement, params).rowcount == 1:
                row = conn.execute(_SNAPSHOT, {"b_id": row_id}).one()
            else:
                row = None
            if row is not None:
                claimed.append(_Claim.of(row))
                if len(claimed) == count:
                    break
        return claimed

    def _stand_down(
        self,
        conn: Connection,
        claim: _Claim,
        outcome: _Outcome,
        ahead: list[_Claim],
        queue: Iterator[int],
    ) -> list[Delivery]:
        """The relay is unreachable: record this row, and let the rest of the pass wait for
        its backoff instead of dialling a dead relay once per row (F13)."""
        now = self._clock()
        reason = f"not tried: {outcome.summary}"
        with conn.begin():
            results = [self._settle(conn, claim, outcome.states, now)]
            for other in ahead:  # claimed, never sent
                states = {a: ("deferred", reason) for a in other.to_send}
                results.append(self._settle(conn, other, states, now))
            rest = list(queue)
            if rest:
                rows = conn.execute(
                    select(*_SNAPSHOT_COLUMNS).where(
                        Outbox.id.in_(rest),
                        Outbox.status == "pending",
                        Outbox.next_attempt_at <= now,
                    )
                ).all()
                for row in rows:
                    other = _Claim.of(row)
                    other = replace(other, attempts=other.attempts + 1)  # a deferral counts
                    states = {a: ("deferred", reason) for a in other.to_send}
                    results.append(self._settle(conn, other, states, now))
        return results

    def _send(self, claim: _Claim) -> _Outcome:
        """Hand the stored bytes to the transport; every answer becomes a per-recipient state."""
        recipients = claim.to_send
        if not recipients:
            return _Outcome({}, summary="no recipients left")
        try:
            result = (
                self._transport.send(claim.mail_from, recipients, claim.raw, claim.row_id)
                or SendResult()
            )
        except PermanentFailure as exc:
            return _failed_all(recipients, "failed", str(exc), exc.refused)
        except RelayUnavailable as exc:
            outcome = _failed_all(recipients, "deferred", str(exc), exc.refused)
            outcome.relay_down = True
            return outcome
        except TemporaryFailure as exc:
            return _failed_all(recipients, "deferred", str(exc), exc.refused)
        except Exception as exc:  # a bug must cost a retry, never the mail
            log.exception("transport raised for outbox row %s", claim.row_id)
            return _failed_all(recipients, "deferred", f"{type(exc).__name__}: {exc}", {})
        states = {a: ("sent", result.reply) for a in recipients}
        for address, (code, text) in result.refused.items():
            states[address] = ("failed" if 500 <= code < 600 else "deferred", f"{code} {text}")
        return _Outcome(states, summary=_summary(states))

    def _settle(
        self,
        conn: Connection,
        claim: _Claim,
        states: Mapping[str, tuple[str, str]],
        now: datetime,
    ) -> Delivery:
        """Write what became of a row: per-recipient answers, the row's state, its event."""
        statuses = dict(claim.statuses)
        for address, (state, reply) in states.items():
            statuses[address] = {"status": state, "reply": reply[:1000]}
        pending = [
            a
            for a in claim.recipients
            if statuses.get(a, {}).get("status") not in ("sent", "failed")
        ]
        deadline = claim.retry_until or claim.created_at + self._retry_for
        if pending and now >= deadline:
            hours = self._retry_for.total_seconds() / 3600
            for address in pending:
                last = statuses.get(address, {}).get("reply", "no answer")
                statuses[address] = {
                    "status": "failed",
                    "reply": f"gave up after {hours:g} h; last answer: {last}"[:1000],
                }
            pending = []
        problems = [(a, s) for a, s in statuses.items() if s["status"] != "sent"]
        error = "; ".join(f"{a}: {s['reply']}" for a, s in problems)[:4000] or None
        if pending:
            status = "pending"
            next_at = now + timedelta(seconds=self.backoff(max(claim.attempts, 1)))
        else:
            status = "failed" if any(s["status"] == "failed" for _, s in problems) else "sent"
            next_at = now
        any_sent = any(s["status"] == "sent" for s in statuses.values())
        sent_at = (claim.sent_at or now) if any_sent and not pending else claim.sent_at
        conn.execute(
            _RECORD,
            {
                "b_id": claim.row_id,
                "b_status": status,
                "b_attempts": claim.attempts,
                "b_statuses": statuses,
                "b_error": error,
                "b_sent_at": sent_at,
                "b_next_at": next_at,
            },
        )
        if status != "pending" and claim.case_id is not None:
            verb = "delivered" if status == "sent" else "failed"
            detail = "; ".join(
                f"{'to' if s['status'] == 'sent' else 'not to'} {a}: {s['reply']}"
                for a, s in statuses.items()
            )
            conn.execute(
                _EVENT,
                {
                    "b_case_id": claim.case_id,
                    "b_at": now,
                    "b_kind": f"{claim.template}_{verb}"[:40],
                    "b_detail": detail[:4000] or f"to {', '.join(claim.recipients)}",
                    "b_row_id": claim.row_id,
                },
            )
        if status == "failed":
            self._alert(conn, claim.row_id, error or "failed")
        return Delivery(claim.row_id, status, error)

    def _alert(self, conn: Connection, row_id: int, reason: str) -> None:
        """Queue the staff alert in the same transaction that records the failure."""
        if self._renderer is None or self._identity is None:
            log.error("outbox row %s failed (%s); no staff alert configured", row_id, reason)
            return
        with Session(bind=conn, join_transaction_mode="create_savepoint") as session:
            row = session.get(Outbox, row_id)
            assert row is not None
            case = session.get(Case, row.case_id) if row.case_id is not None else None
            statuses = row.recipient_status or {}
            not_sent = [a for a in row.recipients if statuses.get(a, {}).get("status") != "sent"]
            queue_staff_alert(
                session,
                self._renderer,
                self._identity,
                about=row,
                case=case,
                kind="delivery_failed",
                headline=f"Mail not delivered to {', '.join(not_sent)}",
                reason=reason,
            )
            session.commit()  # releases the savepoint; the pass's transaction commits it

    def backoff(self, attempts: int) -> float:
        """Seconds before the next try: exponential, capped, with jitter in its upper half.

        Doubling from ``base_delay`` spares a struggling relay; the random half spreads
        rows that failed together so their retries never arrive in one burst.
        """
        ceiling = min(self._max_delay, self._base_delay * 2 ** min(attempts - 1, 30))
        return random.uniform(ceiling / 2, ceiling)


def _failed_all(
    recipients: Sequence[str], state: str, text: str, refused: Mapping[str, tuple[int, str]]
) -> _Outcome:
    states = {a: (state, text) for a in recipients}
    for address, (code, reply) in refused.items():
        if address in states:
            states[address] = ("failed" if 500 <= code < 600 else "deferred", f"{code} {reply}")
    return _Outcome(states, summary=text)


def _summary(states: Mapping[str, tuple[str, str]]) -> str:
    return "; ".join(f"{a}: {state} {reply}" for a, (state, reply) in states.items())


def describe_row(row: Outbox) -> dict[str, Any]:
    """The JSON shape of one outbox row (``outbox list --json``; keys are only ever added)."""
    from gateway.views import iso

    statuses = row.recipient_status or {}
    return {
        "id": row.id,
        "status": row.status,
        "kind": row.kind,
        "template": row.template,
        "template_version": row.template_version,
        "to": list(row.recipients),
        "subject": row.subject,
        "message_id": row.message_id,
        "priority": row.priority,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "recipients": [
            {
                "address": a,
                "status": statuses.get(a, {}).get("status", "pending"),
                "reply": statuses.get(a, {}).get("reply"),
            }
            for a in row.recipients
        ],
        "case_id": row.case_id,
        "created_at": iso(row.created_at),
        "next_attempt_at": iso(row.next_attempt_at) if row.status == "pending" else None,
        "claimed_at": iso(row.claimed_at),
        "lease_until": iso(row.lease_until),
        "sent_at": iso(row.sent_at),
    }
