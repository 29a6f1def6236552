"""Bounded MIME parsing.

Python 3.11's email package is quadratic or worse on some shapes (thousands of
parts, huge address headers, deep nesting; see shared/reliability.md B13-B20), so
every message is measured with cheap byte scans *before* the real parser sees it.
A message over a limit is refused with a reason instead of hanging the worker.
"""

from __future__ import annotations

import binascii
import itertools
import re
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import EmailPolicy
from functools import lru_cache
from typing import Any

from parsers.charsets import (
    decode_raw_header,
    has_raw_8bit,
    message_charset_hints,
    widen_encoded_words,
)

_HEADER_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_HEADER_START = re.compile(rb"^[^ \t\r\n]", re.MULTILINE)
# Counted on ASCII-lowered bytes: the same matches as with re.IGNORECASE (which for bytes
# folds only A-Z), found several times faster.
_BOUNDARY_PARAM = re.compile(rb"boundary\s*\*?\s*=")
_RFC2231_SEGMENT = re.compile(rb"\*\d{1,6}\*?\s*=")
_HEADER_LINE = re.compile(rb"[!-9;-~]{1,100}[ \t]*:")
# Fields only software writes: a quoted "From: / Sent: / To: / Subject:" block in a
# reply has none of them, so their presence tells a real header block from prose.
_TRANSPORT_HEADER = re.compile(
    rb"(?i)(?:received|return-path|delivered-to|message-id|mime-version|content-type"
    rb"|content-transfer-encoding|dkim-signature|authentication-results|x-[a-z0-9-]{1,60})"
    rb"[ \t]*:"
)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_WHITESPACE = re.compile(r"\s+")


class CachingPolicy(EmailPolicy):
    """``policy.default`` that parses each distinct header value once.

    The stdlib re-parses a structured header on every ``msg[name]``; the pipeline and
    its parsers ask for the same few headers many times, so short values are memoised
    (header objects are immutable strings, safe to share).
    """

    def header_fetch_parse(self, name: str, value: Any) -> Any:
        if hasattr(value, "name") or len(value) > 2048:
            return super().header_fetch_parse(name, value)
        return _fetch(self, name, value)


@lru_cache(maxsize=8192)
def _fetch(policy: CachingPolicy, name: str, value: str) -> Any:
    return super(CachingPolicy, policy).header_fetch_parse(name, value)


POLICY = CachingPolicy()
MAX_ENCODED_FORWARD_DEPTH = 3  # base64-encoded message/rfc822 inside one, and so on
MAX_ENCODED_FORWARDS = 20


@dataclass(frozen=True)
class Limits:
    """Bounds on one inbound message; defaults follow Dovecot's and RFC 5321's spirit."""

    max_bytes: int = 32 * 1024 * 1024
    max_header_bytes: int = 256 * 1024
    max_headers: int = 1000
    max_header_value_bytes: int = 32 * 1024
    max_parts: int = 1000
    max_multiparts: int = 50
    max_parameter_segments: int = 500
    max_defects_reported: int = 20


@dataclass(frozen=True)
class ParsedMessage:
    """The parse result; ``message`` is None when the input was refused."""

    message: EmailMessage | None
    problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def refused(self) -> bool:
        return self.message is None


def parse_bounded(raw: bytes, limits: Limits = Limits(), *, _depth: int = 0) -> ParsedMessage:
    """Parse ``raw`` only if cheap scans show the stdlib parser can do it quickly."""
    if len(raw) > limits.max_bytes:
        return ParsedMessage(
            None, (f"message is {len(raw)} bytes, over the {limits.max_bytes} limit",)
        )
    end = _HEADER_END.search(raw, 0, limits.max_header_bytes + 4)
    header_len = end.start() if end else min(len(raw), limits.max_header_bytes + 1)
    if header_len > limits.max_header_bytes:
        return ParsedMessage(None, (f"header block over {limits.max_header_bytes} bytes",))
    header_lines = len(_HEADER_START.findall(raw, 0, header_len))
    if header_lines > limits.max_headers:
        return ParsedMessage(
            None, (f"{header_lines} header lines, over the {limits.max_headers} limit",)
        )
    lowered = raw.lower()
    multiparts = len(_BOUNDARY_PARAM.findall(lowered))
    attaches_messages = b"message/" in lowered
    del lowered  # a second copy of a 32 MB message must not live through the parse
    if multiparts > limits.max_multiparts:
        return ParsedMessage(
            None, (f"{multiparts} multipart containers, over the {limits.max_multiparts} limit",)
        )
    segments = len(_RFC2231_SEGMENT.findall(raw))
    if segments > limits.max_parameter_segments:
        return ParsedMessage(
            None,
            (
                f"{segments} RFC 2231 parameter segments, over the {limits.max_parameter_segments} limit",
            ),
        )
    delimiters = _delimiter_lines(raw)
    if delimiters > limits.max_parts * 2:
        return ParsedMessage(
            None, (f"about {delimiters} MIME parts, over the {limits.max_parts} limit",)
        )

    problems: list[str] = []
    to_parse = _drop_oversized_headers(raw, header_len, limits.max_header_value_bytes, problems)
    to_parse = _repair_header_block(to_parse, limits.max_header_bytes, problems)
    try:
        message = BytesParser(policy=POLICY).parsebytes(to_parse)
    except (RecursionError, MemoryError) as exc:
        return ParsedMessage(
            None, (f"message structure too complex to parse ({type(exc).__name__})",)
        )
    except Exception as exc:  # the stdlib parser has no documented exception set
        return ParsedMessage(None, (f"parser failed: {type(exc).__name__}",))
    assert isinstance(message, EmailMessage)
    for name in (
        "Content-Type",
        "Content-Transfer-Encoding",
        "From",
        "Date",
        "Subject",
        "Message-ID",
    ):
        count = header_count(message, name)
        if count > 1:
            problems.append(f"{count} {name} headers; the first is used")
    if _depth < MAX_ENCODED_FORWARD_DEPTH and attaches_messages:
        problems.extend(_decode_encoded_forwards(message, limits, _depth))
    problems.extend(_defects(message, limits.max_defects_reported))
    return ParsedMessage(message, tuple(problems))


