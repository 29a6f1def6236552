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

Group commit happens in the child: it reads every request already waiting on any of its
connections (the SMTP event loop's, the ingress threads') and commits them in one
transaction, so under load many messages share one fsync without anyone waiting on a
timer, and an idle gateway commits a lone message at once. The SMTP event loop talks to
the child over a socket of its own (``AcceptChannel``): no thread hand-off, no lock, and
several requests in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import multiprocessing
import pickle
import selectors
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, event

from gateway import db
from gateway.inbox import Accepted, Envelope, Inbox, Incoming
from gateway.rawstore import RawStore, make_store
from gateway.settings import Settings
from gateway.write_gate import WriteGate

log = logging.getLogger(__name__)
STOP_SECONDS = 30.0
START_SECONDS = 60.0
MERGE_ITEMS = 500  # at most this many messages, or
MERGE_BYTES = 64 * 1024 * 1024  # this many raw bytes, share one transaction
# Under concurrency a commit waits for requests arriving within GATHER_SECONDS of the
# last, for 2-4 ms in all: 0.25 ms per sender that shared the last commit.
GATHER_SECONDS = 0.0005
GATHER_PER_SENDER_SECONDS = 0.00025
GATHER_MIN_SECONDS = 0.002
GATHER_MAX_SECONDS = 0.004
_LENGTH = struct.Struct("!Q")
CHECKPOINT_BYTES = 4 * 1024 * 1024  # about SQLite's own 1,000-page default


class AcceptFailed(Exception):
    """The accept process could not store a batch; nothing of it is acknowledged."""


def _child(settings: Settings, socks: list[socket.socket]) -> None:
    """Commit what the parent sends until it says stop or goes away."""
    engine = db.make_engine(
        settings.database.url, busy_timeout_ms=settings.database.busy_timeout_ms
    )
    inbox = Inbox(engine, make_store(settings.storage))
    checkpoints = _Checkpointer(engine) if engine.dialect.name == "sqlite" else None
    selector = selectors.DefaultSelector()
    try:
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
        _send(socks[0], ("ready", None))
        shared = 0
        while selector.get_map():
            requests = _waiting_requests(selector, gather=_gather_seconds(shared))
            if requests is None:
                return  # the parent asked us to stop
            shared = len(requests)
            if requests:
                _commit_together(inbox, requests)
                if checkpoints is not None:
                    checkpoints.committed(
                        sum(len(i.raw) for _, _, batch, _ in requests for i in batch)
                    )
    finally:
        selector.close()
        if checkpoints is not None:
            checkpoints.stop()
        engine.dispose()


def _gather_seconds(last_shared_by: int) -> float:
    """How long the next commit may wait for company: not at all after a lone sender's
    commit, longer the more senders shared the last one."""
    if last_shared_by < 2:
        return 0.0
    scaled = GATHER_PER_SENDER_SECONDS * last_shared_by
    return min(GATHER_MAX_SECONDS, max(GATHER_MIN_SECONDS, scaled))


_Request = tuple[socket.socket, str, list[Incoming], list[str]]


def _waiting_requests(
    selector: selectors.BaseSelector, *, gather: float = 0.0
) -> list[_Request] | None:
    """Block for one request, then take those already waiting, within bounds.

    With ``gather`` seconds (the last commit was shared, so senders are concurrent),
    requests arriving within GATHER_SECONDS of the last one join too, until ``gather``
    after the first: like PostgreSQL's commit_delay with commit_siblings, a moment's wait
    under concurrency lets more SMTP sessions share one commit, and a lone sender never
    waits. Measured with 8 SMTP clients, a 2 ms window halved the accept process's CPU
    per message (0.45 -> 0.22 ms) and lowered the SMTP process's too (fewer, fuller
    event-loop turns); with 32, 4 ms did better still.
    """
    requests: list[_Request] = []
    items = size = 0
    timeout: float | None = None  # wait as long as it takes for the first
    deadline = 0.0
    while items < MERGE_ITEMS and size < MERGE_BYTES:
        ready = selector.select(timeout)
        if not ready:
            break
        for key, _ in ready:
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            try:
                request = _recv(sock)
            except (EOFError, OSError):
                # That side of the parent is gone; what it had not heard back about is
                # retried by its sender and found again by the content-key dedupe.
                selector.unregister(sock)
                sock.close()
                continue
            if request is None:
                return None
            kind, batch, digests = request
            requests.append((sock, kind, batch, digests))
            items += len(batch)
            size += sum(len(item.raw) for item in batch)
        now = time.monotonic()
        deadline = deadline or now + gather
        timeout = max(0.0, min(GATHER_SECONDS, deadline - now))
        if not selector.get_map():
            break
    return requests


