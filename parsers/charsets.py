"""Bytes and header text to str, whatever charset the sender's software claimed.

Parts labelled utf-8 that are really windows-1252, GBK under a gb2312 label, ``x-unknown``,
raw 8-bit bytes in headers where RFC 5322 wants encoded words: every decoder here gives
text and, where it had to guess, says so, and never lets a charset change a header's
structure (an ASCII ``<`` or ``@`` always stays itself).
"""

from __future__ import annotations

import codecs
import itertools
import re
from collections.abc import Iterable, Iterator
from email.message import Message

from charset_normalizer import from_bytes
from charset_normalizer.md import mess_ratio

# charset-normalizer samples its input anyway; a bounded prefix keeps detection cheap.
_DETECT_SAMPLE = 128 * 1024
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
# Raw 8-bit header bytes: BytesParser keeps each as a lone surrogate (surrogateescape).
_RAW_8BIT = re.compile("[\udc80-\udcff]")
_ENCODED_WORD_LABEL = re.compile(r"(=\?)([A-Za-z0-9_.:-]{1,40})((?:\*[A-Za-z-]{1,20})?\?[BbQq]\?)")
_MAX_HINT_HEADER_CHARS = 4096
_MAX_HEADERS = 200
_CHARSET_PARAM = re.compile(r"""(?:^|;)\s*charset\s*=\s*["']?([A-Za-z0-9_.:-]{1,40})""", re.I)
# Python codec names of single-byte charsets (as codecs.lookup spells them).
_SINGLE_BYTE = re.compile(
    r"(?:latin[-_]1|iso8859[-_]\d{1,2}|cp125\d|cp437|cp850|cp874|koi8[-_][rtu]|mac[-_][a-z]+)$"
)


def superset_charset(charset: str) -> str:
    """The charset senders' software really used for a label (gb2312 -> gb18030)."""
    return _SUPERSETS.get(charset.strip().lower(), charset)


def widen_encoded_words(value: str) -> str:
    """Relabel RFC 2047 encoded words with the superset charset of their label.

    Chinese mail labels GBK text gb2312 and Western mail labels windows-1252 text
    iso-8859-1; decoded as labelled, those characters become U+FFFD or C1 controls.
    """
    if "=?" not in value:
        return value
    return _ENCODED_WORD_LABEL.sub(
        lambda m: m.group(1) + superset_charset(m.group(2)) + m.group(3), value
    )


def has_raw_8bit(value: str) -> bool:
    """Whether a parsed header value still holds raw 8-bit bytes (as surrogates)."""
    return _RAW_8BIT.search(value) is not None


def decode_raw_header(value: str, hints: Iterable[str | None] = ()) -> str:
    """Header text sent as raw 8-bit bytes, decoded instead of shown as U+FFFD.

    RFC 5322 wants encoded words, but many clients put bare UTF-8, windows-1251 or GB2312
    bytes in Subject, From and filename parameters. UTF-8 is tried first (SMTPUTF8 and
    most modern software), then the charsets the part and message declare, then a guess.
    A candidate is only taken if every ASCII byte stays itself: a multi-byte charset
    that swallowed a ``<``, ``@`` or ``"`` would change the header's structure.
    """
    if not has_raw_8bit(value):
        return value
    try:
        data = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that did not come from a byte
        return value.encode("utf-8", "replace").decode("utf-8")
    skeleton = bytes(b for b in data if b < 0x80)
    candidates: list[str] = ["utf_8"]
    for hint in hints:
        codec = _codec(hint)
        if codec:
            candidates.append(_SUPERSETS.get(str(hint).lower(), codec))
    for name in itertools.chain(dict.fromkeys(candidates), _lazy_guess(data)):
        try:
            text = data.decode(name)
        except (UnicodeError, LookupError):
            continue
        if text.encode("ascii", "ignore") == skeleton:
            return text
    return data.decode("utf-8", "replace")


def _lazy_guess(data: bytes) -> Iterator[str]:
    guess = _guess(data)  # charset-normalizer costs milliseconds: only when hints failed
    if guess:
        yield guess


def message_charset_hints(msg: Message) -> tuple[str, ...]:
    """Charsets a message declares: its Content-Type charset, then its encoded words'.

    Software that sends raw 8-bit headers almost always uses the charset it declares
    for the body or in the encoded words of its other headers.
    """
    hints: list[str] = []
    for key, value in itertools.islice(msg.raw_items(), _MAX_HEADERS):
        name = str(key).lower()
        text = str(value)[:_MAX_HINT_HEADER_CHARS]
        if name == "content-type":
            found = _CHARSET_PARAM.search(text)
            if found:
                hints.insert(0, found.group(1).lower())
        elif name in ("subject", "from", "to", "cc"):
            words = itertools.islice(_ENCODED_WORD_LABEL.finditer(text), 5)
            hints.extend(m.group(2).lower() for m in words)
    return tuple(dict.fromkeys(hints))[:8]


def decode_bytes(data: bytes, charset: str | None) -> tuple[str, str | None]:
    """Bytes to text: declared charset, else a normalizer guess, else utf-8 with U+FFFD.

    One exception to trusting the label: bytes that are entirely valid UTF-8, with
    multi-byte sequences, under a single-byte label (web forms and scripts that say
    iso-8859-1 and send UTF-8) are UTF-8. Real Latin or Cyrillic text is practically
    never valid UTF-8, and decoding it as labelled would give "MÃ¼ller".
    """
    codec = _codec(charset)
    if charset and codec is None:
        problem = f"charset {charset[:40]!r} unknown or refused; guessed"
    else:
        problem = None
    if codec and _SINGLE_BYTE.match(codec) and not data.isascii():
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            return text, f"body labelled {(charset or '')[:40]!r} is UTF-8; read as UTF-8"
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
    if _mostly_utf8(sample):
        return "utf_8"
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


def _mostly_utf8(sample: bytes) -> bool:
    """UTF-8 with a few broken sequences (a quoted-printable soft break cutting a
    character, a truncated paste) is still UTF-8: at least nine in ten non-ASCII
    characters decode. Text in any other charset is almost never valid UTF-8 at all,
    and charset-normalizer reads the damaged Cyrillic as Chinese."""
    text = sample.decode("utf-8", "replace")
    bad = text.count("\ufffd")
    good = sum(1 for ch in text if ch > "\x7f") - bad
    return good >= 9 * bad and good >= 8
