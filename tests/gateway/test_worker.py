"""The worker: a message's own failure is recorded on it; the database's failure never is."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable

import pytest
from sqlalchemy import select

from gateway import app as app_module
from gateway.db import DatabaseUnavailable
from gateway.inbox import Envelope
from gateway.models import Message
from gateway.settings import Settings


def test_a_locked_database_leaves_the_batch_waiting_not_failed(
    settings: Settings, make_mail: Callable[..., bytes]
) -> None:
    database = dataclasses.replace(settings.database, busy_timeout_ms=300)
    app = app_module.build(dataclasses.replace(settings, database=database))
    blocker = sqlite3.connect(database.url.split("///", 1)[1], isolation_level=None)
    try:
        ids = [
            app.inbox.accept(
                make_mail(message_id=f"<w{n}@brightenergy.example>", subject=f"w{n}"),
                Envelope(),
                "test",
            ).message_row_id
            for n in range(3)
        ]
        blocker.execute("BEGIN EXCLUSIVE")  # another writer holds the lock past the timeout
        with pytest.raises(DatabaseUnavailable, match="database is locked"):
            app.worker.process(ids)
        blocker.execute("ROLLBACK")
        with app.sessions() as session:
            statuses = session.scalars(select(Message.status).where(Message.id.in_(ids))).all()
        assert statuses == ["received"] * 3  # waiting, not failed for the database's fault
        assert [d.outcome for d in app.worker.process(ids)] == ["case_created"] * 3
    finally:
        blocker.close()
        app.close()
