"""A party emails a case to the shared mailbox; the desk logs it and acknowledges it."""

from __future__ import annotations

import shutil
import signal
import smtplib
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from gateway.settings import WorkerSettings
from tests.e2e.conftest import db_count
from tests.e2e.server import GatewayProcess, cli, cli_json, wait_for
from tests.support import alive, free_port, settings_text, wait_until


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(settings_text(tmp_path, free_port()))
    return path


def _smtp_config(tmp_path: Path, line: str) -> tuple[Path, int]:
    """The tests' settings with one more line in [smtp]; the file and the port."""
    config = tmp_path / "settings.toml"
    port = free_port()
    listen = f'listen = "127.0.0.1:{port}"'
    config.write_text(settings_text(tmp_path, port).replace(listen, f"{listen}\n{line}"))
    return config, port


def _port(config: Path) -> int:
    text = config.read_text()
    return int(text.split('listen = "127.0.0.1:', 1)[1].split('"', 1)[0])


@pytest.fixture
def gateway(config: Path) -> Iterator[GatewayProcess]:
    process = GatewayProcess(config, _port(config)).start()
    yield process
    process.stop()


def _send(
    port: int, raw: bytes, sender: str = "ops@brightenergy.example", to: str = "cpsd@elexon.example"
) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail(sender, [to], raw)


def _outbox(config: Path, to: str = "ops@brightenergy.example") -> list[Path]:
    """Mail the gateway wrote, to one recipient (staff get their own notices too)."""
    found = []
    for path in sorted((config.parent / "var" / "outbox").glob("*.eml")):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        if message["To"] == to:
            found.append(path)
    return found


def test_a_case_goes_in_and_a_case_and_acknowledgement_come_out(
    gateway: GatewayProcess, config: Path, make_mail: Callable[..., bytes]
) -> None:
    started = time.monotonic()
    _send(gateway.port, make_mail())
    acks = wait_for(lambda: _outbox(config), timeout=2.0)
    elapsed = time.monotonic() - started
    assert acks, "no acknowledgement within 2 seconds"
    assert elapsed < 2.0

    cases = cli_json(config, "cases", "list")
    assert [c["reference"] for c in cases] == ["CPSD-000001"]
    assert cases[0]["raised_by"] == "BRIGHTSUP"
    assert cases[0]["state"] == "raised"

    ack = message_from_bytes(acks[0].read_bytes(), policy=policy.default)
    assert "[CPSD-000001]" in ack["Subject"]
    assert ack["To"] == "ops@brightenergy.example"
    assert ack["In-Reply-To"] == "<m1@brightenergy.example>"
    assert "<m1@brightenergy.example>" in ack["References"]
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["Message-ID"].endswith("@elexon.example>")
    assert ack.get_content_type() == "multipart/alternative"

    def delivered() -> dict | None:
        shown = cli_json(config, "case", "show", "CPSD-000001")
        kinds = [e["kind"] for e in shown["events"]]
        done = {"acknowledgement_delivered", "staff_notice_delivered"} <= set(kinds)
        return shown if done else None

    shown = wait_for(delivered, timeout=5)
    assert shown, "acknowledgement was never marked delivered"
    kinds = [e["kind"] for e in shown["events"] if not e["kind"].startswith("staff_notice")]
    assert kinds == [
        "message_received",
        "case_raised",
        "acknowledgement_queued",
        "acknowledgement_delivered",
    ]
    outgoing = [m for m in shown["messages"] if m["direction"] == "out"]
    assert [m["message_id"] for m in outgoing if m["template"] == "acknowledgement"] == [
        ack["Message-ID"]
    ]
    # Elexon's desk is told too, in a mail it can answer with commands.
    assert len(_outbox(config, "servicedesk-team@elexon.example")) == 1
    text = cli(config, "case", "show", "CPSD-000001").stdout
    assert "acknowledgement_delivered" in text and "CPSD-000001" in text


