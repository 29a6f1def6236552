"""The same schema and the same story on PostgreSQL: no SQLite-only SQL anywhere."""

from __future__ import annotations

import smtplib
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select, text

from gateway import db
from gateway.accept_sql import AcceptStatements
from gateway.app import build
from gateway.inbox import Envelope
from gateway.models import Case, Message, Outbox
from gateway.settings import load
from tests.dovecot import Dovecot, imap_block
from tests.e2e.desk import RAISER, STAFF, STAFF_DESK, Desk, mail, reply_to
from tests.e2e.server import GatewayProcess, wait_for
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


@contextmanager
def _connections_killed_every(postgres: PostgresServer, seconds: float) -> Iterator[list[int]]:
    """Terminate every client connection to the database but ours, again and again."""
    killer = db.make_engine(postgres.url)
    stop = threading.Event()
    kills: list[int] = []

    def kill() -> None:
        while not stop.wait(seconds):
            with killer.connect() as conn:
                killed = conn.execute(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                        "AND backend_type = 'client backend'"
                    )
                ).scalar_one()
            kills.append(int(killed))

    thread = threading.Thread(target=kill)
    thread.start()
    try:
        yield kills
    finally:
        stop.set()
        thread.join()
        killer.dispose()


def _send_until_accepted(port: int, sender: str, raw: bytes) -> int:
    """Send as a party's MTA would: on 451, try again. How many 451s it took."""
    for attempt in range(50):
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
                client.sendmail(sender, ["cpsd@elexon.example"], raw)
            return attempt
        except smtplib.SMTPResponseException as exc:
            assert exc.smtp_code == 451, exc  # temporary, never 5xx
            time.sleep(0.05)
    raise AssertionError("never accepted")


def test_serve_on_postgresql_loses_and_doubles_nothing_while_its_connections_are_killed(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    # F21: the database drops every connection of the gateway (fail-over, a DBA, a
    # restart) again and again while parties send cases over SMTP. A sender may hear
    # 451 and retry; every case must still be raised exactly once, with exactly one
    # acknowledgement, and no message may be marked failed for the database's fault.
    config = postgres_config(postgres, tmp_path)
    port = int(config.read_text().split('listen = "127.0.0.1:', 1)[1].split('"', 1)[0])
    ids = [f"<f21-{n}@brightenergy.example>" for n in range(30)]
    engine = db.make_engine(postgres.url)
    ours = select(Message.case_id).where(Message.message_id.in_(ids))
    acknowledged = (
        select(func.count())
        .select_from(Outbox)
        .where(Outbox.template == "acknowledgement", Outbox.status == "sent")
        .where(Outbox.case_id.in_(ours))
    )
    gateway = GatewayProcess(config, port).start()
    try:
        with _connections_killed_every(postgres, 0.05) as kills:
            retries = []
            for n, message_id in enumerate(ids):
                # One sender each: the automatic-reply rate limit is per recipient.
                sender = f"ops.f21.{n}@brightenergy.example"
                raw = mail(sender=sender, subject=f"F21 {n}", body=BODY, message_id=message_id)
                retries.append(_send_until_accepted(port, sender, raw))
        assert sum(kills) > 0, "the test never killed a connection"

        def settled() -> bool:
            with engine.connect() as conn:
                return conn.execute(acknowledged).scalar_one() >= len(ids)

        assert wait_for(settled, timeout=60), "not every case was acknowledged"
        time.sleep(0.5)  # anything doubled would show by now
    finally:
        assert gateway.stop() == 0
    with engine.connect() as conn:
        messages = conn.execute(
            select(Message.message_id, Message.status, Message.case_id).where(
                Message.message_id.in_(ids)
            )
        ).all()
        acks = conn.scalars(
            select(Outbox.case_id).where(
                Outbox.template == "acknowledgement", Outbox.case_id.in_(ours)
            )
        ).all()
    engine.dispose()
    assert sorted(m for m, _, _ in messages) == sorted(ids)  # each stored once
    assert {status for _, status, _ in messages} == {"processed"}
    cases = [case_id for _, _, case_id in messages]
    assert len(set(cases)) == len(ids)  # a case each
    assert Counter(acks) == Counter(cases)  # one acknowledgement each
    print(f"connections killed: {sum(kills)}; 451s before a 250: {sum(retries)}")


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


def test_serve_on_postgresql_takes_a_case_from_the_shared_mailbox(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    # The IMAP poller accepts through the same accept process as SMTP, on PostgreSQL.
    dovecot = Dovecot().start()
    try:
        config = postgres_config(postgres, tmp_path)
        config.write_text(config.read_text() + imap_block(dovecot, tmp_path))
        message_id = "<imap-on-pg@brightenergy.example>"
        dovecot.append(
            "INBOX", [mail(sender=RAISER, subject="IMAP on PG", body=BODY, message_id=message_id)]
        )
        engine = db.make_engine(postgres.url)
        ours = select(Message.status, Message.envelope_to).where(Message.message_id == message_id)

        def processed() -> bool:
            with engine.connect() as conn:
                row = conn.execute(ours).one_or_none()
            return row is not None and row.status == "processed"

        port = int(config.read_text().split('listen = "127.0.0.1:', 1)[1].split('"', 1)[0])
        gateway = GatewayProcess(config, port).start()
        try:
            assert wait_for(processed, timeout=10), gateway.log.read_text()
        finally:
            assert gateway.stop() == 0
        with engine.connect() as conn:
            assert conn.execute(ours).one().envelope_to == []  # IMAP has no envelope: a list
        engine.dispose()
        assert dovecot.count("INBOX") == 0
    finally:
        dovecot.destroy()
