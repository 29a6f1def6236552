"""Identifiers quoted in CPSD mail: DIP transaction IDs, interfaces, MPIDs, codes, tickets.

Patterns follow the public DIP fixtures (T-/S-/CI- forms, which are testers' generators and
not the specification), so anything labelled as a transaction ID is also kept as an opaque
token. Everything is bounded: the first 2 MB of text and at most 500 values per kind.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from parsers.scan import ASCII_LOWER, anchored_matches, folded, literal_starts

MAX_SCAN_CHARS = 2_000_000
MAX_ITEMS = 500
_VALUE_CHARS = 2_000  # how far a labelled value may run on its line

TransactionKind = Literal[
    "uuid", "dip_transaction", "dip_sender_reference", "dip_correlation", "opaque"
]


@dataclass(frozen=True)
class TransactionId:
    value: str
    kind: TransactionKind


@dataclass(frozen=True)
class Identifiers:
    transaction_ids: tuple[TransactionId, ...]
    interface_ids: tuple[str, ...]
    event_codes: tuple[str, ...]
    mpids: tuple[str, ...]
    error_codes: tuple[str, ...]
    external_references: tuple[str, ...]
    case_references: tuple[str, ...]


_B = r"(?<![A-Za-z0-9_-])"  # token start
_E = r"(?![A-Za-z0-9_-])"  # token end
_DIP_BODY = r"(?:IF|PUB)-?\d{3}-\d{6,12}-[A-Za-z0-9]{2,8}-\d{8}-[0-9A-Fa-f]{1,32}"
_KIND_RES: tuple[tuple[TransactionKind, re.Pattern[str]], ...] = (
    ("uuid", re.compile(r"[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}")),
    ("dip_transaction", re.compile(r"T-" + _DIP_BODY)),
    ("dip_sender_reference", re.compile(r"S-" + _DIP_BODY)),
    ("dip_correlation", re.compile(r"CI-\d{8}-[0-9A-Fa-f]{1,32}")),
)
_STRUCTURED_TX_RE = re.compile(
    _B
    + r"(?:[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}|[TS]-"
    + _DIP_BODY
    + r"|CI-\d{8}-[0-9A-Fa-f]{1,32})"
    + _E
)
_STRUCTURED_TX_ANCHORS = (("-", 8), ("T-", 0), ("S-", 0), ("CI-", 0))  # the forms' first dashes
_TX_LABEL_RE = re.compile(
    r"(?<![A-Za-z])(?:transaction\s*(?:id|identifier|ref(?:erence)?)(?:\(s\)|s)?"
    r"|(?:sender|initial)?\s*correlation\s*(?:id|identifier)(?:\(s\)|s)?"
    r"|sender\s*unique\s*reference|txn\s*ids?)(?![A-Za-z])",
    re.IGNORECASE,
)
# One value after a label; separators may include JSON quotes and list punctuation.
_VALUE_RE = re.compile(r"""[\s,;:=#|"'\[\]()–-]*+([A-Za-z0-9_-]++)""")
_LABEL_TAIL_RE = re.compile(r"""[ \t:=|"'#–-]*+\r?\n[ \t|]*+""")
_OPAQUE_RE = re.compile(r"[A-Za-z0-9_-]{8,100}")

_INTERFACE_RE = re.compile(r"(?<![A-Za-z0-9])(?:(IF|PUB)(\d{3})|(?i:(if|pub))-(\d{3}))(?![0-9])")
_EVENT_BRACKET_RE = re.compile(r"\[([A-Z][A-Za-z0-9]{2,60})\]")
_CAMEL_RE = re.compile(r"[A-Z].*[a-z].*[A-Z]|[A-Z].*[A-Z].*[a-z]")
_EVENT_LABEL_RE = re.compile(r"(?<![A-Za-z])event\s*code(?:\(s\)|s)?(?![A-Za-z])", re.IGNORECASE)
_EVENT_VALUE_RE = re.compile(r"""[\s:="'|]*+\[?([A-Za-z][A-Za-z0-9_]{1,60})\]?""")

_MPID_LABEL_RE = re.compile(
    r"(?<![A-Za-z])(?:mpid\(s\)|mpids?|(?:market\s+)?participant\s+(?:id|identifier)s?)"
    r"(?![A-Za-z])",
    re.IGNORECASE,
)
_MPID_TOKEN_RE = re.compile(r"(?<![A-Za-z0-9_-])[A-Z0-9]{4}(?![A-Za-z0-9_-])")

_ERROR_LABEL_RE = re.compile(
    r"(?<![A-Za-z])(?:error|response|rejection(?:\s+reason)?|reason)\s*codes?(?:\(s\)|s)?"
    r"(?![A-Za-z])",
    re.IGNORECASE,
)
_ERROR_VALUE_RE = re.compile(
    r"""[\s,;:=#|"'\[\]()]*+(HTTP\s?\d{3}|[A-Za-z0-9][A-Za-z0-9_.-]{0,39})(?![A-Za-z0-9_])"""
)
# (?<![A-Za-z0-9_-])(?:[A-Z]{2,4}\d{3,4}|[A-Z]\d{4})(?![A-Za-z0-9]), with the lookbehind moved
# after the first letter (same matches) so that the regex engine skips to capitals quickly.
_ERROR_PATTERN_RE = re.compile(
    r"[A-Z](?<![A-Za-z0-9_-][A-Z])(?:[A-Z]{1,3}\d{3,4}|\d{4})(?![A-Za-z0-9])"
)
_ERROR_CONTEXT_RE = re.compile(r"error|code|reject|response|reason|fail|invalid", re.IGNORECASE)
_NOT_ERROR_PREFIXES = frozenset(
    {"IF", "PUB", "ISO", "SHA", "UTF", "RFC", "DES", "DCR", "MSG", "INC", "CHG", "PRB", "REQ"}
)
_CONTEXT_CHARS = 80

_SERVICENOW_PREFIXES = ("INC", "CS", "RITM", "REQ", "SCTASK", "PRB", "CHG")
_SERVICENOW_RE = re.compile(
    r"(?<![A-Za-z0-9])(?:" + "|".join(_SERVICENOW_PREFIXES) + r")\d{7,12}(?![0-9A-Za-z])"
)
_SERVICENOW_ANCHORS = tuple((prefix, 0) for prefix in _SERVICENOW_PREFIXES)
_WATERMARK_RE = re.compile(
    r"(?<![A-Za-z0-9])Ref:([A-Z][A-Z0-9]{0,19}?\d{1,20})(?:_[A-Za-z0-9]{1,64})?(?![A-Za-z0-9])"
)
_WATERMARK_ANCHORS = (("Ref:", 0),)
_ZENDESK_RE = re.compile(r"\[([0-9A-Z]{6}-[0-9A-Z]{4})\]")
_TICKET_RE = re.compile(r"(?<![A-Za-z])(?:ticket|request)\s?#\s?(\d{1,12})(?![0-9])", re.IGNORECASE)
_FRESHDESK_RE = re.compile(r"\[#((?:[A-Za-z][A-Za-z0-9]{0,30}-)?\d{1,12})\]")

# Cheap literal searches on ASCII-lowered text find where a label regex may match, so the
# case-insensitive regexes run only there (they are ~25x slower over a whole 2 MB body).
_TX_TRIGGER = ("transaction", "correlation", "sender", "initial", "txn")
_EVENT_TRIGGER = ("event",)
_MPID_TRIGGER = ("mpid", "market", "participant")
_ERROR_TRIGGER = ("error", "response", "rejection", "reason")
_TICKET_TRIGGER = ("ticket", "request")
_INTERFACE_TRIGGER = ("if", "pub")


def find_identifiers(
    text: str, *, reference_prefix: str = "CPSD", known_mpids: frozenset[str] | None = None
) -> Identifiers:
    """Every identifier kind at once, each deduplicated in order of appearance."""
    text = text[:MAX_SCAN_CHARS]
    mpids = tuple(find_mpids(text, known_mpids=known_mpids))
    case_refs = tuple(find_case_references(text, reference_prefix))
    external = tuple(find_external_references(text, reference_prefix=reference_prefix))
    not_errors = frozenset((*mpids, *case_refs, *external, *(known_mpids or ())))
    return Identifiers(
        transaction_ids=tuple(find_transaction_ids(text)),
        interface_ids=tuple(find_interface_ids(text)),
        event_codes=tuple(find_event_codes(text)),
        mpids=mpids,
        error_codes=tuple(find_error_codes(text, exclude=not_errors)),
        external_references=external,
        case_references=case_refs,
    )


# --- our references and other desks' ------------------------------------------------


def find_case_references(text: str, reference_prefix: str = "CPSD") -> list[str]:
    """Our case references (PREFIX-000123, also the dated PREFIX-20260131-0001), upper-cased."""
    trigger = (reference_prefix.translate(ASCII_LOWER),)
    matches = _triggered(_cap(text), trigger, _case_ref_re(reference_prefix))
    return _unique(m.group().upper() for m in matches)


def _case_ref_re(prefix: str) -> re.Pattern[str]:
    return re.compile(
        r"(?<![A-Za-z0-9_])" + re.escape(prefix) + r"-\d{6,12}+(?:-\d{4,6}+)?(?![0-9A-Za-z_])",
        re.IGNORECASE,
    )


def find_external_references(text: str, *, reference_prefix: str = "CPSD") -> list[str]:
    """Other desks' ticket numbers: ServiceNow, its watermark, Zendesk and Freshdesk forms."""
    text = _cap(text)
    found: list[tuple[int, str]] = []
    found += [(m.start(), m.group()) for m in _scan(text, _SERVICENOW_ANCHORS, _SERVICENOW_RE)]
    found += [
        (m.start(), "Ref:" + m.group(1)) for m in _scan(text, _WATERMARK_ANCHORS, _WATERMARK_RE)
    ]
    found += [(m.start(), m.group(1)) for m in _ZENDESK_RE.finditer(text) if _has_digit(m[1])]
    found += [(m.start(), "#" + m[1]) for m in _triggered(text, _TICKET_TRIGGER, _TICKET_RE)]
    found += [(m.start(), "#" + m.group(1)) for m in _FRESHDESK_RE.finditer(text)]
    ours = re.compile(re.escape(reference_prefix.upper()) + r"(?![A-Z])")
    values = (v for _, v in sorted(found) if not ours.match(_ticket_core(v)))
    return _unique(values)


def _ticket_core(value: str) -> str:
    return value.upper().removeprefix("REF:").removeprefix("#")


# --- transaction IDs -------------------------------------------------------------------


def transaction_kind(value: str) -> TransactionKind:
    """Which of the known forms a transaction ID has; anything else is opaque."""
    for kind, pattern in _KIND_RES:
        if pattern.fullmatch(value):
            return kind
    return "opaque"


def find_transaction_ids(text: str) -> list[TransactionId]:
    """Structured IDs anywhere, plus opaque tokens only where a label says what they are."""
    text = _cap(text)
    found = [(m.start(), m.group()) for m in _scan(text, _STRUCTURED_TX_ANCHORS, _STRUCTURED_TX_RE)]
    for label in _limited(_triggered(text, _TX_TRIGGER, _TX_LABEL_RE)):
        found += [(pos, v) for pos, v in _labelled_tokens(text, label.end()) if _is_opaque(v)]
    values = _unique(v for _, v in sorted(found))
    return [TransactionId(v, transaction_kind(v)) for v in values]


def _is_opaque(token: str) -> bool:
    """Labelled words ("not available") are not IDs: an ID carries at least one digit."""
    return bool(_OPAQUE_RE.fullmatch(token)) and _has_digit(token)


def _labelled_tokens(text: str, pos: int) -> Iterator[tuple[int, str]]:
    """Comma/space separated tokens after a label, on its line, until one isn't an ID."""
    pos = _value_line(text, pos)
    line_end = _line_end(text, pos)
    while pos < line_end:
        m = _VALUE_RE.match(text, pos, line_end)
        if m is None or not _is_opaque(m.group(1)):
            return
        yield m.start(1), m.group(1)
        pos = m.end()


# --- interfaces, events, MPIDs ---------------------------------------------------------


def find_interface_ids(text: str) -> list[str]:
    """IF-nnn and PUB-nnn, normalised from IF041 / if-041."""
    values = (
        f"{(m[1] or m[3]).upper()}-{m[2] or m[4]}"
        for m in _triggered(_cap(text), _INTERFACE_TRIGGER, _INTERFACE_RE)
    )
    return _unique(values)


def find_event_codes(text: str) -> list[str]:
    """DIP event codes, brackets dropped: [MSAppSPRequest] or after an 'event code' label."""
    text = _cap(text)
    found = [(m.start(), m[1]) for m in _EVENT_BRACKET_RE.finditer(text) if _CAMEL_RE.match(m[1])]
    for label in _limited(_triggered(text, _EVENT_TRIGGER, _EVENT_LABEL_RE)):
        m = _EVENT_VALUE_RE.match(text, label.end(), _line_end(text, label.end()))
        if m and not m[1].islower():
            found.append((m.start(1), m[1]))
    return _unique(v for _, v in sorted(found))


def find_mpids(text: str, *, known_mpids: frozenset[str] | None = None) -> list[str]:
    """4-character MPIDs: after an MPID label, or any standalone token in the known set."""
    text = _cap(text)
    found: list[tuple[int, str]] = []
    for label in _limited(_triggered(text, _MPID_TRIGGER, _MPID_LABEL_RE)):
        for pos, token in _labelled_words(text, label.end()):
            if len(token) != 4:
                break
            found.append((pos, token.upper()))
    if known_mpids:
        known = frozenset(k.upper() for k in known_mpids)
        found += [(m.start(), m[0]) for m in _MPID_TOKEN_RE.finditer(text) if m[0] in known]
    return _unique(v for _, v in sorted(found))


def _labelled_words(text: str, pos: int) -> Iterator[tuple[int, str]]:
    pos = _value_line(text, pos)
    line_end = _line_end(text, pos)
    while pos < line_end:
        m = _VALUE_RE.match(text, pos, line_end)
        if m is None or not m.group(1).isalnum():
            return
        yield m.start(1), m.group(1)
        pos = m.end()


# --- error and response codes ----------------------------------------------------------


def find_error_codes(text: str, *, exclude: frozenset[str] = frozenset()) -> list[str]:
    """Codes as quoted after error/response/rejection labels, or SP000/J0107 shapes near them."""
    text = _cap(text)
    found: list[tuple[int, str]] = []
    for label in _limited(_triggered(text, _ERROR_TRIGGER, _ERROR_LABEL_RE)):
        found += _labelled_error_codes(text, label.end())
    for m in _ERROR_PATTERN_RE.finditer(text):
        if _error_shaped(m[0]) and _near_error_word(text, m.start(), m.end()):
            found.append((m.start(), m[0]))
        if len(found) >= 4 * MAX_ITEMS:
            break
    return _unique(v for _, v in sorted(found) if v not in exclude)


def _labelled_error_codes(text: str, pos: int) -> list[tuple[int, str]]:
    line_end = _line_end(text, pos)
    codes: list[tuple[int, str]] = []
    while pos < line_end and len(codes) < 20:
        m = _ERROR_VALUE_RE.match(text, pos, line_end)
        if m is None or not _is_code_value(m[1]):
            break
        codes.append((m.start(1), m[1].rstrip(".-")))
        pos = m.end()
    return codes


def _is_code_value(value: str) -> bool:
    """'SP000', 'ERR-1234', 'A', 'HTTP 503' are codes; 'none', 'unknown', 'the' are not."""
    if _SERVICENOW_RE.fullmatch(value) or _INTERFACE_RE.fullmatch(value):
        return False
    return _has_digit(value) or (value.isupper() and len(value) <= 6)


def _error_shaped(token: str) -> bool:
    letters = token.rstrip("0123456789")
    return letters not in _NOT_ERROR_PREFIXES


def _near_error_word(text: str, start: int, end: int) -> bool:
    lo = max(text.rfind("\n", max(0, start - _CONTEXT_CHARS), start) + 1, start - _CONTEXT_CHARS)
    hi = text.find("\n", end, end + _CONTEXT_CHARS)
    hi = end + _CONTEXT_CHARS if hi == -1 else hi
    return bool(_ERROR_CONTEXT_RE.search(text, max(lo, 0), hi))


# --- helpers ---------------------------------------------------------------------------


def _cap(text: str) -> str:
    return text[:MAX_SCAN_CHARS]


def _has_digit(value: str) -> bool:
    return any(c.isdigit() for c in value)


def _value_line(text: str, pos: int) -> int:
    """A label alone on its line (Outlook tables) takes its value from the next line."""
    end = _LABEL_TAIL_RE.match(text, pos)
    return end.end() if end else pos


def _line_end(text: str, pos: int) -> int:
    end = text.find("\n", pos, pos + _VALUE_CHARS)
    return min(len(text), pos + _VALUE_CHARS) if end == -1 else end


def _scan(
    text: str, anchors: tuple[tuple[str, int], ...], pattern: re.Pattern[str]
) -> Iterator[re.Match[str]]:
    """``pattern.finditer(text)`` for patterns that open with a lookbehind (a slow scan)."""
    return anchored_matches(text, anchors, pattern)


def _triggered(
    text: str, trigger: tuple[str, ...], pattern: re.Pattern[str]
) -> Iterator[re.Match[str]]:
    """Matches of `pattern` that start where one of the `trigger` literals is in lowered text."""
    if all(literal.isascii() for literal in trigger):
        lowered = folded(text)  # same positions of ASCII literals, computed once per text
    else:
        lowered = text.translate(ASCII_LOWER)
    for start in literal_starts(lowered, trigger):
        m = pattern.match(text, start)
        if m:
            yield m


def _limited(matches: Iterator[re.Match[str]]) -> Iterator[re.Match[str]]:
    for n, m in enumerate(matches):
        if n >= MAX_ITEMS:
            return
        yield m


def _unique(values: Iterable[str]) -> list[str]:
    """Deduplicate in order, capped at MAX_ITEMS."""
    seen: dict[str, None] = {}
    for v in values:
        if v not in seen:
            seen[v] = None
            if len(seen) >= MAX_ITEMS:
                break
    return list(seen)