def test_unknown_recipient_gets_550(
    gateway: GatewayProcess, make_mail: Callable[..., bytes]
) -> None:
    with smtplib.SMTP("127.0.0.1", gateway.port, timeout=10) as client:
        client.ehlo()
        client.mail("ops@brightenergy.example")
        code, _ = client.rcpt("someone@elexon.example")
        assert code == 550
        code, _ = client.rcpt("cpsd@elexon.example")
        assert code == 250


@pytest.mark.parametrize("argument", ['"', "<", "<@"])
def test_an_address_the_parser_chokes_on_is_a_syntax_error_not_a_retry(
    gateway: GatewayProcess, argument: str
) -> None:
    with smtplib.SMTP("127.0.0.1", gateway.port, timeout=10) as client:
        client.ehlo()
        code, _ = client.docmd(f"MAIL FROM:{argument}")
        assert code == 553  # malformed address; stock aiosmtpd crashes in the parser: 451
        assert client.mail("ops@brightenergy.example")[0] == 250  # the session goes on


def test_oversized_message_gets_552_and_advertises_size(
    tmp_path: Path, make_mail: Callable[..., bytes]
) -> None:
    config, port = _smtp_config(tmp_path, "max_message_bytes = 20000")
    process = GatewayProcess(config, port).start()
    try:
        big = make_mail(body=("y" * 70 + "\n") * 500)
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.ehlo()
            assert client.esmtp_features.get("size") == "20000"
            # Declared size: refused at MAIL FROM.
            with pytest.raises(smtplib.SMTPSenderRefused) as declared:
                client.sendmail("ops@brightenergy.example", ["cpsd@elexon.example"], big)
            assert declared.value.smtp_code == 552
            # Undeclared size: refused after the final dot.
            client.rset()
            assert client.mail("ops@brightenergy.example")[0] == 250
            assert client.rcpt("cpsd@elexon.example")[0] == 250
            code, _ = client.data(big)
            assert code == 552
    finally:
        assert process.stop() == 0
    assert cli_json(config, "cases", "list") == []


def test_a_disk_without_room_for_the_message_gets_452_at_mail_from(
    tmp_path: Path, make_mail: Callable[..., bytes]
) -> None:
    # F7: the disk under the database cannot keep the reserve (no disk here has an
    # exabyte free). The sender hears 452 before it sends a byte of DATA and keeps the
    # message for later; nothing half-stored, and the session itself goes on.
    config, port = _smtp_config(tmp_path, f"min_free_bytes = {10**18}")
    process = GatewayProcess(config, port).start()
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            with pytest.raises(smtplib.SMTPSenderRefused) as refused:
                client.sendmail("ops@brightenergy.example", ["cpsd@elexon.example"], make_mail())
            assert refused.value.smtp_code == 452
            assert b"4.3.1" in refused.value.smtp_error
            assert client.noop()[0] == 250
    finally:
        assert process.stop() == 0
    assert "bytes free" in process.log.read_text()
    assert db_count(config, "select count(*) from messages") == 0


def test_past_max_sessions_a_new_connection_gets_421_until_one_closes(
    tmp_path: Path, make_mail: Callable[..., bytes]
) -> None:
    config, port = _smtp_config(tmp_path, "max_sessions = 2")
    process = GatewayProcess(config, port).start()
    try:
        first = smtplib.SMTP("127.0.0.1", port, timeout=10)
        second = smtplib.SMTP("127.0.0.1", port, timeout=10)
        assert first.ehlo()[0] == 250 and second.ehlo()[0] == 250
        with pytest.raises(smtplib.SMTPConnectError) as busy:
            smtplib.SMTP("127.0.0.1", port, timeout=10)
        assert busy.value.smtp_code == 421
        # The two sessions open carry on; once one ends, a new sender gets in.
        first.sendmail("ops@brightenergy.example", ["cpsd@elexon.example"], make_mail())
        first.quit()
        second.quit()
        third = wait_for(lambda: _connects(port))
        assert third is not None
        third.quit()
        # The message the first session sent was stored; the worker makes it a case.
        assert wait_for(lambda: _outbox(config), timeout=10)
    finally:
        assert process.stop() == 0
    assert len(cli_json(config, "cases", "list")) == 1


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _connects(port: int) -> smtplib.SMTP | None:
    try:
        return smtplib.SMTP("127.0.0.1", port, timeout=10)
    except smtplib.SMTPConnectError:
        return None


