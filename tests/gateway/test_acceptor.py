"""The accept process: commits in a child process, with inbox.accept's promises intact."""

from __future__ import annotations

import asyncio
import os
import selectors
import signal
import socket
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway import app as app_module
from gateway.acceptor import (
    AcceptChannel,
    AcceptFailed,
    AcceptProcess,
    _gather_seconds,
    _send,
    _waiting_requests,
)
from gateway.inbox import Accepted, Envelope, Incoming
from gateway.models import Message
from gateway.settings import Settings, load
from gateway.write_gate import WriteGate
from tests.conftest import mail
from tests.support import free_port, settings_text


@pytest.fixture
def app(settings: Settings) -> Iterator[app_module.App]:
    built = app_module.build(settings)
    try:
        yield built
    finally:
        built.close()


def test_messages_committed_by_the_child_are_rows_the_parent_reads(
    app: app_module.App,
) -> None:
    woken: list[bool] = []
    acceptor = AcceptProcess(app.settings, app.store, on_accept=lambda: woken.append(True))
    try:
        acceptor.start()
        first, second = acceptor.accept_many(
            [
                Incoming(mail(message_id="<a@brightenergy.example>"), Envelope(), "test"),
                Incoming(mail(message_id="<b@brightenergy.example>"), Envelope(), "test"),
            ]
        )
        again = acceptor.accept(mail(message_id="<a@brightenergy.example>"), Envelope(), "x")
    finally:
        acceptor.close()
    assert not first.duplicate and not second.duplicate
    assert again.duplicate and again.message_row_id == first.message_row_id
    assert woken == [True]  # the worker is woken for new mail, not for a duplicate
    with app.sessions() as session:
        rows = session.scalars(select(Message).order_by(Message.id)).all()
        assert [r.message_id for r in rows] == [
            "<a@brightenergy.example>",
            "<b@brightenergy.example>",
        ]
        assert app.store.get(session, rows[0].sha256) == mail(message_id="<a@brightenergy.example>")


def test_a_killed_child_fails_no_commit_silently_and_is_replaced(app: app_module.App) -> None:
    acceptor = AcceptProcess(app.settings, app.store).start()
    try:
        acceptor.accept(mail(message_id="<c@brightenergy.example>"), Envelope(), "test")
        assert acceptor._process is not None
        os.kill(acceptor._process.pid, signal.SIGKILL)
        acceptor._process.join(10)
        # The next call starts a new child rather than answering from a dead one.
        later = acceptor.accept(mail(message_id="<d@brightenergy.example>"), Envelope(), "test")
        assert not later.duplicate
    finally:
        acceptor.close()


