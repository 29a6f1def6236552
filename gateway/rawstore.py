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
the accept transaction inserts the row when ``in_database``, ``get`` and ``get_many`` inside
the reader's transaction.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Collection
from pathlib import Path
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.models import RawMessage
from gateway.settings import StorageSettings

TEMP_PREFIX = ".tmp-"
LEFTOVER_SECONDS = 3600.0  # a write takes milliseconds; an hour-old temp file is orphaned


class RawStore(Protocol):
    blocking: bool  # does prepare() wait for the disk (so must run off the event loop)?
    in_database: bool  # are the bytes a row written in the accept transaction?

    def prepare(self, raw: bytes) -> str: ...

    def get(self, session: Session, sha256: str) -> bytes: ...

    def get_many(self, session: Session, sha256s: Collection[str]) -> dict[str, bytes]: ...

    def tidy(self) -> int: ...


class DatabaseRawStore:
    """Raw bytes as rows keyed by sha256, committed with the message row."""

    blocking = False
    in_database = True

    def prepare(self, raw: bytes) -> str:
        return hashlib.sha256(raw).hexdigest()

    def get(self, session: Session, sha256: str) -> bytes:
        row = session.get(RawMessage, sha256)
        if row is None:
            raise LookupError(f"raw message {sha256} is missing from the store")
        return row.data

    def get_many(self, session: Session, sha256s: Collection[str]) -> dict[str, bytes]:
        """A worker's batch in one query (those missing are left to ``get`` to report)."""
        if not sha256s:
            return {}
        found = session.execute(
            select(RawMessage.sha256, RawMessage.data).where(RawMessage.sha256.in_(sha256s))
        )
        return {sha256: data for sha256, data in found}

    def tidy(self) -> int:
        return 0  # a transaction cut short leaves nothing behind


class DirectoryRawStore:
    """Files at ``<root>/ab/<sha256>``; writing the same bytes twice is a no-op.

    The 256 fan-out directories are created (and fsync'd) once, up front, so accepting a
    message costs one file fsync and one directory fsync, nothing more.
    """

    blocking = True
    in_database = False

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
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=TEMP_PREFIX)
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

    def get(self, session: Session, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def get_many(self, session: Session, sha256s: Collection[str]) -> dict[str, bytes]:
        return {sha256: self.get(session, sha256) for sha256 in sha256s}

    def tidy(self, older_than_seconds: float = LEFTOVER_SECONDS) -> int:
        """Remove temp files a crash left mid-write (reliability.md F1); how many.

        Only old ones: another gateway node sharing the directory may be writing now.
        Nothing refers to a temp file (a row names a message only after its rename), so
        removing one loses nothing.
        """
        if not self.root.is_dir():
            return 0
        cutoff = time.time() - older_than_seconds
        removed = 0
        for leftover in self.root.glob(f"??/{TEMP_PREFIX}*"):
            try:
                if leftover.stat().st_mtime < cutoff:
                    leftover.unlink()
                    removed += 1
            except FileNotFoundError:
                continue  # another node tidied it first
        return removed


def make_store(storage: StorageSettings) -> RawStore:
    if storage.backend == "database":
        return DatabaseRawStore()
    return DirectoryRawStore(Path(storage.raw_dir))


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
