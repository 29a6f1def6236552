"""Turn a rendered template into the exact bytes we will send, headers made safe.

Header values pass through clean_text (no CR/LF/NUL) before they reach EmailMessage, so
no case data can add a header line (B41), and an outbox row can never be poisoned by a
value EmailMessage would refuse on every retry (B26). Attachment names are cleaned the
same way and, unless they are plain ASCII words, written with RFC 2231 (B45): a name
full of quotes or line breaks becomes ``filename*=utf-8''...`` percent-encoding, which no
MIME parser can read as a second header or a second part.
"""

from __future__ import annotations

import re
import secrets
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import SMTP, Policy
from email.utils import format_datetime
from typing import Literal

from gateway.models import utcnow
from gateway.render import Rendered
from parsers.mime import clean_text

AutoSubmitted = Literal["auto-replied", "auto-generated", "no"]
MAX_REFERENCES = 20
MAX_FILENAME = 200
_PLAIN_FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ -]*")
_CONTENT_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,62}/[a-z0-9][a-z0-9!#$&^_.+-]{0,62}")
_MSG_ID = re.compile(r"<[^<>\s]{1,250}>")

Attachment = tuple[str, str, bytes]  # filename, content type, data


class _HeaderClasses(HeaderRegistry):
    """The standard header classes, each built once.

    The stock registry builds a new class with ``type()`` on every header it is asked
    for (about forty per mail we compose); that was a third of the cost of a mail.
    """

    def __init__(self) -> None:
        super().__init__()
        self._built: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        built = self._built.get(key)
        if built is None:
            built = self._built[key] = super().__getitem__(name)
        return built


# 7-bit clean output (quoted-printable / base64 for anything else): passes any relay,
# with or without 8BITMIME, and the stored bytes never depend on the relay we meet.
_POLICY = SMTP.clone(cte_type="7bit", header_factory=_HeaderClasses())


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
    attachments: Sequence[Attachment] = (),
) -> Composed:
    """One RFC 5322 message: threaded, marked automatic, replies routed back to us.

    ``references`` is the whole known chain, oldest first; only the newest
    MAX_REFERENCES are kept (RFC 5322 allows trimming the middle; the newest matter for
    threading and our correlation).
    """
    message = EmailMessage(policy=_POLICY)
    message["From"] = Address(display_name=clean_text(from_name), addr_spec=_addr(mail_from))
    message["To"] = ", ".join(_addr(a) for a in to)
    if reply_to:
        message["Reply-To"] = _addr(reply_to)
    message["Subject"] = clean_text(rendered.subject)
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = _message_id(message_id)
    if in_reply_to and _MSG_ID.fullmatch(clean_text(in_reply_to)):
        message["In-Reply-To"] = clean_text(in_reply_to)
    chain = [r for r in (clean_text(r) for r in references if r) if _MSG_ID.fullmatch(r)]
    chain = list(dict.fromkeys(chain))[-MAX_REFERENCES:]
    if chain:
        message["References"] = " ".join(chain)
    if auto_submitted != "no":
        message["Auto-Submitted"] = auto_submitted
        message["X-Auto-Response-Suppress"] = "All"
    message["X-CPSD-Loop"] = clean_text(loop_id)
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    for filename, content_type, data in attachments:
        maintype, subtype = _content_type(content_type)
        name = safe_filename(filename)
        if _PLAIN_FILENAME.fullmatch(name):
            message.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
            continue
        message.add_attachment(data, maintype=maintype, subtype=subtype)
        part = message.get_payload()[-1]
        del part["Content-Disposition"]
        part["Content-Disposition"] = _Rfc2231Disposition.build(name)
    return Composed(message_id=message_id, raw=message.as_bytes())


def safe_filename(name: str) -> str:
    """The name a recipient sees: one line, no path separators, bounded, never empty."""
    cleaned = clean_text(name.replace("\\", "_").replace("/", "_"), MAX_FILENAME)
    return cleaned.strip(". ") or "attachment"


class _Rfc2231Disposition(str):
    """``attachment; filename*0*=utf-8''...`` built from percent-encoding only (B45).

    The email package writes an ASCII name as a quoted string (escaping ``"``) and
    switches to RFC 2231 only for non-ASCII or very long names. We want every unusual
    name in RFC 2231 form, whose alphabet (letters, digits, ``%._-~``) cannot close a
    quote or start a header whatever the name held. The email package stores a header
    object with a ``name`` as given and asks it to ``fold`` itself; the str value is what
    ``get_filename()`` parses back.
    """

    name = "Content-Disposition"
    _sections: tuple[str, ...] = ()

    @classmethod
    def build(cls, filename: str) -> _Rfc2231Disposition:
        encoded = urllib.parse.quote(filename, safe="")
        sections: list[str] = []
        while encoded:
            cut = min(len(encoded), 60)
            while "%" in encoded[max(cut - 2, 0) : cut]:  # never split a %XX triplet
                cut -= 1
            sections.append(encoded[:cut])
            encoded = encoded[cut:]
        charset = "utf-8''"
        params = [f"filename*{i}*={charset if i == 0 else ''}{s}" for i, s in enumerate(sections)]
        header = cls("; ".join(["attachment", *params]))
        header._sections = tuple(params)
        return header

    def fold(self, *, policy: Policy) -> str:
        newline = policy.linesep
        return f"{self.name}: attachment;{newline} " + f";{newline} ".join(self._sections) + newline


def _content_type(value: str) -> tuple[str, str]:
    lowered = value.strip().lower()
    if not _CONTENT_TYPE.fullmatch(lowered) or lowered.startswith(("multipart/", "message/")):
        return "application", "octet-stream"
    maintype, subtype = lowered.split("/")
    return maintype, subtype


def _message_id(value: str) -> str:
    if not _MSG_ID.fullmatch(value):
        raise ValueError(f"refusing malformed Message-ID {value!r}")
    return value


def _addr(value: str) -> str:
    """An address for a header or an envelope: one clean addr-spec, or an error (B42)."""
    cleaned = value.strip()
    if any(ch in cleaned for ch in "\r\n\0<>,; ") or cleaned.count("@") != 1:
        raise ValueError(f"refusing unsafe address {value!r}")
    return cleaned
