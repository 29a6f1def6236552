"""Outbound mail end to end: a real relay on loopback, a real SQLite file, the real CLI.

The relay (tests/relay.py) is an aiosmtpd server the test switches between answering
250, 451, 550, dropping the connection, or not running at all; it records every message
with its Message-ID, so "exactly once" and "at most twice, same Message-ID" are counted,
not assumed. Crash tests SIGKILL a real ``cpsd-gateway outbox flush`` process while the
relay sleeps inside DATA.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.app import App, build, make_transport
from gateway.outbound import Deliverer
from gateway.settings import load
from tests.e2e.desk import mail
from tests.e2e.server import cli, cli_json
from tests.relay import Relay, relay_settings
from tests.support import REPO, free_port, queue_sample_mail

PARTY = "ops@brightenergy.example"
STAFF = "servicedesk-team@elexon.example"
BODY = (
    "Summary: IF-041 rejected\nImpact: 200 customers\nMPAN: 1052601815905\n"
    "Evidence: DIP portal shows REJECTED\n"
)


@pytest.fixture
def relay() -> Iterator[Relay]:
    with Relay() as running:
        yield running


@pytest.fixture
def config(tmp_path: Path, relay: Relay) -> Path:
    return relay_settings(tmp_path, relay, outbound="timeout_seconds = 1")


def queue(config: Path, count: int, to: str = PARTY) -> list[str]:
    """Queue rows with outbound.enqueue into the gateway's own database; their Message-IDs."""
    app = build(load(config))
    try:
        return [row.message_id for row in queue_sample_mail(app, count, [to])]
    finally:
        app.close()


