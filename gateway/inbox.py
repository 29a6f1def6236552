"""The durable boundary. Every ingress calls ``accept``; when it returns, the message is ours.

Raw bytes go to the raw store and the message row commits (with the database store,
in the same transaction). Only after that may SMTP answer 250 or IMAP move the message
out of the inbox. Parsing happens later, in
the worker, so a parser problem can never cost an accepted message.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Engine

from gateway.accept_sql import AcceptStatements
from gateway.models import utcnow
from gateway.rawstore import RawStore

_HEADER_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(<[^<>\s]{1,250}>)", re.IGNORECASE | re.MULTILINE)
# Headers added in transit differ between SMTP and IMAP copies of one message (F12).
_TRACE_HEADERS = (
    b"received",
    b"return-path",
    b"delivered-to",
    b"x-original-to",
    b"authentication-results",
    b"arc-authentication-results",
    b"x-peer",
    b"x-ms-exchange-organization-authas",
)


@dataclass(frozen=True)
class Envelope:
    mail_from: str | None = None
    rcpt_to: tuple[str, ...] = ()


@dataclass(frozen=True)
class Incoming:
    raw: bytes
    envelope: Envelope = field(default_factory=Envelope)
    source: str = "file"
    sent_copy: bool = False  # our own staff's mail, read from a shared mailbox's Sent folder


@dataclass(frozen=True)
class Accepted:
    message_row_id: int
    sha256: str
    message_id: str | None
    duplicate: bool


class Acceptor(Protocol):
    """What every ingress holds: ``Inbox`` in process, or ``AcceptProcess`` under `serve`."""

    @property
    def store_blocks(self) -> bool: ...

    def store_raw(self, raw: bytes) -> str: ...

    def accept(self, raw: bytes, envelope: Envelope, source: str) -> Accepted: ...

    def accept_many(self, items: Sequence[Incoming]) -> list[Accepted]: ...

    def commit(self, items: Sequence[Incoming], digests: Sequence[str]) -> list[Accepted]: ...


class Inbox:
    def __init__(
        self,
        engine: Engine,
        store: RawStore,
        on_accept: Callable[[], None] | None = None,
    ) -> None:
        self._sql = AcceptStatements(engine)
        self._store = store
        self._on_accept = on_accept

    def accept(self, raw: bytes, envelope: Envelope, source: str) -> Accepted:
        return self.accept_many([Incoming(raw, envelope, source)])[0]

    def accept_many(self, items: Sequence[Incoming]) -> list[Accepted]:
        """Store a batch with one commit: the messages share the fsync of the commit."""
        return self.commit(items, [self.store_raw(item.raw) for item in items])

    @property
    def store_blocks(self) -> bool:
        return self._store.blocking

    def store_raw(self, raw: bytes) -> str:
        """First half of accept: the raw bytes on stable storage. Safe to run in parallel."""
        return self._store.prepare(raw)

    def commit(self, items: Sequence[Incoming], digests: Sequence[str]) -> list[Accepted]:
        """Second half of accept: the rows for already-stored raw bytes, in one transaction."""
        try:
            results = self._commit(items, digests)
        except self._sql.integrity_error:
            # Another process accepted one of these between our look-up and our insert.
            results = [
                self._commit([item], [digest])[0]
                for item, digest in zip(items, digests, strict=True)
            ]
        if self._on_accept is not None and any(not r.duplicate for r in results):
            self._on_accept()
        return results

    def _commit(self, items: Sequence[Incoming], digests: Sequence[str]) -> list[Accepted]:
        """A constant number of statements per batch: this runs while SMTP clients wait."""
        keys = [content_key(item.raw) for item in items]
        message_ids = [header_message_id(item.raw) for item in items]
        now = utcnow()
        wanted_ids = {m for m in message_ids if m}
        with self._sql.transaction() as tx:
            # One query answers both questions: same content (dedupe) and same Message-ID.
            existing: dict[str, tuple[int, str, str | None]] = {}
            taken: set[str] = set()
            for row_id, key, sha, mid in tx.existing(sorted(set(keys)), sorted(wanted_ids)):
                if key in keys:
                    existing[key] = (row_id, sha, mid)
                if mid:
                    taken.add(mid)
            results: list[Accepted | None] = []
            fresh: list[dict[str, Any]] = []
            blobs: list[dict[str, Any]] = []
            for item, digest, key, message_id in zip(
                items, digests, keys, message_ids, strict=True
            ):
                known = existing.get(key)
                if known is not None:
                    results.append(Accepted(known[0], known[1], known[2], True))
                    continue
                existing[key] = (0, digest, message_id)  # the same bytes twice in one batch
                results.append(None)
                if self._store.in_database:
                    blobs.append(
                        {
                            "sha256": digest,
                            "size": len(item.raw),
                            "data": item.raw,
                            "stored_at": now,
                        }
                    )
                fresh.append(
                    {
                        "sha256": digest,
                        "content_key": key,
                        "size": len(item.raw),
                        "source": item.source[:200],
                        "envelope_from": _clean(item.envelope.mail_from),
                        "envelope_to": [_clean(r) or "" for r in item.envelope.rcpt_to][:100],
                        "message_id": message_id,
                        "message_id_conflict": message_id in taken,
                        "received_at": now,
                        "status": "received",
                        "attempts": 0,
                        "sent_copy": item.sent_copy,
                    }
                )
                if message_id:
                    taken.add(message_id)
            tx.insert_raw(blobs)
            ids = tx.insert_messages(fresh)
        new_ids = iter(ids)
        by_key: dict[str, Accepted] = {}
        final: list[Accepted] = []
        for result, key in zip(results, keys, strict=True):
            if result is None:
                result = by_key.get(key)
                if result is None:
                    row_id = next(new_ids)
                    result = Accepted(row_id, existing[key][1], existing[key][2], False)
                else:
                    result = Accepted(result.message_row_id, result.sha256, result.message_id, True)
            by_key.setdefault(key, result)
            final.append(result)
        return final


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    return "".join(ch for ch in value if ch.isprintable())[:320]


def header_message_id(raw: bytes) -> str | None:
    """The Message-ID from the header block, without a full parse (this runs inside SMTP DATA)."""
    end = _HEADER_END.search(raw, 0, 262_144)
    header = raw[: end.start() if end else 262_144]
    found = _MESSAGE_ID.search(header)
    return found.group(1).decode("ascii", "replace") if found else None


def content_key(raw: bytes) -> str:
    """Dedupe key: the message without trace headers, line endings normalised (B12, F12)."""
    normalised = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    end = normalised.find(b"\n\n")
    header, body = (normalised, b"") if end < 0 else (normalised[:end], normalised[end:])
    kept: list[bytes] = []
    skipping = False
    for line in header.split(b"\n"):
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                kept.append(line)
            continue
        name = line.split(b":", 1)[0].strip().lower()
        skipping = name in _TRACE_HEADERS
        if not skipping:
            kept.append(line)
    digest = hashlib.sha256()
    digest.update(b"\n".join(kept))
    digest.update(body)
    return digest.hexdigest()