def _commit_together(inbox: Inbox, requests: list[_Request]) -> None:
    """One transaction for all; each sender hears about its own messages only after it."""
    items: list[Incoming] = []
    digests: list[str] = []
    try:
        for _, kind, batch, given in requests:
            items.extend(batch)
            digests.extend(given if kind == "commit" else [inbox.store_raw(i.raw) for i in batch])
        done = inbox.commit(items, digests)
        replies: list[tuple[str, Any]] = []
        start = 0
        for _, _, batch, _ in requests:
            replies.append(("ok", done[start : start + len(batch)]))
            start += len(batch)
    except Exception as exc:  # reported to each caller, who answers 451 / retries
        error = ("error", f"{type(exc).__name__}: {exc}"[:2000])
        replies = [error] * len(requests)
    for (sock, *_), reply in zip(requests, replies, strict=True):
        with contextlib.suppress(OSError):  # that caller died waiting; dedupe covers it
            _send(sock, reply)


def _send(sock: socket.socket, message: object) -> None:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_LENGTH.pack(len(payload)) + payload)


def _recv(sock: socket.socket) -> Any:
    (length,) = _LENGTH.unpack(_recv_exactly(sock, _LENGTH.size))
    return pickle.loads(_recv_exactly(sock, length))


def _recv_exactly(sock: socket.socket, length: int) -> bytearray:
    buffer = bytearray(length)
    view = memoryview(buffer)
    got = 0
    while got < length:
        count = sock.recv_into(view[got:])
        if count == 0:
            raise EOFError("the other side closed the connection")
        got += count
    return buffer


class _Checkpointer:
    """SQLite: WAL checkpoints after the child's commits, on a thread of their own.

    Raw bytes make the WAL grow fast (an IMAP batch of 100 is ~1.6 MB), and SQLite's
    automatic checkpoint runs inside the commit that crosses 1,000 pages: that commit
    also copies the WAL into the database file and fsyncs it, while its sender waits.
    The child's connections turn automatic checkpoints off; this thread runs a PASSIVE
    checkpoint (it never blocks a writer) once the commits since the last one hold
    CHECKPOINT_BYTES of mail, while the child goes on committing. (One per commit cost
    more CPU than the commits themselves when SMTP sessions commit a few messages at a
    time.) Other processes keep SQLite's default.
    """

    def __init__(self, engine: Engine) -> None:
        event.listen(engine, "connect", _no_auto_checkpoint)
        self._engine = engine
        self.due = threading.Event()
        self._pending_bytes = 0
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

    def committed(self, size: int) -> None:
        """Count a commit's raw bytes; past the threshold, the thread checkpoints."""
        self._pending_bytes += size
        if self._pending_bytes >= CHECKPOINT_BYTES:
            self._pending_bytes = 0
            self.due.set()

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
        gate: WriteGate | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._on_accept = on_accept
        self.gate = gate  # counts our requests in flight, so the worker lets them in first
        self._lock = threading.Lock()
        self._context = multiprocessing.get_context("spawn")  # never fork a threaded process
        self._process: Any = None
        self._sock: socket.socket | None = None  # for threads, under the lock
        self.loop_sock: socket.socket | None = None  # for the AcceptChannel of an event loop

    def start(self) -> AcceptProcess:
        with self._lock:
            self._ensure()
        return self

    def _ensure(self) -> socket.socket:
        if self._sock is not None and self._process is not None and self._process.is_alive():
            return self._sock
        self._discard()
        pairs = [socket.socketpair() for _ in range(2)]
        process = self._context.Process(
            target=_child,
            args=(self._settings, [child for _, child in pairs]),
            name="cpsd-accept",
            daemon=True,
        )
        process.start()
        for _, child in pairs:
            child.close()
        self._process = process
        self._sock, self.loop_sock = (parent for parent, _ in pairs)
        # Wait for it to be ready, so its start-up (imports, database) is not charged to the
        # first commit, and a child that cannot start is reported here.
        try:
            self._sock.settimeout(START_SECONDS)
            _recv(self._sock)
            self._sock.settimeout(None)
        except TimeoutError as exc:
            self._discard()
            raise AcceptFailed(
                f"the accept process did not start in {START_SECONDS:.0f} s"
            ) from exc
        except (EOFError, OSError) as exc:
            self._discard()
            raise AcceptFailed("the accept process exited while starting") from exc
        log.info("accept process started (pid %s)", process.pid)
        return self._sock

    def _discard(self) -> None:
        for sock in (self._sock, self.loop_sock):
            if sock is not None:
                sock.close()
        if self._process is not None and self._process.is_alive():
            self._process.kill()
        if self._process is not None:
            self._process.join(5)
        self._process = self._sock = self.loop_sock = None

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
        with self._lock, self.in_flight():
            sock = self._ensure()
            try:
                _send(sock, (kind, list(items), list(digests)))
                reply = _recv(sock)
            except (EOFError, OSError) as exc:
                self._discard()
                raise AcceptFailed("the accept process stopped during a commit") from exc
        return self.answered(reply)

    def in_flight(self) -> contextlib.AbstractContextManager[None]:
        """Around one request, from sending it to its answer."""
        return self.gate.accepting() if self.gate is not None else contextlib.nullcontext()

    def answered(self, reply: tuple[str, Any]) -> list[Accepted]:
        status, payload = reply
        if status != "ok":
            raise AcceptFailed(payload)
        results: list[Accepted] = payload
        if self._on_accept is not None and any(not r.duplicate for r in results):
            self._on_accept()
        return results

    def restart_unless_replaced(self, dead: socket.socket | None) -> None:
        """The event loop saw the child close ``dead``: replace that child, unless a thread
        already did; with ``dead`` None, just make sure a child runs."""
        with self._lock:
            if dead is not None and self.loop_sock is dead:
                self._discard()
            self._ensure()

    def live_loop_socket(self) -> socket.socket | None:
        """The event loop's socket to the running child, or None if there is no child."""
        if self._process is None or not self._process.is_alive():
            return None
        return self.loop_sock

    def close(self) -> None:
        """Let the child finish the commit it is in, then stop it."""
        with self._lock:
            if self._sock is not None and self._process is not None:
                with contextlib.suppress(OSError):
                    _send(self._sock, None)
                self._process.join(STOP_SECONDS)
            self._discard()


