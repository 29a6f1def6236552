"""MPAN (Meter Point Administration Number) validation and extraction from free text.

A core is 13 digits: distributor ID (2), reference (10), check digit (1). A full supply
number adds a top line: 21 digits before MHHS (profile class, MTC, LLFC) and 22 digits
after it (profile class, SSC, DUoS tariff). Full numbers are validated via their last 13.
"""

from __future__ import annotations

import bisect
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

DEFAULT_DISTRIBUTORS: frozenset[str] = frozenset(str(n) for n in range(10, 39))
PRIMES = (3, 5, 7, 13, 17, 19, 23, 29, 31, 37, 41, 43)

MAX_SCAN_CHARS = 2_000_000
MAX_FINDINGS = 500
_CORE_LEN = 13
_SUPPLY_LENS = (22, 21)  # longest first: prefer the MHHS 22-digit reading
_LABELLED_LENS = range(11, 24)  # near misses worth telling a sender about
_MAX_LABELS = 1_000
_REGION_CHARS = 4_000  # per label; later values are still found, just not as labelled
_MAX_HITS = 4 * MAX_FINDINGS
# Digit groups examined for spaced readings ("10 5260 1815 905"); beyond it (only reached
# by pathological input) a chain is searched for whole-group MPANs only.
_MULTI_GROUP_BUDGET = 50_000
_MASK = "x"  # alphanumeric, so digits next to a masked ID count as part of a token

_DIGITS = frozenset("0123456789")

# Runs of digit groups joined by one space (or NBSP) or one hyphen:
# (?<![0-9])[0-9]++(?:[ \u00a0-][0-9]++)*+, with the lookbehind moved after the first digit
# (same matches) so that the regex engine skips straight to digits.
_CHAIN_RE = re.compile(r"[0-9](?<![0-9][0-9])[0-9]*+(?:[ \u00a0-][0-9]++)*+")
_GROUP_RE = re.compile(r"[0-9]++")
_SEP_RE = re.compile(r"[ \u00a0-]")
_WHOLE_GROUP_RE = re.compile(r"(?<![0-9])(?:[0-9]{13}|[0-9]{21,22})(?![0-9])")
_UUID_RE = re.compile(
    r"(?<![0-9A-Za-z])[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
)
# Hyphen/underscore-joined tokens such as T-IF-041-1009012345-REGS-20260131-0123…
_JOINED_TOKEN_RE = re.compile(r"(?<![0-9A-Za-z])[0-9A-Za-z]++(?:[-_][0-9A-Za-z]++)++")
_S_PREFIXED_RE = re.compile(r"[Ss]-[0-9-]+")
# IGNORECASE also matches these non-ASCII characters to ASCII letters (all there are).
_CASE_EXTRAS = {"i": "\u0130\u0131", "k": "\u212a", "s": "\u017f"}
_LETTER = "A-Za-z" + "".join(_CASE_EXTRAS.values())  # [A-Za-z] under IGNORECASE


def _ci(word: str) -> str:
    """A lower-case word as a case-sensitive pattern matching what IGNORECASE would."""
    return "".join(f"[{c}{c.upper()}{_CASE_EXTRAS.get(c, '')}]" for c in word)


# (?<![A-Za-z])(?:mpan[ _-]?cores?|mpan\(s\)|mpans?|supply[ _-]?numbers?|msids?)(?![A-Za-z])
# under IGNORECASE, spelled out case by case and opening with the first letter (the
# lookbehind moved after it) so that the regex engine skips straight to m and s.
_LABEL_RE = re.compile(
    rf"[mMsS\u017f](?<![{_LETTER}][mMsS\u017f])"
    rf"(?:(?<=[mM])(?:{_ci('pan')}[ _-]?{_ci('core')}{_ci('s')}?|{_ci('pan')}\({_ci('s')}\)"
    rf"|{_ci('pan')}{_ci('s')}?|{_ci('sid')}{_ci('s')}?)"
    rf"|(?<=[sS\u017f]){_ci('upply')}[ _-]?{_ci('number')}{_ci('s')}?)"
    rf"(?![{_LETTER}])"
)
_LEAD_SEP_RE = re.compile(r"""[ \t:=|"'#()\[\]-]*+""")
# Another label on the same line ends the value ("…905 DIP ID: …", JSON keys): the region
# stops at the label's last letter, which is as good as its start for digit runs.
_NEXT_LABEL_RE = re.compile(r"""[|\n]|[A-Za-z)]"?[ \t]?[:=]""")
# A label alone on its line owns the following lines up to a blank line.
_BLOCK_END_RE = re.compile(r"""\n[ \t\r]*\n|[|]|[A-Za-z)]"?[ \t]?[:=]""")
_ALNUM_TOKEN_RE = re.compile(r"(?<![0-9A-Za-z])[0-9A-Za-z]{12,22}(?![0-9A-Za-z])")


