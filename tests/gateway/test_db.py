"""The database: migrations build what the models describe, 0005 carries the rate limit
over, and SQLite is refused where it could lose a commit."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, insert, select

from gateway import app as app_module
from gateway import db
from gateway.db import durability_problem, make_engine
from gateway.models import AutomaticRecipient, Base, Outbox, utcnow
from gateway.settings import Settings, SettingsError


def _engine(tmp_path: Path) -> Engine:
    return db.make_engine(f"sqlite:///{tmp_path / 'gateway.db'}")


def test_the_migrations_build_exactly_the_schema_the_models_describe(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    db.upgrade(engine)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []
    engine.dispose()


def _upgrade_to(engine: Engine, revision: str) -> None:
    config = db.alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def _outbox_row(row_id: int, kind: str, recipients: list[str], age: timedelta) -> dict[str, object]:
    at = utcnow() - age
    return {
        "id": row_id, "message_id": f"<{row_id}@elexon.example>", "kind": kind,
        "template": "acknowledgement", "template_version": "v", "mail_from": "cpsd@elexon.example",
        "recipients": recipients, "subject": "s", "raw": b"x", "priority": 5, "status": "pending",
        "attempts": 0, "next_attempt_at": at, "created_at": at,
    }  # fmt: skip


def test_upgrading_keeps_counting_the_automatic_replies_already_sent(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    _upgrade_to(engine, "0004")
    with engine.begin() as connection:
        connection.execute(
            insert(Outbox.__table__),
            [
                _outbox_row(1, "auto_reply", ["Desk@Bright.example"], timedelta(minutes=5)),
                _outbox_row(2, "notice", ["desk@bright.example"], timedelta(minutes=5)),
                _outbox_row(3, "auto_reply", ["desk@bright.example"], timedelta(days=3)),
            ],
        )
    db.upgrade(engine)
    with engine.connect() as connection:
        found = connection.execute(
            select(AutomaticRecipient.outbox_id, AutomaticRecipient.address)
        ).all()
    assert found == [(1, "desk@bright.example")]
    engine.dispose()


@pytest.mark.parametrize(
    ("mode", "synchronous", "problem"),
    [
        ("wal", 2, None),
        ("WAL", 3, None),  # EXTRA is more than FULL
        ("delete", 2, None),
        ("memory", 2, "journal_mode is 'memory'"),
        ("off", 2, "journal_mode is 'off'"),
        ("wal", 1, "synchronous is 1"),
        ("wal", 0, "synchronous is 0"),
    ],
)
def test_a_mode_that_could_lose_a_commit_is_named(
    mode: str, synchronous: int, problem: str | None
) -> None:
    found = durability_problem(mode, synchronous)
    assert (found is None) if problem is None else (problem in (found or ""))


def test_our_sqlite_connections_are_wal_and_full(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'g.db'}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2
    engine.dispose()


def test_a_database_sqlite_cannot_keep_durably_is_refused_naming_the_setting(
    settings: Settings,
) -> None:
    # F6: whatever the URL looked like, SQLite reports the journal it really uses. The
    # settings check refuses the in-memory URLs it recognises; this is the net behind it.
    memory = dataclasses.replace(
        settings, database=dataclasses.replace(settings.database, url="sqlite://")
    )
    with pytest.raises(SettingsError) as refused:
        app_module.build(memory)
    assert str(refused.value) == (
        f"{settings.source}: [database] url: SQLite journal_mode is 'memory', not WAL: "
        "a commit could be lost in a crash"
    )
