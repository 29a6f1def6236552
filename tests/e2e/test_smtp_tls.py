"""A party's MTA delivers over STARTTLS; where TLS is required, nothing goes in the clear."""

from __future__ import annotations

import smtplib
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import db_count
from tests.e2e.server import GatewayProcess, cli_json, wait_for
from tests.relay import make_certificate
from tests.support import free_port, settings_text


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(ca, cert, key): a throwaway CA and a certificate for 127.0.0.1 signed by it."""
    return make_certificate(tmp_path_factory.mktemp("tls"))


def _config(tmp_path: Path, lines: str) -> tuple[Path, int]:
    port = free_port()
    listen = f'listen = "127.0.0.1:{port}"'
    config = tmp_path / "settings.toml"
    config.write_text(settings_text(tmp_path, port).replace(listen, f"{listen}\n{lines}"))
    return config, port


@pytest.fixture
def tls_gateway(tmp_path: Path, certificate: tuple[Path, Path, Path]) -> Iterator[GatewayProcess]:
    _, cert, key = certificate
    config, port = _config(
        tmp_path,
        f'tls_certificate_file = "{cert}"\ntls_key_file = "{key}"\nrequire_tls = true',
    )
    process = GatewayProcess(config, port).start()
    yield process
    assert process.stop() == 0


def test_a_case_sent_over_starttls_is_raised_and_acknowledged(
    tls_gateway: GatewayProcess,
    certificate: tuple[Path, Path, Path],
    make_mail: Callable[..., bytes],
) -> None:
    ca, _, _ = certificate
    trusting = ssl.create_default_context(cafile=str(ca))
    with smtplib.SMTP("127.0.0.1", tls_gateway.port, timeout=10) as client:
        client.ehlo("mta.brightenergy.example")
        assert client.has_extn("starttls")
        client.starttls(context=trusting)  # the certificate checks out against our CA
        assert isinstance(client.sock, ssl.SSLSocket)
        assert client.sock.version() in ("TLSv1.2", "TLSv1.3")
        client.ehlo("mta.brightenergy.example")
        client.sendmail("ops@brightenergy.example", ["cpsd@elexon.example"], make_mail())
    config = tls_gateway.config
    assert wait_for(lambda: cli_json(config, "cases", "list"), timeout=5)
    assert [c["reference"] for c in cli_json(config, "cases", "list")] == ["CPSD-000001"]


def test_where_tls_is_required_mail_in_the_clear_gets_530_and_nothing_is_stored(
    tls_gateway: GatewayProcess,
) -> None:
    # B6: a sender that skips STARTTLS is refused before it can name anyone.
    with smtplib.SMTP("127.0.0.1", tls_gateway.port, timeout=10) as client:
        client.ehlo("mta.brightenergy.example")
        code, text = client.mail("ops@brightenergy.example")
        assert code == 530, text
        code, _ = client.rcpt("cpsd@elexon.example")
        assert code == 530
        code, _ = client.docmd("DATA")
        assert code == 530
    assert db_count(tls_gateway.config, "SELECT count(*) FROM messages") == 0


def test_without_require_tls_starttls_is_offered_and_plain_mail_still_goes_in(
    tmp_path: Path, certificate: tuple[Path, Path, Path], make_mail: Callable[..., bytes]
) -> None:
    _, cert, key = certificate
    config, port = _config(tmp_path, f'tls_certificate_file = "{cert}"\ntls_key_file = "{key}"')
    process = GatewayProcess(config, port).start()
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.ehlo("mta.brightenergy.example")
            assert client.has_extn("starttls")
            client.sendmail("ops@brightenergy.example", ["cpsd@elexon.example"], make_mail())
        assert wait_for(lambda: db_count(config, "SELECT count(*) FROM cases"), timeout=5) == 1
    finally:
        assert process.stop() == 0


def _serve_exit(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("lines", "named"),
    [
        ("require_tls = true", "[smtp] require_tls needs tls_certificate_file"),
        ('tls_certificate_file = "missing.pem"', "[smtp] tls_certificate_file: cannot read"),
        ("KEY_FROM_THE_CA", "do not load as a certificate and its key"),
    ],
    ids=["required-without-certificate", "missing-file", "key-of-another-certificate"],
)
def test_a_bad_tls_setting_stops_serve_with_one_line_and_exit_2(
    tmp_path: Path, certificate: tuple[Path, Path, Path], lines: str, named: str
) -> None:
    ca, cert, _ = certificate
    if lines == "KEY_FROM_THE_CA":
        lines = f'tls_certificate_file = "{cert}"\ntls_key_file = "{ca.with_suffix(".key")}"'
    config, _ = _config(tmp_path, lines)
    done = _serve_exit(config)
    assert done.returncode == 2, done.stderr
    assert named in done.stderr and str(config) in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
