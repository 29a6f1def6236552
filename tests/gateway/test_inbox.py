from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from gateway import db
from gateway.inbox import Envelope, Inbox, Incoming, content_key
from gateway.models import Message
from gateway.rawstore import DatabaseRawStore, DirectoryRawStore, RawStore

RAW = b"From: a@brightenergy.example\r\nMessage-ID: <x1@b.example>\r\nSubject: s\r\n\r\nbody\r\n"


@pytest.fixture(params=["database", "directory"])
def store(tmp_path: Path, request: pytest.FixtureRequest) -> RawStore:
    return (
        DatabaseRawStore() if request.param == "database" else DirectoryRawStore(tmp_path / "raw")
    )


@pytest.fixture
def inbox(engine: Engine, store: RawStore) -> Inbox:
    return Inbox(engine, store)


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return db.session_factory(engine)


def _count(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count(Message.id))) or 0)


def test_accept_stores_raw_and_row_before_returning(
    inbox: Inbox, sessions: sessionmaker[Session], store: RawStore
) -> None:
    accepted = inbox.accept(RAW, Envelope("a@b.example", ("cpsd@elexon.example",)), "smtp:test")
    assert not accepted.duplicate
    assert accepted.message_id == "<x1@b.example>"
    with sessions() as session:
        assert store.get(session, accepted.sha256) == RAW
        row = session.get(Message, accepted.message_row_id)
        assert row is not None and row.status == "received"
        assert row.envelope_to == ["cpsd@elexon.example"]


def test_same_bytes_twice_is_one_message(inbox: Inbox, sessions: sessionmaker[Session]) -> None:
    first = inbox.accept(RAW, Envelope(), "file")
    second = inbox.accept(RAW, Envelope(), "file")
    assert second.duplicate and second.message_row_id == first.message_row_id
    assert _count(sessions) == 1


def test_same_bytes_twice_in_one_batch_is_one_message(
    inbox: Inbox, sessions: sessionmaker[Session]
) -> None:
    results = inbox.accept_many([Incoming(RAW), Incoming(RAW)])
    assert [r.duplicate for r in results] == [False, True]
    assert _count(sessions) == 1


def test_same_message_id_with_other_content_is_kept_and_flagged(
    inbox: Inbox, sessions: sessionmaker[Session]
) -> None:
    inbox.accept(RAW, Envelope(), "file")
    other = inbox.accept(RAW.replace(b"body", b"forged body"), Envelope(), "file")
    assert not other.duplicate
    with sessions() as session:
        row = session.get(Message, other.message_row_id)
        assert row is not None and row.message_id_conflict
    assert _count(sessions) == 2


def test_trace_headers_and_line_endings_do_not_change_the_content_key() -> None:
    smtp_copy = b"Received: from a by b; Fri, 27 Nov 2026\r\n\tcontinued\r\n" + RAW
    imap_copy = b"Return-Path: <a@b.example>\nDelivered-To: cpsd@elexon.example\n" + RAW.replace(
        b"\r\n", b"\n"
    )
    assert content_key(smtp_copy) == content_key(imap_copy) == content_key(RAW)
    assert content_key(RAW) != content_key(RAW.replace(b"body", b"bodx"))