@dataclass
class _Link:
    """One connection to one accept process, with the replies it still owes, in order."""

    sock: socket.socket
    writer: asyncio.StreamWriter
    waiting: deque[asyncio.Future[tuple[str, Any]]] = field(default_factory=deque)


class AcceptChannel:
    """The SMTP event loop's own connection to the accept process.

    Each call writes its request and awaits its reply; replies come back in order, so a
    queue of futures pairs them up. Many requests can be in flight (the child commits
    whatever is waiting together); nothing here blocks the loop except starting a child,
    which runs on the default executor.
    """

    def __init__(self, process: AcceptProcess) -> None:
        self._process = process
        self._connecting = asyncio.Lock()
        self._link: _Link | None = None
        self._dead: socket.socket | None = None  # the socket of a child seen to go away

    async def commit(self, items: Sequence[Incoming], digests: Sequence[str]) -> list[Accepted]:
        link = await self._connected()
        reply: asyncio.Future[tuple[str, Any]] = asyncio.get_running_loop().create_future()
        link.waiting.append(reply)
        payload = pickle.dumps(("commit", list(items), list(digests)), pickle.HIGHEST_PROTOCOL)
        with self._process.in_flight():
            try:
                link.writer.write(_LENGTH.pack(len(payload)) + payload)
                await link.writer.drain()
            except (ConnectionError, OSError) as exc:  # the child died before it read this
                raise AcceptFailed("the accept process stopped during a commit") from exc
            answer = await reply
        return self._process.answered(answer)

    async def _connected(self) -> _Link:
        async with self._connecting:
            current = self._process.live_loop_socket()
            if self._link is not None and self._link.sock is current:
                return self._link
            if current is None or current is self._dead:
                # No child, or one that closed our socket (it may not be reaped yet).
                restart = functools.partial(self._process.restart_unless_replaced, self._dead)
                await asyncio.get_running_loop().run_in_executor(None, restart)
                current = self._process.live_loop_socket()
                if current is None or current is self._dead:
                    raise AcceptFailed("the accept process is not running")
            self.close()
            reader, writer = await asyncio.open_connection(sock=current.dup())
            link = self._link = _Link(current, writer)
            asyncio.get_running_loop().create_task(self._read_replies(reader, link))
            return link

    async def _read_replies(self, reader: asyncio.StreamReader, link: _Link) -> None:
        try:
            while True:
                (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
                reply = pickle.loads(await reader.readexactly(length))
                future = link.waiting.popleft()
                if not future.done():
                    future.set_result(reply)
        except (asyncio.IncompleteReadError, OSError, IndexError):
            pass
        # The child went away: what still waits on this link fails (451), and the next
        # call starts a new child. A commit it finished first is found again by dedupe.
        self._dead = link.sock
        if self._link is link:
            self.close()
        for future in link.waiting:
            if not future.done():
                future.set_exception(AcceptFailed("the accept process stopped during a commit"))

    def close(self) -> None:
        if self._link is not None:
            self._link.writer.close()
            self._link = None
