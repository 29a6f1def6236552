"""SMTP ingress (aiosmtpd). 250 means stored: raw bytes fsync'd and the row committed.

Each DATA goes to the accept process as soon as it arrives; the process commits every
message waiting at that moment in one transaction (gateway/acceptor.py), so durability
costs one database fsync per group of concurrent sessions rather than per message. Any
internal failure answers 451 (try again later), never 5xx, which would make the sender
bounce the case (I4).
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from email._header_value_parser import get_addr_spec, get_angle_addr
from typing import Any, ClassVar, Protocol, cast

from aiosmtpd.smtp import MISSING, SMTP, syntax
from aiosmtpd.smtp import Envelope as SmtpEnvelope
from aiosmtpd.smtp import Session as SmtpSession

from gateway.inbox import Accepted, Acceptor, Envelope, Incoming
from gateway.ingress.free_space import FreeSpace
from gateway.ingress.smtp_data import read_data

log = logging.getLogger(__name__)

INLINE_HASH_BYTES = 256 * 1024  # hashing more than this would stall the event loop
TEMPFAIL = "451 4.3.0 Temporary failure storing the message; please try again later"
BUSY = "421 4.3.2 Too many connections; please try again later"
SHUTTING_DOWN = "421 4.3.2 Service shutting down; please try again later"


class Committer(Protocol):
    """Commits rows for raw bytes already stored, from the event loop (AcceptChannel)."""

    async def commit(self, items: Sequence[Incoming], digests: Sequence[str]) -> list[Accepted]: ...


class Storer:
    """Stores one message's raw bytes, then has its row committed; returns after COMMIT."""

    def __init__(self, inbox: Acceptor, committer: Committer, executor: ThreadPoolExecutor) -> None:
        self._inbox = inbox
        self._committer = committer
        self._executor = executor

    async def submit(self, item: Incoming) -> Accepted:
        if self._inbox.store_blocks or len(item.raw) > INLINE_HASH_BYTES:
            loop = asyncio.get_running_loop()
            digest = await loop.run_in_executor(self._executor, self._inbox.store_raw, item.raw)
        else:
            digest = self._inbox.store_raw(item.raw)
        (accepted,) = await self._committer.commit([item], [digest])
        return accepted


