"""Content-addressed stores for raw inbound bytes.

Postfix's rule (reliability.md I1): a message is "stored" only when its bytes are on
stable storage. Two stores keep that rule:

- ``DatabaseRawStore`` (the default) writes the bytes in the same transaction as the
  message row, so one commit (one fsync) makes a whole batch of concurrent messages
  durable, and raw bytes and rows can never disagree after a crash. It serves several
  gateway nodes on one PostgreSQL unchanged.
- ``DirectoryRawStore`` writes ``<root>/ab/<sha256>`` with fsync, rename and directory
  fsync before the row commits: for deployments that want raw mail on a file system.

The interface: ``prepare`` runs before the accept transaction (and may run in parallel),
``record`` inside it, ``get`` inside the reader's transaction.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.orm import Session

from gateway.models import RawMessage, utcnow


class RawStore(Protocol):
    blocking: bool  # does prepare() wait for the disk (so must run off the event loop)?

    def prepare(self, raw: bytes) -> str: ...

    def record(self, session: Session, blobs: Mapping[str, bytes]) -> None: ...

    def get(self, session: Session, sha256: str) -> bytes: ...


class DatabaseRawStore:
    """Raw bytes as rows keyed by sha256, committed with the message row."""

    blocking = False

    def prepare(self, raw: bytes) -> str:
        return hashlib.sha256(raw).hexdigest()

    def record(self, session: Session, blobs: Mapping[str, bytes]) -> None:
        if not blobs:
            return
        now = utcnow()
        rows = [
            {"sha256": sha, "size": len(raw), "data": raw, "stored_at": now}
            for sha, raw in blobs.items()
        ]
        session.execute(_insert_ignoring_duplicates(session), rows)

    def get(self, session: Session, sha256: str) -> bytes:
        row = session.get(RawMessage, sha256)
        if row is None:
            raise LookupError(f"raw message {sha256} is missing from the store")
        return row.data


class DirectoryRawStore:
    """Files at ``<root>/ab/<sha256>``; writing the same bytes twice is a no-op.

    The 256 fan-out directories are created (and fsync'd) once, up front, so accepting a
    message costs one file fsync and one directory fsync, nothing more.
    """

    blocking = True

    def __init__(self, root: Path) -> None:
        self.root = root
        self._ready = False

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def _prepare(self) -> None:
        _ensure_dir(self.root)
        created = False
        for index in range(256):
            fan = self.root / f"{index:02x}"
            if not fan.is_dir():
                fan.mkdir(exist_ok=True)
                created = True
        if created:
            _fsync_dir(self.root)
        self._ready = True

    def prepare(self, raw: bytes) -> str:
        digest = hashlib.sha256(raw).hexdigest()
        target = self.path(digest)
        if target.exists() and target.stat().st_size == len(raw):
            return digest
        if not self._ready or not target.parent.is_dir():
            self._prepare()
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(raw)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)
        return digest

    def record(self, session: Session, blobs: Mapping[str, bytes]) -> None:
        """Nothing to do: the bytes were fsync'd by ``prepare``."""

    def get(self, session: Session, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()


def _insert_ignoring_duplicates(session: Session) -> Any:
    """INSERT … ON CONFLICT DO NOTHING, spelt by each dialect (content-addressed rows)."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:  # pragma: no cover - other databases are not supported
        raise RuntimeError(f"no raw store support for {dialect}")
    return dialect_insert(RawMessage).on_conflict_do_nothing(index_elements=["sha256"])


def _ensure_dir(path: Path) -> None:
    """Create missing directories and fsync their parents, so a new entry survives a crash."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        directory.mkdir(exist_ok=True)
        _fsync_dir(directory.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
