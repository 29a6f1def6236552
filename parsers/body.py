"""The readable body of a message, decoded defensively.

Mail from market participants arrives from every client there is: Outlook HTML-only
bodies whose data sits in tables, parts labelled utf-8 that are really windows-1252,
``x-unknown`` charsets, broken base64. The case handlers need *some* text from all of
them, and the worker must never crash on one, so every step here degrades to a
best-effort answer plus a recorded problem instead of raising.
"""

from __future__ import annotations

import binascii
import itertools
import quopri
import re
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from typing import Any, Literal
from urllib.parse import unquote

import html2text

from parsers.charsets import (
    decode_bytes,
    decode_raw_header,
    has_raw_8bit,
    message_charset_hints,
    superset_charset,
    widen_encoded_words,
)
from parsers.recent import Recent
from parsers.tnef import MAX_TNEF_BYTES, is_winmail, tnef_body
from parsers.uuencode import strip_uuencoded

# Text parts are previews of what a person wrote; anything longer is a paste or an attack.
DEFAULT_MAX_PART_BYTES = 4 * 1024 * 1024
# html2text is pure Python (about 1-2 MB/s); this keeps one conversion well under a second.
MAX_HTML_CHARS = 600_000
# ... and its cost is per tag or entity (up to about 9 us each), so a prefix holding this
# many "<" and "&" is the most converted (600 KB of "<?" took 2.6 s; Outlook writes one
# per 20 characters or more, so real mail meets MAX_HTML_CHARS first).
MAX_HTML_MARKUP = 30_000
_MAX_WALK = 2000

_BODY_SKIP_TYPES = frozenset(
    {
        "message/rfc822",
        "message/global",
        "message/delivery-status",
        "message/global-delivery-status",
        "message/disposition-notification",
        "message/feedback-report",
    }
)


