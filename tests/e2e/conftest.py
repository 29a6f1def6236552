"""Fixtures for the IMAP stories: a real Dovecot per test and settings that point at it."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.dovecot import Dovecot, imap_block
from tests.support import free_port, settings_text

SENT = "Sent Items"


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    """A fresh Dovecot on loopback (about 50 ms to start); it fails loudly, never skips."""
    server = Dovecot().start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def imap_config(tmp_path: Path, dovecot: Dovecot) -> Callable[..., Path]:
    """Write settings.toml for a gateway reading the test's Dovecot; returns its path."""

    def make(
        *, worker: str = "", smtp: str = "", blocks: tuple[str, ...] | None = None, **kw: Any
    ) -> Path:
        text = settings_text(tmp_path, free_port(), worker)
        if smtp:
            text = text.replace("[smtp]\n", f"[smtp]\n{smtp}\n", 1)
        text += "".join(blocks) if blocks is not None else imap_block(dovecot, tmp_path, **kw)
        path = tmp_path / "settings.toml"
        path.write_text(text)
        return path

    return make


def smtp_port(config: Path) -> int:
    text = config.read_text()
    return int(text.split('listen = "127.0.0.1:', 1)[1].split('"', 1)[0])


def db_count(config: Path, sql: str) -> int:
    """Read the gateway's SQLite file directly: quick enough to poll while it runs."""
    database = config.parent / "var" / "gateway.db"
    if not database.exists():
        return 0
    with closing(sqlite3.connect(database, timeout=10)) as conn:
        try:
            return int(conn.execute(sql).fetchone()[0])
        except sqlite3.OperationalError:  # tables not migrated yet
            return 0


def party_mail(
    number: int,
    *,
    sender: str = "ops@brightenergy.example",
    subject: str | None = None,
    body: str | None = None,
    message_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    """A complete case as a party's desk writes it, CRLF as it sits in an IMAP mailbox."""
    lines = [
        f"From: Bright Energy Ops <{sender}>",
        "To: cpsd@elexon.example",
        f"Subject: {subject or f'DIP rejects IF-041 for batch {number}'}",
        "Date: Fri, 27 Nov 2026 09:15:00 +0000",
        f"Message-ID: {message_id or f'<imap-{number}@brightenergy.example>'}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        *[f"{k}: {v}" for k, v in (headers or {}).items()],
    ]
    text = body or (
        f"Summary: DIP rejects IF-041 for batch {number}\n"
        "Impact: 200 customers' reads are not settling\n"
        "MPAN: 1052601815905\n"
        "Evidence: the DIP portal shows status REJECTED with error code SP101\n"
    )
    return ("\r\n".join(lines) + "\r\n\r\n" + text.replace("\n", "\r\n")).encode()