def check_digit(first12: str) -> int:
    """Return the MPAN check digit for the first 12 digits of a core (prime weights, 11, 10)."""
    if len(first12) != 12 or not set(first12) <= _DIGITS:
        raise ValueError("check_digit needs exactly 12 ASCII digits")
    return sum(p * int(d) for p, d in zip(PRIMES, first12, strict=True)) % 11 % 10


def validate_core(core: str, distributors: frozenset[str] = DEFAULT_DISTRIBUTORS) -> str | None:
    """Return None for a valid core, else the first problem a sender should fix."""
    if not set(core) <= _DIGITS:
        return "non-digit"
    if len(core) != _CORE_LEN:
        return f"{len(core)} digits"
    if core[:2] not in distributors:
        return f"unknown distributor {core[:2]}"
    if check_digit(core[:12]) != int(core[12]):
        return "bad check digit"
    return None


@dataclass(frozen=True)
class MpanFinding:
    """One MPAN found in text; invalid ones are kept so the sender can be told why."""

    core: str
    distributor_id: str
    valid: bool
    problem: str | None
    supply_number: str | None = None
    top_line: dict[str, str] | None = field(default=None, hash=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "core": self.core,
            "distributor_id": self.distributor_id,
            "valid": self.valid,
            "problem": self.problem,
        }
        if self.supply_number is not None:
            out["supply_number"] = self.supply_number
        return out


@dataclass(frozen=True)
class _Group:
    start: int
    end: int
    digits: str


@dataclass(frozen=True)
class _Hit:
    pos: int
    finding: MpanFinding


def find_mpans(text: str, distributors: frozenset[str] = DEFAULT_DISTRIBUTORS) -> list[MpanFinding]:
    """Find MPANs in free text, deduplicated by core, in order of first appearance."""
    text = text[:MAX_SCAN_CHARS]
    regions = _label_regions(text)
    masked = _mask_ids(text)
    hits: list[_Hit] = []
    budget = _MULTI_GROUP_BUDGET
    for chain in _CHAIN_RE.finditer(masked):
        if chain.end() - chain.start() < _LABELLED_LENS.start:
            continue  # too few digits to be, or to be mistaken for, an MPAN
        if chain.start() > 0 and masked[chain.start() - 1] == "+":
            continue  # international phone number
        n_groups = len(_SEP_RE.findall(chain.group())) + 1
        if len(chain.group()) - n_groups + 1 < _LABELLED_LENS.start:
            continue
        if n_groups > budget:
            hits.extend(_whole_group_hits(masked, chain, distributors))
        else:
            budget -= n_groups if n_groups > 1 else 0
            groups = _usable_groups(masked, chain.start(), chain.group())
            hits.extend(_chain_hits(groups, regions, distributors))
        if len(hits) >= _MAX_HITS:
            break
    hits.extend(_non_digit_hits(text, regions))
    return _dedupe(hits)


def _finding(digits: str, distributors: frozenset[str]) -> MpanFinding:
    """Build a finding from 13 (core) or 21/22 (supply number) characters, or any bad length."""
    supply = digits if len(digits) in _SUPPLY_LENS else None
    core = digits[-_CORE_LEN:] if supply else digits
    problem = validate_core(core, distributors)
    return MpanFinding(
        core=core,
        distributor_id=core[:2],
        valid=problem is None,
        problem=problem,
        supply_number=supply,
        top_line=_top_line(supply) if supply else None,
    )


def _top_line(supply: str) -> dict[str, str]:
    if len(supply) == 22:
        return {"profile_class": supply[:2], "ssc": supply[2:6], "duos_tariff": supply[6:9]}
    return {"profile_class": supply[:2], "mtc": supply[2:5], "llfc": supply[5:8]}


def _plausible_top_line(supply: str) -> bool:
    """Profile classes run 00-08; anything else is two numbers that happen to touch."""
    return supply[0] == "0" and supply[1] in "012345678"


# --- masking and label regions -------------------------------------------------------


def _mask_ids(text: str) -> str:
    """Blank out UUIDs and hyphenated IDs so their digit parts cannot form MPANs."""
    spans: list[tuple[int, int]] = [m.span() for m in _UUID_RE.finditer(text)]
    for m in _JOINED_TOKEN_RE.finditer(text):
        token = m.group()
        if any(c.isalpha() for c in token) and not _S_PREFIXED_RE.fullmatch(token):
            spans.append(m.span())
    if not spans:
        return text
    chars = list(text)
    for start, end in spans:
        chars[start:end] = _MASK * (end - start)
    return "".join(chars)