def outbox(config: Path, *args: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = cli_json(config, "outbox", "list", *args)
    return rows


def test_relay_down_for_a_while_during_200_sends_all_arrive_exactly_once(
    config: Path, relay: Relay
) -> None:
    """The serve delivery loop's shape, in a thread, with short backoff; the relay is down,
    then answers 451, then drops connections, then recovers."""
    app: App = build(load(config))
    worker = Deliverer(
        app.sessions,
        make_transport(app.settings),
        base_delay=0.05,
        max_delay=0.4,
        lease=timedelta(seconds=4),
        renderer=app.renderer,
        identity=app.identity,
    )
    stopping = threading.Event()
    errors: list[BaseException] = []

    def loop() -> None:
        try:
            while not stopping.is_set():
                if not worker.deliver_due():
                    stopping.wait(0.02)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    relay.stop()
    thread = threading.Thread(target=loop)
    thread.start()
    try:
        expected = queue(config, 50)
        time.sleep(0.8)  # connection refused
        relay.start()
        relay.mode = "451"
        expected += queue(config, 50)
        time.sleep(0.6)
        relay.mode = "drop"
        expected += queue(config, 50)
        time.sleep(0.6)
        relay.mode = "250"
        expected += queue(config, 50)
        assert relay.wait_until(lambda r: len(r.accepted) >= 200, timeout=60)
        time.sleep(0.3)  # anything extra would show up now
    finally:
        stopping.set()
        thread.join(30)
        app.close()
    assert not errors
    assert len(relay.received) > 200  # the relay really was failing in between
    counts = Counter(relay.accepted_ids())
    assert counts == Counter(expected)  # every row once, none twice, none lost
    rows = outbox(config, "--json")
    assert {r["status"] for r in rows} == {"sent"}
    assert max(r["attempts"] for r in rows) > 1


def test_flush_defers_while_the_relay_is_down_and_all_delivers_once_it_is_back(
    config: Path, relay: Relay
) -> None:
    expected = queue(config, 20)
    relay.stop()
    done = cli(config, "outbox", "flush", check=False)
    assert done.returncode == 1 and "0 sent, 20 not sent" in done.stdout
    rows = outbox(config, "--json")
    assert {(r["status"], r["attempts"]) for r in rows} == {("pending", 1)}
    assert "Connection refused" in rows[0]["last_error"]
    assert all("not tried" in r["last_error"] for r in rows[1:])
    relay.start()
    done = cli(config, "outbox", "flush")
    assert "0 sent, 0 not sent" in done.stdout  # backoff: nothing is due yet
    done = cli(config, "outbox", "flush", "--all")
    assert "20 sent, 0 not sent" in done.stdout
    assert Counter(relay.accepted_ids()) == Counter(expected)


def test_5xx_fails_the_row_alerts_staff_by_mail_and_retry_sends_it_again(
    config: Path, relay: Relay, tmp_path: Path
) -> None:
    eml = tmp_path / "new.eml"
    eml.write_bytes(mail(sender=PARTY, subject="IF-041 rejected", body=BODY))
    relay.mode = "550"
    cli(config, "ingest", str(eml))  # ingest delivers at once: the relay says 550
    rows = outbox(config, "--json")
    failed = [r for r in rows if r["status"] == "failed"]
    assert {r["template"] for r in failed} == {"acknowledgement", "staff_notice"}
    ack = next(r for r in failed if r["template"] == "acknowledgement")
    assert "550 5.7.1 Message refused by policy" in ack["last_error"]
    assert ack["recipients"] == [
        {"address": PARTY, "status": "failed", "reply": ack["recipients"][0]["reply"]}
    ]
    assert len(ack["template_version"]) == 16 and ack["kind"] == "auto_reply"
    assert set(ack) >= {
        "id", "status", "template", "template_version", "to", "subject", "message_id",
        "attempts", "last_error", "created_at", "sent_at",
    }  # fmt: skip
    alerts = [r for r in rows if r["template"] == "staff_alert"]
    assert len(alerts) == 2 and {r["status"] for r in alerts} == {"pending"}
    assert all(r["to"] == [STAFF] and r["kind"] == "alert" for r in alerts)
    story = cli_json(config, "case", "show", "CPSD-000001")
    failures = [e for e in story["events"] if e["kind"] == "acknowledgement_failed"]
    assert failures and "550 5.7.1" in failures[0]["detail"]

    relay.mode = "250"
    assert "2 sent, 0 not sent" in cli(config, "outbox", "flush").stdout
    told = [r for r in relay.accepted if r.rcpt_tos == (STAFF,)]
    assert len(told) == 2
    assert any(f"cpsd-gateway outbox retry {ack['id']}".encode() in r.data for r in told)

    done = cli(config, "outbox", "retry", str(ack["id"]))
    assert f"outbox row {ack['id']} queued again for {PARTY}" in done.stdout
    assert "1 sent, 0 not sent" in cli(config, "outbox", "flush").stdout
    assert relay.accepted_ids()[-1] == ack["message_id"]  # the same Message-ID, resent
    again = cli(config, "outbox", "retry", str(ack["id"]), check=False)
    assert again.returncode == 1 and "is sent, not failed" in again.stderr
    missing = cli(config, "outbox", "retry", "9999", check=False)
    assert missing.returncode == 1 and "no outbox row 9999" in missing.stderr
    text = cli(config, "outbox", "list", "--status", "sent").stdout
    assert f"acknowledgement@{ack['template_version'][:8]}" in text
    story = cli_json(config, "case", "show", "CPSD-000001")
    kinds = [e["kind"] for e in story["events"]]
    assert "acknowledgement_requeued" in kinds and "acknowledgement_delivered" in kinds


def test_sigkill_mid_send_loses_nothing_and_sends_at_most_once_more(
    tmp_path: Path, relay: Relay
) -> None:
    config = relay_settings(tmp_path, relay, outbound="timeout_seconds = 0.5")  # lease 3.5 s
    expected = queue(config, 30)
    relay.answer_delay = 0.2  # the relay takes each message, then sleeps before its 250
    for round_ in range(2):
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "outbox", "flush", "--all", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        target = len(relay.received) + 4
        assert relay.wait_until(lambda r, t=target: len(r.received) >= t, timeout=30)
        time.sleep(0.1)  # the 5th row is taken by the relay; its 250 is not yet sent
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
        rows = outbox(config, "--json")
        states = Counter(r["status"] for r in rows)
        # per kill: the row in SMTP and the one claimed ahead of it, both still leased
        assert states["sending"] <= 2 * (round_ + 1), (round_, states)
        assert states["sent"] + states["sending"] + states["pending"] == 30
    relay.answer_delay = 0.0
    cli(config, "outbox", "flush")  # the interrupted rows are still leased: not sent now
    assert any(r["status"] == "sending" for r in outbox(config, "--json"))
    time.sleep(3.7)  # lease = 7 x timeout_seconds
    cli(config, "outbox", "flush")
    rows = outbox(config, "--json")
    assert {r["status"] for r in rows} == {"sent"}
    counts = Counter(relay.accepted_ids())
    assert set(counts) == set(expected)  # none lost
    assert max(counts.values()) <= 2  # none sent more than twice
    twice = [m for m, n in counts.items() if n == 2]
    assert len(twice) == 2  # exactly the row the relay had taken at each kill
    for message_id in twice:
        copies = [r.data for r in relay.accepted if r.message_id == message_id]
        assert copies[0] == copies[1]  # the same stored bytes, the same Message-ID
        row = next(r for r in rows if r["message_id"] == message_id)
        assert row["attempts"] == 2


def test_backoff_between_attempts_grows_and_is_jittered(config: Path, relay: Relay) -> None:
    queue(config, 3)
    relay.mode = "451"
    waits: list[list[float]] = []
    for _ in range(3):
        cli(config, "outbox", "flush", "--all", check=False)
        rows = outbox(config, "--json")
        waits.append(
            [
                (
                    datetime.fromisoformat(r["next_attempt_at"].replace("Z", "+00:00"))
                    - datetime.fromisoformat(r["claimed_at"].replace("Z", "+00:00"))
                ).total_seconds()
                for r in rows
            ]
        )
    for attempt, batch in enumerate(waits, start=1):
        ceiling = 30 * 2 ** (attempt - 1)  # 30 s doubling, the upper half with jitter
        assert all(ceiling / 2 - 1 <= w <= ceiling + 1 for w in batch), (attempt, batch)
        assert len({round(w) for w in batch}) > 1 or len({w for w in batch}) == 3
    assert min(waits[2]) > max(waits[0])
    assert all("451 4.3.0" in r["last_error"] for r in outbox(config, "--json"))


# -- templates for admins -------------------------------------------------------------------


@pytest.fixture
def broken_templates(tmp_path: Path) -> Path:
    target = tmp_path / "templates"
    shutil.copytree(REPO / "templates", target)
    return target


def test_templates_list_preview_and_validate(config: Path, tmp_path: Path) -> None:
    listed = cli_json(config, "templates", "list")
    alert = next(t for t in listed if t["name"] == "staff_alert")
    assert alert["variables"] == ["alert", "case", "mail"]
    assert "mail.outbox_id" in alert["paths"] and len(alert["version"]) == 16
    assert "uses: case.priority" in cli(config, "templates", "list").stdout

    done = cli(config, "templates", "validate")
    assert "ok      staff_alert" in done.stdout and "FAILED" not in done.stdout

    preview = cli(config, "templates", "preview", "acknowledgement").stdout
    head, _, body = preview.partition("\n\n")
    assert "Subject: [CPSD-000123] DIP rejects IF-041 for our MPANs" in head
    assert "Reply-To: cpsd@elexon.example" in head
    assert "Message-ID: <cpsd-000123." in head and "Date: " in head
    assert "CPSD reference: [CPSD-000123]" in body

    eml = tmp_path / "new.eml"
    eml.write_bytes(mail(sender=PARTY, subject="Meter read rejected", body=BODY))
    cli(config, "ingest", str(eml), check=False)  # relay on: mails go out
    real = cli(config, "templates", "preview", "acknowledgement", "--case", "CPSD-000001").stdout
    assert "Subject: [CPSD-000001] Meter read rejected" in real
    assert f"To: {PARTY}" in real and "Hello Bright Energy Supply" in real

    assert cli(config, "templates", "preview", "nope", check=False).returncode == 1
    missing = cli(
        config, "templates", "preview", "acknowledgement", "--case", "CPSD-999999", check=False
    )
    assert missing.returncode == 1 and "no case CPSD-999999" in missing.stderr


@pytest.mark.parametrize(
    ("part", "text", "line", "problem"),
    [
        ("txt", "Hello\n\n{{ case.no_such_key }}\n", 3, "UndefinedError"),
        ("html", "<p>\n{{ ''.__class__ }}</p>\n", 2, "SecurityError"),
        ("subject", "{{ 'a' * 10**8 }}", 1, "SecurityError"),
    ],
)
def test_a_broken_template_fails_validate_and_serve_refuses_to_start(
    tmp_path: Path,
    relay: Relay,
    broken_templates: Path,
    part: str,
    text: str,
    line: int,
    problem: str,
) -> None:
    (broken_templates / f"acknowledgement.{part}.j2").write_text(text)
    config = relay_settings(tmp_path, relay, templates=broken_templates)
    done = cli(config, "templates", "validate", check=False)
    assert done.returncode == 1
    where = f"{broken_templates}/acknowledgement.{part}.j2:{line}: "
    failed = [ln for ln in done.stdout.splitlines() if ln.startswith("FAILED")]
    assert len(failed) == 1 and where in failed[0] and problem in failed[0]
    assert re.search(r"^1 of \d+ templates do not validate$", done.stderr.strip())

    serve = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert serve.returncode == 2
    lines = serve.stderr.strip().splitlines()
    assert len(lines) == 1 and "not starting, a template does not validate" in lines[0]
    assert where in lines[0]


def test_serve_starts_with_valid_templates_and_delivers_through_the_relay(
    tmp_path: Path, relay: Relay
) -> None:
    from tests.e2e.server import GatewayProcess

    port = free_port()
    config = relay_settings(tmp_path, relay, smtp_port=port)
    gateway = GatewayProcess(config, port).start()
    try:
        expected = queue(config, 3)
        import smtplib

        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:  # wakes nothing; a real mail
            client.sendmail(
                PARTY, ["cpsd@elexon.example"], mail(sender=PARTY, subject="IF-041", body=BODY)
            )
        assert relay.wait_until(lambda r: len(r.accepted) >= 5, timeout=30)
    finally:
        assert gateway.stop() == 0
    ids = relay.accepted_ids()
    assert set(expected) <= set(ids) and len(ids) == len(set(ids)) == 5
    assert json.loads(json.dumps(outbox(config, "--json")))[0]["status"] == "sent"
