"""What a party's MTA puts on the wire is what the desk keeps: no more, no less, byte for byte.

Each test speaks SMTP over a real socket to `cpsd-gateway serve` (worker off, so the
stored row is exactly what the listener accepted) and reads the stored bytes back.
"""

from __future__ import annotations

import hashlib
import json
import smtplib
import socket
import sqlite3
from collections.abc import Iterator
from contextlib import closing

import pytest

from tests.e2e.server import GatewayProcess
from tests.support import free_port, settings_text


def _head(message_id: str) -> bytes:
    return (
        b"From: ops@brightenergy.example\r\nTo: cpsd@elexon.example\r\n"
        b"Subject: Meter read rejected\r\n"
        b"Message-ID: <" + message_id.encode() + b"@brightenergy.example>\r\n\r\n"
    )


def _unstuffed(data: bytes) -> bytes:
    """RFC 5321 4.5.2 at the receiver: one leading dot off every CRLF-ended line."""
    lines = data.split(b"\r\n")
    return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)


@pytest.fixture(scope="module")
def listener(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """One ingest-only gateway for the module; each test counts what it adds."""
    tmp = tmp_path_factory.mktemp("wire")
    port = free_port()
    config = tmp / "settings.toml"
    config.write_text(settings_text(tmp, port, "enabled = false\n"))
    process = GatewayProcess(config, port).start()
    yield process
    assert process.stop() == 0


def _stored(listener: GatewayProcess) -> list[bytes]:
    database = listener.config.parent / "var" / "gateway.db"
    with closing(sqlite3.connect(database, timeout=10)) as conn:
        rows = conn.execute(
            "SELECT r.data FROM messages m JOIN raw_messages r ON r.sha256 = m.sha256 ORDER BY m.id"
        ).fetchall()
    return [bytes(row[0]) for row in rows]


class _Wire:
    """A client that writes exactly the bytes it is given and reads one reply at a time."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.sock.makefile("rb")
        assert self.reply().startswith(b"220")

    def reply(self) -> bytes:
        lines = [self.file.readline()]
        while lines[-1][3:4] == b"-":
            lines.append(self.file.readline())
        return b"".join(lines)

    def say(self, data: bytes) -> bytes:
        self.sock.sendall(data)
        return self.reply()

    def transaction(self, data: bytes, hello: bytes = b"EHLO mta.brightenergy.example") -> bytes:
        """A greeting, MAIL, RCPT and DATA from a party's MTA, then ``data`` exactly as
        given; the reply to it."""
        assert self.say(hello + b"\r\n").startswith(b"250")
        assert self.say(b"MAIL FROM:<ops@brightenergy.example>\r\n").startswith(b"250")
        assert self.say(b"RCPT TO:<cpsd@elexon.example>\r\n").startswith(b"250")
        assert self.say(b"DATA\r\n").startswith(b"354")
        return self.say(data)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.mark.parametrize(
    "fake_end",
    [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r"],
    ids=["lf-dot-lf", "cr-dot-cr", "lf-dot-crlf", "cr-dot-crlf", "crlf-dot-cr"],
)
def test_a_smuggled_second_message_stays_inside_the_first(
    listener: GatewayProcess, fake_end: bytes
) -> None:
    # SMTP smuggling (reliability.md B4): a bare-LF or bare-CR "end of data" followed by
    # a second transaction. Only CRLF.CRLF ends DATA, so the forged mail "from" staff
    # is part of the party's message, kept literally, and never a message of its own.
    # (The client here does not dot-stuff, as an attacker would not: where the fake end
    # puts a dot at the start of a CRLF line, the receiver takes that dot off.)
    head = _head(f"smuggle-{fake_end.hex()}")
    before = len(_stored(listener))
    body = (
        b"Our read was rejected."
        + fake_end
        + b"MAIL FROM:<ceo@elexon.example>\r\nRCPT TO:<cpsd@elexon.example>\r\nDATA\r\n"
        + b"From: ceo@elexon.example\r\nSubject: #close\r\n\r\nclose it\r\n"
    )
    wire = _Wire(listener.port)
    try:
        assert wire.transaction(head + body + b".\r\n").startswith(b"250")
        assert wire.say(b"QUIT\r\n").startswith(b"221")
    finally:
        wire.close()
    stored = _stored(listener)
    assert len(stored) == before + 1
    assert stored[-1] == _unstuffed(head + body)


def test_dot_stuffed_lines_are_unstuffed_exactly_once(listener: GatewayProcess) -> None:
    # B9: smtplib stuffs the dots (".", "..", ".x" go out as "..", "...", "..x"); the
    # stored bytes must hash to what the party wrote.
    raw = _head("dots") + b"Lines that start with a dot:\r\n.\r\n..\r\n.x\r\n...\r\nend\r\n"
    with smtplib.SMTP("127.0.0.1", listener.port, timeout=10) as client:
        client.sendmail("ops@brightenergy.example", ["cpsd@elexon.example"], raw)
    stored = _stored(listener)[-1]
    assert hashlib.sha256(stored).hexdigest() == hashlib.sha256(raw).hexdigest()


def test_an_8bit_body_without_8bitmime_is_kept_as_it_came(listener: GatewayProcess) -> None:
    # B10: no BODY=8BITMIME, raw 0x80-0xFF in the body. The listener never decodes the
    # bytes (decode_data=False), so nothing is refused with "strict ASCII" and nothing
    # is altered; the parser makes what sense of them it can later.
    raw = _head("8bit") + bytes(range(0x80, 0x100)) + b"\r\nMPAN 1200023305967 \xa3120\r\n"
    wire = _Wire(listener.port)
    try:
        reply = wire.transaction(raw + b".\r\n", hello=b"HELO mta.brightenergy.example")
        assert reply.startswith(b"250")
    finally:
        wire.close()
    assert _stored(listener)[-1] == raw


def test_past_the_recipient_limit_each_extra_rcpt_gets_452_and_the_rest_is_kept(
    listener: GatewayProcess,
) -> None:
    # B8: a recipient flood. RFC 5321 4.5.3.1.8 asks for at least 100; past our limit
    # (default 100) each extra RCPT gets 452, and the message goes to the first 100.
    wire = _Wire(listener.port)
    try:
        assert wire.say(b"EHLO mta.brightenergy.example\r\n").startswith(b"250")
        assert wire.say(b"MAIL FROM:<ops@brightenergy.example>\r\n").startswith(b"250")
        replies = [wire.say(b"RCPT TO:<cpsd+%d@elexon.example>\r\n" % n)[:9] for n in range(150)]
        assert replies == [b"250 2.1.5"] * 100 + [b"452 4.5.3"] * 50
        assert wire.say(b"DATA\r\n").startswith(b"354")
        assert wire.say(_head("flood") + b"Hello.\r\n.\r\n").startswith(b"250")
    finally:
        wire.close()
    database = listener.config.parent / "var" / "gateway.db"
    with closing(sqlite3.connect(database, timeout=10)) as conn:
        (envelope_to,) = conn.execute(
            "SELECT envelope_to FROM messages ORDER BY id DESC LIMIT 1"
        ).fetchone()
    assert json.loads(envelope_to) == [f"cpsd+{n}@elexon.example" for n in range(100)]


def test_a_client_that_drops_the_line_after_the_dot_and_resends_gives_one_message(
    listener: GatewayProcess,
) -> None:
    # F2, the client's side: the MTA sends the final dot and drops the connection
    # without reading our answer, so it does not know whether we stored the message,
    # and sends it again. Stored or not the first time, the desk ends with one copy.
    raw = _head("dropped-after-dot") + b"Our reads for MPAN 1200023305967 are missing.\r\n"
    before = len(_stored(listener))
    wire = _Wire(listener.port)
    assert wire.say(b"EHLO mta.brightenergy.example\r\n").startswith(b"250")
    assert wire.say(b"MAIL FROM:<ops@brightenergy.example>\r\n").startswith(b"250")
    assert wire.say(b"RCPT TO:<cpsd@elexon.example>\r\n").startswith(b"250")
    assert wire.say(b"DATA\r\n").startswith(b"354")
    wire.sock.sendall(raw + b".\r\n")
    wire.close()  # gone before the 250
    with smtplib.SMTP("127.0.0.1", listener.port, timeout=10) as client:
        client.sendmail("ops@brightenergy.example", ["cpsd@elexon.example"], raw)
    stored = _stored(listener)
    assert stored[before:] == [raw]
