"""The accept process: commits in a child process, with inbox.accept's promises intact."""

from __future__ import annotations

import os
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway import app as app_module
from gateway.acceptor import AcceptFailed, AcceptProcess
from gateway.inbox import Envelope, Incoming
from gateway.models import Message
from gateway.settings import Settings, load
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
