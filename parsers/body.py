"""The readable body of a message, decoded defensively.

Mail from market participants arrives from every client there is: Outlook HTML-only
bodies whose data sits in tables, parts labelled utf-8 that are really windows-1252,
``x-unknown`` charsets, broken base64. The case handlers need *some* text from all of
them, and the worker must never crash on one, so every step here degrades to a
best-effort answer plus a recorded problem instead of raising.
"""

from __future__ import annotations

import binascii
import codecs
import itertools
import quopri
import re
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from typing import Any, Literal
from urllib.parse import unquote

import html2text
from charset_normalizer import from_bytes
from charset_normalizer.md import mess_ratio

from parsers.recent import Recent

# Text parts are previews of what a person wrote; anything longer is a paste or an attack.
DEFAULT_MAX_PART_BYTES = 4 * 1024 * 1024
# html2text is pure Python (about 1-2 MB/s); this keeps one conversion well under a second.
MAX_HTML_CHARS = 600_000
# charset-normalizer samples its input anyway; a bounded prefix keeps detection cheap.
_DETECT_SAMPLE = 128 * 1024
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

# Labels that are subsets of a charset browsers and Windows actually use; decoding with
# the superset rescues the bytes senders' software really emitted.
_SUPERSETS = {
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "iso_8859-1": "cp1252",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "ks_c_5601-1987": "cp949",
    "euc-kr": "cp949",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "x-sjis": "cp932",
    "big5": "big5hkscs",
    "iso-8859-8-i": "iso-8859-8",
    "windows-874": "cp874",
    "tis-620": "cp874",
}
# Never decode with these labels: UTF-7 lets "+ADw-script+AD4-" become markup (B33); the
# rest are Python codecs that are not mail charsets ("undefined" raises on any byte).
_REFUSED_CODECS = frozenset(
    {"utf-7", "utf_7", "undefined", "idna", "punycode", "unicode-escape", "raw-unicode-escape",
     "unicode_escape", "raw_unicode_escape", "charmap"}
)  # fmt: skip
# Never *guess* these: on ordinary 8-bit mail they are always wrong.
_REFUSED_GUESSES = ["utf_7", "utf_16", "utf_16_be", "utf_16_le", "utf_32", "utf_32_be", "utf_32_le"]

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

    def __init__(self, chars: int = 32 * 1024) -> None:
        self.chars = chars

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
    if (budget or HeaderBudget()).allows(size):
        try:
            ctype, disposition, name, charset = _parsed_fields(part, raw)
            return PartInfo(ctype, disposition, name, charset, cte, content_id, None)
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
        _bounded_filename(disp_raw, ctype_raw),
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
        return unquote(encoded, encoding=charset or "utf-8", errors="replace")
    except LookupError:
        return unquote(encoded, errors="replace")


def _decode_words(value: str) -> str:
    try:
        return str(make_header(decode_header(value)))
    except Exception:
        return value


def _clean_charset(charset: object) -> str | None:
    if not charset:
        return None
    return str(charset).strip().strip("\"'").lower()[:60] or None


def best_text(msg: EmailMessage, *, max_chars: int = 2_000_000) -> BodyText:
    """text/plain when the sender wrote one, else the HTML rendered as lines of text.

    Parts inside an attached message/rfc822 belong to the forwarded mail, not to this
    one (their identifiers are collected separately by ``evidence.forwarded_texts``).
    """
    problems: list[str] = []
    try:
        plain, html = _body_candidates(msg)
    except Exception as exc:  # a malformed tree must still give "no body", not a crash
        return BodyText("", "none", None, (f"body walk failed: {type(exc).__name__}",))
    max_bytes = max(1024, min(DEFAULT_MAX_PART_BYTES, max_chars * 4))

    plain_text: str | None = None
    if plain is not None:
        plain_text, part_problems = _decode(*plain, max_bytes)
        problems.extend(part_problems)
        if not plain_text.strip() and html is not None:
            plain_text = None  # an empty text/plain beside real HTML is a client quirk
    if plain_text is not None:
        return BodyText(_finish(plain_text, max_chars, problems), "plain", None, tuple(problems))

    if html is not None:
        html_source, part_problems = _decode(*html, max_bytes)
        problems.extend(part_problems)
        if len(html_source) > MAX_HTML_CHARS:
            problems.append(f"HTML body over {MAX_HTML_CHARS} characters; converted a prefix")
        text = html_to_text(html_source[:MAX_HTML_CHARS])
        return BodyText(
            _finish(text, max_chars, problems), "html", html_source[:max_chars], tuple(problems)
        )
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
        text = converter.handle(html.replace("\x00", ""))
    except Exception:  # html2text on truly broken markup; fall back to stripping tags
        text = re.sub(r"<[^<>]*>", " ", html)
    text = text.replace("&nbsp_place_holder;", " ").replace("\u00a0", " ")
    # rstrip per line: the regex "[ \t]+$" is quadratic on long runs of spaces.
    text = "\n".join(line.rstrip(" \t") for line in text.split("\n"))
    return _MANY_BLANK_LINES.sub("\n\n", text).strip("\n")


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


