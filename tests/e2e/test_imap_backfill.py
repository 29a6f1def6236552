"""A party's desk has been writing to the shared mailbox for weeks: the gateway reads it all.

Every story runs against a real Dovecot on loopback. The promises: each message becomes
exactly one message row (and one case), nothing is left behind in the inbox, fetching
never marks mail read, and a crash or a restored folder never makes anything twice.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

from tests.dovecot import Dovecot
from tests.e2e.conftest import db_count, party_mail
from tests.e2e.server import cli, cli_json, wait_for

PROCESSED = "CPSD/Processed"
QUARANTINE = "CPSD/Quarantine"


def poll_once(config: Path) -> dict[str, int]:
    (result,) = cli_json(config, "poll", "--once")
    assert result["error"] is None, result["error"]
    return {k: result[k] for k in ("imported", "duplicates", "quarantined", "failed")}


def test_a_thousand_messages_are_imported_exactly_once(
    dovecot: Dovecot, imap_config: Callable[..., Path]
) -> None:
    config = imap_config()
    dovecot.append("INBOX", (party_mail(i) for i in range(1000)))

    done = cli(config, "poll", "--once")
    assert done.stdout.strip() == "ops: 1000 imported, 0 duplicates, 0 quarantined, 0 failed"
    assert poll_once(config) == {"imported": 0, "duplicates": 0, "quarantined": 0, "failed": 0}

    assert db_count(config, "select count(*) from messages") == 1000
    assert db_count(config, "select count(distinct case_id) from messages") == 1000
    assert db_count(config, "select count(*) from cases") == 1000
    assert dovecot.count("INBOX") == 0
    assert dovecot.count(PROCESSED) == 1000
    assert dovecot.seen(PROCESSED) == 0, "BODY.PEEK[] must never mark mail read"
    # Not a terminal here: progress came as plain log lines, not a bar.
    assert "ops/INBOX: 1000/1000 messages" in done.stderr
    assert "\r" not in done.stderr


def test_a_back_fill_on_a_terminal_shows_a_progress_bar(
    dovecot: Dovecot, imap_config: Callable[..., Path]
) -> None:
    config = imap_config(worker="enabled = false")
    dovecot.append("INBOX", (party_mail(i) for i in range(200)))
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "poll", "--once", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=slave,
    )
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the last writer closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert stdout.decode().strip() == "ops: 200 imported, 0 duplicates, 0 quarantined, 0 failed"
    text = seen.decode("utf-8", "replace")
    assert "ops/INBOX: 100%|" in text and "200/200" in text and "msg/s" in text, text


def test_a_gateway_killed_mid_pass_imports_everything_once_after_restart(
    dovecot: Dovecot, imap_config: Callable[..., Path]
) -> None:
    config = imap_config(extra="batch_size = 10")
    dovecot.append("INBOX", (party_mail(i) for i in range(300)))

    first = subprocess.Popen(
        [sys.executable, "-m", "gateway", "poll", "--once", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for(
            lambda: db_count(config, "select count(*) from messages") >= 40, timeout=60
        ), "the first pass imported nothing"
        first.send_signal(signal.SIGKILL)
    finally:
        first.wait(10)
    at_kill = db_count(config, "select count(*) from messages")
    left = dovecot.count("INBOX")
    assert 0 < at_kill < 300 and left > 0, "the kill came too late to prove anything"

    result = poll_once(config)
    assert result["imported"] + result["duplicates"] + result["quarantined"] >= left

    assert db_count(config, "select count(*) from messages") == 300
    assert db_count(config, "select count(*) from cases") == 300
    assert db_count(config, "select count(*) from messages where status = 'received'") == 0
    assert dovecot.count("INBOX") == 0
    assert dovecot.count(PROCESSED) == 300
    assert poll_once(config)["imported"] == 0


def test_a_restored_folder_with_a_new_uidvalidity_imports_nothing_twice(
    dovecot: Dovecot, imap_config: Callable[..., Path]
) -> None:
    folder = "Shared/CPSD"
    config = imap_config(folder=folder)
    originals = [party_mail(i) for i in range(20)]
    dovecot.append(folder, originals)
    assert poll_once(config)["imported"] == 20
    client = dovecot.client()
    before = client.folder_status(folder, [b"UIDVALIDITY"])[b"UIDVALIDITY"]
    client.delete_folder(folder)  # the mailbox is recreated from last night's backup
    client.logout()
    dovecot.append(folder, [*originals, party_mail(20)])
    client = dovecot.client()
    after = client.folder_status(folder, [b"UIDVALIDITY"])[b"UIDVALIDITY"]
    client.logout()
    assert after != before

    done = cli(config, "poll", "--once", "--json")
    assert json.loads(done.stdout)[0]["imported"] == 1
    assert json.loads(done.stdout)[0]["duplicates"] == 20
    assert f"UIDVALIDITY of {folder} changed" in done.stderr
    assert "resync" in done.stderr
    assert db_count(config, "select count(*) from messages") == 21
    assert db_count(config, "select count(*) from cases") == 21
    assert dovecot.count(folder) == 0
    assert poll_once(config)["imported"] == 0


def test_a_stranger_is_moved_to_quarantine_and_a_huge_message_stays_for_a_person(
    dovecot: Dovecot, imap_config: Callable[..., Path]
) -> None:
    config = imap_config(smtp="max_message_bytes = 2048")  # cap: twice that
    stranger = party_mail(1, sender="someone@unknown-company.example")
    huge = party_mail(2, body="Summary: logs attached\n" + ("x" * 76 + "\n") * 80)
    dovecot.append("INBOX", [party_mail(0), stranger, huge])

    started = time.monotonic()
    result = poll_once(config)
    assert result == {"imported": 1, "duplicates": 0, "quarantined": 1, "failed": 1}
    assert time.monotonic() - started < 30
    assert dovecot.count(PROCESSED) == 1
    assert [b"someone@unknown-company.example" in m for m in dovecot.messages(QUARANTINE)] == [True]
    assert dovecot.count("INBOX") == 1  # left where a person will see it, never half-read
    assert dovecot.seen("INBOX") == 0  # not even read once
    quarantined = cli_json(config, "quarantine", "list")
    assert [q["from"] for q in quarantined] == ["someone@unknown-company.example"]
