"""SMTP relay transport: smtplib in the delivery thread, replies mapped to retry or give up."""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Sequence

from gateway.outbound import PermanentFailure, TemporaryFailure


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
    ) -> None:
        self.host, self.port, self.security = host, port, security
        self.user, self.password, self.timeout = user, password, timeout
        self.local_hostname = local_hostname
        self.context = ssl.create_default_context()
        if not verify:
            self.context.check_hostname = False
            self.context.verify_mode = ssl.CERT_NONE

    def send(self, mail_from: str, recipients: Sequence[str], raw: bytes, row_id: int) -> None:
        for address in (mail_from, *recipients):
            if any(ch in address for ch in "\r\n\0<> "):
                raise PermanentFailure(f"unsafe envelope address {address!r}")  # B42
        try:
            with self._connect() as client:
                refused = client.sendmail(mail_from, list(recipients), raw)
        except smtplib.SMTPRecipientsRefused as exc:
            raise _classify(exc.recipients) from exc
        except smtplib.SMTPResponseException as exc:
            text = f"{exc.smtp_code} {exc.smtp_error.decode('utf-8', 'replace')}"
            if 500 <= exc.smtp_code < 600:
                raise PermanentFailure(text) from exc
            raise TemporaryFailure(text) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise TemporaryFailure(f"{type(exc).__name__}: {exc}") from exc
        if refused:
            raise _classify(refused)

    def _connect(self) -> smtplib.SMTP:
        if self.security == "tls":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                self.host,
                self.port,
                timeout=self.timeout,
                context=self.context,
                local_hostname=self.local_hostname or socket.getfqdn(),
            )
        else:
            client = smtplib.SMTP(
                self.host, self.port, timeout=self.timeout, local_hostname=self.local_hostname
            )
            if self.security == "starttls":
                client.starttls(context=self.context)
        if self.user:
            client.login(self.user, self.password or "")
        return client


def _classify(refused: dict[str, tuple[int, bytes]]) -> Exception:
    text = "; ".join(
        f"{rcpt}: {code} {msg.decode('utf-8', 'replace')}" for rcpt, (code, msg) in refused.items()
    )
    if all(500 <= code < 600 for code, _ in refused.values()):
        return PermanentFailure(text)
    return TemporaryFailure(text)
