"""The accept statements on the driver connection store what the ORM reads back."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from gateway import db
from gateway.accept_sql import AcceptStatements
from gateway.models import Message, RawMessage

NOW = datetime(2026, 11, 27, 9, 15, tzinfo=UTC)


def _row(key: str, message_id: str | None) -> dict[str, object]:
    return {
        "sha256": key * 64,
        "content_key": key * 64,
        "size": 3,
        "source": "test",
        "envelope_from": "ops@brightenergy.example",
        "envelope_to": ["cpsd@elexon.example"],
        "message_id": message_id,
        "message_id_conflict": False,
        "received_at": NOW,
        "status": "received",
        "attempts": 0,
        "sent_copy": False,
    }


def test_rows_written_on_the_driver_read_back_through_the_orm(engine: Engine) -> None:
    sql = AcceptStatements(engine)
    with sql.transaction() as tx:
        ids = tx.insert_messages([_row("a", "<a@x.example>"), _row("b", None)])
        tx.insert_raw([{"sha256": "a" * 64, "size": 3, "data": b"abc", "stored_at": NOW}] * 2)
    assert ids[1] == ids[0] + 1
    with db.session_factory(engine)() as session:
        first = session.get(Message, ids[0])
        assert first is not None
        assert first.received_at == NOW  # aware UTC, as the ORM writes it
        assert first.envelope_to == ["cpsd@elexon.example"]  # JSON, as the ORM writes it
        assert first.message_id == "<a@x.example>"
        assert session.scalar(select(func.count()).select_from(RawMessage)) == 1
    with sql.transaction() as tx:
        found = tx.existing(["a" * 64], ["<nothing@x.example>"])
        assert [(r[0], r[3]) for r in found] == [(ids[0], "<a@x.example>")]
        assert [r[0] for r in tx.existing(["z" * 64], ["<a@x.example>"])] == [ids[0]]


def test_a_failed_transaction_leaves_nothing(engine: Engine) -> None:
    sql = AcceptStatements(engine)
    with pytest.raises(sql.integrity_error), sql.transaction() as tx:
        tx.insert_messages([_row("c", None)])
        tx.insert_messages([_row("c", None)])  # the same content key: unique
    with db.session_factory(engine)() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 0


def test_an_accept_takes_the_write_lock_as_soon_as_it_is_free_and_keeps_its_timeout(
    tmp_path: Path,
) -> None:
    # The accept asks again every 0.2-2 ms, not on SQLite's own 1..100 ms backoff, and a
    # lock held past the busy timeout still fails the accept (451 at the SMTP end).
    database = tmp_path / "g.db"
    engine = db.make_engine(f"sqlite:///{database}", busy_timeout_ms=1000)
    db.upgrade(engine)
    sql = AcceptStatements(engine)
    blocker = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")
    threading.Timer(0.15, blocker.execute, args=("ROLLBACK",)).start()
    started = time.monotonic()
    with sql.transaction() as tx:
        waited = time.monotonic() - started
        tx.insert_messages([_row("c", "<c@x.example>")])
    assert 0.1 < waited < 1.0  # got it once it was free, inside the timeout (the speed: bench)

    blocker.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError, match="locked"), sql.transaction():
        pass
    blocker.execute("ROLLBACK")
    with engine.connect() as connection:  # the pooled connection's own timeout is back
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 1000
    blocker.close()
    engine.dispose()
