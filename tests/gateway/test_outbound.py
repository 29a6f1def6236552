"""Outbound delivery against a real aiosmtpd relay on loopback and a real SQLite file.

The relay (tests/relay.py) is told to answer 250, 451, 550, 421 on connect, to drop the
connection, to refuse single recipients, or is stopped (connection refused). Nothing
here is faked except the clock, where a test needs "49 hours later".
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from gateway import outbound
from gateway.app import App, build, make_transport
from gateway.inbox import Envelope
from gateway.models import Case, Event, Outbox, utcnow
from gateway.outbound import Deliverer, RelayUnavailable
from gateway.settings import load
from gateway.transports import SmtpTransport
from tests.conftest import mail
from tests.relay import Relay, make_certificate, relay_settings, server_context
from tests.support import deliver_concurrently, free_port, queue_sample_mail

PARTY = "ops@brightenergy.example"
STAFF = "servicedesk-team@elexon.example"


@pytest.fixture
def relay() -> Iterator[Relay]:
    with Relay() as running:
        yield running


@pytest.fixture
def make_app(tmp_path: Path, relay: Relay) -> Iterator[Callable[..., App]]:
    apps: list[App] = []

    def make(outbound_lines: str = "timeout_seconds = 2", target: Relay | None = None) -> App:
        app = build(load(relay_settings(tmp_path, target or relay, outbound=outbound_lines)))
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


@pytest.fixture
def app(make_app: Callable[..., App]) -> App:
    return make_app()


class Clock:
    """utcnow() plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.offset


def deliverer(app: App, **kwargs: Any) -> Deliverer:
    options: dict[str, Any] = {
        "base_delay": 0.05,
        "max_delay": 0.2,
        "lease": timedelta(seconds=8),
        "renderer": app.renderer,
        "identity": app.identity,
    }
    options.update(kwargs)
    return Deliverer(app.sessions, make_transport(app.settings), **options)


def queue(
    app: App,
    count: int = 1,
    *,
    to: tuple[str, ...] = (PARTY,),
    kind: str = "notice",
    priority: int = 5,
    case_id: int | None = None,
) -> list[int]:
    rows = queue_sample_mail(app, count, to, kind=kind, priority=priority, case_id=case_id)
    return [row.id for row in rows]


def raise_case(app: App, n: int = 1) -> int:
    """A real case through inbox and pipeline (it queues an acknowledgement and a notice)."""
    accepted = app.inbox.accept(
        mail(message_id=f"<m{n}@brightenergy.example>", subject=f"DIP rejects IF-041 #{n}"),
        Envelope(),
        "test",
    )
    app.worker.process([accepted.message_row_id])
    with app.sessions() as session:
        case_id = session.scalar(select(Case.id).order_by(Case.id.desc()))
    assert case_id is not None
    return case_id


def rows(app: App) -> dict[int, Outbox]:
    with app.sessions() as session:
        return {row.id: row for row in session.scalars(select(Outbox))}


def message_ids(app: App, ids: list[int]) -> list[str]:
    found = rows(app)
    return [found[i].message_id for i in ids]


# -- order, bytes, Message-ID --------------------------------------------------------------


def test_rows_go_out_by_priority_then_age_with_their_stored_bytes(app: App, relay: Relay) -> None:
    low = queue(app, 2, priority=5)
    urgent = queue(app, 1, priority=1)
    results = deliverer(app).deliver_due()
    assert [r.status for r in results] == ["sent"] * 3
    assert relay.accepted_ids() == message_ids(app, urgent + low)
    stored = rows(app)
    for item in relay.accepted:
        row = next(r for r in stored.values() if r.message_id == item.message_id)
        assert item.data.replace(b"\r\n", b"\n") == row.raw.replace(b"\r\n", b"\n")
        assert row.status == "sent" and row.attempts == 1 and row.sent_at is not None
        assert row.recipient_status == {PARTY: {"status": "sent", "reply": item.answer}}


