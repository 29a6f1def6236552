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
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import EmailPolicy
from typing import Any

from parsers.charsets import (
    decode_raw_header,
    has_raw_8bit,
    message_charset_hints,
    widen_encoded_words,
)
from parsers.header_cache import ADDRESS_FIELDS, HeaderCache

_HEADER_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_HEADER_START = re.compile(rb"^[^ \t\r\n]", re.MULTILINE)
# Counted on ASCII-lowered bytes: the same matches as with re.IGNORECASE (which for bytes
# folds only A-Z), found several times faster.
# "(?:\*\s*)?" rather than "\*?\s*": two adjacent \s* backtrack quadratically over a long
# run of blanks after a "boundary" that has no "=".
_BOUNDARY_PARAM = re.compile(rb"boundary\s*(?:\*\s*)?=")
_BOUNDARY_VALUE = re.compile(rb'boundary\s*=\s*(?:"([^"\r\n]{1,200})"|([^\s;"]{1,200}))')
_BOUNDARY_SECTIONS = re.compile(rb"boundary\s*\*")  # RFC 2231: boundary*0=, boundary*=
_BLANK_LINE = re.compile(rb"\n\r?\n")
_RFC2231_SEGMENT = re.compile(rb"\*\d{1,6}\*?\s*=")
_HEADER_LINE = re.compile(rb"[!-9;-~]{1,100}[ \t]*:")
# Fields only software writes: a quoted "From: / Sent: / To: / Subject:" block in a
# reply has none of them, so their presence tells a real header block from prose.
_TRANSPORT_HEADER = re.compile(
    rb"(?i)(?:received|return-path|delivered-to|message-id|mime-version|content-type"
    rb"|content-transfer-encoding|dkim-signature|authentication-results|x-[a-z0-9-]{1,60})"
    rb"[ \t]*:"
)
# Fields policy.default parses token by token. Its parser is superlinear in the tokens of
# some shapes (a run of '"', " :" or ","; 30 KB of them take 10-20 s per parse), and the
# feedparser itself parses the Content-Type of every part, so they are costed up front.
_STRUCTURED_NAMES = (
    rb"(?:content-(?:type|disposition|transfer-encoding)|mime-version|message-id|from|to|cc"
    rb"|bcc|sender|reply-to|resent-(?:from|to|cc|bcc|sender))"
)
# On ASCII-lowered bytes, after a line break (the first header line is costed apart).
_STRUCTURED_FIELD = re.compile(
    rb"[\r\n](?P<name>" + _STRUCTURED_NAMES + rb")[ \t]*:"
    rb"(?P<value>[^\r\n]*(?:(?:\r\n?|\n)[ \t][^\r\n]*)*)"
)
_STRUCTURED_HEADER = re.compile(rb"(?i)(?P<name>" + _STRUCTURED_NAMES + rb")[ \t]*:")
_ADDRESS_NAMES = frozenset(name.encode() for name in ADDRESS_FIELDS)
_TOKEN_BYTES = b'"(),.:;<>@[\\]='
_NOT_TOKEN = bytes(b for b in range(256) if b not in _TOKEN_BYTES)
_LONG_RUN = re.compile(rb"[^ \t\r\n]{256}")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_WHITESPACE = re.compile(r"\s+")


# About 35 bytes of parse tree a unit: ~18 MB at most (parsers/header_cache.py).
PARSED_HEADERS = HeaderCache(budget=512 * 1024)


