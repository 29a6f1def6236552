from __future__ import annotations

import hashlib
import os
import time
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


def test_temp_files_a_crash_left_are_removed_once_old_and_nothing_else(tmp_path: Path) -> None:
    # F1: the gateway died between mkstemp and rename. The temp file is no message (no
    # row names it); an old one goes, a young one may be another node's write in flight.
    store = DirectoryRawStore(tmp_path / "raw")
    kept = store.path(store.prepare(b"a message that was stored"))
    stale = kept.parent / ".tmp-abc123"
    stale.write_bytes(b"half a mess")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    young = kept.parent / ".tmp-def456"
    young.write_bytes(b"being written")
    assert store.tidy() == 1
    assert not stale.exists() and young.exists() and kept.exists()
    assert store.tidy() == 0
    assert DatabaseRawStore().tidy() == 0
