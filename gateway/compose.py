"""Turn a rendered template into the exact bytes we will send, headers made safe.

Header values pass through clean_text (no CR/LF/NUL) before they reach EmailMessage, so
no case data can add a header line (B41), and an outbox row can never be poisoned by a
value EmailMessage would refuse on every retry (B26).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from typing import Literal

from gateway.models import utcnow
from gateway.render import Rendered
from parsers.mime import clean_text

AutoSubmitted = Literal["auto-replied", "auto-generated", "no"]
MAX_REFERENCES = 20


@dataclass(frozen=True)
class Composed:
    message_id: str
    raw: bytes


def new_message_id(domain: str, reference: str | None = None) -> str:
    token = secrets.token_hex(10)
    return f"<{reference.lower() + '.' if reference else ''}{token}@{domain}>"


def compose(
    rendered: Rendered,
    *,
    mail_from: str,
    from_name: str,
    to: Sequence[str],
    message_id: str,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    auto_submitted: AutoSubmitted = "auto-generated",
    loop_id: str = "cpsd-gateway",
    reply_to: str | None = None,
) -> Composed:
    message = EmailMessage(policy=SMTP)
    message["From"] = Address(display_name=clean_text(from_name), addr_spec=_addr(mail_from))
    message["To"] = ", ".join(_addr(a) for a in to)
    if reply_to:
        message["Reply-To"] = _addr(reply_to)
    message["Subject"] = clean_text(rendered.subject)
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = message_id
    if in_reply_to:
        message["In-Reply-To"] = clean_text(in_reply_to)
    chain = [clean_text(r) for r in references if r][-MAX_REFERENCES:]
    if chain:
        message["References"] = " ".join(chain)
    if auto_submitted != "no":
        message["Auto-Submitted"] = auto_submitted
        message["X-Auto-Response-Suppress"] = "All"
    message["X-CPSD-Loop"] = clean_text(loop_id)
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    return Composed(message_id=message_id, raw=message.as_bytes())


def _addr(value: str) -> str:
    """An address for a header or an envelope: one clean addr-spec, or an error (B42)."""
    cleaned = value.strip()
    if any(ch in cleaned for ch in "\r\n\0<>,; ") or cleaned.count("@") != 1:
        raise ValueError(f"refusing unsafe address {value!r}")
    return cleaned