def test_a_locked_database_is_a_clear_failure_and_the_retry_is_stored(tmp_path: Path) -> None:
    config = tmp_path / "settings.toml"
    config.write_text(
        settings_text(tmp_path, free_port()).replace(
            "[storage]", "busy_timeout_ms = 300\n\n[storage]"
        )
    )
    settings = load(config)
    app = app_module.build(settings)
    acceptor = AcceptProcess(settings, app.store).start()
    blocker = sqlite3.connect(settings.database.url.split("///", 1)[1], isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        with pytest.raises(AcceptFailed, match="database is locked"):
            acceptor.accept(mail(), Envelope(), "test")
        blocker.execute("ROLLBACK")
        assert not acceptor.accept(mail(), Envelope(), "test").duplicate
    finally:
        blocker.close()
        acceptor.close()
        app.close()


# -- the event loop's channel and group commit in the child ---------------------------------


def _incoming(n: int) -> Incoming:
    return Incoming(mail(message_id=f"<loop-{n}@brightenergy.example>"), Envelope(), "smtp:test")


async def _sessions(acceptor: AcceptProcess, app: app_module.App, numbers: range) -> list[Accepted]:
    """Concurrent SMTP sessions, one message each, through one event-loop channel."""
    channel = AcceptChannel(acceptor)
    try:
        items = [_incoming(n) for n in numbers]
        done = await asyncio.gather(
            *(channel.commit([item], [app.store.prepare(item.raw)]) for item in items)
        )
        return [accepted for (accepted,) in done]
    finally:
        channel.close()


def test_concurrent_sessions_on_the_loop_channel_each_get_their_own_row(
    app: app_module.App,
) -> None:
    acceptor = AcceptProcess(app.settings, app.store).start()
    try:
        accepted = asyncio.run(_sessions(acceptor, app, range(40)))
    finally:
        acceptor.close()
    assert len({a.message_row_id for a in accepted}) == 40
    assert not any(a.duplicate for a in accepted)
    with app.sessions() as session:
        stored = dict(session.execute(select(Message.id, Message.message_id)).all())
    assert [stored[a.message_row_id] for a in accepted] == [
        f"<loop-{n}@brightenergy.example>" for n in range(40)
    ]


def test_the_loop_channel_fails_what_is_in_flight_when_the_child_dies_then_starts_another(
    app: app_module.App,
) -> None:
    acceptor = AcceptProcess(app.settings, app.store).start()

    async def story() -> tuple[BaseException | None, Accepted]:
        channel = AcceptChannel(acceptor)
        try:
            first = _incoming(1)
            await channel.commit([first], [app.store.prepare(first.raw)])
            assert acceptor._process is not None
            os.kill(acceptor._process.pid, signal.SIGSTOP)  # mid-commit, as far as we know
            second = _incoming(2)
            pending = asyncio.ensure_future(
                channel.commit([second], [app.store.prepare(second.raw)])
            )
            await asyncio.sleep(0.2)
            assert not pending.done()  # no answer without a commit
            os.kill(acceptor._process.pid, signal.SIGKILL)
            failure = None
            try:
                await asyncio.wait_for(pending, 10)
            except AcceptFailed as exc:
                failure = exc
            third = _incoming(3)
            (later,) = await channel.commit([third], [app.store.prepare(third.raw)])
            return failure, later
        finally:
            channel.close()

    try:
        failure, later = asyncio.run(story())
    finally:
        acceptor.close()
    assert isinstance(failure, AcceptFailed)
    assert not later.duplicate


def test_the_child_takes_every_request_already_waiting_into_one_commit() -> None:
    smtp_side, smtp_child = socket.socketpair()
    imap_side, imap_child = socket.socketpair()
    selector = selectors.DefaultSelector()
    try:
        for sock in (smtp_child, imap_child):
            selector.register(sock, selectors.EVENT_READ)
        _send(smtp_side, ("commit", [_incoming(1)], ["d1"]))
        _send(smtp_side, ("commit", [_incoming(2)], ["d2"]))
        _send(imap_side, ("many", [_incoming(3), _incoming(4)], []))
        requests = _waiting_requests(selector)
        assert requests is not None
        assert sorted(len(batch) for _, _, batch, _ in requests) == [1, 1, 2]
        _send(imap_side, None)  # the parent's close(): stop after what is in hand
        assert _waiting_requests(selector) is None
    finally:
        selector.close()
        for sock in (smtp_side, smtp_child, imap_side, imap_child):
            sock.close()


@pytest.mark.parametrize(
    ("shared_by", "seconds"), [(0, 0.0), (1, 0.0), (2, 0.002), (12, 0.003), (40, 0.004)]
)
def test_a_commit_waits_for_company_only_when_the_last_one_was_shared(
    shared_by: int, seconds: float
) -> None:
    assert _gather_seconds(shared_by) == pytest.approx(seconds)


def test_threads_and_the_event_loop_sharing_commits_each_get_their_own_rows(
    app: app_module.App,
) -> None:
    acceptor = AcceptProcess(app.settings, app.store).start()
    from_threads: list[list[Accepted]] = []

    def imap_batches() -> None:
        for batch in range(5):
            items = [_incoming(1000 + batch * 10 + n) for n in range(10)]
            from_threads.append(acceptor.accept_many(items))

    thread = threading.Thread(target=imap_batches)
    try:
        thread.start()
        from_loop = asyncio.run(_sessions(acceptor, app, range(60)))
        thread.join(60)
    finally:
        acceptor.close()
    with app.sessions() as session:
        stored = dict(session.execute(select(Message.id, Message.message_id)).all())
    assert [stored[a.message_row_id] for a in from_loop] == [
        f"<loop-{n}@brightenergy.example>" for n in range(60)
    ]
    from_imap = [a for batch in from_threads for a in batch]
    assert [stored[a.message_row_id] for a in from_imap] == [
        f"<loop-{1000 + n}@brightenergy.example>" for n in range(50)
    ]
    assert len(stored) == 110


class _CountingGate(WriteGate):
    """The real gate, noting the most accepts it saw in flight at once."""

    def __init__(self) -> None:
        super().__init__()
        self.most = 0

    @contextmanager
    def accepting(self) -> Iterator[None]:
        with super().accepting():
            self.most = max(self.most, self._in_flight)
            yield


def test_every_request_to_the_child_holds_the_write_gate_until_its_answer(
    app: app_module.App,
) -> None:
    # While a request is in flight the worker must see the gate busy (gateway/write_gate.py),
    # from a thread (IMAP, ingest) and from the event loop's channel (SMTP).
    gate = _CountingGate()
    acceptor = AcceptProcess(app.settings, app.store, gate=gate).start()
    try:
        acceptor.accept(mail(message_id="<gate-a@brightenergy.example>"), Envelope(), "t")
        assert gate.most == 1 and not gate.busy()
        asyncio.run(_sessions(acceptor, app, range(20)))
    finally:
        acceptor.close()
    assert gate.most > 1  # concurrent sessions were in flight together
    assert not gate.busy()