def _label_regions(text: str) -> list[tuple[int, int]]:
    """Spans of text that follow an MPAN label: the value on its line, or the next line."""
    regions: list[tuple[int, int]] = []
    for n, m in enumerate(_LABEL_RE.finditer(text)):
        if n >= _MAX_LABELS:
            break
        start = _after_separators(text, m.end())
        value_start = _skip_to_value_line(text, start)
        stop_re = _NEXT_LABEL_RE if value_start == start else _BLOCK_END_RE
        start = value_start
        stop = stop_re.search(text, start, start + _REGION_CHARS)
        end = stop.start() if stop else min(len(text), start + _REGION_CHARS)
        if end > start:
            regions.append((start, end))
    return _merge(regions)


def _after_separators(text: str, pos: int) -> int:
    sep = _LEAD_SEP_RE.match(text, pos)
    return sep.end() if sep else pos


def _skip_to_value_line(text: str, pos: int) -> int:
    """A label alone on its line (Outlook tables) takes its value from the next line."""
    line_end = text.find("\n", pos, pos + _REGION_CHARS)
    if line_end == -1 or text[pos:line_end].strip(" \t\r:|"):
        return pos
    nxt = line_end + 1
    while nxt < len(text) and text[nxt] in " \t\r|":
        nxt += 1
    return nxt