def _decode_encoded_forwards(message: EmailMessage, limits: Limits, depth: int) -> list[str]:
    """Re-parse attached messages sent base64-encoded, which RFC 2046 forbids.

    Outlook on the web and several webmailers forward "as attachment" with
    ``Content-Transfer-Encoding: base64`` on the message/rfc822 part; the stdlib then
    parses the base64 text as a header-less message and the forwarded mail is lost.
    The decoded bytes go through ``parse_bounded`` again, so every limit still holds.
    """
    problems: list[str] = []
    repaired = 0
    for part in _walk(message, limits.max_parts):
        if repaired >= MAX_ENCODED_FORWARDS:
            break
        if part is message or part.get_content_maintype() != "message":
            continue
        cte = str(part.get("content-transfer-encoding", "")).strip().lower()
        payload = part.get_payload()
        if cte != "base64" or not isinstance(payload, list) or len(payload) != 1:
            continue
        inner = payload[0]
        if not isinstance(inner, EmailMessage) or len(inner.keys()):
            continue  # base64 text never parses as a header: the inner has none
        text = inner.get_payload()
        if not isinstance(text, str) or len(text) > limits.max_bytes * 2:
            continue
        try:
            data = binascii.a2b_base64(text.encode("ascii", "ignore"))
        except (binascii.Error, ValueError):
            continue
        reparsed = parse_bounded(data, limits, _depth=depth + 1)
        repaired += 1
        if reparsed.message is None:
            problems.append(f"base64-encoded attached message not read: {reparsed.problems[0]}")
            continue
        part.set_payload([reparsed.message])
        problems.append("attached message was base64-encoded; decoded")
    return problems


def _delimiter_lines(raw: bytes) -> int:
    """Lines starting "--" (what ``re.findall(rb"^--", raw, re.MULTILINE)`` counts), by bytes.count."""
    return raw.count(b"\n--") + raw.startswith(b"--")


def _drop_oversized_headers(raw: bytes, header_len: int, cap: int, problems: list[str]) -> bytes:
    """Remove single headers too long to parse in linear time (e.g. To: with 20,000 addresses)."""
    starts = [m.start() for m in _HEADER_START.finditer(raw, 0, header_len)] + [header_len]
    oversized = [(a, b) for a, b in itertools.pairwise(starts) if b - a > cap]
    if not oversized:
        return raw
    pieces: list[bytes] = []
    cursor = 0
    for a, b in oversized:
        name = raw[a : min(b, a + 80)].split(b":", 1)[0].decode("ascii", "replace")
        problems.append(f"header {name} is {b - a} bytes, over the {cap} limit; not parsed")
        pieces.append(raw[cursor:a])
        cursor = b
    pieces.append(raw[cursor:])
    return b"".join(pieces)