class CachingPolicy(EmailPolicy):
    """``policy.default`` that parses each distinct header value once while it is in use.

    The stdlib re-parses a structured header on every ``msg[name]``; the pipeline and
    its parsers ask for the same few headers many times, so parsed values are
    remembered within a memory budget (header objects are immutable strings, safe to
    share between messages and threads).
    """

    def header_fetch_parse(self, name: str, value: Any) -> Any:
        if hasattr(value, "name") or len(value) > 32 * 1024:
            return super().header_fetch_parse(name, value)
        return PARSED_HEADERS.get(
            (self, name, value),
            lambda: super(CachingPolicy, self).header_fetch_parse(name, value),
        )


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
    # Structured header fields (From, To, Content-Type, ...), in header_parse_cost units
    # of about 10-25 microseconds: one field (a header over it is dropped, a part header
    # refuses the message) and all fields of the message together.
    max_header_parse_cost: int = 10_000
    max_message_header_parse_cost: int = 25_000
    # The feedparser works line by line (about 0.25 us a line): 32 MB of empty lines took
    # 8 s. Real mail has lines of tens of bytes (base64: 76), so 32 MB is under a million.
    max_lines: int = 2_000_000
    # ... and checks every line against the boundary of each multipart it is inside:
    # 45 nested multiparts over a million lines took 4.8 s (about 0.1 us a check). Lines
    # times multiparts (counted, not nesting depth, which is unknown before the parse), so
    # that a real 25 MB message with 40 attachments (336,000 lines, 44 multiparts: 14.8
    # million, of which only a few are nested) still parses; hostile nesting stays ~2 s.
    max_multipart_lines: int = 20_000_000


@dataclass(frozen=True)
class Spent:
    """What a parse used of the per-message limits, re-parsed attached messages included."""

    lines: int = 0
    header_cost: int = 0
    multipart_lines: int = 0

    def __add__(self, other: Spent) -> Spent:
        return Spent(
            self.lines + other.lines,
            self.header_cost + other.header_cost,
            self.multipart_lines + other.multipart_lines,
        )


