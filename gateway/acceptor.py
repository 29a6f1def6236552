"""The accept process: ``inbox.commit`` run in a process of its own under `serve`.

Why a process: the commit's own CPU (content keys, SQL, the driver) held the GIL of the
process that also runs the SMTP event loop and the IMAP response parser. Measured with
8 and 32 concurrent SMTP clients, that alone halved ingest (a no-op commit ran at the
bare listener's rate). In a child process the commits use the other core, and the
ingress threads wait on a pipe, which releases the GIL.

The contract of ``inbox.accept`` is unchanged: the child answers only after its
transaction has committed, so SMTP still says 250 only for stored mail and IMAP still
moves a message only after its row exists. If the child dies, the call in flight fails
(SMTP answers 451, IMAP leaves the batch in the folder) and the next call starts a new
child; a commit the child finished before it died is found again by the content-key
dedupe.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import threading
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

from sqlalchemy import Engine, event

from gateway import db
from gateway.inbox import Accepted, Envelope, Inbox, Incoming
from gateway.rawstore import RawStore, make_store
from gateway.settings import Settings

log = logging.getLogger(__name__)
STOP_SECONDS = 30.0
START_SECONDS = 60.0


class AcceptFailed(Exception):
    """The accept process could not store a batch; nothing of it is acknowledged."""


def _child(settings: Settings, conn: Connection) -> None:
    """Commit what the parent sends until it says stop or goes away."""
    engine = db.make_engine(
        settings.database.url, busy_timeout_ms=settings.database.busy_timeout_ms
    )
    inbox = Inbox(engine, make_store(settings.storage))
    checkpoints = _Checkpointer(engine) if engine.dialect.name == "sqlite" else None
    try:
        conn.send(("ready", None))
        while True:
            try:
                request = conn.recv()
            except (EOFError, OSError):
                return  # the parent is gone; whatever it had not heard back about is retried
            if request is None:
                return
            kind, items, digests = request
            try:
                done = inbox.accept_many(items) if kind == "many" else inbox.commit(items, digests)
                reply: tuple[str, Any] = ("ok", done)
            except Exception as exc:  # reported to the caller, who answers 451 / retries
                reply = ("error", f"{type(exc).__name__}: {exc}"[:2000])
            try:
                conn.send(reply)
            except OSError:
                return  # the parent died waiting; what was committed is found by dedupe
            if checkpoints is not None:
                checkpoints.due.set()
    finally:
        if checkpoints is not None:
            checkpoints.stop()
        engine.dispose()


class _Checkpointer:
    """SQLite: WAL checkpoints after the child's commits, on a thread of their own.

    Raw bytes make the WAL grow fast (an IMAP batch of 100 is ~1.6 MB), and SQLite's
    automatic checkpoint runs inside the commit that crosses 1,000 pages: that commit
    also copies the WAL into the database file and fsyncs it, while its sender waits.
    The child's connections turn automatic checkpoints off; this thread runs a PASSIVE
    checkpoint (it never blocks a writer) after each commit, while the child already
    reads the next batch. Other processes keep SQLite's default.
    """

    def __init__(self, engine: Engine) -> None:
        event.listen(engine, "connect", _no_auto_checkpoint)
        self._engine = engine
        self.due = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        raw = self._engine.raw_connection()
        try:
            while True:
                self.due.wait()
                self.due.clear()
                cursor = raw.cursor()
                try:
                    cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    cursor.fetchall()
                except Exception as exc:  # a busy database: the next commit asks again
                    log.warning("WAL checkpoint failed: %s", exc)
                finally:
                    cursor.close()
                if self._stopping:
                    return
        finally:
            raw.close()

    def stop(self) -> None:
        self._stopping = True
        self.due.set()
        self._thread.join(STOP_SECONDS)


def _no_auto_checkpoint(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


class AcceptProcess:
    """An ``Inbox`` look-alike whose commits run in a child process."""

    def __init__(
        self,
        settings: Settings,
        store: RawStore,
        on_accept: Callable[[], None] | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._on_accept = on_accept
        self._lock = threading.Lock()
        self._context = multiprocessing.get_context("spawn")  # never fork a threaded process
        self._process: Any = None
        self._conn: Connection | None = None

    def start(self) -> AcceptProcess:
        with self._lock:
            self._ensure()
        return self

    def _ensure(self) -> Connection:
        if self._conn is not None and self._process is not None and self._process.is_alive():
            return self._conn
        self._discard()
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=_child, args=(self._settings, child), name="cpsd-accept", daemon=True
        )
        process.start()
        child.close()
        self._process, self._conn = process, parent
        # Wait for it to be ready, so its start-up (imports, database) is not charged to the
        # first commit, and a child that cannot start is reported here.
        try:
            if not parent.poll(START_SECONDS):
                raise AcceptFailed(f"the accept process did not start in {START_SECONDS:.0f} s")
            parent.recv()
        except (EOFError, OSError) as exc:
            self._discard()
            raise AcceptFailed("the accept process exited while starting") from exc
        except AcceptFailed:
            self._discard()
            raise
        log.info("accept process started (pid %s)", process.pid)
        return parent

    def _discard(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._process is not None and self._process.is_alive():
            self._process.kill()
        if self._process is not None:
            self._process.join(5)
        self._process = self._conn = None

    @property
    def store_blocks(self) -> bool:
        return self._store.blocking

    def store_raw(self, raw: bytes) -> str:
        return self._store.prepare(raw)

    def accept(self, raw: bytes, envelope: Envelope, source: str) -> Accepted:
        return self.accept_many([Incoming(raw, envelope, source)])[0]

    def accept_many(self, items: Sequence[Incoming]) -> list[Accepted]:
        if self._store.blocking:  # files are written and fsync'd here, before the rows
            return self.commit(items, [self.store_raw(item.raw) for item in items])
        return self._call("many", items, [])

    def commit(self, items: Sequence[Incoming], digests: Sequence[str]) -> list[Accepted]:
        return self._call("commit", items, digests)

    def _call(self, kind: str, items: Sequence[Incoming], digests: Sequence[str]) -> list[Accepted]:
        if not items:
            return []
        with self._lock:
            conn = self._ensure()
            try:
                conn.send((kind, list(items), list(digests)))
                status, payload = conn.recv()
            except (EOFError, OSError) as exc:
                self._discard()
                raise AcceptFailed("the accept process stopped during a commit") from exc
        if status != "ok":
            raise AcceptFailed(payload)
        results: list[Accepted] = payload
        if self._on_accept is not None and any(not r.duplicate for r in results):
            self._on_accept()
        return results

    def close(self) -> None:
        """Let the child finish the commit it is in, then stop it."""
        with self._lock:
            if self._conn is not None and self._process is not None:
                with contextlib.suppress(OSError):
                    self._conn.send(None)
                self._process.join(STOP_SECONDS)
            self._discard()