def test_one_connection_carries_consecutive_rows(app: App, relay: Relay) -> None:
    queue(app, 25)
    before = relay.connections
    assert all(r.status == "sent" for r in deliverer(app).deliver_due())
    assert len(relay.accepted) == 25
    assert relay.connections - before == 1


def test_a_connection_the_relay_closed_is_replaced_without_losing_the_row(
    app: App, relay: Relay
) -> None:
    transport = make_transport(app.settings)
    assert isinstance(transport, SmtpTransport)
    transport.send("cpsd@elexon.example", [PARTY], b"Message-ID: <a@x>\r\n\r\none\r\n", 1)
    relay.stop()  # closes the connection the transport still holds
    relay.start()
    transport.send("cpsd@elexon.example", [PARTY], b"Message-ID: <b@x>\r\n\r\ntwo\r\n", 2)
    transport.close()
    assert relay.accepted_ids() == ["<a@x>", "<b@x>"]


# -- temporary failures --------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["451", "drop", "421"])
def test_temporary_failure_keeps_the_row_pending_and_resends_the_same_bytes(
    app: App, relay: Relay, mode: str
) -> None:
    (row_id,) = queue(app)
    relay.mode = mode
    clock = Clock()
    worker = deliverer(app, clock=clock, base_delay=30, max_delay=3600)
    [first] = worker.deliver_due()
    row = rows(app)[row_id]
    assert first.status == "pending" and row.status == "pending" and row.attempts == 1
    assert row.next_attempt_at > utcnow() + timedelta(seconds=14)  # backoff, not a busy loop
    assert {"451": "451 4.3.0", "drop": "connection lost", "421": "421"}[mode] in str(
        row.last_error
    )
    assert worker.deliver_due() == []  # not due yet
    relay.mode = "250"
    clock.offset = timedelta(seconds=31)
    [second] = worker.deliver_due()
    row = rows(app)[row_id]
    assert second.status == "sent" and row.attempts == 2 and row.last_error is None
    assert relay.accepted_ids() == [row.message_id]
    assert all(r.message_id == row.message_id for r in relay.received)


def test_relay_down_defers_the_whole_pass_with_one_dial(app: App, relay: Relay) -> None:
    ids = queue(app, 5)
    relay.stop()
    results = deliverer(app).deliver_due()
    assert [r.status for r in results] == ["pending"] * 5
    found = rows(app)
    assert "Connection refused" in str(found[ids[0]].last_error)
    assert all("not tried" in str(found[i].last_error) for i in ids[1:])
    assert all(found[i].status == "pending" and found[i].attempts == 1 for i in ids)


def test_retries_stop_after_retry_for_and_staff_are_told(app: App, relay: Relay) -> None:
    case_id = raise_case(app)
    relay.mode = "451"
    clock = Clock()
    worker = deliverer(app, clock=clock, retry_for=timedelta(hours=48))
    assert {r.status for r in worker.deliver_due()} == {"pending"}
    clock.offset = timedelta(hours=49)
    results = worker.deliver_due()
    assert {r.status for r in results} == {"failed"}
    found = rows(app)
    failed = [r for r in found.values() if r.status == "failed"]
    assert failed and all("gave up after 48 h" in str(r.last_error) for r in failed)
    alerts = [r for r in found.values() if r.template == "staff_alert"]
    assert len(alerts) == len(failed) and all(r.recipients == [STAFF] for r in alerts)
    with app.sessions() as session:
        kinds = set(session.scalars(select(Event.kind).where(Event.case_id == case_id)))
    assert {"acknowledgement_failed", "staff_alert_queued"} <= kinds


# -- permanent failures and alerts ---------------------------------------------------------


