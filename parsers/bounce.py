"""Recognise bounces (delivery status notifications) and say who failed and why.

A bounce must never open a case or be answered (the reply would go to ``<>`` or to a
daemon, B57); instead the failed recipient of *our* message is marked. Standard RFC 3464
reports are parsed field by field. Many MTAs still send free-text notices (qmail, Exim,
Exchange, Gmail, Notes, Japanese carriers, ...), so those are recognised from the
shapes all of them share: a mail-system sender or null return path, a bounce-like
subject, stock phrases, an SMTP status code and a returned copy of the original.

Being wrong in the other direction is worse: a human who writes "your mail was
undeliverable" must still get a case. So text alone never makes a bounce; it needs a
machine signal, or a bounce subject *and* a stock notice phrase *and* a returned message.

Complaints and refusals that are not RFC 3464 count too, each only on what its sender
alone writes: complaints forwarded without ARF (Outlook.com's JMRP, Amazon SES: the
report's own title, or Microsoft's ``X-HmXmrOriginalRecipient`` mark), Apple Mail's
unsubscribe requests (``X-Apple-Unsubscribe``) and list managers refusing a post
(``X-MLServer`` from the list's admin address). Answering them would reach a robot.

Everything is bounded: a few hundred parts, a few hundred KB of text, capped headers.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import html
import itertools
import json
import quopri
import re
from dataclasses import dataclass, field
from email.message import EmailMessage, Message
from email.parser import HeaderParser

from parsers.autoreply import (
    _addresses,
    _daemon_sender,
    _decoded,
    _header,
    _header_names,
    _headers,
    _is_null_path,
    _local_part,
    _report_type,
    _subject,
    is_out_of_office,
)

MAX_TEXT = 256 * 1024  # characters of notice text scanned per message
MAX_PARTS = 300  # MIME parts visited
MAX_DEPTH = 12  # multipart nesting followed
MAX_RECIPIENTS = 50
MAX_DIAGNOSTIC = 500
MAX_ORIGINAL_HEADERS = 64 * 1024

# --- patterns ---------------------------------------------------------------------

_EMAIL = re.compile(  # bounded repeats: linear on hostile runs of address characters
    r"(?<![\w.%+'=/-])([\w.%+'=-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.){1,10}[A-Za-z]{2,63})(?![\w-])",
    re.ASCII,
)
# Enhanced status code (RFC 3463): class.subject.detail, not part of an IP or version.
_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d]|\.\d)")
# Basic reply code in SMTP context: "550 ...", "550-...", "said: 550", "ERROR_CODE :550".
_BASIC = re.compile(r"(?:^|[\s:>(\[\"'])([45][0-5]\d)(?=[\s\-,.;:)\]]|$)", re.MULTILINE)
_MSGID_LINE = re.compile(
    r"^[ \t>]*Message-?ID[ \t]*:[ \t]*(<[^<>\s]{1,250}>|[^\s<>]{3,250})",
    re.IGNORECASE | re.MULTILINE,
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff\ud800-\udfff]")
_DSN_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9-]{1,40})[ \t]*:[ \t]*(.*)$")

# Subjects that mail systems give their notices (searched, not anchored, when the
# sender is already a mail system; anchored at the start for anyone else).
_SUBJECT = re.compile(
    r"undeliver|undelivered|non[- ]?deliver|returned mail|return(?:ed)? to sender|"
    r"mail delivery (?:failed|failure|problem|error|status|notification|subsystem)|"
    r"delivery (?:status|notification|failure|failed|has failed|problem|error|report)|"
    r"(?:failure|delivery|non-?delivery|bounce) (?:notice|notification|report)|"
    r"message (?:delivery )?(?:has )?failed|(?:could|can) ?not (?:be )?deliver|"
    r"not (?:been )?delivered|mail system error|system error - returned|postmaster notify|"
    r"delivery (?:has been |is )?delayed|delayed mail|warning: (?:could not send|message .* delayed)|"
    r"(?:mail|message|e-?mail) (?:could|can) ?not be delivered|"
    r"error sending your mail|email (?:bounce|delivery failure)|\bbounced?\b|"
    r"unzustellbar|nicht zustellbar|non remis|[ée]chec de (?:la )?remise|non recapitabile|"
    r"no se (?:pudo|puede) entregar|onbestelbaar|olevererbart|kan ikke leveres|"
    r"niedostarczalne|n[ãa]o (?:foi )?entregue|недоставлен|не доставлен|"
    r"ошибка доставки|メールエラー|エラーメール|配信エラー|送信エラー|不達|配送|退信|"
    r"(?:メール|メッセージ)?[をの]?(?:配信|送信|配送)(?:でき|に失敗)|宛先不明|返送|"
    r"无法投递|未能送达|发送失败|投递失败|발송 실패|전송 실패|반송",
    re.IGNORECASE,
)
_SUBJECT_TAGS = re.compile(r"^\s*(?:\[[^\]]{0,40}\]\s*|\*+\s*)*")

# Phrases only mail systems write; a human forwarding a bounce writes them too, so
# they only count together with a machine signal or a returned original.
_STRONG = re.compile(
    r"this is the qmail-send program|"
    r"created automatically by mail delivery software|"
    r"this is the mail system at host|"
    r"delivery to the following recipients? (?:failed|has been delayed|was unsuccessful)|"
    r"delivery has failed to these recipients|"
    r"did not reach the following recipient|"
    r"transcript of session follows|"
    r"following (?:address(?:\(es\)|es)?|recipients?) (?:failed|had|has|could not)|"
    r"addresses? had (?:permanent |fatal |transient )?(?:delivery )?(?:errors?|problems?)|"
    r"i'?m afraid i wasn'?t able to deliver|"
    r"(?:unable|failed) to deliver (?:the |your )?(?:message|mail) to|"
    r"could not be delivered to\s*(?:one or more|the following|:?\s*<?[^\s@<>]+@)|"
    r"(?:could not|cannot|can't) be delivered (?:because of|due to the following)|"
    r"\bwas not delivered to\s*:|problems delivering your message to|"
    r"an error (?:has )?occurred while (?:attempting|trying) to deliver|"
    r"there was an error delivering your mail|"
    r"we had trouble delivering your message|"
    r"your message (?:could not|cannot|can't|wasn't|was not) (?:be )?delivered|"
    r"message (?:could not|cannot) be delivered|"
    r"delivery status notification|diagnostic-code:|final-recipient:|"
    r"konnte nicht zugestellt werden|n'a pas pu être remis|no (?:se )?pudo (?:ser )?entregar|"
    r"non è stato possibile (?:consegnare|recapitare)|kon niet worden bezorgd|"
    r"kunde inte levereras|kunne ikke leveres|nie (?:może|mogła) zostać dostarczona|"
    r"não (?:pôde|foi possível) (?:ser )?entreg|не может быть доставлено|"
    r"не удалось доставить|送信できませんでした|配信できませんでした|届きませんでした|"
    r"配送できませんでした|宛先不明|无法投递|退信",
    re.IGNORECASE,
)
# Wording that is bounce-like but also plausible in human prose.
_WEAK = re.compile(
    r"undeliver|could not be delivered|cannot be delivered|not delivered|delivery failed|"
    r"delivery (?:has )?failed|delivery failure|returned mail|permanent (?:error|failure)|"
    r"(?:user|recipient|address|mailbox|account)(?: name)? (?:is )?(?:unknown|not found|"
    r"does not exist|doesn't exist|not recognized|rejected|disabled|unavailable|full|invalid)|"
    r"(?:unknown|invalid) (?:user|recipient|address|mailbox)|no such (?:user|recipient|"
    r"mailbox|address)|mailbox (?:is )?(?:full|over quota)|over quota|quota exceeded|"
    r"message (?:was )?(?:rejected|blocked|refused|bounced)|rejected (?:your|the) message|"
    r"host unknown|relay(?:ing)? denied|access denied|"
    r"メールボックスが一杯|送信できません|配信できません|エラー",
    re.IGNORECASE,
)
# Lines that start the returned copy of the original message.
_SEPARATOR = re.compile(
    # Matched against one short line at a time (see _find_separator): a pattern run over
    # a 700 KB line of ">>>>" must not backtrack quadratically.
    r"^[ \t\-=*#_|>]{0,80}(?:"
    r"(?:original|returned|unsent|undelivered|bounced|rejected) "
    r"(?:message|e-?mail|mail|headers?)\b|"
    r"(?:below|following|here) (?:this line )?(?:is|are)? ?(?:a )?(?:copy|the (?:original|headers?))|"
    r"(?:message )?headers? follow|original (?:message|mail) (?:as )?follows|"
    r"[-=]{2,} ?message (?:header|text)"
    r")|\bcopy of (?:the |your )?(?:original )?(?:message|mail|headers?)|"
    r"\bheaders? (?:of|from) the original message",
    re.IGNORECASE,
)
MAX_SEPARATOR_LINE = 200
# Header lines that never occur in notice prose: the original's header block began.
_HEADER_BLOCK = re.compile(
    r"^(?:Received|Return-Path|DKIM-Signature|X-Received|ARC-Seal|Received-SPF|"
    r"Authentication-Results|X-Google-Smtp-Source|DomainKey-Signature):",
    re.MULTILINE,
)
_DELAY = re.compile(
    r"\bdelayed\b|has not yet been delivered|not been delivered yet|will (?:be )?retr(?:y|ied)|"
    r"will (?:continue|keep) (?:to )?try|still trying|temporar(?:y|ily) (?:error|failure|"
    r"problem|unable)|transient|warning: (?:could not send|message)|delivery delay",
    re.IGNORECASE,
)
_PERMANENT = re.compile(
    r"(?<!not )(?<!not a )permanent(?:ly)? (?:error|failure|fatal|failed)|failed permanently|"
    r"(?<!not )given up|"
    r"no further (?:delivery )?attempts|will not be retried|unrecoverable",
    re.IGNORECASE,
)
_REPORTER = re.compile(
    r"(?:program|agent|server|system|software|daemon)\b[^\n]{0,40}?\bat (?:host )?"
    r"([A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+)",
    re.IGNORECASE,
)
# Lines whose address is the original *sender*, never a failed recipient.
_SENDER_LINE = re.compile(
    r"^\s*(?:from|sender|original[- ]sender|mail from|return-path|reply-to|envelope-from|"
    r"x-postfix-sender)\b|\bmail from\s*:|\bfrom:?\s*<?[^\s@]+@[^\s@]+>?\s*$",
    re.IGNORECASE,
)

_STATUS_TEXT = {
    "1.1": "user unknown",
    "1.0": "bad address",
    "1.2": "host unknown",
    "1.3": "bad address syntax",
    "1.6": "mailbox moved",
    "2.0": "mailbox problem",
    "2.1": "mailbox disabled",
    "2.2": "mailbox full",
    "2.3": "message too big",
    "2.4": "mailing list expansion problem",
    "3.0": "mail system problem",
    "3.1": "mail system full",
    "3.4": "message too big",
    "4.0": "network or routing problem",
    "4.1": "no answer from host",
    "4.2": "connection dropped",
    "4.3": "routing server failure",
    "4.4": "unable to route",
    "4.6": "routing loop",
    "4.7": "delivery time expired",
    "5.0": "protocol error",
    "6.0": "content rejected",
    "7.0": "rejected by policy",
    "7.1": "delivery not authorised",
    "7.26": "rejected by DMARC policy",
}


# --- data -------------------------------------------------------------------------


@dataclass(frozen=True)
class BounceRecipient:
    """One recipient a delivery report is about."""

    address: str | None
    status: str | None  # RFC 3463 enhanced status, e.g. "5.1.1"
    action: str | None  # RFC 3464 action: "failed", "delayed", ... ("complained" for ARF)
    diagnostic: str | None  # the remote server's words, at most 500 characters

    def to_json(self) -> dict[str, str | None]:
        return {
            "address": self.address,
            "status": self.status,
            "action": self.action,
            "diagnostic": self.diagnostic,
        }


@dataclass(frozen=True)
class Bounce:
    """A recognised delivery failure (or delay) of a message we sent."""

    recipients: tuple[BounceRecipient, ...]
    original_message_id: str | None
    reason: str
    permanent: bool
    reporting_mta: str | None
    envelope_id: str | None = field(default=None)  # RFC 3461 ENVID, when the DSN carries it

    def to_json(self) -> dict[str, object]:
        return {
            "recipients": [r.to_json() for r in self.recipients],
            "original_message_id": self.original_message_id,
            "reason": self.reason,
            "permanent": self.permanent,
            "reporting_mta": self.reporting_mta,
            "envelope_id": self.envelope_id,
        }


@dataclass
class _Parts:
    """What one bounded walk over the MIME tree found."""

    texts: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    dsn_blocks: list[list[tuple[str, str]]] = field(default_factory=list)
    feedback: list[tuple[str, str]] = field(default_factory=list)
    has_dsn_part: bool = False
    has_mdn_part: bool = False
    has_feedback_part: bool = False
    original: Message | None = None
    original_headers: str | None = None


# --- public -----------------------------------------------------------------------


def parse_bounce(msg: EmailMessage, *, envelope_from: str | None = None) -> Bounce | None:
    """The delivery report in ``msg``, or None when it is not a bounce.

    Read receipts (MDNs), out-of-office replies and success-only DSNs return None.
    ``envelope_from`` is the SMTP ``MAIL FROM`` when known ("" for ``<>``).
    """
    try:
        return _parse(msg, envelope_from)
    except RecursionError:
        return None
    except Exception:  # a parser must not stop the pipeline; the raw message is kept
        return None


# --- detection --------------------------------------------------------------------


def _parse(msg: Message, envelope_from: str | None) -> Bounce | None:
    report = _report_type(msg)
    if report == "disposition-notification":
        return None
    parts = _collect(msg)
    if parts.has_mdn_part and not parts.has_dsn_part:
        return None
    if report == "feedback-report" or parts.has_feedback_part:
        return _feedback_bounce(msg, parts)

    notice = _notice_text(parts)
    if report in ("delivery-status", "global-delivery-status") or parts.has_dsn_part:
        return _standard_bounce(msg, parts, notice, structured=True)
    complaint = _forwarded_complaint(msg, parts, notice) or _client_unsubscribe(msg)
    if complaint is not None:
        return complaint
    if notice.lstrip().startswith("{") and _machine_sender(msg, envelope_from):
        recognised, ses = _ses_notification(notice)
        if recognised:
            return ses
    list_notice = _list_manager_notice(msg, parts, notice)
    if list_notice is not None:
        return list_notice
    if not _looks_like_bounce(msg, parts, notice, envelope_from):
        return None
    return _standard_bounce(msg, parts, notice, structured=False)


def _looks_like_bounce(msg: Message, parts: _Parts, notice: str, envelope_from: str | None) -> bool:
    """Machine signals plus bounce wording; see the module docstring for the reasoning.

    The header signals are decided first: most mail is a person's, and for a person's
    mail whose subject does not start like a bounce no wording in the body can make it
    one, so the body is never scanned (that scan was most of the cost of ordinary mail).
    """
    if is_out_of_office(msg):
        return False
    names = _header_names(msg)
    if "x-failed-recipients" in names:
        return True
    subject = _subject(msg)
    subject_start = bool(_SUBJECT.match(_SUBJECT_TAGS.sub("", subject)))
    daemon = _daemon_sender(msg) is not None
    null_path = _is_null_path(_header(msg, "return-path")) or (
        envelope_from is not None and _is_null_path(envelope_from)
    )
    noreply = not daemon and not null_path and _noreply_sender(msg)
    if not (daemon or null_path or noreply or subject_start):
        return False
    subject_any = bool(_SUBJECT.search(subject))
    head = _before_original(notice)[:65536]
    strong = bool(_STRONG.search(head))
    weak = strong or bool(_WEAK.search(head))
    returned = parts.original is not None or parts.original_headers is not None
    returned = returned or _find_separator(notice) is not None
    status = bool(_ENHANCED.search(head))

    if daemon:
        return subject_any or weak or (status and returned)
    if null_path:
        return strong or (subject_any and weak) or (weak and returned and status)
    if noreply:
        return (strong and returned) or (weak and subject_start and returned)
    return strong and subject_start and returned


def _headed_notice(msg: Message, head: str) -> bool:
    """A mail-system sender, a subject that opens like a bounce and failure words.

    Such a notice counts even when its text names no recipient we can trust (a list
    address bouncing to itself, a recipient given only as the notice's own To) and
    quotes no SMTP status.
    """
    if _daemon_sender(msg) is None:
        return False
    subject = _SUBJECT_TAGS.sub("", _subject(msg))
    return bool(_SUBJECT.match(subject)) and bool(_WEAK.search(head[:65536]))


def _machine_sender(msg: Message, envelope_from: str | None) -> bool:
    """A mail system, a no-reply robot or the null return path sent this."""
    null = _is_null_path(_header(msg, "return-path")) or (
        envelope_from is not None and _is_null_path(envelope_from)
    )
    return null or _daemon_sender(msg) is not None or _noreply_sender(msg)


def _noreply_sender(msg: Message) -> bool:
    for _, addr in _addresses(_header(msg, "from"), cap=3):
        local = _local_part(addr)
        if local.startswith(("noreply", "donotreply")) or local.endswith("noreply"):
            return True
    return False


# --- MIME walk --------------------------------------------------------------------


def _collect(msg: Message) -> _Parts:
    """One iterative, bounded pass: texts of the notice, DSN fields, the returned original.

    It does not descend into message/rfc822: text inside the returned original is the
    original's, and a forwarded bounce must not make its carrier a bounce.
    """
    found = _Parts()
    stack: list[tuple[Message, int]] = [(msg, 0)]
    seen = 0
    budget = MAX_TEXT
    while stack and seen < MAX_PARTS:
        part, depth = stack.pop()
        seen += 1
        ctype = _content_type(part)
        if part.is_multipart() and ctype.startswith("multipart/"):
            if depth >= MAX_DEPTH:
                continue
            payload = _payload_list(part)
            stack.extend((p, depth + 1) for p in reversed(payload))
            continue
        if ctype in ("message/delivery-status", "message/global-delivery-status"):
            found.has_dsn_part = True
            found.dsn_blocks.extend(_dsn_blocks(part))
        elif ctype in (
            "message/disposition-notification",
            "message/global-disposition-notification",
        ):
            found.has_mdn_part = True
        elif ctype == "message/feedback-report":
            found.has_feedback_part = True
            for block in _dsn_blocks(part):
                found.feedback.extend(block)
        elif ctype in ("message/rfc822", "message/global"):
            if found.original is None:
                inner = _payload_list(part)
                if inner:
                    found.original = inner[0]
                else:  # unparsed: keep its header text
                    found.original_headers = _part_text(part, MAX_ORIGINAL_HEADERS)
        elif ctype in ("text/rfc822-headers", "message/rfc822-headers", "text/global-headers"):
            if found.original_headers is None:
                found.original_headers = _part_text(part, MAX_ORIGINAL_HEADERS)
        elif (ctype.startswith("text/") or ctype.startswith("multipart/")) and budget > 0:
            # a multipart whose boundary never appears is read as one text part (B15)
            text = _part_text(part, budget)
            budget -= len(text)
            if ctype == "text/html":  # others, including broken multiparts, count as plain
                found.html.append(text)
            else:
                found.texts.append(text)
    return found


def _payload_list(part: Message) -> list[Message]:
    try:
        payload = part.get_payload()
    except Exception:
        return []
    if isinstance(payload, list):
        return [p for p in payload[:MAX_PARTS] if isinstance(p, Message)]
    return []


def _content_type(part: Message) -> str:
    try:
        return part.get_content_type()
    except Exception:
        return "text/plain"


def _part_text(part: Message, limit: int) -> str:
    """Decoded text of a leaf part, reading at most about ``limit`` characters of it.

    The raw ``_payload`` is read because ``get_payload()`` turns undeclared 8-bit text
    into U+FFFD (it decodes as ASCII), and ``get_payload(decode=True)`` decodes the
    whole part however large it is.
    """
    try:
        payload = getattr(part, "_payload", None)
        if payload is None or not isinstance(payload, (str, list)):
            payload = part.get_payload()
    except Exception:
        return ""
    if isinstance(payload, list):  # message/* parsed into sub-messages: their raw text
        chunks: list[str] = []
        for sub in payload[:50]:
            chunks.append("\n".join(f"{k}: {v}" for k, v in _raw_pairs(sub)) + "\n")
        return "\n".join(chunks)[:limit]
    if not isinstance(payload, str):
        return ""
    cte = (_header(part, "content-transfer-encoding") or "").strip().lower()
    data = _decode_transfer(payload, cte, limit)
    try:
        charset = str(part.get_content_charset() or "utf-8")
    except Exception:
        charset = "utf-8"
    text = _decode_bytes(data, charset)[:limit]
    if _content_type(part) == "text/html":
        text = _html_to_text(text)
    return text


def _raw_pairs(msg: Message) -> list[tuple[str, str]]:
    try:
        items = list(msg.raw_items())[:200]
    except Exception:
        return []
    out = []
    for name, value in items:
        try:
            out.append((str(name), str(value)[:2048]))
        except Exception:
            continue
    return out


def _decode_transfer(payload: str, cte: str, limit: int) -> bytes:
    try:
        if cte == "base64":
            chunk = re.sub(r"[^A-Za-z0-9+/]", "", payload[: limit * 4 // 3 + 1024])
            chunk = chunk[: len(chunk) // 4 * 4]
            return base64.b64decode(chunk)
        if cte == "quoted-printable":  # soft breaks "=\r" of CR-only mail need LF (B12)
            chunk = payload[: limit * 3].replace("\r\n", "\n").replace("\r", "\n")
            return quopri.decodestring(_to_bytes(chunk))
    except (binascii.Error, ValueError):
        pass
    return _to_bytes(payload[:limit])


def _to_bytes(text: str) -> bytes:
    try:
        return text.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")


def _decode_bytes(data: bytes, charset: str) -> str:
    if b"\x1b$B" in data or b"\x1b$@" in data:  # ISO-2022-JP sent without a charset label
        charset = "iso-2022-jp"
    try:
        return data.decode(charset, "replace")
    except (LookupError, ValueError):
        return data.decode("utf-8", "replace")


def _html_to_text(text: str) -> str:
    # "[^<>]", not "[^>]": a tag ends before the next "<", and a scan over "<" would make
    # text of many unclosed "<br" quadratic (30,000 of them took 9 s).
    text = re.sub(r"(?i)<(?:script|style)\b[^<>]{0,2000}>[^<]*", " ", text)
    text = re.sub(r"(?i)<\s*(?:br|/p|/div|/tr|/li|/h\d)\b[^<>]{0,2000}>", "\n", text)
    text = re.sub(r"<[^<>]{0,2000}>", " ", text)
    return html.unescape(text)


def _notice_text(parts: _Parts) -> str:
    texts = parts.texts or parts.html
    return "\n".join(texts)[:MAX_TEXT].replace("\r\n", "\n").replace("\r", "\n")


def _find_separator(text: str) -> int | None:
    """Where the returned copy of the original starts inside a notice, if it does."""
    header = _HEADER_BLOCK.search(text)
    limit = header.start() if header else len(text)
    offset = 0
    for line in text[:limit].split("\n"):
        if len(line) <= MAX_SEPARATOR_LINE and _SEPARATOR.search(line):
            return offset
        offset += len(line) + 1
    return header.start() if header else None


def _before_original(text: str) -> str:
    cut = _find_separator(text)
    return text if cut is None else text[:cut]


# --- DSN fields -------------------------------------------------------------------


def _dsn_blocks(part: Message) -> list[list[tuple[str, str]]]:
    """Field blocks of a message/delivery-status (or feedback-report) part."""
    try:
        payload = part.get_payload()
    except Exception:
        return []
    if isinstance(payload, list):  # the stdlib parses each block into a Message
        blocks = []
        for sub in payload[: MAX_RECIPIENTS * 2]:
            if isinstance(sub, Message):
                blocks.append([(k.strip().lower(), _unfold(v)) for k, v in _raw_pairs(sub)])
                body = _part_text(sub, 16384) if not sub.is_multipart() else ""
                if body.strip():  # text after a malformed block: read it as fields too
                    blocks.extend(_dsn_text_blocks(body))
        return blocks
    return _dsn_text_blocks(_part_text(part, 65536))


def _dsn_text_blocks(text: str) -> list[list[tuple[str, str]]]:
    """RFC 3464 field blocks written as text (also used for DSNs pasted into a notice)."""
    blocks: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")[:5000]:
        if not line.strip():
            if current:
                blocks.append(current)
                current = []
            continue
        if line[:1] in " \t" and current:
            name, value = current[-1]
            current[-1] = (name, f"{value} {line.strip()}"[:2048])
            continue
        match = _DSN_FIELD.match(line.strip())
        if match:
            current.append((match.group(1).lower(), match.group(2).strip()))
    if current:
        blocks.append(current)
    return blocks


def _unfold(value: str) -> str:
    return " ".join(value.split())[:2048]


def _recipients_from_blocks(
    blocks: list[list[tuple[str, str]]],
) -> tuple[list[BounceRecipient], str | None, str | None]:
    """Per-recipient records plus Reporting-MTA and Original-Envelope-Id."""
    recipients: list[BounceRecipient] = []
    reporting_mta = None
    envelope_id = None
    for block in blocks:
        current: dict[str, str] = {}
        for name, value in block:
            if name == "reporting-mta" and reporting_mta is None:
                reporting_mta = _safe(_strip_type(value)) or None
            elif name == "original-envelope-id" and envelope_id is None:
                envelope_id = _safe(value) or None
            elif name in (
                "final-recipient",
                "original-recipient",
                "action",
                "status",
                "diagnostic-code",
                "x-actual-recipient",
            ):
                if name in current and name in ("final-recipient", "action", "status"):
                    _add_recipient(recipients, current)
                    current = {}
                current.setdefault(name, value)
        _add_recipient(recipients, current)
        if len(recipients) >= MAX_RECIPIENTS:
            break
    return recipients[:MAX_RECIPIENTS], reporting_mta, envelope_id


def _add_recipient(recipients: list[BounceRecipient], fields: dict[str, str]) -> None:
    keys = ("final-recipient", "original-recipient", "x-actual-recipient")
    if not any(k in fields for k in keys):
        return
    address = None
    for key in keys:
        address = _address_of(_strip_type(fields.get(key, "")))
        if address:
            break
    diagnostic = _clean_diagnostic(_strip_type(fields.get("diagnostic-code", ""))) or None
    status = _status_of(fields.get("status", ""))
    detailed = _status_in(diagnostic) if diagnostic else None
    if detailed and (status is None or (status.endswith(".0.0") and detailed[0] == status[0])):
        status = detailed  # "Status: 5.0.0" with "550 5.1.1 user unknown" says more
    action_match = re.match(r"[A-Za-z-]+", fields.get("action", "").strip())
    action = action_match.group(0).lower() if action_match else None
    recipients.append(BounceRecipient(address, status, action, diagnostic))


def _strip_type(value: str) -> str:
    """``rfc822; a@b`` -> ``a@b``; ``smtp; 550 ...`` -> ``550 ...``."""
    value = value.strip()
    if ";" in value[:24]:
        value = value.split(";", 1)[1]
    return value.strip()


def _address_of(value: str) -> str | None:
    value = re.sub(r"^\s*<?(?:@[^:,<>\s]+,?)+:", "", value[:1024])  # <@relay:user@host>
    match = _EMAIL.search(value)
    if match:
        return match.group(1)
    value = _safe(value).strip(" <>\"'")
    return value[:320] or None


def _status_of(value: str) -> str | None:
    match = _ENHANCED.search(value[:200])
    return ".".join(match.groups()) if match else None


def _status_in(text: str) -> str | None:
    """Best SMTP status in free text: an enhanced code, else a basic reply code."""
    for match in itertools.islice(_ENHANCED.finditer(text), 20):
        if match.group(1) in "45":  # skip "250 2.0.0 ok" lines of a transcript
            return ".".join(match.groups())
    basic = _BASIC.search(text)
    if basic:
        return f"{basic.group(1)[0]}.0.0"
    return None


def _clean_diagnostic(text: str) -> str:
    if "\x1b$" in text:  # ISO-2022-JP inside a DSN field
        with contextlib.suppress(UnicodeError, LookupError):
            text = text.encode("ascii", "surrogateescape").decode("iso-2022-jp", "replace")
    return _safe(text, MAX_DIAGNOSTIC)


def _safe(text: str, limit: int = 255) -> str:
    """One clean line: no controls, NULs (PostgreSQL refuses them) or bidi overrides."""
    return " ".join(_CONTROL.sub(" ", text).split())[:limit]


# --- building the result ----------------------------------------------------------


def _standard_bounce(
    msg: Message, parts: _Parts, notice: str, *, structured: bool, nested: int = 0
) -> Bounce | None:
    recipients, reporting_mta, envelope_id = _recipients_from_blocks(parts.dsn_blocks)
    head = _before_original(notice)
    if not recipients:  # DSN fields pasted into the notice text (Amazon WorkMail and others)
        recipients, mta, env = _recipients_from_blocks(_dsn_text_blocks(head[:65536]))
        reporting_mta = reporting_mta or mta
        envelope_id = envelope_id or env
    if recipients and all(r.action in ("delivered", "relayed", "expanded") for r in recipients):
        return None  # a success report is not a bounce
    if not recipients:
        recipients = _recipients_from_text(msg, head)
    elif any(r.status is None for r in recipients):
        recipients = _fill_from_text(recipients, head)
    inner = _inner_bounce(parts, nested) if not recipients else None
    if inner is not None:  # a filter wrapped the MTA's bounce into its own notice
        return inner
    if not recipients:
        recipients = _sole_original_recipient(msg, parts, notice)
    if (
        not structured
        and not recipients
        and not _status_in(head[:65536])
        and not _STRONG.search(head[:65536])
        and not _headers(msg, "x-failed-recipients")
        and not _headed_notice(msg, head)
    ):
        return None  # free text naming no recipient, no status: only a clear notice counts
    permanent = _is_permanent(recipients, head, _subject(msg))
    if not structured:
        action = "failed" if permanent else "delayed"
        recipients = [
            r if r.action else BounceRecipient(r.address, r.status, action, r.diagnostic)
            for r in recipients
        ]
    return Bounce(
        recipients=tuple(recipients),
        original_message_id=_original_message_id(parts, notice),
        reason=_reason(recipients, permanent),
        permanent=permanent,
        reporting_mta=reporting_mta or _reporter(msg, head),
        envelope_id=envelope_id,
    )


def _inner_bounce(parts: _Parts, nested: int) -> Bounce | None:
    """The bounce inside a returned message, when that message is itself a bounce."""
    inner = parts.original
    if inner is None or nested >= 2:
        return None
    inner_parts = _collect(inner)
    inner_notice = _notice_text(inner_parts)
    report = _report_type(inner)
    if report in ("delivery-status", "global-delivery-status") or inner_parts.has_dsn_part:
        structured = True
    elif _daemon_sender(inner) and _STRONG.search(_before_original(inner_notice)[:65536]):
        structured = False
    else:
        return None
    found = _standard_bounce(
        inner, inner_parts, inner_notice, structured=structured, nested=nested + 1
    )
    return found if found is not None and found.recipients else None


def _sole_original_recipient(msg: Message, parts: _Parts, notice: str) -> list[BounceRecipient]:
    """The returned original's only recipient, when the notice itself names nobody.

    Only a single To/Cc address is taken: with several we cannot know which one failed,
    and marking a good address as failed is worse than marking none.
    """
    found: list[str] = []
    if parts.original is not None:
        for name in ("to", "cc"):
            found.extend(a for _, a in _addresses(_header(parts.original, name), cap=5))
    else:
        cut = _find_separator(notice)
        if cut is not None:
            block = notice[cut : cut + 16384]
            for match in re.finditer(r"^[ \t]*(?:To|Cc)[ \t]*:(.*)$", block, re.I | re.M):
                found.extend(m.group(1) for m in _EMAIL.finditer(match.group(1)))
    own = _own_addresses(msg)
    addresses = {a.lower(): a for a in found if "@" in a and a.lower() not in own}
    if len(addresses) != 1:
        return []
    address = next(iter(addresses.values()))
    head = _before_original(notice)
    diagnostic = _diagnostic_from(head) or None
    return [BounceRecipient(address, _status_in(head[:65536]), None, diagnostic)]


def _feedback_bounce(msg: Message, parts: _Parts) -> Bounce:
    """An ARF abuse report (RFC 5965): the recipient complained about our message."""
    fields = dict(reversed(parts.feedback))
    feedback_type = (_safe(fields.get("feedback-type", "")).split() or ["abuse"])[0][:40]
    addresses = [
        _address_of(v) for k, v in parts.feedback if k in ("original-rcpt-to", "removal-recipient")
    ]
    if not addresses and parts.original is not None:
        addresses = [a for _, a in _addresses(_header(parts.original, "to"), cap=5) if "@" in a]
    recipients = tuple(
        BounceRecipient(a, None, "complained", f"feedback-type: {feedback_type}")
        for a in addresses[:MAX_RECIPIENTS]
        if a
    )
    target = f": <{recipients[0].address}>" if recipients else ""
    return Bounce(
        recipients=recipients,
        original_message_id=_original_message_id(parts, _notice_text(parts)),
        reason=f"{feedback_type} complaint (feedback report){target}",
        permanent=True,
        reporting_mta=_safe(_strip_type(fields.get("reporting-mta", ""))) or None,
    )


# The title of the complaint reports Outlook.com (JMRP) and Amazon SES forward without
# ARF: "complaint about message from 192.0.2.1". Nobody titles a message of their own so.
_COMPLAINT_TITLE = re.compile(
    r"^\s*complaint about message from \[?[0-9A-Fa-f:.]{2,45}\]?\s*$", re.IGNORECASE
)


def _forwarded_complaint(msg: Message, parts: _Parts, notice: str) -> Bounce | None:
    """A complaint forwarded without ARF: the reported message, returned whole.

    Outlook.com (JMRP) and Amazon SES send a multipart/mixed whose content is the
    reported message; Microsoft marks it ``X-HmXmrOriginalRecipient``. A person who
    forwards a message writes words around it and titles it "Fwd: ...", so it counts
    only with the report's own title, or with Microsoft's mark and no text around it.
    """
    original = parts.original
    if original is None:
        return None
    marked = _header(original, "x-hmxmroriginalrecipient")
    titled = bool(_COMPLAINT_TITLE.match(_subject(msg)))
    if not (titled or (marked and not notice.strip())):
        return None
    candidates = [_address_of(_decoded(marked))] if marked else []
    if not candidates:  # the reported message's only addressee
        candidates = [a for _, a in _addresses(_header(original, "to"), cap=2) if "@" in a]
    address = candidates[0] if len(candidates) == 1 else None
    return _refusal(
        address if address and "@" in address else None,
        "complained",
        "feedback-type: abuse",
        "abuse complaint (forwarded report)",
        _original_message_id(parts, notice),
    )


def _refusal(
    address: str | None, action: str, diagnostic: str | None, what: str, message_id: str | None
) -> Bounce:
    """A permanent notice about at most one address (a complaint, an opt-out, a refusal)."""
    recipients = (BounceRecipient(address, None, action, diagnostic),) if address else ()
    return Bounce(
        recipients=recipients,
        original_message_id=message_id,
        reason=f"{what}: <{address}>" if address else what,
        permanent=True,
        reporting_mta=None,
    )


_TRUE = frozenset({"true", "yes", "1"})


def _client_unsubscribe(msg: Message) -> Bounce | None:
    """An unsubscribe request a mail client sent on its user's behalf (Apple Mail).

    Apple Mail's "unsubscribe" button mails the List-Unsubscribe address itself and
    marks the message ``X-Apple-Unsubscribe: true`` and ``Auto-Submitted``; sisimai
    files it with the feedback reports. The person opted out of our mail, so the
    sender is the recipient to stop writing to, and the message is never answered.
    """
    if (_header(msg, "x-apple-unsubscribe") or "").strip().lower() not in _TRUE:
        return None
    auto = (_header(msg, "auto-submitted") or "").strip().lower()
    if not auto or auto.startswith("no"):
        return None
    addresses = [a for _, a in _addresses(_header(msg, "from"), cap=1) if "@" in a]
    replied = _header(msg, "in-reply-to") or _header(msg, "references")
    return _refusal(
        addresses[0] if addresses else None,
        "complained",
        "feedback-type: opt-out",
        "opt-out request (X-Apple-Unsubscribe)",
        _normalise_id(replied),
    )


# Senders that are a list's administration address: "<list>-admin@", "owner-<list>@", ...
_LIST_ADMIN = re.compile(r"[-_.+](?:admin|owner|request|ctl)$|^owner[-_.]", re.IGNORECASE)
# Titles list managers (fml and alike) give the notices refusing a post.
_LIST_REFUSAL = re.compile(
    r"\bnot (?:a )?member\b|\bloop (?:alert|back warning)\b|\bunix from loop\b|"
    r"\bsecurity alert\b|\bsystem error message\b|"
    r"\breject(?:ed)? (?:mail|article|post(?:ing)?|message)\b|\bspam mail from\b",
    re.IGNORECASE,
)


def _list_manager_notice(msg: Message, parts: _Parts, notice: str) -> Bounce | None:
    """A list manager refusing a post (fml's "not member", "Loop Alert", ...): a bounce.

    It needs the list server's own header (``X-MLServer``), a list-administration sender
    and a refusal title. Ordinary posts the same server distributes carry the header
    too, but come from their human author, so they are never taken for a refusal.
    """
    if "x-mlserver" not in _header_names(msg):
        return None
    senders = [a for _, a in _addresses(_header(msg, "from"), cap=1) if "@" in a]
    if not senders or not _LIST_ADMIN.search(senders[0].rsplit("@", 1)[0]):
        return None
    subject = _subject(msg)
    if not _LIST_REFUSAL.search(subject[:300]):
        return None
    head = _before_original(notice)[:8192]
    own = _own_addresses(msg)
    found = (m.group(1) for m in _EMAIL.finditer(head) if m.group(1).lower() not in own)
    address = next(found, None)
    lines = [_meaningful(line) for line in head.split("\n")[:20]]
    diagnostic = _clean_diagnostic(next((line for line in lines if line), "")) or None
    return _refusal(
        address,
        "failed",
        diagnostic,
        f"rejected by the mailing list ({_safe(subject, 80)})",
        _original_message_id(parts, notice),
    )


def _ses_notification(notice: str) -> tuple[bool, Bounce | None]:
    """Amazon SES bounce/complaint JSON, as SNS mails it (documented, machine-readable).

    Returns (False, None) when the text is not such a notification, (True, None) for a
    delivery (success) notification, else (True, the Bounce).
    """
    text = notice.strip()
    if len(text) > MAX_TEXT or '"' not in text[:200]:
        return False, None
    try:
        event = json.loads(text)
        if isinstance(event, dict) and isinstance(event.get("Message"), str):
            event = json.loads(event["Message"][:MAX_TEXT])  # SNS envelope around the event
    except (ValueError, RecursionError):
        return False, None
    if not isinstance(event, dict):
        return False, None
    kind = str(event.get("notificationType") or event.get("eventType") or "").lower()
    if kind == "delivery":
        return True, None
    detail = event.get(kind) if kind in ("bounce", "complaint") else None
    if not isinstance(detail, dict):
        return False, None
    key = "bouncedRecipients" if kind == "bounce" else "complainedRecipients"
    recipients = []
    for item in (detail.get(key) or [])[:MAX_RECIPIENTS]:
        if not isinstance(item, dict):
            continue
        diagnostic = _clean_diagnostic(_strip_type(str(item.get("diagnosticCode") or ""))) or None
        status = _status_of(str(item.get("status") or "")) or _status_in(diagnostic or "")
        action = str(item.get("action") or ("failed" if kind == "bounce" else "complained"))
        address = _address_of(str(item.get("emailAddress") or ""))
        recipients.append(BounceRecipient(address, status, action.lower()[:20], diagnostic))
    permanent = kind == "complaint" or str(detail.get("bounceType", "")).lower() != "transient"
    mail = event.get("mail")
    mail = mail if isinstance(mail, dict) else {}
    common = mail.get("commonHeaders")
    common = common if isinstance(common, dict) else {}
    message_id = _normalise_id(str(common.get("messageId") or "")) or None
    reason = (
        _reason(recipients, permanent)
        if kind == "bounce"
        else f"{_safe(str(detail.get('complaintFeedbackType') or 'abuse'), 40)} complaint"
        " (Amazon SES)"
    )
    return True, Bounce(
        recipients=tuple(recipients),
        original_message_id=message_id,
        reason=reason,
        permanent=permanent,
        reporting_mta=_safe(_strip_type(str(detail.get("reportingMTA") or ""))) or None,
    )


def _own_addresses(msg: Message) -> set[str]:
    """Addresses that are the bounce's own parties: never the failed recipient."""
    own: set[str] = set()
    for name in ("from", "to", "return-path", "reply-to", "sender", "delivered-to"):
        for _, addr in _addresses(_header(msg, name), cap=10):
            if "@" in addr:
                own.add(addr.lower())
    return own


def _recipients_from_text(msg: Message, head: str) -> list[BounceRecipient]:
    """Failed recipients of a free-text notice: X-Failed-Recipients, else addresses in it."""
    spans: list[tuple[str, int]] = []
    seen: set[str] = set()
    lowered = head.lower()
    for value in _headers(msg, "x-failed-recipients", cap=5):
        for match in _EMAIL.finditer(value):
            address = match.group(1)
            if address.lower() not in seen:
                seen.add(address.lower())
                spans.append((address, lowered.find(address.lower())))
    if not spans:
        own = _own_addresses(msg)
        for match in _EMAIL.finditer(head[:65536]):
            address = match.group(1)
            key = address.lower()
            if key in seen or key in own or _local_part(address) in _SYSTEM_LOCALS:
                continue
            if _is_sender_mention(head, match.start(), match.end()):
                continue
            seen.add(key)
            spans.append((address, match.start()))
            if len(spans) >= MAX_RECIPIENTS:
                break
    recipients = []
    overall_diagnostic = _diagnostic_from(head) if _BASIC.search(head[:8192]) else ""
    for index, (address, pos) in enumerate(spans):
        window = _window(head, spans, index, pos)
        status = _status_in(window) if window else None
        if status is None and overall_diagnostic:
            diagnostic = overall_diagnostic  # the notice's one SMTP reply explains them all
        else:
            diagnostic = _diagnostic_from(window, address) if window else ""
        if not diagnostic and pos > 0:  # Notes and others put the reason above the address
            above = head[: head.rfind("\n", 0, pos)].rstrip("\n").rsplit("\n", 1)[-1]
            diagnostic = _clean_diagnostic(_meaningful(above[-500:]))
        recipients.append(BounceRecipient(address, status, None, diagnostic or None))
    if recipients and all(r.status is None for r in recipients):
        overall = _status_in(head[:65536])
        if overall:
            recipients = [
                BounceRecipient(r.address, overall, r.action, r.diagnostic) for r in recipients
            ]
    return recipients


_SYSTEM_LOCALS = frozenset({"mailerdaemon", "postmaster", "maildaemon", "noreply", "donotreply"})


def _is_sender_mention(text: str, start: int, end: int) -> bool:
    """Is the address at ``start`` the original sender, a URL or a header-ish mention?"""
    line_start = max(text.rfind("\n", 0, start) + 1, start - 200)
    line_end = text.find("\n", end, end + 200)
    line = text[line_start : line_end if line_end >= 0 else min(len(text), end + 200)]
    before = text[max(line_start, start - 16) : start]
    if re.search(r"rcpt to|\bto\s*:", before, re.IGNORECASE):
        return False
    if _SENDER_LINE.search(line):
        return True
    return bool(re.search(r"(?:https?://|www\.)\S*$", text[max(0, start - 200) : start]))


def _window(head: str, spans: list[tuple[str, int]], index: int, pos: int) -> str:
    """Text about one recipient: its line up to the next recipient's line (bounded)."""
    if pos < 0:
        return ""
    start = head.rfind("\n", 0, pos) + 1
    end = len(head)
    for _, other in spans[index + 1 :]:
        if other > pos:
            end = head.rfind("\n", 0, other) + 1 or other
            break
    end = min(end, start + 1500)
    if end <= start:
        end = min(len(head), start + 1500)
    return head[start:end]


def _diagnostic_from(text: str, address: str | None = None) -> str:
    """The server's words in a notice: from the first SMTP code to the paragraph end.

    Without a code, the words next to the address ("kijitora@example.jp [User unknown]",
    or the lines below it, or the line above it) are the best explanation there is.
    """
    text = text[:8192]
    code = _BASIC.search(text) or _ENHANCED.search(text)
    if code:
        start = text.rfind("\n", 0, code.start(1)) + 1
        end = text.find("\n\n", code.start(1))
        return _clean_diagnostic(text[start : end if end >= 0 else len(text)])
    lines = [ln.strip() for ln in text.split("\n")]
    if address:
        at = next((i for i, ln in enumerate(lines) if address.lower() in ln.lower()), None)
        if at is not None:
            same = _meaningful(re.sub(re.escape(address), "", lines[at], flags=re.I))
            following = [_meaningful(ln) for ln in lines[at + 1 : at + 8]]
            # the rest of its paragraph, else the next two lines after a blank one
            below = list(itertools.takewhile(bool, following)) or [ln for ln in following if ln]
            below = below[:4]
            return _clean_diagnostic(" ".join(w for w in [same, *below] if w))
    return _clean_diagnostic(" ".join(ln for ln in map(_meaningful, lines[:4]) if ln))


def _meaningful(line: str) -> str:
    """A notice line without decoration; "" for rulers like ``-----`` or ``*****``."""
    line = line.strip(" \t<>:;,.-=*#|[]()")
    return line if re.search(r"\w{2}", line) else ""


def _fill_from_text(recipients: list[BounceRecipient], head: str) -> list[BounceRecipient]:
    overall = _status_in(head[:65536])
    return [
        BounceRecipient(r.address, r.status or overall, r.action, r.diagnostic)
        if r.status is None
        else r
        for r in recipients
    ]


def _is_permanent(recipients: list[BounceRecipient], head: str, subject: str) -> bool:
    actions = {r.action for r in recipients if r.action}
    classes = {r.status[0] for r in recipients if r.status}
    if "failed" in actions or "5" in classes:
        return True
    if actions and actions <= {"delayed"}:
        return False
    text = f"{subject}\n{head[:16384]}"
    if _PERMANENT.search(text):  # "(#4.4.1) ... permanent error; I've given up" (qmail)
        return True
    if "4" in classes:
        return False
    return not _DELAY.search(text)


def _reason(
    recipients: list[BounceRecipient] | tuple[BounceRecipient, ...], permanent: bool
) -> str:
    if not recipients:
        return "delivery failed (recipient not stated)" if permanent else "delivery delayed"
    first = recipients[0]
    words = _status_words(first)
    status = first.status or ("failed" if permanent else "delayed")
    target = f": <{first.address}>" if first.address else ""
    more = f" (+{len(recipients) - 1} more)" if len(recipients) > 1 else ""
    return f"{status} {words}{target}{more}".replace("  ", " ")


def _status_words(recipient: BounceRecipient) -> str:
    if recipient.status:
        cls, _, rest = recipient.status.partition(".")
        words = _STATUS_TEXT.get(rest) or _STATUS_TEXT.get(rest.split(".")[0] + ".0")
        if cls == "4" and recipient.action == "delayed":
            return f"delivery delayed ({words})" if words else "delivery delayed"
        if words:
            return words
    if recipient.action == "delayed":
        return "delivery delayed"
    if recipient.diagnostic:
        return recipient.diagnostic[:100]
    return "undeliverable"


def _original_message_id(parts: _Parts, notice: str) -> str | None:
    if parts.original is not None:
        found = _normalise_id(_header(parts.original, "message-id"))
        if found:
            return found
    if parts.original_headers:
        try:
            text = parts.original_headers[:MAX_ORIGINAL_HEADERS]
            headers = HeaderParser().parsestr(text.replace("\r\n", "\n").replace("\r", "\n"))
            found = _normalise_id(_header(headers, "message-id"))
        except Exception:
            found = None
        if found:
            return found
        match = _MSGID_LINE.search(parts.original_headers[:MAX_ORIGINAL_HEADERS])
        if match:
            return _normalise_id(match.group(1))
    cut = _find_separator(notice)
    for text in ((notice[cut:] if cut is not None else ""), notice):
        match = _MSGID_LINE.search(text[:MAX_TEXT])
        if match:
            return _normalise_id(match.group(1))
    return None


def _normalise_id(value: str | None) -> str | None:
    if not value:
        return None
    value = _safe(_decoded(value), 1000)
    match = re.search(r"<[^<>\s]{1,250}>", value)
    if match:
        return match.group(0)
    token = value.split()[0] if value.split() else ""
    return f"<{token[:250]}>" if "@" in token else None


def _reporter(msg: Message, head: str) -> str | None:
    match = _REPORTER.search(head[:4096])
    if match:
        return match.group(1).lower()[:255]
    daemon = _daemon_sender(msg)
    if daemon and "@" in daemon:
        return daemon.rsplit("@", 1)[1].strip("<> ").lower()[:255] or None
    return None