def _body_candidates(
    msg: Message,
) -> tuple[tuple[Message, PartInfo] | None, tuple[Message, PartInfo] | None]:
    """First text/plain and first text/html that are the message's own body."""
    plain: tuple[Message, PartInfo] | None = None
    html: tuple[Message, PartInfo] | None = None
    budget = HeaderBudget()
    stack: list[Message] = [msg]
    seen = 0
    while stack and seen < _MAX_WALK and (plain is None or html is None):
        part = stack.pop()
        seen += 1
        info = part_info(part, budget)
        if info.content_type in _BODY_SKIP_TYPES:
            continue
        payload = raw_payload(part)
        if isinstance(payload, list):
            stack.extend(reversed([p for p in payload if isinstance(p, Message)]))
            continue
        if info.is_attachment:
            continue
        ctype = info.content_type
        if ctype == "text/plain" or (ctype.startswith("multipart/") and isinstance(payload, str)):
            plain = plain or (part, info)  # a multipart with no usable boundary is one text part
        elif ctype == "text/html":
            html = html or (part, info)
    return plain, html


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
    return text.replace("\x00", ""), problems


def decode_bytes(data: bytes, charset: str | None) -> tuple[str, str | None]:
    """Bytes to text: declared charset, else a normalizer guess, else utf-8 with U+FFFD."""
    codec = _codec(charset)
    if charset and codec is None:
        problem = f"charset {charset[:40]!r} unknown or refused; guessed"
    else:
        problem = None
    candidates: list[str] = []
    if codec:
        candidates.append(_SUPERSETS.get(charset or "", codec))
    elif not charset:
        candidates.append("utf_8")
    for name in candidates:
        try:
            return data.decode(name), problem
        except (UnicodeError, LookupError):
            if charset:
                problem = f"body is not valid {charset[:40]}; guessed"
    guess = _guess(data)
    if guess:
        try:
            return data.decode(guess, "replace"), problem
        except (LookupError, UnicodeError):
            pass
    return data.decode("utf-8", "replace"), problem or "undecodable bytes replaced"


def _codec(charset: str | None) -> str | None:
    if not charset:
        return None
    try:
        info = codecs.lookup(charset)
    except (LookupError, ValueError, TypeError):
        return None
    # Only real text encodings: "rot13", "base64" or "undefined" are codecs too.
    if not getattr(info, "_is_text_encoding", True) or info.name in _REFUSED_CODECS:
        return None
    return info.name


def _guess(data: bytes) -> str | None:
    """Best guess at the real charset of unlabelled or mislabelled bytes.

    charset-normalizer alone picks at random among equally "clean" single-byte code pages
    for short Western text (measured: cp1250 for French, cp1006 for "Straße", cp932 for
    "£100"), so valid UTF-8 wins first, then windows-1252, what UK senders' software
    emits, whenever it reads no worse than the library's choice.
    """
    if not data:
        return None
    sample = data[:_DETECT_SAMPLE]
    try:
        sample.decode("utf-8")
        return "utf_8"
    except UnicodeDecodeError as exc:
        if len(data) > len(sample) and exc.start >= len(sample) - 4:
            return "utf_8"  # only a character cut in two by the end of the sample
    try:
        matches = from_bytes(sample, cp_exclusion=_REFUSED_GUESSES)
        best = matches.best()
    except Exception:
        best = None
    try:
        western = sample.decode("cp1252")
        if mess_ratio(western, 1.0) <= (best.chaos if best is not None else 0.0) + 0.02:
            return "cp1252"
    except UnicodeDecodeError:
        pass
    if best is None:
        return None
    encoding = str(best.encoding)
    return None if encoding in _REFUSED_CODECS else encoding


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