def test_5xx_fails_the_row_records_the_answer_on_the_case_and_alerts_staff_once(
    app: App, relay: Relay
) -> None:
    case_id = raise_case(app)
    relay.mode = "550"
    worker = deliverer(app)
    results = worker.deliver_due()
    assert {r.status for r in results} == {"failed"}
    found = rows(app)
    ack = next(r for r in found.values() if r.template == "acknowledgement")
    assert ack.status == "failed" and ack.attempts == 1
    assert "550 5.7.1 Message refused by policy" in str(ack.last_error)
    alerts = [r for r in found.values() if r.template == "staff_alert"]
    assert len(alerts) == 2 and all(a.kind == "alert" and a.case_id == case_id for a in alerts)
    alert_text = next(a for a in alerts if f"row {ack.id} " in a.raw.decode())
    parsed = message_from_bytes(alert_text.raw, policy=policy.default)
    body = parsed.get_body(("plain",))
    assert body is not None
    assert f"cpsd-gateway outbox retry {ack.id}" in body.get_content()
    assert "550 5.7.1" in body.get_content()
    assert parsed["Subject"].startswith("[CPSD-000001] Mail not delivered to")
    with app.sessions() as session:
        details = list(
            session.scalars(
                select(Event.detail).where(
                    Event.case_id == case_id, Event.kind == "acknowledgement_failed"
                )
            )
        )
    assert details and "550 5.7.1" in details[0]
    # The alerts fail too (still 550): recorded, never alerted about, so no loop.
    assert {r.status for r in worker.deliver_due()} == {"failed"}
    assert worker.deliver_due() == []
    after = rows(app)
    assert sum(1 for r in after.values() if r.template == "staff_alert") == 2
    assert all(r.status == "failed" for r in after.values())


def test_some_recipients_refused_only_the_others_get_it_and_none_twice(
    app: App, relay: Relay
) -> None:
    a, b, c = "a@brightenergy.example", "b@brightenergy.example", "c@brightenergy.example"
    (row_id,) = queue(app, to=(a, b, c))
    relay.refuse = {b: "550 5.1.1 no such user", c: "452 4.2.2 mailbox full"}
    clock = Clock()
    worker = deliverer(app, clock=clock)
    assert [r.status for r in worker.deliver_due()] == ["pending"]
    row = rows(app)[row_id]
    assert {k: v["status"] for k, v in (row.recipient_status or {}).items()} == {
        a: "sent",
        b: "failed",
        c: "deferred",
    }
    assert "550 5.1.1 no such user" in str(row.last_error)
    relay.refuse = {}
    clock.offset = timedelta(seconds=5)
    assert [r.status for r in worker.deliver_due()] == ["failed"]  # b refused for good
    assert [item.rcpt_tos for item in relay.accepted] == [(a,), (c,)]
    row = rows(app)[row_id]
    assert row.status == "failed" and row.sent_at is not None
    alerts = [r for r in rows(app).values() if r.template == "staff_alert"]
    assert len(alerts) == 1 and b in alerts[0].subject
    with app.sessions.begin() as session:
        outbound.requeue(session, row_id, retry_for=timedelta(hours=48), actor="test")
    results = worker.deliver_due()
    assert [(r.row_id, r.status) for r in results if r.row_id == row_id] == [(row_id, "sent")]
    assert [i.rcpt_tos for i in relay.accepted if i.rcpt_tos != (STAFF,)] == [(a,), (c,), (b,)]
    assert Counter(r for item in relay.accepted for r in item.rcpt_tos) == {
        a: 1,
        b: 1,
        c: 1,
        STAFF: 1,
    }


def test_requeue_refuses_rows_that_are_not_failed(app: App) -> None:
    (row_id,) = queue(app)
    with app.sessions.begin() as session, pytest.raises(ValueError, match="pending"):
        outbound.requeue(session, row_id, retry_for=timedelta(hours=1), actor="t")
    with app.sessions.begin() as session, pytest.raises(LookupError):
        outbound.requeue(session, 999, retry_for=timedelta(hours=1), actor="t")


