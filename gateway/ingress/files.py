"""File ingress: .eml files, Maildirs and mboxes, fed through the same inbox.accept as SMTP."""

from __future__ import annotations

import mailbox
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FileMessage:
    raw: bytes
    source: str


class IngestPathError(Exception):
    pass


def read_paths(paths: list[Path]) -> Iterator[FileMessage]:
    """Each message in order; a Maildir is a folder with cur/ and new/, an mbox starts 'From '."""
    for path in paths:
        if not path.exists():
            raise IngestPathError(f"{path}: no such file or directory")
        if path.is_dir():
            if (path / "cur").is_dir() or (path / "new").is_dir():
                yield from _maildir(path)
            else:
                for child in sorted(p for p in path.rglob("*") if p.is_file()):
                    yield from _file(child)
        else:
            yield from _file(path)


def _file(path: Path) -> Iterator[FileMessage]:
    with path.open("rb") as handle:
        head = handle.read(5)
    if head == b"From ":
        yield from _mbox(path)
    else:
        yield FileMessage(path.read_bytes(), f"file:{path}")


def _maildir(path: Path) -> Iterator[FileMessage]:
    box = mailbox.Maildir(path, factory=None, create=False)
    for key in sorted(box.keys()):
        with box.get_file(key) as handle:
            yield FileMessage(handle.read(), f"maildir:{path}:{key}")


def _mbox(path: Path) -> Iterator[FileMessage]:
    box = mailbox.mbox(path, create=False)
    try:
        for index, key in enumerate(box.keys()):
            yield FileMessage(box.get_bytes(key), f"mbox:{path}:{index}")
    finally:
        box.close()