def test_locked_database_gets_451_then_the_retry_is_stored(
    tmp_path: Path, make_mail: Callable[..., bytes]
) -> None:
    port = free_port()
    config = tmp_path / "settings.toml"
    config.write_text(
        settings_text(tmp_path, port).replace("[storage]", "busy_timeout_ms = 300\n\n[storage]")
    )
    process = GatewayProcess(config, port).start()
    try:
        blocker = sqlite3.connect(config.parent / "var" / "gateway.db", isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(smtplib.SMTPDataError) as caught:
                _send(port, make_mail())
            assert caught.value.smtp_code == 451
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        _send(port, make_mail())  # the sender's MTA retries: now it is stored
        assert wait_for(lambda: _outbox(config), timeout=5)
    finally:
        assert process.stop() == 0
    assert len(cli_json(config, "cases", "list")) == 1


def test_unwritable_raw_store_gets_451(tmp_path: Path, make_mail: Callable[..., bytes]) -> None:
    port = free_port()
    config = tmp_path / "settings.toml"
    config.write_text(
        settings_text(tmp_path, port).replace("[storage]", '[storage]\nbackend = "directory"')
    )
    gateway = GatewayProcess(config, port).start()
    raw_dir = config.parent / "var" / "raw"
    shutil.rmtree(raw_dir, ignore_errors=True)
    raw_dir.parent.mkdir(parents=True, exist_ok=True)
    raw_dir.write_text("not a directory: every write below it fails, as on a broken disk")
    with pytest.raises(smtplib.SMTPDataError) as caught:
        _send(gateway.port, make_mail())
    assert caught.value.smtp_code == 451
    raw_dir.unlink()
    assert gateway.stop() == 0
    assert cli_json(config, "cases", "list") == []


def test_the_same_message_twice_gives_one_case(
    gateway: GatewayProcess, config: Path, make_mail: Callable[..., bytes]
) -> None:
    raw = make_mail()
    _send(gateway.port, raw)
    _send(gateway.port, raw)
    assert wait_for(lambda: _outbox(config), timeout=3)
    time.sleep(0.5)
    assert len(cli_json(config, "cases", "list")) == 1
    assert len(_outbox(config)) == 1


def test_sigkill_after_accept_loses_nothing_and_doubles_nothing(
    tmp_path: Path, make_mail: Callable[..., bytes]
) -> None:
    port = free_port()
    config = tmp_path / "settings.toml"
    # First life: an ingest-only node (worker off), so the kill lands after accept and
    # before processing.
    config.write_text(settings_text(tmp_path, port, "enabled = false\n"))
    first = GatewayProcess(config, port).start()
    _send(port, make_mail())
    first.kill()
    assert cli_json(config, "cases", "list") == []

    config.write_text(settings_text(tmp_path, port))
    second = GatewayProcess(config, port).start()
    try:
        assert wait_for(lambda: _outbox(config), timeout=5)
        time.sleep(0.5)
    finally:
        assert second.stop() == 0
    cases = cli_json(config, "cases", "list")
    assert [c["reference"] for c in cases] == ["CPSD-000001"]
    assert len(_outbox(config)) == 1


def test_sigkill_in_the_middle_of_data_leaves_nothing_and_the_resend_is_one_case(
    tmp_path: Path, make_mail: Callable[..., bytes]
) -> None:
    # F1: the gateway dies with half of a large DATA on the wire. The client sees the
    # connection drop and no 250; nothing half-stored shows; its MTA sends again.
    port = free_port()
    config = tmp_path / "settings.toml"
    config.write_text(settings_text(tmp_path, port))
    first = GatewayProcess(config, port).start()
    raw = make_mail(body="Evidence follows.\n" + "DIP status line, all REJECTED\n" * 200_000)
    wire = socket.create_connection(("127.0.0.1", port), timeout=10)
    reply = wire.makefile("rb")
    assert reply.readline().startswith(b"220")
    for command in (b"EHLO mta.brightenergy.example", b"MAIL FROM:<ops@brightenergy.example>",
                    b"RCPT TO:<cpsd@elexon.example>", b"DATA"):  # fmt: skip
        wire.sendall(command + b"\r\n")
        while (line := reply.readline())[3:4] == b"-":
            pass
    assert line.startswith(b"354")
    wire.sendall(raw[: len(raw) // 2])
    first.kill()
    try:
        answer = reply.readline()
    except ConnectionResetError:
        answer = b""
    assert answer == b""  # the line closed or reset, never a 250
    wire.close()
    assert db_count(config, "SELECT count(*) FROM messages") == 0

    second = GatewayProcess(config, port).start()
    try:
        _send(port, raw)
        assert wait_for(lambda: _outbox(config), timeout=5)
        time.sleep(0.5)
    finally:
        assert second.stop() == 0
    assert [c["reference"] for c in cli_json(config, "cases", "list")] == ["CPSD-000001"]
    assert db_count(config, "SELECT count(*) FROM messages") == 1
    assert len(_outbox(config)) == 1


def test_sigterm_exits_0(gateway: GatewayProcess) -> None:
    assert gateway.stop() == 0


def test_with_the_shipped_preparing_process_a_case_is_acknowledged_and_sigterm_ends_all(
    tmp_path: Path, make_mail: Callable[..., bytes]
) -> None:
    """The shipped settings parse in a child process: the story is the same, and no
    process outlives `serve`."""
    port = free_port()
    config = tmp_path / "settings.toml"
    shipped = WorkerSettings().prepare_processes
    assert shipped >= 1
    config.write_text(settings_text(tmp_path, port, f"prepare_processes = {shipped}"))
    gateway = GatewayProcess(config, port).start()
    try:
        assert gateway.proc is not None
        _send(port, make_mail())
        started = time.monotonic()
        assert wait_for(lambda: _outbox(config), timeout=2.0), "no acknowledgement in 2 s"
        assert time.monotonic() - started < 2.0
        children = _children(gateway.proc.pid)
        assert len(children) >= 2  # the accepting process and the preparing one(s)
    finally:
        assert gateway.stop() == 0
    assert wait_until(lambda: not any(alive(pid) for pid in children))
    assert [c["reference"] for c in cli_json(config, "cases", "list")] == ["CPSD-000001"]


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_sigterm_finishes_a_message_coming_in_and_tells_idle_sessions_421(
    gateway: GatewayProcess, config: Path, make_mail: Callable[..., bytes]
) -> None:
    idle = smtplib.SMTP("127.0.0.1", gateway.port, timeout=10)
    assert idle.ehlo()[0] == 250
    sending = socket.create_connection(("127.0.0.1", gateway.port), timeout=10)
    reply = sending.makefile("rb")
    assert reply.readline().startswith(b"220")
    for command in (b"EHLO party.example", b"MAIL FROM:<ops@brightenergy.example>",
                    b"RCPT TO:<cpsd@elexon.example>", b"DATA"):  # fmt: skip
        sending.sendall(command + b"\r\n")
        while (line := reply.readline())[3:4] == b"-":  # EHLO's continuation lines
            pass
    assert line.startswith(b"354")
    raw = make_mail()
    sending.sendall(raw[: len(raw) // 2])  # half the message is on the wire...
    assert gateway.proc is not None
    gateway.proc.send_signal(signal.SIGTERM)
    assert wait_for(lambda: not _listening(gateway.port), timeout=10)  # no new sessions
    # ...the idle session is told to come back later...
    assert idle.noop()[0] == 421
    time.sleep(0.3)
    # ...and the rest of the message still arrives, and is stored before the 250.
    sending.sendall(raw[len(raw) // 2 :] + b"\r\n.\r\n")
    assert reply.readline().startswith(b"250 2.0.0 Stored as")
    assert reply.readline().startswith(b"421")  # then that session is closed too
    sending.close()
    assert gateway.proc.wait(30) == 0
    # Stored: the next start processes it if this one stopped first.
    assert db_count(config, "SELECT count(*) FROM messages") == 1