# -- backoff -------------------------------------------------------------------------------


def test_backoff_doubles_is_capped_and_jittered(app: App) -> None:
    worker = Deliverer(app.sessions, make_transport(app.settings), base_delay=30, max_delay=3600)
    for attempts, ceiling in [(1, 30), (2, 60), (3, 120), (4, 240), (8, 3600), (40, 3600)]:
        samples = [worker.backoff(attempts) for _ in range(200)]
        assert all(ceiling / 2 <= s <= ceiling for s in samples)
        assert len(set(samples)) > 150  # jitter: retries of rows that failed together spread


def test_rows_failing_together_come_back_at_growing_jittered_times(app: App, relay: Relay) -> None:
    ids = queue(app, 3)
    relay.mode = "451"
    clock = Clock()
    worker = deliverer(app, clock=clock, base_delay=30, max_delay=3600)
    delays: list[list[float]] = []
    for _ in range(4):
        worker.deliver_due()
        found = rows(app)
        delays.append(
            [(found[i].next_attempt_at - found[i].claimed_at).total_seconds() for i in ids]  # type: ignore[operator]
        )
        clock.offset += timedelta(hours=1)
    for attempt, batch in enumerate(delays, start=1):
        ceiling = 30 * 2 ** (attempt - 1)
        assert all(ceiling / 2 - 1 <= d <= ceiling + 1 for d in batch)
        assert len({round(d, 3) for d in batch}) == 3
    assert [max(b) for b in delays] == sorted(max(b) for b in delays)


# -- crash recovery and two workers --------------------------------------------------------


def test_a_row_left_sending_by_a_dead_worker_goes_again_after_its_lease(
    app: App, relay: Relay
) -> None:
    (row_id,) = queue(app)
    clock = Clock()
    worker = deliverer(app, clock=clock, lease=timedelta(seconds=60))
    with app.engine.connect() as conn:  # the worker claimed the row, then "died"
        [claim] = worker._claim_more(conn, iter([row_id]), 1, False)
    assert claim.row_id == row_id and rows(app)[row_id].status == "sending"
    assert worker.deliver_due() == []  # still leased: nobody else may send it
    assert worker.release_expired() == 0
    clock.offset = timedelta(seconds=61)
    [done] = worker.deliver_due()
    row = rows(app)[row_id]
    assert done.status == "sent" and row.attempts == 2 and row.status == "sent"
    assert relay.accepted_ids() == [row.message_id]


def test_two_workers_on_one_outbox_send_each_row_exactly_once(
    app: App, make_app: Callable[..., App], relay: Relay
) -> None:
    ids = queue(app, 120)
    other = make_app()
    assert not deliver_concurrently([deliverer(app), deliverer(other)])
    assert Counter(relay.accepted_ids()) == Counter(message_ids(app, ids))
    assert all(r.status == "sent" and r.attempts == 1 for r in rows(app).values())


# -- rate limit ----------------------------------------------------------------------------