def _repair_header_block(raw: bytes, max_header_bytes: int, problems: list[str]) -> bytes:
    """Mend two header-block breakages that would otherwise lose From and Subject.

    Messages saved or relayed by some tools start with a junk line ("---- Original
    email message ----") or fold a long header without indenting the continuation.
    The stdlib ends the headers at the first such line and reads everything after it,
    From and Subject included, as body. A junk start (at most two lines) is dropped
    and an unindented continuation is indented, but only when header lines only
    software writes (Received, Message-ID, X-...) follow; otherwise the bytes are left
    alone (a body with no separator, B19, or a pasted reply stays a body).
    """
    if raw[:1] in (b" ", b"\t"):
        first = raw.split(b"\n", 1)[0]
        if first.strip() and not _HEADER_LINE.match(first.lstrip(b" \t")):
            # Text that opens with an indented line is a body without headers (a saved
            # HTML part, a pasted reply); the stdlib would drop that line as a fold.
            problems.append("no header block; the whole message read as body")
            return b"\n" + raw
    end = _HEADER_END.search(raw, 0, max_header_bytes + 4)
    if end is None:
        return raw
    lines = raw[: end.start()].split(b"\n")
    known = [i for i, line in enumerate(lines) if _TRANSPORT_HEADER.match(line)]
    if not known:
        return raw
    start = 0
    if not _HEADER_LINE.match(lines[0]) and not lines[0].startswith(b"From "):
        start = next((i for i in range(1, 3) if _header_run(lines, i)), -1)
        if start < 0:
            return raw
        problems.append(f"{start} junk line(s) before the headers dropped")
    last_known = known[-1]
    mended = 0
    for i in range(start + 1, last_known):
        line = lines[i]
        if line.strip() and line[:1] not in (b" ", b"\t") and not _HEADER_LINE.match(line):
            lines[i] = b" " + line
            mended += 1
    if mended:
        problems.append(f"{mended} unindented header continuation line(s) mended")
    if not start and not mended:
        return raw
    return b"\n".join(lines[start:]) + raw[end.start() :]


def _header_run(lines: list[bytes], i: int) -> bool:
    """A field only software writes at ``i``, then another header line or a fold."""
    return (
        i + 1 < len(lines)
        and _TRANSPORT_HEADER.match(lines[i]) is not None
        and (_HEADER_LINE.match(lines[i + 1]) is not None or lines[i + 1][:1] in (b" ", b"\t"))
    )


def _defects(message: EmailMessage, cap: int) -> list[str]:
    found: list[str] = []
    for part in _walk(message, cap * 50):
        for defect in getattr(part, "defects", ()):
            found.append(f"MIME defect: {type(defect).__name__}")
            if len(found) >= cap:
                return found
    return found


def _walk(message: EmailMessage, cap: int) -> list[EmailMessage]:
    """Iterative walk: ``Message.walk`` recurses and nested message/rfc822 can be deep."""
    out: list[EmailMessage] = []
    stack: list[EmailMessage] = [message]
    while stack and len(out) < cap:
        part = stack.pop()
        out.append(part)
        payload = part.get_payload() if part.is_multipart() else None
        if isinstance(payload, list):
            stack.extend(reversed([p for p in payload if isinstance(p, EmailMessage)]))
    return out


def walk_parts(message: EmailMessage, cap: int = 2000) -> list[EmailMessage]:
    """All parts depth-first, bounded, without recursion."""
    return _walk(message, cap)


def clean_text(value: str, max_len: int = 998) -> str:
    """Make decoded header text safe to reuse: no CR/LF/NUL/bidi controls, bounded length.

    An encoded word can decode to a real line break (B26); removing it here means no
    later ``Re: <subject>`` can inject a header or poison the outbox.
    """
    value = _CONTROL.sub(" ", value.replace("\t", " "))
    return _WHITESPACE.sub(" ", value).strip()[:max_len]


def header_values(message: EmailMessage, name: str, cap: int = 20) -> list[str]:
    """Decoded values of a header; a header the parser chokes on is returned raw.

    Raw 8-bit bytes (a windows-1251 Subject with no encoded words) are decoded with
    the charsets the message declares first, and encoded words with the superset of
    their label (gb2312 -> gb18030); the stdlib would show U+FFFD for both.
    """
    values: list[str] = []
    wanted = name.lower()
    hints: tuple[str, ...] | None = None
    for key, value in message.raw_items():  # unparsed; get_all() would parse every one
        if key.lower() != wanted:
            continue
        if isinstance(value, str) and has_raw_8bit(value):
            hints = message_charset_hints(message) if hints is None else hints
            value = decode_raw_header(value, hints)
        if isinstance(value, str):
            value = widen_encoded_words(value)
        try:
            values.append(str(message.policy.header_fetch_parse(key, value)))
        except Exception:
            values.append(str(value))
        if len(values) >= cap:
            break
    return values


def header_text(message: EmailMessage, name: str, max_len: int = 998) -> str | None:
    """The first value of a header, decoded and cleaned; None when absent."""
    values = header_values(message, name, cap=1)
    return clean_text(values[0], max_len) if values else None


def header_count(message: EmailMessage, name: str) -> int:
    wanted = name.lower()
    return sum(1 for key, _ in message.raw_items() if key.lower() == wanted)
