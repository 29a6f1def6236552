"""The worker: claims accepted messages and runs each through the pipeline.

A batch shares one transaction (one fsync for many messages); each message runs in its
own savepoint, so one failure rolls back only that message, which is then marked failed
with its error and its raw bytes kept for ``reprocess``. A crash before the commit
leaves every message of the batch "received", to be processed again on restart:
processing twice can never create two cases, because nothing of the first try committed.
When the database itself fails (connection lost, lock timeout), the batch rolls back and
``DatabaseUnavailable`` is raised: nothing is marked failed for the database's fault, and
the next pass processes the same messages.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway import pipeline
from gateway.context import Deps, MessageContext
from gateway.db import DatabaseUnavailable, database_unavailable
from gateway.models import Case, Message, utcnow
from gateway.rawstore import RawStore

log = logging.getLogger(__name__)

STATUS_BY_OUTCOME = {
    "case_created": "processed",
    "case_updated": "processed",
    "quarantined": "quarantined",
    "ignored": "ignored",
    "failed": "failed",
}


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
    ) -> None:
        self._sessions = sessions
        self._store = store
        self._make_deps = make_deps
        self._batch_size = batch_size
        self._after_commit = after_commit

    def pending_ids(self, limit: int) -> list[int]:
        with self._sessions() as session:
            return list(
                session.scalars(
                    select(Message.id)
                    .where(Message.status == "received")
                    .order_by(Message.id)
                    .limit(limit)
                )
            )

    def drain(self) -> list[Processed]:
        """Process every received message, batch by batch, until none is left."""
        done: list[Processed] = []
        while ids := self.pending_ids(self._batch_size):
            done.extend(self.process(ids))
        return done

    def process(self, ids: Sequence[int]) -> list[Processed]:
        try:
            return self._process_or_split(ids)
        except Exception as exc:
            if database_unavailable(exc):
                raise DatabaseUnavailable(f"{type(exc).__name__}: {exc}") from exc
            raise
        finally:
            if self._after_commit is not None:
                self._after_commit()  # whatever did commit may have queued mail

    def _process_or_split(self, ids: Sequence[int]) -> list[Processed]:
        """The batch in one transaction; if it fails, each message in its own."""
        try:
            return self._process_batch(ids)
        except Exception as exc:
            if database_unavailable(exc):
                raise
            log.exception("batch of %d failed; processing one by one", len(ids))
        results: list[Processed] = []
        for row_id in ids:
            try:
                results.extend(self._process_batch([row_id]))
            except Exception as exc:
                if database_unavailable(exc):
                    raise
                results.append(self._mark_failed(row_id, exc))
        return results

    def _process_batch(self, ids: Sequence[int]) -> list[Processed]:
        results: list[Processed] = []
        with self._sessions.begin() as session:
            deps = self._make_deps(session)
            for row_id in ids:
                # Another worker (say `poll --once` beside `serve` on PostgreSQL) may be
                # processing this row: its lock makes us skip it, and once it commits the
                # status is no longer "received". SQLite serialises writers instead.
                row = session.get(Message, row_id, with_for_update={"skip_locked": True})
                if row is None or row.status != "received":
                    continue
                try:
                    with session.begin_nested():
                        results.append(self._run(row, deps))
                except Exception as exc:
                    if database_unavailable(exc):
                        raise  # the whole batch waits for the next pass
                    log.exception("message %d failed in the pipeline", row_id)
                    session.refresh(row)
                    results.append(_fail(row, exc))
        return results

    def _run(self, row: Message, deps: Deps) -> Processed:
        ctx = MessageContext(row=row, raw=self._store.get(deps.session, row.sha256))
        ctx.released = row.outcome == "released"
        row.attempts += 1
        pipeline.run(ctx, deps)
        outcome = ctx.outcome or "ignored"
        row.status = STATUS_BY_OUTCOME[outcome]
        row.outcome = outcome
        row.reason = ctx.reason
        row.processed_at = utcnow()
        reference = ctx.case.reference if isinstance(ctx.case, Case) else None
        return Processed(row.id, outcome, reference, ctx.reason)

    def _mark_failed(self, row_id: int, exc: Exception) -> Processed:
        with self._sessions.begin() as session:
            row = session.get(Message, row_id)
            assert row is not None
            return _fail(row, exc)


def _fail(row: Message, exc: Exception) -> Processed:
    row.status = "failed"
    row.outcome = "failed"
    row.reason = f"{type(exc).__name__}: {exc}"[:2000]
    row.processed_at = utcnow()
    row.attempts += 1
    return Processed(row.id, "failed", None, row.reason)


def reset_for_reprocess(session: Session, row_id: int, *, release: bool = False) -> Message | None:
    """Queue a stored message for the pipeline again; ``release`` lifts the quarantine checks."""
    row = session.get(Message, row_id)
    if row is not None:
        row.status, row.reason = "received", None
        row.outcome = "released" if release else None
    return row