def test_the_eleventh_automatic_reply_in_an_hour_is_held_and_staff_told_once(
    app: App, relay: Relay
) -> None:
    assert app.settings.outbound.max_automatic_per_recipient_per_hour == 10
    case_id = raise_case(app)  # one acknowledgement to PARTY already
    queue(app, 9, kind="auto_reply", case_id=case_id)
    held = queue(app, 3, kind="auto_reply", case_id=case_id)
    notices = queue(app, 2, kind="notice")  # notices are not automatic replies
    other = queue(app, 1, kind="auto_reply", to=("someone@else.example",))
    found = rows(app)
    assert [found[i].status for i in held] == ["held"] * 3
    assert "rate limit: 10 automatic mails" in str(found[held[0]].last_error)
    assert all(found[i].status == "pending" for i in notices + other)
    alerts = [r for r in found.values() if r.template == "staff_alert"]
    assert len(alerts) == 1 and alerts[0].recipients == [STAFF]
    assert "held" in alerts[0].subject
    deliverer(app).deliver_due()
    sent_to_party = [i for i in relay.accepted if i.rcpt_tos == (PARTY,)]
    assert len(sent_to_party) == 10 + 2
    assert all(rows(app)[i].status == "held" for i in held)
    with app.sessions() as session:
        assert (
            session.scalar(
                select(func.count()).select_from(Event).where(Event.kind == "acknowledgement_held")
            )
            == 3
        )
    # Staff look at the first one and decide it should go after all.
    with app.sessions.begin() as session:
        outbound.requeue(session, held[0], retry_for=timedelta(hours=1), actor="cli:staff")
    deliverer(app).deliver_due()
    assert rows(app)[held[0]].status == "sent"
    assert [rows(app)[i].status for i in held[1:]] == ["held", "held"]
    with app.sessions() as session:
        released = session.scalars(
            select(Event).where(Event.kind == "acknowledgement_released")
        ).all()
        assert [e.actor for e in released] == ["cli:staff"]
    with app.sessions.begin() as session, pytest.raises(ValueError, match="is sent"):
        outbound.requeue(session, held[0], retry_for=timedelta(hours=1), actor="cli:staff")


def test_automatic_replies_queued_in_one_transaction_count_before_they_are_written(
    app: App,
) -> None:
    """A loop inside one worker batch: the rows are still in memory when the limit is
    checked, and count all the same."""
    queued = queue(app, 12, kind="auto_reply")
    found = rows(app)
    assert [found[i].status for i in queued] == ["pending"] * 10 + ["held"] * 2
    alerts = [r for r in found.values() if r.template == "staff_alert"]
    assert len(alerts) == 1


def test_a_held_mail_released_earlier_in_the_transaction_counts_at_its_status_now(
    app: App,
) -> None:
    """A stored row changed in memory counts as it is now, not as last written."""
    first = queue(app, 10, kind="auto_reply")
    with app.sessions.begin() as session:
        rows_now = session.scalars(select(Outbox).where(Outbox.id.in_(first))).all()
        rows_now[0].status = "held"  # say, set aside earlier in this transaction
        again = outbound.enqueue(
            session,
            app.renderer,
            app.identity,
            template="acknowledgement",
            context=app.renderer.sample("acknowledgement"),
            to=[PARTY],
            case=None,
            kind="auto_reply",
            auto_submitted="auto-replied",
        )
        assert again.status == "pending"  # nine count; the held one does not


# -- the headers of what we send -----------------------------------------------------------


def test_an_automatic_reply_is_threaded_marked_and_answers_come_back_to_us(
    app: App, relay: Relay
) -> None:
    raise_case(app)
    deliverer(app).deliver_due()
    ack = next(i for i in relay.accepted if i.rcpt_tos == (PARTY,))
    notice = next(i for i in relay.accepted if i.rcpt_tos == (STAFF,))
    parsed = message_from_bytes(ack.data, policy=policy.default)
    assert parsed["From"].addresses[0].addr_spec == "cpsd@elexon.example"
    assert parsed["Reply-To"] == "cpsd@elexon.example"  # [gateway] mailboxes[0]
    assert parsed["In-Reply-To"] == "<m1@brightenergy.example>"
    assert parsed["References"] == "<m1@brightenergy.example>"
    assert parsed["Auto-Submitted"] == "auto-replied"
    assert parsed["X-Auto-Response-Suppress"] == "All"
    assert parsed["Date"].datetime.tzinfo is not None
    assert parsed["Message-ID"].startswith("<cpsd-000001.")
    assert parsed["Message-ID"].endswith("@elexon.example>")
    assert parsed["Subject"].startswith("[CPSD-000001] ")
    body = parsed.get_body(("plain",))
    assert body is not None and "CPSD reference: [CPSD-000001]" in body.get_content()
    staff = message_from_bytes(notice.data, policy=policy.default)
    assert staff["Auto-Submitted"] == "auto-generated"
    assert staff["Reply-To"] == "cpsd@elexon.example"


