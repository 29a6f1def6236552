"""`serve` watches the shared mailbox: new mail becomes a case at once, outages heal by themselves.

A real `cpsd-gateway serve` in a subprocess, a real Dovecot on loopback; the tests only
append mail and stop or restart the server, then look at the database and the folders.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.dovecot import Dovecot, imap_block
from tests.e2e.conftest import db_count, party_mail, smtp_port
from tests.e2e.server import GatewayProcess, wait_for
from tests.support import free_port, settings_text

PROCESSED = "CPSD/Processed"


@contextmanager
def serving(config: Path) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(config, smtp_port(config)).start()
    try:
        yield gateway
    finally:
        assert gateway.stop() == 0, gateway.log.read_text()


def log_has(gateway: GatewayProcess, text: str, timeout: float = 10.0) -> bool:
    return bool(wait_for(lambda: text in gateway.log.read_text(), timeout=timeout))


def cases(config: Path) -> int:
    return db_count(config, "select count(*) from cases")


def test_a_message_appended_while_serving_becomes_a_case_within_two_seconds(
    dovecot: Dovecot, imap_config: Callable[..., Path]
) -> None:
    config = imap_config()
    with serving(config) as gateway:
        assert log_has(gateway, "ops: waiting for new mail in INBOX (IDLE)")
        started = time.monotonic()
        dovecot.append("INBOX", [party_mail(1)])
        assert wait_for(lambda: cases(config) == 1, timeout=2.0), gateway.log.read_text()
        elapsed = time.monotonic() - started
    assert elapsed < 2.0
    assert dovecot.count("INBOX") == 0
    assert dovecot.count(PROCESSED) == 1


def test_the_poller_recovers_by_itself_when_the_server_drops_it_mid_fetch(
    dovecot: Dovecot, imap_config: Callable[..., Path]
) -> None:
    # Big messages in big batches: each FETCH streams ~23 MB, long enough to be caught
    # in the act. The worker is off so the pass is mostly FETCH.
    config = imap_config(worker="enabled = false", extra="batch_size = 100")
    attachment = ("A" * 76 + "\n") * 3000  # ~230 KB each
    dovecot.append("INBOX", (party_mail(i, body=attachment) for i in range(300)))
    with serving(config) as gateway:
        # Dovecot's process title names the command it is serving: wait for a body FETCH
        # that is streaming to us, then stop the server under it and start it again.
        _, title = dovecot.wait_until_busy_with("bytes waiting")
        assert "UID FETCH" in title
        dovecot.restart()
        assert log_has(gateway, "ops: reconnected to", timeout=30), gateway.log.read_text()
        assert wait_for(lambda: dovecot.count("INBOX") == 0, timeout=30)
        dovecot.append("INBOX", [party_mail(1000)])
        assert wait_for(
            lambda: db_count(config, "select count(*) from messages") == 301, timeout=10
        ), gateway.log.read_text()
        assert wait_for(lambda: dovecot.count("INBOX") == 0, timeout=10)
        log = gateway.log.read_text()
    reasons = re.findall(r"ops: (.*); reconnecting in", log)
    assert reasons and "during FETCH BODY.PEEK[] INBOX" in reasons[0], log
    assert db_count(config, "select count(distinct content_key) from messages") == 301
    assert dovecot.count(PROCESSED) == 301
    assert dovecot.seen(PROCESSED) == 0


def test_a_server_that_stalls_mid_fetch_is_timed_out_and_read_again(
    dovecot: Dovecot, imap_config: Callable[..., Path]
) -> None:
    config = imap_config(worker="enabled = false", extra="batch_size = 100", timeout=2)
    attachment = ("B" * 76 + "\n") * 3000
    dovecot.append("INBOX", (party_mail(i, body=attachment) for i in range(200)))
    with serving(config) as gateway:
        pid, _ = dovecot.wait_until_busy_with("bytes waiting")
        os.kill(pid, signal.SIGSTOP)  # the server hangs mid-literal: no error, no data
        try:
            assert log_has(gateway, "timed out", timeout=15), gateway.log.read_text()
            assert wait_for(lambda: dovecot.count("INBOX") == 0, timeout=30)
        finally:
            os.kill(pid, signal.SIGKILL)
        log = gateway.log.read_text()
    assert re.search(r"ops: timed out .*during FETCH BODY\.PEEK\[\] INBOX", log), log
    assert db_count(config, "select count(distinct content_key) from messages") == 200
    assert db_count(config, "select count(*) from messages") == 200


def test_a_server_without_move_or_idle_is_polled_and_copy_expunge_is_used(
    tmp_path: Path,
) -> None:
    server = Dovecot(without=("MOVE", "IDLE")).start()
    try:
        config = tmp_path / "settings.toml"
        config.write_text(settings_text(tmp_path, free_port()) + imap_block(server, tmp_path))
        server.append("INBOX", [party_mail(0)])
        with serving(config) as gateway:
            assert log_has(gateway, "server has no IDLE; polling every 1 s")
            assert wait_for(lambda: cases(config) == 1, timeout=10)
            server.append("INBOX", [party_mail(1)])
            assert wait_for(lambda: cases(config) == 2, timeout=5), gateway.log.read_text()
            assert wait_for(lambda: server.count("INBOX") == 0, timeout=5)
        assert server.count(PROCESSED) == 2
        assert server.seen(PROCESSED) == 0
    finally:
        server.destroy()
