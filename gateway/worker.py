"""The worker: claims accepted messages and runs each through the pipeline.

A batch shares one transaction (one fsync for many messages). When a message fails, the
batch rolls back and its messages are processed again one per transaction, so the failure
is recorded on that message alone (marked failed with its error, raw bytes kept for
``reprocess``) and the others go through. A crash before the commit
leaves every message of the batch "received", to be processed again on restart:
processing twice can never create two cases, because nothing of the first try committed.
When the database itself fails (connection lost, lock timeout), the batch rolls back and
``DatabaseUnavailable`` is raised: nothing is marked failed for the database's fault, and
the next pass processes the same messages.

A message that kills the process working on it (a parser that exhausts memory, a
kill -9 at the same point each time) must not be retried for ever (reliability.md I2).
So a batch is claimed in a short transaction of its own before any work, naming the
claiming process. A claim left by a process that is gone (on this host: no such pid, or
an earlier life of our own pid; elsewhere: older than CLAIM_STALE) counts as an
interruption; at MAX_INTERRUPTIONS the message is quarantined with the reason, raw
bytes kept. A claim of a live worker is left alone.

On SQLite, accepts go first (gateway/write_gate.py): with a message waiting to be
stored, a batch commits after the message in hand and the rest stay claimed by us for
the next pass, which waits (boundedly) until the accepts are in.

Parsing and analysis happen before a batch's transaction (gateway/prepare.py): ``drain``
reads the next batch's raw bytes and hands them to the preparer before it writes the
current one, so with a child process the two overlap, and the write lock is never held
while a parser runs. A message over PRELOAD_BYTES is not read ahead: it is read and
prepared alone when its turn in the batch comes, and written in a transaction of its own,
so memory holds one large message at a time and accepts never wait for its parse.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from gateway import pipeline
from gateway.context import Deps, MessageContext
from gateway.db import DatabaseUnavailable, database_unavailable
from gateway.models import Case, Message, utcnow
from gateway.prepare import Item, Pending, Prepared, Preparer
from gateway.rawstore import RawStore
from gateway.write_gate import WriteGate

log = logging.getLogger(__name__)

CLAIM_STALE = timedelta(seconds=60)  # a batch takes seconds; a minute-old claim is orphaned
MAX_INTERRUPTIONS = 3
PRELOAD_BYTES = 1 << 20  # a batch's raw bytes are read in one query up to this size each
_HOST = socket.gethostname()[:100]
_CLAIMER = f"{_HOST}:{os.getpid()}:{secrets.token_hex(4)}"  # this process, this life

STATUS_BY_OUTCOME = {
    "case_created": "processed",
    "case_updated": "processed",
    "quarantined": "quarantined",
    "ignored": "ignored",
    "failed": "failed",
}


@dataclass(frozen=True)
class Ahead:
    """A batch read and handed to the preparer before its transaction."""

    ids: list[int]
    raws: dict[str, bytes]  # sha256 -> bytes, those up to PRELOAD_BYTES
    shas: dict[int, str]  # row id -> sha256 of those read
    pending: Pending
    carried: dict[int, Prepared]  # prepared for an earlier batch that yielded to accepts

    def prepared(self) -> dict[int, Prepared]:
        """Row id -> prepared message (waits for the preparer; asked after the claim)."""
        return {**self.carried, **self.pending.results()}


@dataclass(frozen=True)
class Processed:
    message_row_id: int
    outcome: str
    reference: str | None
    reason: str | None


class Worker:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        store: RawStore,
        make_deps: Callable[[Session], Deps],
        *,
        batch_size: int = 50,
        after_commit: Callable[[], None] | None = None,
        preparer: Preparer,
        gate: WriteGate | None = None,
    ) -> None:
        self._sessions = sessions
        self._store = store
        self._make_deps = make_deps
        self._batch_size = batch_size
        self._after_commit = after_commit
        self._gate = gate  # SQLite: accepts waiting for the write lock go first
        self._preparer = preparer
        self._claimed: set[int] = set()  # ours, not yet done (a database failure, a yield)
        # Raw bytes and preparation of messages a batch left for an accept: a flood of
        # accepts may cut every batch short, and they must not be parsed again each time.
        self._left: dict[int, tuple[str, bytes, Prepared]] = {}

    def pending_ids(self, limit: int, besides: Sequence[int] = ()) -> list[int]:
        """Received messages no other live worker has claimed, oldest first (other than
        ``besides``, the batch in hand)."""
        self._step_aside()
        now = utcnow()
        with self._sessions() as session:
            rows = session.execute(
                select(Message.id, Message.claimed_at, Message.claimed_by)
                .where(
                    Message.id.not_in(besides),
                    Message.status == "received",
                    or_(
                        Message.claimed_at.is_(None),
                        Message.claimed_at < now - CLAIM_STALE,
                        Message.claimed_by.startswith(f"{_HOST}:", autoescape=True),
                    ),
                )
                .order_by(Message.id)
                .limit(limit)
            ).all()
        return [
            row_id
            for row_id, at, by in rows
            if at is None or row_id in self._claimed or _orphaned(at, by, now)
        ]

    def drain(self) -> list[Processed]:
        """Process every received message, batch by batch, until none is left; each
        batch is being prepared while the one before it is written."""
        done: list[Processed] = []
        batch = self._read_ahead(self.pending_ids(self._batch_size))
        while batch is not None:
            following = self._read_ahead(self.pending_ids(self._batch_size, batch.ids))
            done.extend(self.process(batch.ids, batch))
            # Messages left for an accept are the oldest again: the batch after next.
            batch = following or self._read_ahead(self.pending_ids(self._batch_size))
        return done

    def _read_ahead(
        self, ids: list[int], *, inline: bool = False, max_bytes: int | None = PRELOAD_BYTES
    ) -> Ahead | None:
        """Read these messages' raw bytes (no claim, no lock) and start preparing them;
        those over ``max_bytes`` are left to be read alone (see ``_runs``)."""
        if not ids:
            return None
        carried = {i: self._left.pop(i) for i in ids if i in self._left}
        query = select(Message.id, Message.sha256, Message.envelope_from).where(
            Message.id.in_([i for i in ids if i not in carried])
        )
        if max_bytes is not None:
            query = query.where(Message.size <= max_bytes)
        with self._sessions() as session:
            rows = session.execute(query).all()
            raws = self._store.get_many(session, {r.sha256 for r in rows})
        items = [Item(r.id, raws[r.sha256], r.envelope_from) for r in rows if r.sha256 in raws]
        shas = {r.id: r.sha256 for r in rows if r.sha256 in raws}
        for row_id, (sha256, raw, _) in carried.items():
            raws[sha256], shas[row_id] = raw, sha256
        pending = self._preparer.start(items, inline=inline)
        return Ahead(ids, raws, shas, pending, {i: done for i, (_, _, done) in carried.items()})

    def _keep_left(self, ahead: Ahead, handled: Sequence[int]) -> None:
        """Keep what was prepared for the messages this batch left for an accept."""
        done, prepared = set(handled), ahead.prepared()
        for row_id in ahead.ids:
            sha256 = ahead.shas.get(row_id)
            if row_id not in done and row_id in prepared and sha256 is not None:
                self._left[row_id] = (sha256, ahead.raws[sha256], prepared[row_id])
        while len(self._left) > 4 * self._batch_size:  # bounded; the rest parse again
            self._left.pop(next(iter(self._left)))

    def process(self, ids: Sequence[int], ahead: Ahead | None = None) -> list[Processed]:
        """Process these messages, or those of them not yet done when an accept came
        waiting (the rest stay claimed, for the next pass)."""
        try:
            inline = ahead is None  # messages from the command line: no pool to start
            if ahead is None:
                ahead = self._read_ahead(list(ids), inline=True)
            claimed, held = self._claim(ids)
            # After the claim: a message that kills its parser must find it committed.
            prepared = ahead.prepared() if ahead is not None else {}
            results: list[Processed] = []
            handled: list[int] = []
            for run in _runs(claimed, ahead.shas if ahead is not None else {}):
                if ahead is not None and run[0] in ahead.shas:
                    done, finished = self._process_or_split(run, ahead, prepared)
                else:  # one large message, read and prepared alone before its transaction
                    alone = self._read_ahead(run, inline=inline, max_bytes=None)
                    done, finished = self._process_or_split(
                        run, alone, alone.prepared() if alone is not None else {}
                    )
                results.extend(done)
                handled.extend(finished)
                if len(finished) < len(run):
                    break  # yielded to an accept: the rest stay ours for the next pass
            self._claimed.difference_update(handled)  # finished, one way or another
            if ahead is not None:
                self._keep_left(ahead, handled)
            return held + results
        except Exception as exc:
            if database_unavailable(exc):
                raise DatabaseUnavailable(f"{type(exc).__name__}: {exc}") from exc
            raise
        finally:
            if self._after_commit is not None:
                self._after_commit()  # whatever did commit may have queued mail

    def _claim(self, ids: Sequence[int]) -> tuple[list[int], list[Processed]]:
        """Commit our claim on these messages before any work on them: (the ids now ours,
        in the order given; those set aside after too many interruptions)."""
        now = utcnow()
        claimed: set[int] = set()
        held: list[Processed] = []
        self._step_aside()
        with self._sessions.begin() as session:
            rows = session.scalars(
                select(Message)
                .where(Message.id.in_(ids), Message.status == "received")
                .with_for_update(skip_locked=True)
            )
            for row in rows:
                if row.claimed_at is not None and row.id not in self._claimed:
                    if not _orphaned(row.claimed_at, row.claimed_by, now):
                        continue  # a live worker is on it
                    row.interruptions += 1
                    if row.interruptions >= MAX_INTERRUPTIONS:
                        held.append(_set_aside(row, now))
                        continue
                row.claimed_at, row.claimed_by = now, _CLAIMER
                claimed.add(row.id)
        self._claimed |= claimed
        return [i for i in ids if i in claimed], held

    def _process_or_split(
        self, ids: Sequence[int], ahead: Ahead | None, prepared: dict[int, Prepared]
    ) -> tuple[list[Processed], list[int]]:
        """The batch in one transaction; if a message fails, each in its own, so the
        failure is recorded on that message alone. (Results, and the ids handled: a
        yield to an accept leaves the rest.)"""
        try:
            return self._process_batch(ids, ahead, prepared)
        except Exception as exc:
            if database_unavailable(exc):
                raise
            if len(ids) > 1:
                log.warning("batch of %d failed (%s); processing one by one", len(ids), exc)
            else:
                log.exception("message %d failed in the pipeline", ids[0])
                return [self._mark_failed(ids[0], exc)], list(ids)
        results: list[Processed] = []
        for row_id in ids:
            try:
                results.extend(self._process_batch([row_id], ahead, prepared)[0])
            except Exception as exc:
                if database_unavailable(exc):
                    raise
                log.exception("message %d failed in the pipeline", row_id)
                results.append(self._mark_failed(row_id, exc))
        return results, list(ids)

    def _process_batch(
        self, ids: Sequence[int], ahead: Ahead | None, prepared: dict[int, Prepared]
    ) -> tuple[list[Processed], list[int]]:
        """Raises on any message's failure: the whole batch rolls back (no savepoint per
        message, whose two statements and two flushes cost a tenth of the worker)."""
        results: list[Processed] = []
        handled: list[int] = []
        self._step_aside()
        with self._sessions.begin() as session:
            deps = self._make_deps(session)
            # Another worker (say `poll --once` beside `serve` on PostgreSQL) may be
            # processing some of these rows: its locks make us skip them, and once it
            # commits their status is no longer "received". SQLite serialises writers.
            rows = {
                row.id: row
                for row in session.scalars(
                    select(Message)
                    .where(Message.id.in_(ids))
                    .with_for_update(skip_locked=True)
                    .execution_options(populate_existing=True)
                )
            }
            raws = ahead.raws if ahead is not None else {}
            for row_id in ids:
                if handled and self._gate is not None and self._gate.busy():
                    break  # commit what is done; an accept is waiting for the lock
                handled.append(row_id)
                row = rows.get(row_id)
                if row is None or row.status != "received":
                    continue
                raw = raws.get(row.sha256)
                results.append(self._run(row, deps, raw, prepared.get(row_id)))
        return results, handled

    def _step_aside(self) -> None:
        """Before a write transaction: let accepts already waiting commit first."""
        if self._gate is not None:
            self._gate.wait_clear()

    def _run(
        self, row: Message, deps: Deps, raw: bytes | None, prepared: Prepared | None
    ) -> Processed:
        if raw is None:  # not read ahead (gone from the store?): read now, or fail here
            raw = self._store.get(deps.session, row.sha256)
        ctx = MessageContext(row=row, raw=raw)
        if prepared is not None:
            ctx.parsed, ctx.analysis = prepared.parsed, prepared.analysis
        ctx.released = row.outcome == "released"
        row.attempts += 1
        pipeline.run(ctx, deps)
        outcome = ctx.outcome or "ignored"
        row.status = STATUS_BY_OUTCOME[outcome]
        row.outcome = outcome
        row.reason = ctx.reason
        row.processed_at = utcnow()
        row.claimed_at = row.claimed_by = None
        reference = ctx.case.reference if isinstance(ctx.case, Case) else None
        return Processed(row.id, outcome, reference, ctx.reason)

    def _mark_failed(self, row_id: int, exc: Exception) -> Processed:
        with self._sessions.begin() as session:
            row = session.get(Message, row_id)
            assert row is not None
            return _fail(row, exc)


def _runs(ids: Sequence[int], read: Mapping[int, str]) -> list[list[int]]:
    """Split a batch, in order, into runs of messages read ahead and single messages
    that were not (over PRELOAD_BYTES): those are read and prepared one at a time, so
    memory holds one large message and no parser runs inside a write transaction."""
    runs: list[list[int]] = []
    for row_id in ids:
        if row_id in read and runs and runs[-1][0] in read:
            runs[-1].append(row_id)
        else:
            runs.append([row_id])
    return runs


def _fail(row: Message, exc: Exception) -> Processed:
    row.status = "failed"
    row.outcome = "failed"
    row.reason = f"{type(exc).__name__}: {exc}"[:2000]
    row.processed_at = utcnow()
    row.claimed_at = row.claimed_by = None
    row.attempts += 1
    return Processed(row.id, "failed", None, row.reason)


def _orphaned(claimed_at: datetime, claimed_by: str | None, now: datetime) -> bool:
    """Was this claim left by a process that is gone?"""
    if claimed_at < now - CLAIM_STALE:
        return True
    parts = (claimed_by or "").rsplit(":", 2)
    if len(parts) != 3 or parts[0] != _HOST or not parts[1].isdigit():
        return False  # another machine's: only time tells
    pid = int(parts[1])
    if pid == os.getpid():
        return claimed_by != _CLAIMER  # an earlier life of this pid (a restarted container)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # it exists (not ours to signal)
    return False


def _set_aside(row: Message, now: datetime) -> Processed:
    row.status = row.outcome = "quarantined"
    row.reason = (
        f"processing was interrupted {row.interruptions} times (the gateway stopped or "
        "died while working on this message); set aside for a person: reprocess or "
        "release it once the cause is known"
    )
    row.processed_at = now
    row.claimed_at = row.claimed_by = None
    log.error("message %d set aside: %s", row.id, row.reason)
    return Processed(row.id, "quarantined", None, row.reason)


def reset_for_reprocess(session: Session, row_id: int, *, release: bool = False) -> Message | None:
    """Queue a stored message for the pipeline again; ``release`` lifts the quarantine checks."""
    row = session.get(Message, row_id)
    if row is not None:
        row.status, row.reason = "received", None
        row.outcome = "released" if release else None
        row.claimed_at, row.claimed_by, row.interruptions = None, None, 0
    return row