# -- TLS and AUTH --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("certs"))


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_tls_relay_certificate_is_checked_by_default(
    make_app: Callable[..., App],
    certificate: tuple[Path, Path, Path],
    security: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ca, cert, key = certificate
    context = server_context(cert, key)
    kwargs = {"tls": context} if security == "tls" else {"starttls": context}
    with Relay(**kwargs) as tls_relay:  # type: ignore[arg-type]
        untrusted = make_app(f'security = "{security}"\ntimeout_seconds = 5', tls_relay)
        (row_id,) = queue(untrusted)
        [result] = deliverer(untrusted).deliver_due()
        assert result.status == "pending"
        assert "CERTIFICATE_VERIFY_FAILED" in str(rows(untrusted)[row_id].last_error)
        assert tls_relay.accepted == []

        monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # our CA trusted: the check passes
        [result] = deliverer(untrusted, clock=lambda: utcnow() + timedelta(hours=1)).deliver_due()
        assert result.status == "sent"
        assert tls_relay.accepted_ids() == [rows(untrusted)[row_id].message_id]


def test_certificate_checks_can_be_turned_off_for_a_relay_on_localhost(
    make_app: Callable[..., App], certificate: tuple[Path, Path, Path]
) -> None:
    _, cert, key = certificate
    with Relay(starttls=server_context(cert, key)) as tls_relay:
        app = make_app('security = "starttls"\nverify_certificates = false', tls_relay)
        queue(app)
        assert [r.status for r in deliverer(app).deliver_due()] == ["sent"]


def test_auth_password_comes_from_the_environment_or_a_file(
    make_app: Callable[..., App],
    certificate: tuple[Path, Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ca, cert, key = certificate
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    with Relay(starttls=server_context(cert, key), logins={"cpsd": "s3cret"}) as auth_relay:
        monkeypatch.setenv("RELAY_PASSWORD", "s3cret")
        by_env = make_app(
            'security = "starttls"\nuser = "cpsd"\npassword_env = "RELAY_PASSWORD"', auth_relay
        )
        queue(by_env)
        assert [r.status for r in deliverer(by_env).deliver_due()] == ["sent"]
        (tmp_path / "wrong").write_text("not-it\n")
        by_file = make_app(
            f'security = "starttls"\nuser = "cpsd"\npassword_file = "{tmp_path / "wrong"}"',
            auth_relay,
        )
        (row_id,) = queue(by_file)
        assert [r.status for r in deliverer(by_file).deliver_due()] == ["pending"]
        assert "535" in str(rows(by_file)[row_id].last_error)  # a wrong password is retried
        assert set(auth_relay.auth_seen) == {"cpsd"}
        assert len(auth_relay.accepted) == 1


def test_envelope_addresses_with_line_breaks_never_reach_the_relay(relay: Relay) -> None:
    transport = SmtpTransport("127.0.0.1", relay.port, security="none", timeout=2)
    with pytest.raises(outbound.PermanentFailure, match="unsafe envelope"):
        transport.send("cpsd@elexon.example", ["a@x.example\r\nRCPT TO:<evil@x>"], b"x", 1)
    assert relay.received == []


def test_an_unreachable_relay_is_relay_unavailable_not_a_row_failure() -> None:
    port = free_port()  # nobody listens there
    transport = SmtpTransport("127.0.0.1", port, security="none", timeout=1)
    with pytest.raises(RelayUnavailable, match=re.escape(f"relay 127.0.0.1:{port}")):
        transport.send("cpsd@elexon.example", [PARTY], b"x", 1)


def test_settings_name_the_new_rate_limit_key(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text("[outbound]\nmax_automatic_per_recipient_per_hour = 3\n")
    assert load(path).outbound.max_automatic_per_recipient_per_hour == 3
