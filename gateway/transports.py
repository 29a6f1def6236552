"""SMTP relay transport: smtplib in the delivery thread, replies mapped to retry or give up.

Why smtplib and not aiosmtplib: the Deliverer is synchronous (claim, send, record are
three short steps with SQLAlchemy sessions in one thread), so a blocking client fits it
without a second event loop; smtplib is in the standard library, and driving MAIL / RCPT
/ DATA ourselves gives the per-recipient answers the outbox records (F15). It is not
the bottleneck: bench/delivery.py measures it against a bare aiosmtplib loop.

One connection is reused for consecutive rows of a pass (``max_per_connection``), so a
queue of mail costs one TCP + TLS + AUTH handshake, not one per row. Exactly-once rules
are unchanged: each row is still its own SMTP transaction, claimed before and recorded
right after. A reused connection that the relay closed while idle is noticed at MAIL
FROM, before anything of the row was sent, and replaced once.

Every transaction has a wall-clock budget (``budget_factor`` × ``timeout``): each
command gets at most what is left of it, so a relay that trickles answers cannot hold a
row past the Deliverer's lease.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import time
from collections.abc import Sequence

from gateway.outbound import PermanentFailure, RelayUnavailable, SendResult, TemporaryFailure


class SmtpTransport:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        security: str = "starttls",
        verify: bool = True,
        user: str = "",
        password: str | None = None,
        timeout: float = 30.0,
        local_hostname: str | None = None,
        max_per_connection: int = 100,
        budget_factor: float = 3.0,
    ) -> None:
        self.host, self.port, self.security = host, port, security
        self.user, self.password, self.timeout = user, password, timeout
        self.local_hostname = local_hostname
        self.max_per_connection = max_per_connection
        self.budget = timeout * budget_factor
        self.context = ssl.create_default_context()  # certificates and host name checked
        if not verify:
            self.context.check_hostname = False
            self.context.verify_mode = ssl.CERT_NONE
        self._client: smtplib.SMTP | None = None
        self._used = 0

    def send(
        self, mail_from: str, recipients: Sequence[str], raw: bytes, row_id: int
    ) -> SendResult:
        for address in (mail_from, *recipients):
            if any(ch in address for ch in "\r\n\0<> "):
                raise PermanentFailure(f"unsafe envelope address {address!r}")  # B42
        deadline = time.monotonic() + self.budget
        client, reused = self._connection(deadline)
        refused: dict[str, tuple[int, str]] = {}
        try:
            try:
                code, reply = self._command(client, deadline, "mail", mail_from, self._options(raw))
            except (smtplib.SMTPServerDisconnected, OSError):
                if not reused:
                    raise
                self.close()  # the relay dropped the idle connection: nothing was sent yet
                client, _ = self._connection(deadline)
                code, reply = self._command(client, deadline, "mail", mail_from, self._options(raw))
            self._used += 1
            if code != 250:
                self._reset(client)
                raise _failure(code, reply, "MAIL FROM")
            for rcpt in recipients:
                code, reply = self._command(client, deadline, "rcpt", rcpt, [])
                if code not in (250, 251):
                    refused[rcpt] = (code, reply)
            if len(refused) == len(recipients):
                self._reset(client)
                return SendResult(reply="no recipient accepted", refused=refused)
            code, reply = self._command(client, deadline, "data", raw)
            if code != 250:
                raise _failure(code, reply, "DATA", refused)
            return SendResult(reply=f"{code} {reply}", refused=refused)
        except smtplib.SMTPDataError as exc:  # the answer to DATA itself was not 354
            self._reset(client)
            raise _failure(exc.smtp_code, _text(exc.smtp_error), "DATA", refused) from exc
        except (PermanentFailure, TemporaryFailure):
            raise
        except (OSError, smtplib.SMTPException) as exc:
            # Dropped or timed out mid-transaction: maybe delivered, maybe not. The row
            # stays pending and goes again with the same Message-ID (at-least-once).
            self.close(polite=False)
            raise TemporaryFailure(
                f"connection lost during the transaction: {type(exc).__name__}: {exc}", refused
            ) from exc

    def close(self, polite: bool = True) -> None:
        """QUIT (bounded) and forget the connection; the next send opens a new one."""
        client, self._client, self._used = self._client, None, 0
        if client is None:
            return
        try:
            if polite and client.sock is not None:
                client.sock.settimeout(min(self.timeout, 5.0))
                client.quit()
        except (OSError, smtplib.SMTPException):
            pass
        finally:
            client.close()

    def _connection(self, deadline: float) -> tuple[smtplib.SMTP, bool]:
        if self._client is not None and self._used < self.max_per_connection:
            return self._client, True
        self.close()
        try:
            client = self._connect(max(0.1, min(self.timeout, deadline - time.monotonic())))
        except (OSError, smtplib.SMTPException) as exc:
            raise RelayUnavailable(
                f"relay {self.host}:{self.port}: {type(exc).__name__}: {_describe(exc)}"
            ) from exc
        self._client, self._used = client, 0
        return client, False

    def _connect(self, timeout: float) -> smtplib.SMTP:
        hostname = self.local_hostname or socket.getfqdn()
        client: smtplib.SMTP
        if self.security == "tls":
            client = smtplib.SMTP_SSL(
                self.host, self.port, timeout=timeout, context=self.context, local_hostname=hostname
            )
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=timeout, local_hostname=hostname)
        try:
            _hello(client)
            if self.security == "starttls":
                client.starttls(context=self.context)  # never falls back to plain text
                _hello(client)
            if self.user:
                client.login(self.user, self.password or "")
        except BaseException:
            client.close()
            raise
        return client

    def _options(self, raw: bytes) -> list[str]:
        client = self._client
        if client is None:
            return []
        options = [f"SIZE={len(raw)}"] if client.has_extn("size") else []
        if client.has_extn("8bitmime") and not raw.isascii():
            options.append("BODY=8BITMIME")  # compose writes 7-bit; older rows may not be
        return options

    def _command(
        self, client: smtplib.SMTP, deadline: float, verb: str, *args: object
    ) -> tuple[int, str]:
        left = deadline - time.monotonic()
        if left <= 0:
            self.close(polite=False)  # mid-transaction: the connection cannot carry another row
            raise TemporaryFailure(f"transaction took over {self.budget:g} s; will retry")
        if client.sock is not None:
            client.sock.settimeout(min(self.timeout, left))
        code, reply = getattr(client, verb)(*args)
        return code, _text(reply)

    def _reset(self, client: smtplib.SMTP) -> None:
        """RSET after a refused transaction so the connection can carry the next row."""
        try:
            client.rset()
        except (OSError, smtplib.SMTPException):
            self.close(polite=False)


def _hello(client: smtplib.SMTP) -> None:
    """EHLO, else HELO; a relay that answers neither with 2xx is not talking to us."""
    code, reply = client.ehlo()
    if not 200 <= code < 300:
        code, reply = client.helo()
        if not 200 <= code < 300:
            raise smtplib.SMTPHeloError(code, reply)


def _failure(
    code: int, reply: str, stage: str, refused: dict[str, tuple[int, str]] | None = None
) -> TemporaryFailure | PermanentFailure:
    text = f"{code} {reply} (after {stage})"
    if 500 <= code < 600:
        return PermanentFailure(text, refused)
    return TemporaryFailure(text, refused)


def _text(reply: bytes | str) -> str:
    value = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return " ".join(value.split())[:500]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {_text(exc.smtp_error)}"
    return str(exc) or type(exc).__name__
