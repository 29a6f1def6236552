from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from gateway import db
from gateway.inbox import Envelope, Inbox, Incoming, content_key
from gateway.models import Message
from gateway.rawstore import DatabaseRawStore, DirectoryRawStore

RAW = b"From: a@brightenergy.example\r\nMessage-ID: <x1@b.example>\r\nSubject: s\r\n\r\nbody\r\n"


@pytest.fixture(params=["database", "directory"])
def inbox(tmp_path: Path, request: pytest.FixtureRequest) -> Inbox:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'g.db'}")
    db.upgrade(engine)
    store = (
        DatabaseRawStore() if request.param == "database" else DirectoryRawStore(tmp_path / "raw")
    )
    return Inbox(db.session_factory(engine), store)


def _count(inbox: Inbox) -> int:
    with inbox._sessions() as session:
        return int(session.scalar(select(func.count(Message.id))) or 0)


def test_accept_stores_raw_and_row_before_returning(inbox: Inbox, tmp_path: Path) -> None:
    accepted = inbox.accept(RAW, Envelope("a@b.example", ("cpsd@elexon.example",)), "smtp:test")
    assert not accepted.duplicate
    assert accepted.message_id == "<x1@b.example>"
    with inbox._sessions() as session:
        assert inbox._store.get(session, accepted.sha256) == RAW
        row = session.get(Message, accepted.message_row_id)
        assert row is not None and row.status == "received"
        assert row.envelope_to == ["cpsd@elexon.example"]


def test_same_bytes_twice_is_one_message(inbox: Inbox) -> None:
    first = inbox.accept(RAW, Envelope(), "file")
    second = inbox.accept(RAW, Envelope(), "file")
    assert second.duplicate and second.message_row_id == first.message_row_id
    assert _count(inbox) == 1


def test_same_bytes_twice_in_one_batch_is_one_message(inbox: Inbox) -> None:
    results = inbox.accept_many([Incoming(RAW), Incoming(RAW)])
    assert [r.duplicate for r in results] == [False, True]
    assert _count(inbox) == 1


def test_same_message_id_with_other_content_is_kept_and_flagged(inbox: Inbox) -> None:
    inbox.accept(RAW, Envelope(), "file")
    other = inbox.accept(RAW.replace(b"body", b"forged body"), Envelope(), "file")
    assert not other.duplicate
    with inbox._sessions() as session:
        row = session.get(Message, other.message_row_id)
        assert row is not None and row.message_id_conflict
    assert _count(inbox) == 2


def test_trace_headers_and_line_endings_do_not_change_the_content_key() -> None:
    smtp_copy = b"Received: from a by b; Fri, 27 Nov 2026\r\n\tcontinued\r\n" + RAW
    imap_copy = b"Return-Path: <a@b.example>\nDelivered-To: cpsd@elexon.example\n" + RAW.replace(
        b"\r\n", b"\n"
    )
    assert content_key(smtp_copy) == content_key(imap_copy) == content_key(RAW)
    assert content_key(RAW) != content_key(RAW.replace(b"body", b"bodx"))
