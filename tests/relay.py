"""A real SMTP relay for tests and benchmarks: aiosmtpd on a loopback port, told what to say.

``Relay.mode`` switches what it answers after DATA: ``"250"`` (accept), ``"451"``
(try later), ``"550"`` (refused for good) or ``"drop"`` (close the connection without an
answer); ``"421"`` answers the greeting with 421 and hangs up. ``delay`` sleeps in
handle_DATA before taking the message, ``answer_delay`` after taking it and before
answering 250 (a relay that committed but is slow to say so: kill the sender then and
the message is delivered while our row still says "sending"). ``refuse``
answers chosen RCPT addresses with a fixed reply. Every message that reached DATA is in
``received``; those answered 250 are in ``accepted``, each with its Message-ID.
``stop()`` and ``start()`` again on the same port give "connection refused" meanwhile.

Optional implicit TLS, STARTTLS and AUTH use aiosmtpd's own support; ``make_certificate``
creates a throwaway CA and a server certificate for 127.0.0.1 with the openssl tool.

Run as a sink for benchmarks: ``python -m tests.relay --port N`` (answers 250, keeps a
count only, prints "ready" once listening).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.support import free_port

_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]*>)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Received:
    message_id: str | None
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    answer: str
    at: float


class _Handler:
    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        refusal = self.relay.refuse.get(address.lower())
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        relay = self.relay
        if relay.delay:
            await asyncio.sleep(relay.delay)
        data = bytes(envelope.original_content or envelope.content or b"")
        mode = relay.mode
        answer = {
            "250": f"250 2.0.0 Ok: queued as Q{len(relay.accepted) + 1}",
            "451": "451 4.3.0 Temporary local problem, try later",
            "550": "550 5.7.1 Message refused by policy",
            "drop": "(connection dropped)",
        }.get(mode, "250 2.0.0 Ok")
        found = _MESSAGE_ID.search(data.split(b"\r\n\r\n", 1)[0])
        item = Received(
            message_id=found.group(1).decode() if found else None,
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=data,
            answer=answer,
            at=time.monotonic(),
        )
        with relay.lock:
            relay.received.append(item)
            if answer.startswith("250"):
                relay.accepted.append(item)
        if relay.answer_delay:
            # Committed, then slow to say so: a sender killed now never sees the 250 it got
            # (the RFC 1047 duplicate), and must send the message again.
            await asyncio.sleep(relay.answer_delay)
        if mode == "drop":
            assert server.transport is not None
            server.transport.abort()
        return answer


class _RelaySMTP(SMTP):
    """aiosmtpd's server, plus a 421 greeting on demand (F13: "421 on connect")."""

    relay: Relay

    async def _handle_client(self) -> None:
        with self.relay.lock:
            self.relay.connections += 1
        if self.relay.mode == "421":
            await self.push("421 4.3.2 Service not available, closing transmission channel")
            assert self.transport is not None
            self.transport.close()
            return
        await super()._handle_client()


class _Controller(Controller):
    def __init__(self, relay: Relay, **kwargs: Any) -> None:
        self.relay = relay
        super().__init__(_Handler(relay), **kwargs)

    def factory(self) -> SMTP:
        server = _RelaySMTP(self.handler, **self.SMTP_kwargs)
        server.relay = self.relay
        return server


class Relay:
    def __init__(
        self,
        port: int | None = None,
        *,
        tls: ssl.SSLContext | None = None,
        starttls: ssl.SSLContext | None = None,
        logins: dict[str, str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.tls, self.starttls, self.logins = tls, starttls, logins
        self.mode = "250"
        self.delay = 0.0
        self.answer_delay = 0.0
        self.refuse: dict[str, str] = {}
        self.received: list[Received] = []
        self.accepted: list[Received] = []
        self.auth_seen: list[str] = []
        self.connections = 0
        self.lock = threading.Lock()
        self._controller: _Controller | None = None

    def start(self) -> Relay:
        kwargs: dict[str, Any] = {"hostname": "127.0.0.1", "port": self.port}
        smtp_kwargs: dict[str, Any] = {"server_hostname": "relay.test", "timeout": 30}
        if self.tls is not None:
            kwargs["ssl_context"] = self.tls
        if self.starttls is not None:
            smtp_kwargs["tls_context"] = self.starttls
            smtp_kwargs["require_starttls"] = True
        if self.logins is not None:
            smtp_kwargs["authenticator"] = self._authenticate
            smtp_kwargs["auth_required"] = True
        self._controller = _Controller(self, **smtp_kwargs, **kwargs)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> Relay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword):
            user, password = data.login.decode(), data.password.decode()
            self.auth_seen.append(user)
            if self.logins is not None and self.logins.get(user) == password:
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    def accepted_ids(self) -> list[str | None]:
        with self.lock:
            return [r.message_id for r in self.accepted]

    def wait_until(self, predicate: Callable[[Relay], bool], timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(0.02)
        return predicate(self)


def make_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost: (ca, cert, key)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = directory / "ca.key", directory / "ca.pem"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.pem"
    ext = directory / "san.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Test CA",
        "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", str(key), "-out", str(csr))  # fmt: skip
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))  # fmt: skip
    return ca, cert, key


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


class _Sink:
    """Benchmark sink: answer 250, count, keep nothing."""

    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.count += 1
        return "250 2.0.0 Ok"


def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    controller = Controller(_Sink(), hostname="127.0.0.1", port=args.port)
    controller.start()
    print("ready", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    _main()


def relay_settings(
    tmp: Path,
    relay: Relay,
    *,
    outbound: str = "",
    templates: Path | None = None,
    smtp_port: int | None = None,
) -> Path:
    """A settings file whose [outbound] sends to ``relay``; returns its path.

    ``outbound`` adds lines to [outbound] (e.g. ``timeout_seconds = 1``); the default
    security is "none" because most tests are about SMTP answers, not TLS.
    """
    from tests.support import REPO, settings_text

    text = settings_text(tmp, smtp_port or free_port())
    lines = outbound if "security" in outbound else f'security = "none"\n{outbound}'
    text = text.replace(
        'transport = "maildir"',
        f'transport = "smtp"\nrelay_host = "127.0.0.1"\nrelay_port = {relay.port}\n{lines}',
    )
    if templates is not None:
        text = text.replace(f'dir = "{REPO / "templates"}"', f'dir = "{templates}"')
    path = tmp / "settings.toml"
    path.write_text(text)
    return path
