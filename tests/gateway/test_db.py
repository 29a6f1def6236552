"""Migrations: they build what the models describe, and 0005 carries the rate limit over."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, insert, select

from gateway import db
from gateway.models import AutomaticRecipient, Base, Outbox, utcnow


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
