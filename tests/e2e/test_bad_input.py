"""Bad input never crashes and is never dropped silently: it is kept and gets a reason."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.models import Message
from gateway.settings import Settings
from tests.e2e.desk import Desk

HEAD = b"To: cpsd@elexon.example\r\nSubject: s\r\nMessage-ID: <b@brightenergy.example>\r\n"


@pytest.fixture
def desk(settings: Settings) -> Iterator[Desk]:
    desk = Desk(settings)
    yield desk
    desk.close()


@pytest.mark.parametrize(
    ("raw", "outcome", "reason"),
    [
        (b"", "quarantined", "no From header"),
        (b"From: ops@brightenergy.example\r\n", "case_created", None),  # headers only
        (
            b"From: ops@brightenergy.example\r\nFrom: ceo@elexon.example\r\n" + HEAD + b"\r\nx",
            "quarantined",
            "2 From headers",
        ),
        (
            b"From: alice@brightenergy.example)<bob@elexon.example>\r\n" + HEAD + b"\r\nx",
            "quarantined",
            "sender cannot be trusted",
        ),
        (
            b'From: "a@b"@brightenergy.example\r\n' + HEAD + b"\r\nx",
            "quarantined",
            "sender cannot be trusted",
        ),
        (
            b"From: ops@brightenergy.example\r\n"
            + HEAD
            + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
            + b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" * 20_000
            + b"--b--\r\n",
            "quarantined",
            "over the 1000 limit",
        ),
        (
            b"From: ops@brightenergy.example\r\n"
            + HEAD
            + b"X-Junk: "
            + b"a" * 300_000
            + b"\r\n\r\nbody",
            "quarantined",
            "header block over",
        ),
        (
            b"From: ops@brightenergy.example\r\nSubject: =?utf-8?q?hi=0D=0ABcc:_victim=40evil.example?=\r\n"
            b"Message-ID: <c@brightenergy.example>\r\n\r\nSummary: x\r\n",
            "case_created",
            None,
        ),
        (
            b"From: ops@brightenergy.example\r\nSubject: a\x00b\r\nMessage-ID: <d@x>\r\n\r\nbody \x00\xff\xfe",
            "case_created",
            None,
        ),
        (
            b"From: ops@brightenergy.example\r\nDate: 31 Feb 99999 25:61 +9999\r\n"
            + HEAD
            + b"\r\nx",
            "case_created",
            None,
        ),
    ],
    ids=[
        "empty",
        "headers-only",
        "two-from",
        "cve-2023-27043",
        "quoted-at",
        "20k-parts",
        "header-bomb",
        "crlf-subject",
        "nul-bytes",
        "garbage-date",
    ],
)
def test_bad_input_is_kept_and_explained(
    desk: Desk, raw: bytes, outcome: str, reason: str | None
) -> None:
    done = desk.receive(raw)
    assert done.outcome == outcome, done.reason
    if reason:
        assert reason in (done.reason or "")
    with desk.app.sessions() as session:
        row = session.get(Message, done.message_row_id)
        assert row is not None and row.status in ("processed", "quarantined")
        assert desk.app.store.get(session, row.sha256) == raw  # the raw bytes are kept
    for sent in desk.outbox():
        assert "\n" not in str(sent.message["Subject"])
        assert "Bcc" not in sent.message
    if outcome == "quarantined":
        assert not [s for s in desk.outbox() if "elexon.example" not in s.to[0]]
