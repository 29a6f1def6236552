"""SMTP ingress (aiosmtpd). 250 means stored: raw bytes fsync'd and the row committed.

Concurrent sessions share commits through GroupCommitter, so durability costs one
database fsync per batch rather than per message. Any internal failure answers 451
(try again later), never 5xx, which would make the sender bounce the case (I4).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiosmtpd.smtp import SMTP
from aiosmtpd.smtp import Envelope as SmtpEnvelope
from aiosmtpd.smtp import Session as SmtpSession

from gateway.inbox import Accepted, Acceptor, Envelope, Incoming

log = logging.getLogger(__name__)

INLINE_HASH_BYTES = 256 * 1024  # hashing more than this would stall the event loop
TEMPFAIL = "451 4.3.0 Temporary failure storing the message; please try again later"


class GroupCommitter:
    """Raw writes run in parallel threads; rows waiting meanwhile commit together."""

    def __init__(
        self,
        inbox: Acceptor,
        executor: ThreadPoolExecutor,
        max_batch: int = 200,
        commit_delay: float = 0.002,
    ) -> None:
        self._commit_delay = commit_delay
        self._inbox = inbox
        self._executor = executor
        self._max_batch = max_batch
        self._waiting: list[tuple[Incoming, str, asyncio.Future[Accepted]]] = []
        self._leader: asyncio.Task[None] | None = None

    async def submit(self, item: Incoming) -> Accepted:
        loop = asyncio.get_running_loop()
        if self._inbox.store_blocks or len(item.raw) > INLINE_HASH_BYTES:
            digest = await loop.run_in_executor(self._executor, self._inbox.store_raw, item.raw)
        else:
            digest = self._inbox.store_raw(item.raw)
        future: asyncio.Future[Accepted] = loop.create_future()
        self._waiting.append((item, digest, future))
        if self._leader is None or self._leader.done():
            self._leader = asyncio.create_task(self._commit_waiting())
        return await future

    async def _commit_waiting(self) -> None:
        loop = asyncio.get_running_loop()
        previous = 0
        while self._waiting:
            if previous > 1 and len(self._waiting) < previous:
                # Like PostgreSQL's commit_delay: under concurrency, a moment's wait lets
                # the clients just answered join this commit instead of the next one.
                await asyncio.sleep(self._commit_delay)
            batch = self._waiting[: self._max_batch]
            del self._waiting[: len(batch)]
            previous = len(batch)
            items = [item for item, _, _ in batch]
            digests = [digest for _, digest, _ in batch]
            try:
                results = await loop.run_in_executor(
                    self._executor, self._inbox.commit, items, digests
                )
            except Exception as exc:
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, _, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)


class Handler:
    def __init__(
        self,
        committer: GroupCommitter,
        mailboxes: Sequence[str],
        *,
        max_recipients: int = 100,
        allow_plus: bool = True,
    ) -> None:
        self._committer = committer
        self._mailboxes = {m.lower() for m in mailboxes}
        self._max_recipients = max_recipients
        self._allow_plus = allow_plus
        self.in_flight = 0

    def is_ours(self, address: str) -> bool:
        address = address.lower()
        if address in self._mailboxes:
            return True
        local, _, domain = address.rpartition("@")
        base = local.split("+", 1)[0]
        return self._allow_plus and "+" in local and f"{base}@{domain}" in self._mailboxes

    async def handle_RCPT(
        self,
        server: SMTP,
        session: SmtpSession,
        envelope: SmtpEnvelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if not self.is_ours(address):
            return "550 5.1.1 No such mailbox here"
        if len(envelope.rcpt_tos) >= self._max_recipients:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: SmtpEnvelope) -> str:
        raw = envelope.original_content
        if raw is None:
            return TEMPFAIL
        peer = session.peer[0] if isinstance(session.peer, tuple) else str(session.peer)
        item = Incoming(
            raw=raw,
            envelope=Envelope(envelope.mail_from, tuple(envelope.rcpt_tos)),
            source=f"smtp:{peer}",
        )
        self.in_flight += 1
        try:
            accepted = await self._committer.submit(item)
        except Exception:
            log.exception("could not store a message from %s", peer)
            return TEMPFAIL
        finally:
            self.in_flight -= 1
        return f"250 2.0.0 Stored as {accepted.sha256[:16]}"

    async def handle_exception(self, error: Exception) -> str:
        log.error("SMTP session error: %s: %s", type(error).__name__, error)
        return TEMPFAIL


def smtp_factory(handler: Handler, *, hostname: str, max_bytes: int, timeout: float) -> Any:
    """A protocol factory for loop.create_server: one SMTP instance per connection."""

    def factory() -> SMTP:
        return SMTP(
            handler,
            hostname=hostname,
            data_size_limit=max_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,
            timeout=timeout,
            command_call_limit={"NOOP": 50, "*": 5000},
        )

    return factory
