"""The same schema and the same story on PostgreSQL: no SQLite-only SQL anywhere."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select

from gateway import db
from gateway.accept_sql import AcceptStatements
from gateway.app import build
from gateway.inbox import Envelope
from gateway.models import Case, Message, Outbox
from gateway.settings import load
from tests.e2e.desk import RAISER, STAFF, STAFF_DESK, Desk, mail, reply_to
from tests.postgres import PostgresServer
from tests.relay import Relay, relay_settings
from tests.support import deliver_concurrently, free_port, queue_sample_mail, settings_text

BODY = (
    "Summary: IF-041 rejected\nImpact: 200 customers\nMPAN: 1052601815905\n"
    "Evidence: DIP portal shows REJECTED\n"
)


def postgres_config(postgres: PostgresServer, tmp_path: Path) -> Path:
    """The tests' usual settings, with the database on the throwaway PostgreSQL."""
    config = tmp_path / "settings.toml"
    text = settings_text(tmp_path, free_port())
    text = text.replace(
        f'url = "sqlite:///{tmp_path / "var" / "gateway.db"}"', f'url = "{postgres.url}"'
    )
    config.write_text(text)
    return config


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    yield server
    server.stop()


def test_migrations_build_the_schema_on_postgresql(postgres: PostgresServer) -> None:
    engine = db.make_engine(postgres.url)
    db.upgrade(engine)
    db.upgrade(engine)  # idempotent, as `serve` runs it on every start
    tables = set(inspect(engine).get_table_names())
    assert {
        "messages",
        "raw_messages",
        "cases",
        "case_parties",
        "events",
        "outbox",
        "external_references",
        "mailbox_state",
        "counters",
        "automatic_recipients",
        "alembic_version",
    } <= tables
    engine.dispose()


def test_a_case_story_runs_on_postgresql(postgres: PostgresServer, tmp_path: Path) -> None:
    desk = Desk(load(postgres_config(postgres, tmp_path)))
    try:
        raw = mail(
            sender=RAISER, subject="IF-041 \x00 rejected", body=BODY.replace("200", "2\x0000")
        )
        done = desk.receive(raw)
        assert done.outcome == "case_created", done.reason
        notice = next(s for s in desk.new_mail() if s.to == [STAFF_DESK])
        done = desk.receive(reply_to(notice, sender=STAFF, body="#assign DCC\n"))
        assert done.outcome == "case_updated", done.reason
        shown = desk.case(done.reference or "")
        assert shown["state"] == "assigned" and len(shown["children"]) == 1
    finally:
        desk.close()


def test_a_message_another_worker_holds_is_skipped_not_processed_twice(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    desk = Desk(load(postgres_config(postgres, tmp_path)))
    try:
        with desk.app.sessions() as session:  # the module's database is shared
            cases_before = session.scalar(select(func.count()).select_from(Case))
        raw = mail(sender=RAISER, subject="IF-041 rejected", body=BODY)
        accepted = desk.app.inbox.accept(raw, Envelope(), "test")
        # Worker A has claimed the row and is mid-way through it.
        holder = desk.app.engine.connect()
        held = holder.begin()
        holder.execute(
            select(Message.id).where(Message.id == accepted.message_row_id).with_for_update()
        )
        # Worker B, meanwhile: it must skip the row, not wait for it (or process it too).
        result: list[object] = []
        worker_b = threading.Thread(
            target=lambda: result.append(desk.app.worker.process([accepted.message_row_id]))
        )
        worker_b.start()
        worker_b.join(10)
        waited = worker_b.is_alive()
        held.rollback()
        holder.close()
        worker_b.join()
        assert not waited, "worker B waited for the row instead of skipping it"
        assert result == [[]]
        (done,) = desk.app.worker.process([accepted.message_row_id])
        assert done.outcome == "case_created"
        assert desk.app.worker.process([accepted.message_row_id]) == []  # never twice
        with desk.app.sessions() as session:
            cases = session.scalar(select(func.count()).select_from(Case))
            assert cases == (cases_before or 0) + 1
    finally:
        desk.close()


def test_two_delivery_workers_on_one_postgresql_send_each_row_exactly_once(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    with Relay() as relay:
        config = relay_settings(tmp_path, relay, outbound="timeout_seconds = 5")
        config.write_text(
            config.read_text().replace(
                f'url = "sqlite:///{tmp_path / "var" / "gateway.db"}"', f'url = "{postgres.url}"'
            )
        )
        apps = [build(load(config)), build(load(config))]
        try:
            apps[0].deliverer.deliver_due()  # what earlier stories left in the shared outbox
            ours = {row.message_id for row in queue_sample_mail(apps[0], 120, [RAISER])}
            assert not deliver_concurrently([app.deliverer for app in apps])
            sent = Counter(m for m in relay.accepted_ids() if m in ours)
            assert set(sent) == ours and set(sent.values()) == {1}
            with apps[0].sessions() as session:
                rows = session.scalars(select(Outbox).where(Outbox.message_id.in_(ours))).all()
            assert all(r.status == "sent" and r.attempts == 1 for r in rows)
        finally:
            for app in apps:
                app.close()


def test_the_accept_statements_store_what_the_orm_reads_back_on_postgresql(
    postgres: PostgresServer,
) -> None:
    # The accept transaction bypasses the ORM (gateway/accept_sql.py); on PostgreSQL its
    # values must still go through each column's PostgreSQL type (JSON, timestamps).
    engine = db.make_engine(postgres.url)
    db.upgrade(engine)
    row = {
        "sha256": "f" * 64,
        "content_key": "f" * 64,
        "size": 3,
        "source": "test",
        "envelope_from": RAISER,
        "envelope_to": ["cpsd@elexon.example", "cpsd+CPSD-000001@elexon.example"],
        "message_id": "<accept-sql@brightenergy.example>",
        "message_id_conflict": False,
        "received_at": datetime(2026, 11, 27, 9, 15, tzinfo=UTC),
        "status": "received",
        "attempts": 0,
        "sent_copy": False,
    }
    try:
        with AcceptStatements(engine).transaction() as tx:
            (row_id,) = tx.insert_messages([row])
        with db.session_factory(engine)() as session:
            stored = session.get(Message, row_id)
            assert stored is not None
            assert stored.envelope_to == row["envelope_to"]
            assert stored.received_at == row["received_at"]
            session.delete(stored)
            session.commit()
    finally:
        engine.dispose()