MAX_PARAM_HEADER_CHARS = 4 * 1024
MAX_NESTING = 12
_NESTING_TAGS = {"ul": "list", "ol": "list", "dl": "list", "blockquote": "quote"}
_MAX_PART_HEADERS = 200
_PART_HEADERS = frozenset(
    {"content-type", "content-disposition", "content-transfer-encoding", "content-id"}
)
_TYPE_RE = re.compile(r"\s*([A-Za-z0-9!#$&^_.+-]{1,64}/[A-Za-z0-9!#$&^_.+-]{1,64})")
_TOKEN_RE = re.compile(r"\s*([A-Za-z0-9!#$&^_.+-]{1,64})")
_PARAM_RE = re.compile(
    r"""(?:^|;)\s*([A-Za-z0-9_.-]{1,40})(\*\d{1,4})?(\*)?\s*=\s*("(?:[^"\\]|\\.){0,1000}"|[^;\s]{0,1000})"""
)
_META_CHARSET = re.compile(
    rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([A-Za-z0-9_:.-]{1,40})""", re.I
)
_B64_DATA = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
_B64_ALLOWED = bytes(_B64_DATA) + b"= \t\r\n"
_B64_NOT_DATA = bytes(b for b in range(256) if b not in _B64_DATA)
_NEWLINES = re.compile(r"\r\n?")
_MANY_BLANK_LINES = re.compile(r"\n{3,}")
_FORWARD_TYPES = frozenset({"message/rfc822", "message/global"})
_MAX_CONTINUATIONS = 20
_HTML_START = re.compile(r"(?:<\?xml[^>]{0,200}>\s*)?(?:<!doctype\s+html|<html[\s>])", re.I)
_HTML_END = re.compile(r"</(?:html|body)\s*>", re.I)
# What Python 3.11's html.parser searches for from a "<" to the end of the text.
_COMMENT_CLOSE = re.compile(r"--\s*>")
_SECTION_CLOSE = re.compile(r"]\s*]\s*>")
_MS_SECTION_CLOSE = re.compile(r"]\s*>")
_SECTION_NAME = re.compile(r"<!\[([a-zA-Z][-_.a-zA-Z0-9]*)")
_QUOTED_VALUE = re.compile(r"""=\s*(["'])""")
_MARKUP = re.compile(r"[<&]")


@dataclass(frozen=True)
class BodyText:
    """The text the rest of the pipeline reads, and where it came from."""

    text: str
    source: Literal["plain", "html", "none"]
    html: str | None = None
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class PartInfo:
    """The MIME facts of one part, read once and within bounds."""

    content_type: str
    disposition: str
    filename: str | None
    charset: str | None
    transfer_encoding: str
    content_id: bool
    problem: str | None = None

    @property
    def is_attachment(self) -> bool:
        return self.disposition == "attachment" or (
            self.disposition != "inline" and self.filename is not None
        )


class HeaderBudget:
    """Characters of MIME parameter headers the stdlib parser may still see.

    policy.default re-parses a structured header on every access and its parameter
    parser is superlinear: 10,000 RFC 2231 segments (B34) take over a second *per call*.
    One message gets a fixed allowance; oversized headers and anything beyond the
    allowance are read with a bounded regular expression instead.
    """

    def __init__(self, chars: int = 32 * 1024, hints: tuple[str, ...] = ()) -> None:
        self.chars = chars
        # Charsets the message declares, for parameters sent as raw 8-bit bytes.
        self.hints = hints

    def allows(self, size: int) -> bool:
        if size > MAX_PARAM_HEADER_CHARS or size > self.chars:
            return False
        self.chars -= size
        return True


def part_info(part: Message, budget: HeaderBudget | None = None) -> PartInfo:
    """Content type, disposition, filename and charset of ``part``; never raises."""
    raw: dict[str, str] = {}
    for key, value in getattr(part, "_headers", [])[:_MAX_PART_HEADERS]:
        header = str(key).lower()
        if header in _PART_HEADERS and header not in raw:
            raw[header] = str(value)
    cte = raw.get("content-transfer-encoding", "")[:100].strip().lower()
    cte = cte.split(None, 1)[0].strip(";\"'") if cte else ""
    content_id = "content-id" in raw
    ctype_raw = raw.get("content-type", "")
    disp_raw = raw.get("content-disposition", "")
    size = len(ctype_raw) + len(disp_raw)
    budget = budget or HeaderBudget()
    raw_8bit = has_raw_8bit(ctype_raw) or has_raw_8bit(disp_raw)
    if raw_8bit:
        # The stdlib turns raw 8-bit parameter bytes (a GB2312 or UTF-8 filename with no
        # RFC 2047/2231 encoding, common from Outlook Express and webmail) into U+FFFD;
        # decode them with the charsets the part and message declare, then read bounded.
        hints = (_bounded_param(ctype_raw, "charset"), *budget.hints)
        ctype_raw = decode_raw_header(ctype_raw[:MAX_PARAM_HEADER_CHARS], hints)
        disp_raw = decode_raw_header(disp_raw[:MAX_PARAM_HEADER_CHARS], hints)
    elif budget.allows(size):
        try:
            ctype, disposition, name, charset = _parsed_fields(part, raw)
            if name is not None and "\ufffd" in name:
                # The stdlib decodes RFC 2231 and 2047 names with the label's own charset
                # (gb2312 for GBK names); the bounded reading uses the superset.
                name = _bounded_filename(disp_raw, ctype_raw) or name
            return PartInfo(ctype, disposition, _named(name), charset, cte, content_id, None)
        except Exception:
            pass  # fall through to the bounded reading
    problem = (
        "MIME parameter headers oversized; read with a bounded scan"
        if size > MAX_PARAM_HEADER_CHARS
        else None
    )
    return PartInfo(
        _bounded_type(ctype_raw, part),
        _bounded_disposition(disp_raw),
        _named(_bounded_filename(disp_raw, ctype_raw)),
        _clean_charset(_bounded_param(ctype_raw, "charset")),
        cte,
        content_id,
        problem,
    )


_Fields = tuple[str, str, str | None, str | None]  # content type, disposition, filename, charset
# The same part is read by the body, evidence and forwarded-message walks of one message;
# the stdlib re-parses its parameters on every call. Keyed by what the stdlib reads from
# (the first Content-Type and Content-Disposition, the default type, policy and class).
_recent_fields: Recent[Message, _Fields] = Recent(8)


def _parsed_fields(part: Message, raw: dict[str, str]) -> _Fields:
    """Content type, disposition, filename and charset as the stdlib parser reads them."""
    if len(getattr(part, "_headers", ())) > _MAX_PART_HEADERS:
        return _stdlib_fields(part)  # ``raw`` does not show every header the stdlib reads
    try:
        state = (
            raw.get("content-type"),
            raw.get("content-disposition"),
            part.get_default_type(),
            part.policy,
            type(part),
        )
    except Exception:  # an odd part object: read it directly, as the stdlib would
        return _stdlib_fields(part)
    fields = _recent_fields.get(part, state)
    if fields is None:
        fields = _stdlib_fields(part)
        _recent_fields.put(part, state, fields)
    return fields


def _stdlib_fields(part: Message) -> _Fields:
    ctype = part.get_content_type()
    disposition = (part.get_content_disposition() or "").lower()
    filename = part.get_filename()
    charset = part.get_content_charset()
    name = str(filename) if filename is not None else None
    if name is not None and "=?" in name:
        name = _decode_words(name)  # encoded words in a quoted parameter: common
    return ctype, disposition, name, _clean_charset(charset)


def _default_type(part: Message) -> str:
    try:
        return str(part.get_default_type())
    except Exception:
        return "text/plain"


def _bounded_type(raw: str, part: Message) -> str:
    match = _TYPE_RE.match(raw[:MAX_PARAM_HEADER_CHARS])
    return match.group(1).lower() if match else _default_type(part)


def _bounded_disposition(raw: str) -> str:
    match = _TOKEN_RE.match(raw[:200])
    return match.group(1).lower() if match else ""


def _bounded_param(raw: str, wanted: str) -> str | None:
    for match in _PARAM_RE.finditer(raw[:MAX_PARAM_HEADER_CHARS]):
        name, section, extended, value = match.groups()
        if name.lower() == wanted and not section:
            value = value.strip('"')
            return _unquote_2231(value) if extended else value
    return None


def _bounded_filename(disposition: str, ctype: str) -> str | None:
    """filename (or name) from raw headers, RFC 2231 continuations joined, at most 64."""
    for raw, wanted in ((disposition, "filename"), (ctype, "name")):
        pieces: dict[int, tuple[str, bool]] = {}
        plain: str | None = None
        for match in _PARAM_RE.finditer(raw[:MAX_PARAM_HEADER_CHARS]):
            name, section, extended, value = match.groups()
            if name.lower() != wanted:
                continue
            value = value.strip('"')
            if section:
                pieces.setdefault(int(section[1:]), (value, bool(extended)))
                if len(pieces) >= 64:
                    break
            elif plain is None:
                plain = _unquote_2231(value) if extended else value
        if pieces:
            joined = "".join(pieces[k][0] for k in sorted(pieces))
            return _unquote_2231(joined) if pieces[min(pieces)][1] else joined
        if plain:
            return _decode_words(plain) if "=?" in plain else plain
    return None


def _unquote_2231(value: str) -> str:
    charset, sep, rest = value.partition("'")
    if not sep:
        return unquote(value, errors="replace")
    _lang, _, encoded = rest.partition("'")
    try:
        return unquote(encoded, encoding=superset_charset(charset or "utf-8"), errors="replace")
    except LookupError:
        return unquote(encoded, errors="replace")


def _decode_words(value: str) -> str:
    try:
        return str(make_header(decode_header(widen_encoded_words(value))))
    except Exception:
        return value


def _clean_charset(charset: object) -> str | None:
    if not charset:
        return None
    return str(charset).strip().strip("\"'").lower()[:60] or None


def _named(name: str | None) -> str | None:
    """A filename of only blanks (IncrediMail writes ``name=" "`` on body parts) is none."""
    return name if name is not None and name.strip() else None


def best_text(msg: EmailMessage, *, max_chars: int = 2_000_000) -> BodyText:
    """text/plain when the sender wrote one, else the HTML rendered as lines of text.

    Parts inside an attached message/rfc822 belong to the forwarded mail, not to this
    one (their identifiers are collected separately by ``evidence.forwarded_texts``).
    A winmail.dat is read only when the message has no text or HTML body of its own.
    """
    problems: list[str] = []
    try:
        found = _body_candidates(msg)
    except Exception as exc:  # a malformed tree must still give "no body", not a crash
        return BodyText("", "none", None, (f"body walk failed: {type(exc).__name__}",))
    max_bytes = max(1024, min(DEFAULT_MAX_PART_BYTES, max_chars * 4))

    plain_text: str | None = None
    if found.plain:
        plain_text = strip_uuencoded(_decode_parts(found.plain, max_bytes, max_chars, problems))
        if not plain_text.strip() and found.html:
            plain_text = None  # an empty text/plain beside real HTML is a client quirk
        elif not found.html and _is_html_document(plain_text):
            problems.append("text part holds an HTML document; converted")
            return _html_body(plain_text, max_chars, problems)
    if plain_text is not None:
        return BodyText(_finish(plain_text, max_chars, problems), "plain", None, tuple(problems))

    if found.html:
        html_source = _decode_parts(found.html, max_bytes, max_chars, problems)
        return _html_body(html_source, max_chars, problems)
    if found.tnef is not None:
        return _tnef_body(found.tnef, max_chars, problems)
    return BodyText("", "none", None, tuple(problems))


def _decode_parts(parts: list[_Leaf], max_bytes: int, max_chars: int, problems: list[str]) -> str:
    """The decoded text of ``parts`` joined by blank lines, stopping once past max_chars."""
    texts: list[str] = []
    size = 0
    for part, info in parts:
        text, part_problems = _decode(part, info, max_bytes)
        problems.extend(part_problems)
        texts.append(text)
        size += len(text)
        if size > max_chars:
            break
    return "\n\n".join(texts) if len(texts) > 1 else texts[0]


def _is_html_document(text: str) -> bool:
    """A "text" part that is an HTML document: form mailers that forget the type, and
    bare HTML saved without headers (which parses as text/plain). Only a document that
    opens with <html> or a doctype and closes its body or html counts, so a plain
    message that merely quotes markup stays text."""
    head = text[:512].lstrip("\ufeff \t\r\n")
    if not _HTML_START.match(head):
        return False
    return _HTML_END.search(text[-4096:]) is not None


def _html_body(html_source: str, max_chars: int, problems: list[str]) -> BodyText:
    if len(html_source) > MAX_HTML_CHARS:
        problems.append(f"HTML body over {MAX_HTML_CHARS} characters; converted a prefix")
    prefix = html_source[:MAX_HTML_CHARS]
    cut = _markup_cut(prefix, MAX_HTML_MARKUP)
    if cut < len(prefix):
        problems.append(
            f"HTML body has over {MAX_HTML_MARKUP} tags and entities; converted a prefix"
        )
    text = html_to_text(prefix[:cut])
    return BodyText(
        _finish(text, max_chars, problems), "html", html_source[:max_chars], tuple(problems)
    )


def _tnef_body(tnef: _Leaf, max_chars: int, problems: list[str]) -> BodyText:
    """The body Outlook put inside winmail.dat: its plain text, else its HTML, else its
    RTF as text."""
    data, part_problems = decoded_bytes(tnef[0], MAX_TNEF_BYTES, tnef[1])
    problems.extend(part_problems)
    plain, html, rtf = tnef_body(data)
    if plain and plain.strip():
        problems.append("body read from winmail.dat")
        return BodyText(_finish(plain, max_chars, problems), "plain", None, tuple(problems))
    if html and html.strip():
        problems.append("body read from winmail.dat")
        return _html_body(html, max_chars, problems)
    if rtf:
        problems.append("body read from winmail.dat (rich text)")
        return BodyText(_finish(rtf, max_chars, problems), "plain", None, tuple(problems))
    return BodyText("", "none", None, tuple(problems))


def decode_part(part: Message, max_bytes: int) -> str:
    """Decoded text of one leaf part; never raises, whatever the bytes or labels say."""
    text, _ = _decode(part, part_info(part), max_bytes)
    return text


def decoded_bytes(
    part: Message, max_bytes: int, info: PartInfo | None = None
) -> tuple[bytes, list[str]]:
    """Transfer-decoded payload, bounded, with what went wrong on the way."""
    info = info or part_info(part)
    problems: list[str] = []
    payload = raw_payload(part)
    if isinstance(payload, list):
        return b"", []
    if not isinstance(payload, str):
        payload = str(payload)
    cte = info.transfer_encoding
    try:
        if cte == "base64":
            data = _b64decode(payload, max_bytes, problems)
        elif cte == "quoted-printable":
            data = quopri.decodestring(_raw_bytes(payload[: max_bytes * 3 + 3]))
        elif cte in ("x-uuencode", "uuencode", "x-uue", "uue"):
            decoded = part.get_payload(decode=True)
            data = decoded if isinstance(decoded, bytes) else b""
        else:
            data = _raw_bytes(payload[: max_bytes + 1])
    except Exception as exc:  # quopri/uu on hostile input; keep what the raw text says
        problems.append(f"transfer decoding failed ({type(exc).__name__}); raw text kept")
        data = _raw_bytes(payload[: max_bytes + 1])
    if len(data) > max_bytes:
        problems.append(f"part truncated to {max_bytes} bytes")
        data = data[:max_bytes]
    return data, problems


def raw_payload(part: Message) -> Any:
    """The payload as parsed: a list of parts, or a str keeping undecodable bytes.

    ``get_payload()`` would decode such a str with the declared charset and U+FFFD on
    every call, losing the original bytes and costing a full pass over a 30 MB part.
    """
    payload = getattr(part, "_payload", None)
    if payload is None:
        try:
            payload = part.get_payload()
        except Exception:
            return ""
    return payload if isinstance(payload, list | str) else str(payload)


def html_to_text(html: str) -> str:
    """Readable text from mail HTML, one table row per line ("Label | Value").

    html2text does the heavy lifting; its Markdown table output breaks a row wherever a
    cell holds a <p> or <br> (which Outlook always emits), so table tags are handled
    here and each row is flattened after html2text has rendered its cells.
    """
    try:
        converter = _RowTableHTML2Text()
        text = converter.handle(defuse_markup(html.replace("\x00", "")))
    except Exception:  # html2text on truly broken markup; fall back to stripping tags
        text = re.sub(r"<[^<>]*>", " ", html)
    text = text.replace("&nbsp_place_holder;", " ").replace("\u00a0", " ")
    # rstrip per line: the regex "[ \t]+$" is quadratic on long runs of spaces.
    text = "\n".join(line.rstrip(" \t") for line in text.split("\n"))
    return _MANY_BLANK_LINES.sub("\n\n", text).strip("\n")


def _markup_cut(html: str, limit: int) -> int:
    """Length of the prefix of ``html`` holding at most ``limit`` "<" and "&" characters."""
    if html.count("<") + html.count("&") <= limit:
        return len(html)
    marks = itertools.islice(_MARKUP.finditer(html), limit, None)
    return next(marks).start()


def defuse_markup(html: str) -> str:
    """``html`` with every "<" that opens an unterminated construct written as "&lt;".

    Python 3.11's html.parser (under html2text) looks for the end of an unterminated
    tag, comment or marked section from its "<" to the end of the text, again for the
    next one: 40 KB of "<x " took 16 s, of "<!--" about 1 s, and 600 KB of "<!--" minutes
    (CVE-2025-6069, fixed only in later Pythons). A tag must end before the next "<", a
    comment or section wherever its close is, and once a close is known to be missing it
    is never searched for again, so this is one pass. The parser would have shown such a
    "<" as text anyway, the way it shows "&lt;".
    """
    if "<" not in html:
        return html
    out: list[str] = []
    copied = 0
    missing: dict[re.Pattern[str], int] = {}  # close pattern -> absent from this offset on
    i = html.find("<")
    while i >= 0:
        after = html.find("<", i + 1)
        end = _construct_end(html, i, len(html) if after < 0 else after, missing)
        if end < 0:
            out.append(html[copied:i])
            out.append("&lt;")
            copied = i + 1
            i = after
        else:
            i = after if after < 0 or after >= end else html.find("<", end)
    out.append(html[copied:])
    return "".join(out)


def _construct_end(html: str, i: int, stop: int, missing: dict[re.Pattern[str], int]) -> int:
    """Where the construct opening at ``html[i] == "<"`` ends, or -1 if it does not."""
    if html.startswith("<!--", i):
        return _close_after(html, _COMMENT_CLOSE, i + 4, missing)
    if html.startswith("<![", i):
        name = _SECTION_NAME.match(html, i)
        keyword = name.group(1).lower() if name else ""
        if keyword in ("if", "else", "endif"):  # Outlook's <![if !supportLists]>
            return _close_after(html, _MS_SECTION_CLOSE, i + 3, missing)
        if keyword in ("temp", "cdata", "ignore", "include", "rcdata"):
            return _close_after(html, _SECTION_CLOSE, i + 3, missing)
        return -1  # html.parser raises on any other keyword
    following = html[i + 1 : i + 2]
    if following in ("!", "?", "/"):
        gt = html.find(">", i, stop)
        return gt + 1 if gt >= 0 else -1
    if not following.isascii() or not following.isalpha():
        return i + 1  # "< 5" or "<3": text, which the parser reads without a search
    pos = i + 1
    while True:  # a start tag: its ">" is the first one outside a quoted value
        gt = html.find(">", pos, stop)
        if gt < 0:
            return -1
        value = _QUOTED_VALUE.search(html, pos, gt)
        if value is None:
            return gt + 1
        close = html.find(value.group(1), value.end(), stop)
        if close < 0:
            return -1
        pos = close + 1


def _close_after(
    html: str, close: re.Pattern[str], start: int, missing: dict[re.Pattern[str], int]
) -> int:
    if start >= missing.get(close, len(html) + 1):
        return -1
    found = close.search(html, start)
    if found is None:
        missing[close] = start
        return -1
    return found.end()


class _RowTableHTML2Text(html2text.HTML2Text):
    """html2text with plain-text settings and table rows rendered as single lines."""

    def __init__(self) -> None:
        super().__init__(bodywidth=0)
        self.ignore_images = True
        self.ignore_links = True
        self.ignore_emphasis = True
        self.ignore_tables = False
        self.unicode_snob = True
        self.images_to_alt = False
        self.single_line_break = False
        self.tag_callback = _tag_callback  # type: ignore[assignment]  # html2text: None
        self._rows: list[_Row] = []
        self._table_depth = 0
        self._nesting: dict[str, int] = {}

    def handle_data(self, data: str, entity_char: bool = False) -> None:
        # entity_char=True skips html2text's Markdown escaping ("1\." / "\-"), which
        # would corrupt the text people typed.
        super().handle_data(data, entity_char=True)


@dataclass
class _Row:
    start: int
    depth: int
    cells: list[int]
    nested: bool = False


def _tag_callback(conv: Any, tag: str, attrs: dict[str, str | None], start: bool) -> bool:
    """Our handling of tables and of nesting html2text renders in quadratic time."""
    if tag in _NESTING_TAGS:
        return _capped_nesting(conv, tag, start)
    if tag in ("table", "tr", "td", "th"):
        return _table_tag(conv, tag, start)
    return False


def _capped_nesting(conv: Any, tag: str, start: bool) -> bool:
    """Ignore list/quote levels past MAX_NESTING: 800 nested <ul> take html2text 3 s."""
    depths: dict[str, int] = conv._nesting
    group = _NESTING_TAGS[tag]
    if start:
        depths[group] = depths.get(group, 0) + 1
        return depths[group] > MAX_NESTING
    depth = depths.get(group, 0)
    depths[group] = max(0, depth - 1)
    return depth > MAX_NESTING or depth == 0


def _table_tag(conv: Any, tag: str, start: bool) -> bool:
    rows: list[_Row] = conv._rows
    if tag == "table":
        if start:
            if rows:
                rows[-1].nested = True
            conv._table_depth += 1
        else:
            while rows and rows[-1].depth >= conv._table_depth:
                _close_row(conv, rows.pop())  # rows whose </tr> never came
            conv._table_depth = max(0, conv._table_depth - 1)
        conv.soft_br()
        return True
    if tag == "tr":
        if start:
            _open_row(conv, rows)
        elif rows and rows[-1].depth == conv._table_depth:
            _close_row(conv, rows.pop())
        return True
    if start:  # td / th
        if not rows or rows[-1].depth != conv._table_depth:
            _open_row(conv, rows)  # a cell without its <tr>
        rows[-1].cells.append(len(conv.outtextlist))
    return True


def _open_row(conv: Any, rows: list[_Row]) -> None:
    if rows and rows[-1].depth == conv._table_depth:
        _close_row(conv, rows.pop())  # sloppy HTML: a new <tr> closes the previous one
    conv.soft_br()
    conv.o("", force=True)  # flush the pending line break so it stays outside the row
    rows.append(_Row(len(conv.outtextlist), conv._table_depth, []))


def _close_row(conv: Any, row: _Row) -> None:
    out: list[str] = conv.outtextlist
    if row.nested or not row.cells or len(out) < row.start:
        conv.soft_br()
        return
    bounds = [*row.cells, len(out)]
    cells = [
        " ".join("".join(out[a:b]).replace("&nbsp_place_holder;", " ").split())
        for a, b in itertools.pairwise(bounds)
    ]
    while cells and not cells[-1]:
        cells.pop()
    while cells and not cells[0]:
        cells.pop(0)
    del out[row.start :]
    line = " | ".join(cells)
    if line:
        out.append(line)
        conv.lastWasNL = False
    conv.p_p = 0
    conv.space = False
    conv.soft_br()


_Leaf = tuple[Message, PartInfo]


@dataclass
class _Candidates:
    """The parts the body is read from: each list is a first part plus its continuations."""

    plain: list[_Leaf]
    html: list[_Leaf]
    tnef: _Leaf | None


def _body_candidates(msg: Message) -> _Candidates:
    """First text/plain and first text/html that are the message's own body.

    Beyond that first part: text parts that follow it in the same multipart/mixed are
    shown inline by every client (Apple Mail splits the text around an inline PDF, list
    software appends a footer part) and so belong to the body; a message that is
    nothing but a message/rfc822 is read through; when only *named* text parts exist
    (``Content-Type: text/plain; name=...`` and no disposition) the first is the body;
    and a winmail.dat is kept in case it holds the only body (Outlook "rich text").
    """
    plain: _Leaf | None = None
    html: _Leaf | None = None
    parents: dict[str, Message | None] = {}
    named: dict[str, _Leaf] = {}
    tnef: _Leaf | None = None
    budget = HeaderBudget(hints=message_charset_hints(msg))
    stack: list[tuple[Message, Message | None]] = [(msg, None)]
    seen = 0
    while stack and seen < _MAX_WALK and (plain is None or html is None):
        part, parent = stack.pop()
        seen += 1
        info = part_info(part, budget)
        payload = raw_payload(part)
        if isinstance(payload, list) and (
            info.content_type not in _BODY_SKIP_TYPES
            or (part is msg and info.content_type in _FORWARD_TYPES)
        ):
            stack.extend((p, part) for p in reversed(payload) if isinstance(p, Message))
            continue
        if info.content_type in _BODY_SKIP_TYPES:
            continue
        ctype = info.content_type
        if is_winmail(ctype, info.filename):
            tnef = tnef or (part, info)
        elif info.is_attachment:
            if info.disposition != "attachment" and ctype in ("text/plain", "text/html"):
                named.setdefault(ctype, (part, info))
        elif ctype == "text/plain" or (ctype.startswith("multipart/") and isinstance(payload, str)):
            if plain is None:  # a multipart with no usable boundary is one text part
                plain, parents["plain"] = (part, info), parent
        elif ctype == "text/html" and html is None:
            html, parents["html"] = (part, info), parent
    if plain is None and html is None:
        plain, html = named.get("text/plain"), named.get("text/html")
    return _Candidates(
        _with_continuations(plain, parents.get("plain"), budget),
        _with_continuations(html, parents.get("html"), budget),
        tnef,
    )


def _with_continuations(
    first: _Leaf | None, parent: Message | None, budget: HeaderBudget
) -> list[_Leaf]:
    """``first`` and the unnamed, inline parts of its type after it in a multipart/mixed."""
    if first is None:
        return []
    found = [first]
    if parent is None or part_info(parent, budget).content_type != "multipart/mixed":
        return found
    siblings = raw_payload(parent)
    if not isinstance(siblings, list):
        return found
    after = False
    for sibling in siblings[:_MAX_WALK]:
        if sibling is first[0]:
            after = True
            continue
        if not after or not isinstance(sibling, Message):
            continue
        info = part_info(sibling, budget)
        if (
            info.content_type == first[1].content_type
            and info.filename is None  # a named part is a file shown inline, not more body
            and info.disposition != "attachment"
            and isinstance(raw_payload(sibling), str)
        ):
            found.append((sibling, info))
            if len(found) > _MAX_CONTINUATIONS:
                break
    return found


def _decode(part: Message, info: PartInfo, max_bytes: int) -> tuple[str, list[str]]:
    data, problems = decoded_bytes(part, max_bytes, info)
    charset = info.charset
    if charset is None and info.content_type == "text/html":
        match = _META_CHARSET.search(data[:4096])
        if match:
            charset = match.group(1).decode("ascii", "replace").lower()
    text, charset_problem = decode_bytes(data, charset)
    if charset_problem:
        problems.append(charset_problem)
    # A byte-order mark opens many Windows-written parts; it is not text anyone wrote.
    return text.removeprefix("\ufeff").replace("\x00", ""), problems


def _b64decode(payload: str, max_bytes: int, problems: list[str]) -> bytes:
    # A generous raw prefix first (line breaks included), so a 30 MB part is never
    # cleaned in full; then the C decoder, which skips line breaks by itself.
    raw = _raw_bytes(payload[: (max_bytes // 3 + 2) * 4 * 2])
    if raw.translate(None, _B64_ALLOWED):
        problems.append("base64 part has characters outside the alphabet; decoded leniently")
    try:
        return binascii.a2b_base64(raw)[:max_bytes]
    except (binascii.Error, ValueError):
        pass
    cleaned = raw.translate(None, _B64_NOT_DATA)[: (max_bytes // 3 + 1) * 4]
    if len(cleaned) % 4 == 1:
        cleaned = cleaned[:-1]
        problems.append("base64 part has a stray final character")
    cleaned += b"=" * (-len(cleaned) % 4)
    try:
        return binascii.a2b_base64(cleaned)
    except (binascii.Error, ValueError):
        problems.append("base64 part undecodable")
        return b""


def _raw_bytes(text: str) -> bytes:
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def _finish(text: str, max_chars: int, problems: list[str]) -> str:
    text = _NEWLINES.sub("\n", text.replace("\x00", ""))
    if len(text) > max_chars:
        problems.append(f"body text truncated to {max_chars} characters")
        text = text[:max_chars]
    return text
