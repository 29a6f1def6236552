"""The shared mailbox over TLS: implicit TLS and STARTTLS, certificates checked by default.

The test Dovecot presents a self-signed certificate for 127.0.0.1 (tests/dovecot.py), as
a server with a private or broken certificate would. With checks on (the default) the
gateway refuses it and says why, and the mail stays on the server; with
`verify_certificates = false` for that mailbox it reads the mail over the encrypted
connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dovecot import Dovecot, imap_block
from tests.e2e.conftest import db_count, party_mail
from tests.e2e.server import cli
from tests.support import free_port, settings_text


@pytest.fixture
def tls_dovecot() -> Iterator[Dovecot]:
    server = Dovecot(tls=True).start()
    try:
        yield server
    finally:
        server.destroy()


def tls_config(tmp: Path, server: Dovecot, security: str, verify: bool | None) -> Path:
    block = imap_block(server, tmp).replace('security = "none"', f'security = "{security}"')
    if security == "tls":
        block = block.replace(f"port = {server.port}\n", f"port = {server.tls_port}\n")
    if verify is not None:
        block += f"verify_certificates = {'true' if verify else 'false'}\n"
    path = tmp / "settings.toml"
    path.write_text(settings_text(tmp, free_port()) + block)
    return path


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_mail_is_read_over_tls_when_the_mailbox_trusts_the_server(
    tls_dovecot: Dovecot, tmp_path: Path, security: str
) -> None:
    tls_dovecot.append("INBOX", [party_mail(0), party_mail(1)])
    config = tls_config(tmp_path, tls_dovecot, security, verify=False)
    done = cli(config, "poll", "--once")
    assert done.stdout.strip() == "ops: 2 imported, 0 duplicates, 0 quarantined, 0 failed"
    assert tls_dovecot.count("INBOX") == 0
    assert db_count(config, "select count(*) from messages") == 2
    # Dovecot logged the gateway's login as encrypted ("TLS"; the test's own plaintext
    # APPEND login over loopback is logged as "secured" only).
    logins = [line for line in tls_dovecot.log().splitlines() if "Login: user=<" in line]
    assert sum("TLS" in line for line in logins) == 1


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_an_untrusted_certificate_is_refused_by_default_and_nothing_is_read(
    tls_dovecot: Dovecot, tmp_path: Path, security: str
) -> None:
    tls_dovecot.append("INBOX", [party_mail(0)])
    config = tls_config(tmp_path, tls_dovecot, security, verify=None)  # the default
    done = cli(config, "poll", "--once", check=False)
    assert done.returncode == 1
    assert "ops: TLS certificate not accepted: self-signed certificate" in done.stderr
    assert tls_dovecot.count("INBOX") == 1
    assert db_count(config, "select count(*) from messages") == 0
