"""Shared fixtures: real settings files, real SQLite files, real sockets."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from gateway import db
from gateway.app import App, build
from gateway.settings import Settings, load
from tests.support import free_port, settings_text


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """A migrated SQLite database of the test's own."""
    engine = db.make_engine(f"sqlite:///{tmp_path / 'g.db'}")
    db.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Write a settings file into tmp_path and load it the way the CLI does."""

    def make(extra: str = "", port: int | None = None) -> Settings:
        path = tmp_path / "settings.toml"
        path.write_text(settings_text(tmp_path, port or free_port(), extra))
        return load(path)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def locked(settings: Settings) -> Iterator[tuple[App, sqlite3.Connection]]:
    """An app whose busy timeout is short, and a second connection that can take the
    write lock away from it, as a long transaction elsewhere would."""
    database = dataclasses.replace(settings.database, busy_timeout_ms=300)
    app = build(dataclasses.replace(settings, database=database))
    blocker = sqlite3.connect(database.url.split("///", 1)[1], isolation_level=None)
    yield app, blocker
    blocker.close()
    app.close()


def mail(
    *,
    sender: str = "ops@brightenergy.example",
    to: str = "cpsd@elexon.example",
    subject: str = "DIP rejects IF-041 for our MPANs",
    body: str = (
        "Summary: DIP rejects IF-041\nImpact: 200 customers unbilled\nMPAN: 1052601815905\n"
        "Evidence: the DIP portal shows the message REJECTED with error code SP101\n"
    ),
    message_id: str = "<m1@brightenergy.example>",
    headers: dict[str, str] | None = None,
) -> bytes:
    """A small RFC 5322 message, built by hand so tests control every byte."""
    lines = [
        f"From: Ops Team <{sender}>",
        f"To: {to}",
        f"Subject: {subject}",
        "Date: Fri, 27 Nov 2026 09:15:00 +0000",
        f"Message-ID: {message_id}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n" + body.replace("\n", "\r\n")).encode()


@pytest.fixture
def make_mail() -> Callable[..., bytes]:
    return mail