def _merge(regions: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(regions):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _in_regions(pos: int, regions: Sequence[tuple[int, int]]) -> bool:
    i = bisect.bisect_right(regions, (pos, sys.maxsize)) - 1
    return i >= 0 and regions[i][0] <= pos < regions[i][1]


# --- digit chains --------------------------------------------------------------------


def _usable_groups(text: str, offset: int, chain: str) -> list[_Group | None]:
    """Split a chain into groups; None marks a group glued to a longer token (a barrier)."""
    groups: list[_Group | None] = [
        _Group(offset + m.start(), offset + m.end(), m.group()) for m in _GROUP_RE.finditer(chain)
    ]
    first, last = groups[0], groups[-1]
    if first is not None and _glued_before(text, first.start):
        groups[0] = None
    if last is not None and _glued_after(text, last.end):
        groups[-1] = None
    return groups


def _glued_before(text: str, pos: int) -> bool:
    if pos == 0:
        return False
    prev = text[pos - 1]
    before = text[pos - 2] if pos >= 2 else " "
    if prev in "Ss":
        return before.isalnum() or before == "_"  # "S1052…" is the supply-number box
    if prev in "-_/" or (prev in ".," and before.isdigit()):
        return before.isalnum()
    return prev.isalnum() or prev == "_"


def _glued_after(text: str, pos: int) -> bool:
    if pos >= len(text):
        return False
    nxt = text[pos]
    after = text[pos + 1] if pos + 1 < len(text) else " "
    if nxt in "-_/" or nxt == ".":
        return after.isalnum()
    return nxt.isalnum() or nxt == "_"


def _segments(groups: list[_Group | None]) -> Iterator[list[_Group]]:
    """Maximal runs of usable groups between barriers."""
    run: list[_Group] = []
    for g in groups:
        if g is None:
            if run:
                yield run
            run = []
        else:
            run.append(g)
    if run:
        yield run


def _chain_hits(
    groups: list[_Group | None],
    regions: Sequence[tuple[int, int]],
    distributors: frozenset[str],
) -> list[_Hit]:
    hits: list[_Hit] = []
    for run in _segments(groups):
        used = [False] * len(run)
        hits.extend(_valid_spans(run, used, _SUPPLY_LENS, distributors))
        hits.extend(_valid_spans(run, used, (_CORE_LEN,), distributors))
        hits.extend(_invalid_hits(run, used, regions, distributors))
        if len(hits) >= _MAX_HITS:
            break
    return hits


def _whole_group_hits(text: str, chain: re.Match[str], distributors: frozenset[str]) -> list[_Hit]:
    """Cheap fallback for pathological input: only whole groups that are valid MPANs."""
    hits: list[_Hit] = []
    for m in _WHOLE_GROUP_RE.finditer(chain.group()):
        start, end = chain.start() + m.start(), chain.start() + m.end()
        digits = m.group()
        if _glued_before(text, start) or _glued_after(text, end):
            continue
        if len(digits) != _CORE_LEN and not _plausible_top_line(digits):
            continue
        if _quick_valid(digits[-_CORE_LEN:], distributors):
            hits.append(_Hit(start, _finding(digits, distributors)))
            if len(hits) >= _MAX_HITS:
                break
    return hits


def _quick_valid(core: str, distributors: frozenset[str]) -> bool:
    return core[:2] in distributors and check_digit(core[:12]) == int(core[12])


def _valid_spans(
    run: list[_Group], used: list[bool], lengths: tuple[int, ...], distributors: frozenset[str]
) -> list[_Hit]:
    """Greedy left-to-right: at each group, take the longest valid reading of `lengths`."""
    prefix = [0]
    for g in run:
        prefix.append(prefix[-1] + len(g.digits))
    index_of = {total: j for j, total in enumerate(prefix)}
    hits: list[_Hit] = []
    i = 0
    while i < len(run) and len(hits) < _MAX_HITS:
        hit_end = _valid_span_at(run, used, i, prefix, index_of, lengths, distributors)
        if hit_end is None:
            i += 1
            continue
        j, finding = hit_end
        hits.append(_Hit(run[i].start, finding))
        for k in range(i, j):
            used[k] = True
        i = j
    return hits


def _valid_span_at(
    run: list[_Group],
    used: list[bool],
    i: int,
    prefix: list[int],
    index_of: dict[int, int],
    lengths: tuple[int, ...],
    distributors: frozenset[str],
) -> tuple[int, MpanFinding] | None:
    for length in lengths:
        j = index_of.get(prefix[i] + length)
        if j is None or any(used[i:j]):
            continue
        digits = "".join(g.digits for g in run[i:j])
        if length != _CORE_LEN and not _plausible_top_line(digits):
            continue
        if _quick_valid(digits[-_CORE_LEN:], distributors):
            return j, _finding(digits, distributors)
    return None


def _invalid_hits(
    run: list[_Group],
    used: list[bool],
    regions: Sequence[tuple[int, int]],
    distributors: frozenset[str],
) -> list[_Hit]:
    """Report leftovers only when clearly meant as MPANs (labelled, or 13 digits + known DNO)."""
    hits: list[_Hit] = []
    for rest in _unused_runs(run, used):
        if _in_regions(rest[0].start, regions):
            hits.extend(_labelled_hits(rest, distributors))
        else:
            hits.extend(_unlabelled_hits(rest, len(run) == len(rest), distributors))
    return hits


def _unused_runs(run: list[_Group], used: list[bool]) -> Iterator[list[_Group]]:
    rest: list[_Group] = []
    for g, u in zip(run, used, strict=True):
        if u:
            if rest:
                yield rest
            rest = []
        else:
            rest.append(g)
    if rest:
        yield rest


def _labelled_hits(rest: list[_Group], distributors: frozenset[str]) -> list[_Hit]:
    joined = "".join(g.digits for g in rest)
    if len(joined) in (_CORE_LEN, *_SUPPLY_LENS):
        return [_Hit(rest[0].start, _finding(joined, distributors))]
    long_groups = [g for g in rest if len(g.digits) >= 10]
    if long_groups:
        return [
            _Hit(g.start, _finding(g.digits, distributors))
            for g in long_groups
            if len(g.digits) in _LABELLED_LENS
        ]
    if len(joined) in _LABELLED_LENS:
        return [_Hit(rest[0].start, _finding(joined, distributors))]
    return []


def _unlabelled_hits(
    rest: list[_Group], whole_chain: bool, distributors: frozenset[str]
) -> list[_Hit]:
    candidates = [g for g in rest if len(g.digits) == _CORE_LEN]
    hits = [_Hit(g.start, _finding(g.digits, distributors)) for g in candidates]
    joined = "".join(g.digits for g in rest)
    if not candidates and whole_chain and len(joined) == _CORE_LEN:
        hits.append(_Hit(rest[0].start, _finding(joined, distributors)))
    return [h for h in hits if h.finding.distributor_id in distributors]


# --- labelled near-digits ("10526O1815905") ------------------------------------------


def _non_digit_hits(text: str, regions: Sequence[tuple[int, int]]) -> list[_Hit]:
    hits: list[_Hit] = []
    for start, end in regions:
        for m in _ALNUM_TOKEN_RE.finditer(text, start, end):
            token = m.group()
            letters = sum(1 for c in token if not c.isdigit())
            if not 0 < letters <= 2 or (token[0] in "Ss" and token[1:].isdigit()):
                continue
            if len(token) - letters < 11:
                continue
            hits.append(_Hit(m.start(), _non_digit_finding(token)))
        if len(hits) >= MAX_FINDINGS:
            break
    return hits


def _non_digit_finding(token: str) -> MpanFinding:
    core = token[-_CORE_LEN:] if len(token) in _SUPPLY_LENS else token
    return MpanFinding(
        core=core,
        distributor_id=core[:2],
        valid=False,
        problem="non-digit",
        supply_number=token if core != token else None,
    )


def _dedupe(hits: list[_Hit]) -> list[MpanFinding]:
    """First appearance wins; a later full supply number fills in the top line."""
    by_core: dict[str, MpanFinding] = {}
    for hit in sorted(hits, key=lambda h: h.pos):
        f = hit.finding
        seen = by_core.get(f.core)
        if seen is None:
            if len(by_core) < MAX_FINDINGS:
                by_core[f.core] = f
        elif seen.supply_number is None and f.supply_number is not None:
            by_core[f.core] = replace(seen, supply_number=f.supply_number, top_line=f.top_line)
    return list(by_core.values())