class Handler:
    def __init__(
        self,
        committer: Storer,
        mailboxes: Sequence[str],
        *,
        max_recipients: int = 100,
        allow_plus: bool = True,
        free_space: FreeSpace | None = None,
        max_message_bytes: int = 26_214_400,
    ) -> None:
        self._committer = committer
        self._free_space = free_space
        self._max_message_bytes = max_message_bytes
        self._mailboxes = {m.lower() for m in mailboxes}
        self._max_recipients = max_recipients
        self._allow_plus = allow_plus
        self.in_flight = 0  # sessions waiting for their message's commit
        self.sessions: set[Any] = set()  # the _Session of each open connection

    def __dir__(self) -> list[str]:
        """What aiosmtpd looks for on a handler, for each connection (see _Session)."""
        return _HANDLER_NAMES

    def is_ours(self, address: str) -> bool:
        address = address.lower()
        if address in self._mailboxes:
            return True
        local, _, domain = address.rpartition("@")
        base = local.split("+", 1)[0]
        return self._allow_plus and "+" in local and f"{base}@{domain}" in self._mailboxes

    async def handle_MAIL(
        self,
        server: SMTP,
        session: SmtpSession,
        envelope: SmtpEnvelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if self._free_space is not None:
            declared = [o[5:] for o in mail_options if o.startswith("SIZE=")]
            size = int(declared[0]) if declared else self._max_message_bytes
            if self._free_space.short_for(size) is not None:
                return "452 4.3.1 Insufficient system storage, try again later"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

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

    def busy(self) -> bool:
        """A message is coming in or waiting for its commit somewhere."""
        return self.in_flight > 0 or any(s.receiving for s in self.sessions)

    def hang_up_idle(self) -> None:
        """At shutdown: every session not in the middle of a message is told 421."""
        for session in list(self.sessions):
            if not session.receiving:
                session.hang_up()

    async def handle_exception(self, error: Exception) -> str:
        log.error("SMTP session error: %s: %s", type(error).__name__, error)
        return TEMPFAIL


_INTROSPECTED = ("auth_", "smtp_", "handle_")


def _introspected_names(cls: type) -> list[str]:
    return [name for name in dir(cls) if name.startswith(_INTROSPECTED)]


# The path nearly every MTA sends, <local@domain> and its parameters, read without the
# stdlib's header parser (most of the cost of MAIL and RCPT). Anything else, and any
# comment or odd space after the ">", goes to the parser. What follows the spaces after
# ">" is the rest, as the parser returns it.
_PLAIN_PATH = re.compile(
    r"<([A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>(?: +(?![ (]))?"
)


class _Session(SMTP):
    """aiosmtpd's SMTP protocol, cheaper to set up for each connection.

    Its constructor finds its commands, AUTH mechanisms and the handler's hooks with
    ``dir()`` and ``inspect.getmembers`` on every connection: ~180 µs of a ~850 µs
    SMTP session in our benchmark. Those look only at names starting ``auth_``,
    ``smtp_`` and ``handle_``, so ``__dir__`` offers just those, listed once per class
    (tests/gateway/ingress/test_smtp.py checks the tables come out the same).
    """

    _names: ClassVar[list[str] | None] = None
    receiving = False  # inside DATA: the message is still coming in

    def __dir__(self) -> list[str]:
        cls = type(self)
        if cls._names is None:
            cls._names = _introspected_names(cls)
        return cls._names

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)
        self.event_handler.sessions.discard(self)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's own address parsing for MAIL and RCPT, less two faults.

        It defines a typing.Protocol class on every call: a class built twice per
        message, ~7 % of the SMTP process's CPU. And the stdlib parser it calls crashes
        on inputs such as "<", '"' or "a@[" (IndexError, AttributeError in Python 3.11),
        which stock aiosmtpd answers 451, so the sender retries for days; here they are
        malformed addresses (553). A plain ``<local@domain>`` skips that parser altogether
        (``_PLAIN_PATH``). tests/gateway/ingress/test_smtp.py compares the two.
        """
        if not arg:
            return "", ""
        plain = _PLAIN_PATH.match(arg)
        if plain is not None and not arg[plain.end() :].startswith((" ", "\t", "(")):
            addr, rest = plain[1], arg[plain.end() :]
            if self.local_part_limit and len(addr.rpartition("@")[0]) > self.local_part_limit:
                return None, None
            return addr, rest
        try:
            parsed, rest = (
                get_angle_addr(arg) if arg.lstrip().startswith("<") else get_addr_spec(arg)
            )
            addr = str(parsed.addr_spec)
        except Exception:  # HeaderParseError, and the parser's own crashes (see above)
            return None, None
        local_part = addr.rpartition("@")[0]
        if self.local_part_limit and len(local_part) > self.local_part_limit:
            return None, None
        return addr, rest

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        """Marked from the start of the message to its reply, so a shutdown lets it finish
        (F20); otherwise aiosmtpd's DATA with the message read in pieces
        (gateway/ingress/smtp_data.py)."""
        self.receiving = True
        try:
            await self._data(arg)
        finally:
            self.receiving = False

    async def _data(self, arg: str) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            content, refusal = await read_data(
                self._reader, max_bytes=self.data_size_limit, max_line=self.line_length_limit
            )
        except asyncio.CancelledError:  # the connection went away mid-message
            self._writer.close()
            raise
        if refusal is not None:
            await self.push(refusal)
            self._set_post_data_state()
            return
        self.envelope.content = self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)

    def hang_up(self) -> None:
        """Shutting down: an idle session is told 421 and closed; it will come back."""
        if self.transport is not None:
            cast(asyncio.WriteTransport, self.transport).write(SHUTTING_DOWN.encode() + b"\r\n")
            self.transport.close()


class _Busy(asyncio.Protocol):
    """Past ``max_sessions``: one 421 line and the connection closed (F19).

    aiosmtpd holds a message in memory until its end of DATA, so each session may hold
    up to the size limit; the cap bounds that memory, and 421 asks the sending MTA to
    come back later rather than bounce.
    """

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.WriteTransport; both can write.
        writer = cast(asyncio.WriteTransport, transport)
        writer.write(BUSY.encode() + b"\r\n")
        writer.close()


_HANDLER_NAMES = _introspected_names(Handler)


def smtp_factory(
    handler: Handler,
    *,
    hostname: str,
    max_bytes: int,
    timeout: float,
    max_sessions: int = 64,
    tls_context: ssl.SSLContext | None = None,
    require_tls: bool = False,
) -> Any:
    """A protocol factory for loop.create_server: one SMTP instance per connection, or a
    421 when ``max_sessions`` are already open. With ``tls_context`` STARTTLS is offered,
    and with ``require_tls`` nothing but the greeting and STARTTLS is allowed before it."""

    def factory() -> asyncio.Protocol:
        if len(handler.sessions) >= max_sessions:
            log.warning("SMTP: %d sessions open, refusing another with 421", max_sessions)
            return _Busy()
        session = _Session(
            handler,
            hostname=hostname,
            data_size_limit=max_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,
            timeout=timeout,
            command_call_limit={"NOOP": 50, "*": 5000},
            tls_context=tls_context,
            require_starttls=require_tls,
        )
        handler.sessions.add(session)
        return session

    return factory
