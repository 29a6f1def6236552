from __future__ import annotations

import hashlib
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway import db
from gateway.inbox import Envelope, Inbox
from gateway.models import RawMessage
from gateway.rawstore import DatabaseRawStore, DirectoryRawStore

RAW = b"Subject: x\r\n\r\nbody\r\n"


def test_directory_store_is_content_addressed_and_idempotent(tmp_path: Path) -> None:
    store = DirectoryRawStore(tmp_path / "raw")
    digest = store.prepare(RAW)
    assert digest == hashlib.sha256(RAW).hexdigest()
    assert store.prepare(RAW) == digest
    engine = db.make_engine(f"sqlite:///{tmp_path / 'g.db'}")
    with Session(engine) as session:
        assert store.get(session, digest) == RAW
    assert store.path(digest) == tmp_path / "raw" / digest[:2] / digest
    assert len([p for p in (tmp_path / "raw").iterdir() if p.is_dir()]) == 256
    assert not list((tmp_path / "raw").rglob(".tmp-*"))


def test_database_store_keeps_bytes_in_the_accept_transaction(tmp_path: Path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'g.db'}")
    db.upgrade(engine)
    sessions = db.session_factory(engine)
    store = DatabaseRawStore()
    inbox = Inbox(engine, store)
    first = inbox.accept(RAW, Envelope(), "test")
    again = inbox.accept(RAW, Envelope(), "test again")
    assert again.duplicate and again.message_row_id == first.message_row_id
    with sessions() as session:
        assert store.get(session, first.sha256) == RAW
        assert session.scalar(select(func.count()).select_from(RawMessage)) == 1