@dataclass(frozen=True)
class ParsedMessage:
    """The parse result; ``message`` is None when the input was refused."""

    message: EmailMessage | None
    problems: tuple[str, ...] = field(default_factory=tuple)
    spent: Spent = field(default_factory=Spent, compare=False, repr=False)

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
    lines = raw.count(b"\n") + raw.count(b"\r") - raw.count(b"\r\n")
    if lines > limits.max_lines:
        return ParsedMessage(None, (f"{lines} lines, over the {limits.max_lines} limit",))
    lowered = raw.lower()
    multiparts = len(_BOUNDARY_PARAM.findall(lowered))
    attaches_messages = b"message/" in lowered
    blocks = None if attaches_messages else _part_header_blocks(lowered, header_len, multiparts)
    part_header_cost, costly = _part_header_cost(lowered, header_len, limits, blocks)
    del lowered  # a second copy of a 32 MB message must not live through the parse
    if multiparts > limits.max_multiparts:
        return ParsedMessage(
            None, (f"{multiparts} multipart containers, over the {limits.max_multiparts} limit",)
        )
    if multiparts * lines > limits.max_multipart_lines:
        return ParsedMessage(
            None,
            (
                f"{lines} lines in {multiparts} multipart containers, over the "
                f"{limits.max_multipart_lines} lines-times-containers limit",
            ),
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

    if costly:
        return ParsedMessage(None, (costly,))

    problems: list[str] = []
    to_parse, header_cost = _drop_oversized_headers(raw, header_len, limits, problems)
    header_cost += part_header_cost
    if header_cost > limits.max_message_header_parse_cost:
        return ParsedMessage(
            None,
            (
                f"structured header fields would cost {header_cost} units to parse, over "
                f"the {limits.max_message_header_parse_cost} limit",
            ),
        )
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
    spent = Spent(lines, header_cost, lines * multiparts)
    if _depth < MAX_ENCODED_FORWARD_DEPTH and attaches_messages:
        spent = _decode_encoded_forwards(message, limits, _depth, spent, problems)
    problems.extend(_defects(message, limits.max_defects_reported))
    return ParsedMessage(message, tuple(problems), spent)


def _decode_encoded_forwards(
    message: EmailMessage, limits: Limits, depth: int, spent: Spent, problems: list[str]
) -> Spent:
    """Re-parse attached messages sent base64-encoded, which RFC 2046 forbids.

    Outlook on the web and several webmailers forward "as attachment" with
    ``Content-Transfer-Encoding: base64`` on the message/rfc822 part; the stdlib then
    parses the base64 text as a header-less message and the forwarded mail is lost.
    The decoded bytes go through ``parse_bounded`` again with what is left of the
    message's limits (20 forwards each just under them took 20 times as long).
    Returns what the message and its re-parsed forwards spent together.
    """
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
        left = replace(
            limits,
            max_lines=limits.max_lines - spent.lines,
            max_message_header_parse_cost=limits.max_message_header_parse_cost - spent.header_cost,
            max_multipart_lines=limits.max_multipart_lines - spent.multipart_lines,
        )
        if min(left.max_lines, left.max_message_header_parse_cost, left.max_multipart_lines) <= 0:
            problems.append(
                "base64-encoded attached message not read: the message's limits are used up"
            )
            break
        reparsed = parse_bounded(data, left, _depth=depth + 1)
        repaired += 1
        spent += reparsed.spent
        if reparsed.message is None:
            problems.append(f"base64-encoded attached message not read: {reparsed.problems[0]}")
            continue
        part.set_payload([reparsed.message])
        problems.append("attached message was base64-encoded; decoded")
    return spent


def _delimiter_lines(raw: bytes) -> int:
    """Lines starting "--" (what ``re.findall(rb"^--", raw, re.MULTILINE)`` counts), by bytes.count."""
    return raw.count(b"\n--") + raw.startswith(b"--")


def header_parse_cost(field: bytes, *, addresses: bool = True) -> int:
    """What the stdlib's structured parse of a header field costs, roughly, in tokens.

    Its tokens are specials and words, about 10-25 microseconds each. Mail addresses (a
    dozen tokens per "@") parse in linear time; other tokens in bulk do not: each one
    also rescans the rest of a long run without spaces, or adds a defect to a list that
    is copied once per token, so those count squared.
    """
    tokens = len(field.translate(None, _NOT_TOKEN)) + len(field.split())
    dense = tokens
    if addresses and not _LONG_RUN.search(field):
        dense = max(0, tokens - 16 * field.count(b"@"))
    return 1 + tokens + dense * dense // 1000


def _part_header_blocks(
    lowered: bytes, header_len: int, multiparts: int
) -> list[tuple[int, int]] | None:
    """Where the parser will read MIME part headers: from each line that opens with a
    declared boundary to the first empty line (or the next "--" line).

    A superset of the parser's own: lower-cased, and any line that starts with a
    boundary counts. None, and the caller scans everything, wherever this reading could
    miss a part the parser finds: a boundary it would unquote, unescape or join (RFC
    2231), or lines ended by a bare CR, which the parser accepts.
    """
    if _BOUNDARY_SECTIONS.search(lowered) or lowered.count(b"\r") != lowered.count(b"\r\n"):
        return None
    declared = _BOUNDARY_VALUE.findall(lowered)
    if len(declared) != multiparts:
        return None
    values = [(quoted or token).rstrip() for quoted, token in declared]
    if any(not value or b"\\" in value for value in values):
        return None
    delimiters = tuple(b"--" + value for value in values)
    blocks: list[tuple[int, int]] = []
    at = lowered.find(b"\n--", max(0, header_len - 1))
    while at != -1 and delimiters:
        line_end = lowered.find(b"\n", at + 1)
        if line_end == -1:
            break
        following = lowered.find(b"\n--", line_end)
        if lowered.startswith(delimiters, at + 1):
            limit = following if following != -1 else len(lowered)
            blank = _BLANK_LINE.search(lowered, line_end, limit)
            blocks.append((line_end, blank.start() if blank else limit))
        at = following
    return blocks


def _part_header_cost(
    lowered: bytes, header_len: int, limits: Limits, blocks: list[tuple[int, int]] | None
) -> tuple[int, str | None]:
    """The parse cost of the structured fields below the top-level header block.

    A part's field cannot be dropped without changing the part, so one over the limits
    refuses the message (the top-level ones are dropped by ``_drop_oversized_headers``).
    Only the parts' header ``blocks`` are costed when they are known, so a long "To:"
    line pasted into a body never refuses the message. A message that attaches messages
    has header blocks inside its parts' bodies, found only by the parse: there every
    line that looks like such a field counts, body lines included (costing is cheap, and
    only hostile text comes near the limits). Stops once past the message's limit.
    """
    spans = blocks if blocks is not None else [(max(0, header_len - 1), len(lowered))]
    total = 0
    for match in (m for a, b in spans for m in _STRUCTURED_FIELD.finditer(lowered, a, b)):
        value = match.group("value")
        if len(value) > limits.max_header_value_bytes:
            return (
                total,
                f"a MIME part header is over the {limits.max_header_value_bytes} byte limit",
            )
        cost = header_parse_cost(value, addresses=match.group("name") in _ADDRESS_NAMES)
        if cost > limits.max_header_parse_cost:
            return total, (
                f"a MIME part header would cost {cost} units to parse, over the "
                f"{limits.max_header_parse_cost} limit"
            )
        total += cost
        if total > limits.max_message_header_parse_cost:
            break
    return total, None


def _drop_oversized_headers(
    raw: bytes, header_len: int, limits: Limits, problems: list[str]
) -> tuple[bytes, int]:
    """Remove single headers too long to parse in linear time (e.g. To: with 20,000 addresses).

    Structured fields (From, To, Content-Type, ...) are dropped too when their tokens
    would take the stdlib parser too long (``header_parse_cost``). Returns the bytes to
    parse and the parse cost of the structured fields kept.
    """
    cap = limits.max_header_value_bytes
    starts = [m.start() for m in _HEADER_START.finditer(raw, 0, header_len)] + [header_len]
    oversized: list[tuple[int, int, str]] = []
    kept = 0
    for a, b in itertools.pairwise(starts):
        if b - a > cap:
            oversized.append((a, b, f"is {b - a} bytes, over the {cap} limit"))
            continue
        field = _STRUCTURED_HEADER.match(raw, a, b)
        if field is None:
            continue
        address = field.group("name").lower() in _ADDRESS_NAMES
        cost = header_parse_cost(raw[field.end() : b], addresses=address)
        if cost > limits.max_header_parse_cost:
            oversized.append(
                (
                    a,
                    b,
                    f"would cost {cost} units to parse, over the {limits.max_header_parse_cost} limit",
                )
            )
        else:
            kept += cost
    if not oversized:
        return raw, kept
    pieces: list[bytes] = []
    cursor = 0
    for a, b, why in oversized:
        name = raw[a : min(b, a + 80)].split(b":", 1)[0].decode("ascii", "replace")
        problems.append(f"header {name} {why}; not parsed")
        pieces.append(raw[cursor:a])
        cursor = b
    pieces.append(raw[cursor:])
    return b"".join(pieces), kept


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


def header_values(
    message: EmailMessage, name: str, cap: int = 20, max_chars: int | None = None
) -> list[str]:
    """Decoded values of a header; a header the parser chokes on is returned raw.

    Raw 8-bit bytes (a windows-1251 Subject with no encoded words) are decoded with
    the charsets the message declares first, and encoded words with the superset of
    their label (gb2312 -> gb18030); the stdlib would show U+FFFD for both.
    ``max_chars`` cuts each raw value first: the headers of an attached message were
    never bounded, and the stdlib parses even unstructured text in superlinear time
    (a 1 MB Subject took over 12 s).
    """
    values: list[str] = []
    wanted = name.lower()
    hints: tuple[str, ...] | None = None
    for key, value in message.raw_items():  # unparsed; get_all() would parse every one
        if key.lower() != wanted:
            continue
        if max_chars is not None and isinstance(value, str):
            value = value[:max_chars]
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
    values = header_values(message, name, cap=1, max_chars=max(4096, 4 * max_len))
    return clean_text(values[0], max_len) if values else None


def header_count(message: EmailMessage, name: str) -> int:
    wanted = name.lower()
    return sum(1 for key, _ in message.raw_items() if key.lower() == wanted)
