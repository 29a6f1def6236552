"""Microsoft 365 shared mailboxes take XOAUTH2 only: the token comes from a file or a command.

Dovecot 2.3 cannot validate a real Microsoft token offline, so the test Dovecot checks
the bearer token against its passwd-file (tests/dovecot.py). That proves what is ours:
the XOAUTH2 exchange, reading the token fresh for every connection, a plain message when
the server rejects it, backoff, and that the other mailboxes carry on meanwhile.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dovecot import Dovecot, imap_block
from tests.e2e.conftest import db_count, party_mail, smtp_port
from tests.e2e.server import GatewayProcess, cli, wait_for
from tests.support import free_port, settings_text

TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.test-access-token"


@pytest.fixture
def m365() -> Iterator[Dovecot]:
    server = Dovecot(xoauth2_token=TOKEN).start()
    try:
        yield server
    finally:
        server.destroy()


def write_config(tmp: Path, *blocks: str) -> Path:
    path = tmp / "settings.toml"
    path.write_text(settings_text(tmp, free_port()) + "".join(blocks))
    return path


def test_a_token_from_a_file_opens_the_shared_mailbox(m365: Dovecot, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    config = write_config(
        tmp_path, imap_block(m365, tmp_path, secret=f'oauth2_token_file = "{token}"')
    )
    m365.append("INBOX", [party_mail(1)])
    done = cli(config, "poll", "--once")
    assert done.stdout.strip() == "ops: 1 imported, 0 duplicates, 0 quarantined, 0 failed"
    assert "method=XOAUTH2" in m365.log()


def test_a_rejected_token_is_reported_plainly(m365: Dovecot, tmp_path: Path) -> None:
    command = shlex.join([sys.executable, "-c", "print('an-expired-token')"])
    config = write_config(
        tmp_path, imap_block(m365, tmp_path, secret=f"oauth2_token_command = {json.dumps(command)}")
    )
    done = cli(config, "poll", "--once", check=False)
    assert done.returncode == 1
    assert "ops: 127.0.0.1 rejected the XOAUTH2 token for gwtest" in done.stderr
    assert "Traceback" not in done.stderr

    failing = shlex.join([sys.executable, "-c", "import sys; sys.exit('az: please run az login')"])
    config = write_config(
        tmp_path, imap_block(m365, tmp_path, secret=f"oauth2_token_command = {json.dumps(failing)}")
    )
    done = cli(config, "poll", "--once", check=False)
    assert done.returncode == 1
    assert "oauth2_token_command exited 1: az: please run az login" in done.stderr


def test_a_rejected_token_backs_off_while_the_other_mailbox_keeps_working(
    m365: Dovecot, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("expired\n")
    shared = imap_block(
        m365,
        tmp_path,
        name="m365",
        folder="Elsewhere",
        secret=f'oauth2_token_file = "{token}"',
    )
    m365.append("Elsewhere", [])
    config = write_config(tmp_path, imap_block(m365, tmp_path, name="ops"), shared)
    gateway = GatewayProcess(config, smtp_port(config)).start()
    try:
        assert wait_for(lambda: "m365: 127.0.0.1 rejected" in gateway.log.read_text(), 10)
        m365.append("INBOX", [party_mail(1)])
        assert wait_for(lambda: db_count(config, "select count(*) from cases") == 1, 5)
        assert wait_for(lambda: "(attempt 2)" in gateway.log.read_text(), 20)

        token.write_text(TOKEN + "\n")  # the sidecar refreshed the token: picked up by itself
        assert wait_for(lambda: "m365: reconnected to" in gateway.log.read_text(), 30)
        log = gateway.log.read_text()
    finally:
        assert gateway.stop() == 0
    delays = [float(d) for d in re.findall(r"m365: .*; reconnecting in ([\d.]+) s", log)]
    assert len(delays) >= 2
    assert all(0 <= d <= 300 for d in delays)
    assert "Traceback" not in log
    assert "ops: connected to" in log
