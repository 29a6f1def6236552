"""Turn a rendered template into the exact bytes we will send, headers made safe.

Header values pass through clean_text (no CR/LF/NUL) before they reach the message, so
no case data can add a header line (B41), and an outbox row can never be poisoned by a
value the generator would refuse on every retry (B26). Attachment names are cleaned the
same way and, unless they are plain ASCII words, written with RFC 2231 (B45): a name
full of quotes or line breaks becomes ``filename*=utf-8''...`` percent-encoding, which no
MIME parser can read as a second header or a second part.

The message is built with the email package's ``email.mime`` classes and written by its
compat32 generator, not with EmailMessage: every value here is ours and already clean,
so the modern policy's parse of each header on assignment and re-fold on output (about
two thirds of a mail's cost, and a source of odd empty encoded-words) buys nothing.
Non-ASCII text is encoded by the same package: RFC 2047 for headers (``Header`` for the
subject, from its first non-ASCII word, ``formataddr`` for the display name) and
quoted-printable UTF-8 for bodies; the output is always 7-bit.
"""

from __future__ import annotations

import re
import secrets
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from email import encoders
from email.charset import QP, Charset
from email.header import Header
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.policy import Compat32
from email.utils import format_datetime, formataddr
from typing import Any, Literal

from gateway.models import utcnow
from gateway.render import Rendered
from parsers.mime import clean_text

AutoSubmitted = Literal["auto-replied", "auto-generated", "no"]
MAX_REFERENCES = 20
MAX_FILENAME = 200
# A display name is written as one encoded word, which no folding can split: 120
# characters of 4-byte UTF-8 still leave the From line under 998 (RFC 5322 §2.1.1).
MAX_DISPLAY_NAME = 120
MAX_7BIT_LINE = 998  # RFC 5322 §2.1.1, without the CRLF
_PLAIN_FILENAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ -]*")
_CONTENT_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,62}/[a-z0-9][a-z0-9!#$&^_.+-]{0,62}")
_MSG_ID = re.compile(r"<[^<>\s]{1,250}>")


class _Policy(Compat32):
    """compat32, writing a short plain header line as it is.

    The generator folds every header through ``email.header.Header`` (half of composing
    a mail); for a printable ASCII value that fits on one line that returns the value
    unchanged (checked against it by tests/gateway/test_compose.py), so it is written
    directly.
    """

    def _fold(self, name: str, value: Any, sanitize: bool) -> str:
        if (
            isinstance(value, str)
            and len(name) + 2 + len(value) <= (self.max_line_length or 78)
            and value.isascii()
            and value.isprintable()
        ):
            return f"{name}: {value}{self.linesep}"
        return super()._fold(name, value, sanitize)  # type: ignore[misc]


_POLICY = _Policy(linesep="\r\n")
_UTF8 = Charset("utf-8")
_UTF8.body_encoding = QP  # readable where the text is mostly ASCII, as ours is

Attachment = tuple[str, str, bytes]  # filename, content type, data


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
    texts = (rendered.text, rendered.html)
    message: Message = MIMEMultipart("alternative", _boundary(texts), policy=_POLICY)
    message.attach(_text(rendered.text, "plain"))
    message.attach(_text(rendered.html, "html"))
    if attachments:
        alternative = message
        message = MIMEMultipart("mixed", _boundary(texts), policy=_POLICY)
        del alternative["MIME-Version"]
        message.attach(alternative)
        for filename, content_type, data in attachments:
            message.attach(_attachment(filename, content_type, data))
    name = clean_text(from_name, MAX_DISPLAY_NAME).strip()
    message["From"] = formataddr((name, _addr(mail_from)))
    message["To"] = ", ".join(_addr(a) for a in to)
    if reply_to:
        message["Reply-To"] = _addr(reply_to)
    message["Subject"] = _subject(clean_text(rendered.subject))  # type: ignore[assignment]
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
    return Composed(message_id=message_id, raw=message.as_bytes(policy=_POLICY))


def _boundary(texts: Sequence[str]) -> str:
    """A boundary of our own, so the generator need not invent one.

    Left to itself the generator compiles a new regular expression for every message to
    prove its random boundary absent from the text (a third of composing a mail). Ours
    carries 80 random bits and ``=_``, which quoted-printable and base64 output cannot
    contain; only a 7-bit text part could, and a substring test rules that out. At this
    length the Content-Type line fits in 78 characters, so it is written as it is, not
    folded through ``email.header.Header``.
    """
    while True:
        boundary = f"=_cpsd_{secrets.token_hex(10)}"
        if not any(boundary in text for text in texts):
            return boundary


def _text(body: str, subtype: str) -> MIMENonMultipart:
    """7bit when it is ASCII in short lines (most of ours), else quoted-printable UTF-8."""
    plain = body.isascii() and all(len(line) <= MAX_7BIT_LINE for line in body.splitlines())
    part = MIMENonMultipart("text", subtype, policy=_POLICY)
    part.set_payload(body, "us-ascii" if plain else _UTF8)  # sets charset and encoding
    del part["MIME-Version"]  # belongs on the top level only (set_payload adds it)
    return part


def _attachment(filename: str, content_type: str, data: bytes) -> MIMEBase:
    maintype, subtype = _content_type(content_type)
    part = MIMEBase(maintype, subtype, policy=_POLICY)
    del part["MIME-Version"]
    part.set_payload(data)
    encoders.encode_base64(part)
    name = safe_filename(filename)
    if _PLAIN_FILENAME.fullmatch(name):
        part.add_header("Content-Disposition", "attachment", filename=name)
    else:
        part["Content-Disposition"] = _rfc2231_disposition(name)
    return part


def _subject(value: str) -> str | Header:
    """ASCII words as they are, RFC 2047 from the first non-ASCII word on.

    Systems that look for ``[CPSD-000123]`` in the raw header (grep, mail rules, other
    desks' ticketing tools) still find it; the generator would otherwise encode the whole
    line. (compat32 takes a ``Header`` where its stubs say ``str``.)
    """
    first = next((i for i, ch in enumerate(value) if not ch.isascii()), None)
    if first is None:
        return value
    cut = value.rfind(" ", 0, first) + 1
    header = Header(value[:cut], "us-ascii", header_name="Subject")
    header.append(value[cut:], _UTF8)
    return header


def safe_filename(name: str) -> str:
    """The name a recipient sees: one line, no path separators, bounded, never empty."""
    cleaned = clean_text(name.replace("\\", "_").replace("/", "_"), MAX_FILENAME)
    return cleaned.strip(". ") or "attachment"


def _rfc2231_disposition(filename: str) -> str:
    """``attachment; filename*0*=utf-8''...`` built from percent-encoding only (B45).

    The email package writes an ASCII name as a quoted string (escaping ``"``) and
    switches to RFC 2231 only for non-ASCII names. We want every unusual name in RFC 2231
    form, whose alphabet (letters, digits, ``%._-~``) cannot close a quote or start a
    header whatever the name held. Sections of at most 60 characters keep lines short;
    the generator folds between them.
    """
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
    return "; ".join(["attachment", *params])


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
