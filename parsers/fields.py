"""Labelled case fields ("Summary:", "Impact:", "Priority:" …) from a message body.

Parties write these by hand, paste them from templates, or send HTML tables that our
converter turns into "| Label | value |" rows, so a label may be bold, bulleted, tabbed,
piped, or alone on its line with the value below.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

Priority = Literal["P1", "P2", "P3", "P4"]

MAX_SCAN_CHARS = 2_000_000
MAX_LINES = 20_000
MAX_FIELD_CHARS = 2_000
_MAX_LABEL_CHARS = 48
_MAX_BLANKS_AFTER_LONE_LABEL = 2

_LABELS: dict[str, str] = {
    "summary": "summary",
    "issue summary": "summary",
    "summary of issue": "summary",
    "summary of the issue": "summary",
    "short description": "summary",
    "description": "description",
    "issue description": "description",
    "description of issue": "description",
    "description of the issue": "description",
    "impact": "impact",
    "business impact": "impact",
    "customer impact": "impact",
    "impact description": "impact",
    "description of impact": "impact",
    "description of the impact": "impact",
    "root cause": "root_cause",
    "potential root cause": "root_cause",
    "likely root cause": "root_cause",
    "probable root cause": "root_cause",
    "possible root cause": "root_cause",
    "suspected root cause": "root_cause",
    "priority": "priority",
    "severity": "priority",
    "requested priority": "priority",
    "environment": "environment",
    "env": "environment",
    "mpan": "mpans",
    "mpans": "mpans",
    "mpan(s)": "mpans",
    "mpan core": "mpans",
    "mpan cores": "mpans",
    "affected mpans": "mpans",
    "supply number": "mpans",
    "transaction id": "transaction_ids",
    "transaction ids": "transaction_ids",
    "transaction id(s)": "transaction_ids",
    "dip transaction id": "transaction_ids",
    "dip transaction ids": "transaction_ids",
    "dip transaction id(s)": "transaction_ids",
}

_BULLET_RE = re.compile(r"^(?:[-*•·+]\s+|\d{1,2}[.)]\s+)")
_BULLET_FIRST = frozenset("-*•·+")  # with a digit, what a line _BULLET_RE can match starts with
_MARKUP_RE = re.compile(r"\*\*|__")
# Label, optional emphasis, then a separator: ":", " - ", "|", tab; or nothing at all.
_LABEL_LINE_RE = re.compile(
    r"^\*?(?P<label>[A-Za-z][A-Za-z ()/]{0,47}?)\*?\s*"
    r"(?:(?P<sep>:|\s[-–—]\s|\s?\|\s?|\t)\s*(?P<value>.*)|\s*)$",
    re.DOTALL,
)
# Any "Word words:" line ends a multi-line value, known label or not.
_ANY_LABEL_RE = re.compile(r"^[A-Za-z][A-Za-z ()/]{0,38}:(?:\s|$)")
_SPACE_RE = re.compile(r"\s+")
# A known label's first word opens the line (after one optional "*"): checking that word
# first saves running _LABEL_LINE_RE, whose lazy label backtracks, on every line.
_LABEL_LEADS = frozenset(label.split()[0].split("(")[0] for label in _LABELS)
_LEAD_RE = re.compile(r"\*?([A-Za-z]+)")
_ANY_LABEL_COLON_BY = 40  # _ANY_LABEL_RE's colon comes within the first 40 characters

_PRIORITY_NUMBER_RE = re.compile(
    r"\b(?:p|priority|sev|severity)\s*[-:]?\s*([1-4])\b|^\s*([1-4])\b", re.IGNORECASE
)
_PRIORITY_WORDS: tuple[tuple[re.Pattern[str], Priority], ...] = (
    (re.compile(r"\b(?:critical|urgent)\b", re.IGNORECASE), "P1"),
    (re.compile(r"\b(?:high|major)\b", re.IGNORECASE), "P2"),
    (re.compile(r"\b(?:medium|moderate|normal)\b", re.IGNORECASE), "P3"),
    (re.compile(r"\b(?:low|minor)\b", re.IGNORECASE), "P4"),
)
_ENVIRONMENTS = {
    "prod": "PROD",
    "production": "PROD",
    "live": "PROD",
    "uit": "UIT",
    "sit": "SIT",
    "dev": "DEV",
    "development": "DEV",
}


@dataclass(frozen=True)
class CaseFields:
    summary: str | None
    impact: str | None
    root_cause: str | None
    priority: Priority | None
    environment: str | None
    mpans_text: str | None
    transaction_ids_text: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "summary": self.summary,
            "impact": self.impact,
            "root_cause": self.root_cause,
            "priority": self.priority,
            "environment": self.environment,
        }


@dataclass(frozen=True)
class _LabelLine:
    field: str
    value: str  # may be empty: the value is on the following lines


def extract_fields(text: str) -> CaseFields:
    """The first value given for each field; Description stands in for a missing Summary."""
    raw = _raw_fields(text[:MAX_SCAN_CHARS])
    priority_text = raw.get("priority")
    environment = raw.get("environment")
    return CaseFields(
        summary=raw.get("summary") or raw.get("description"),
        impact=raw.get("impact"),
        root_cause=raw.get("root_cause"),
        priority=normalise_priority(priority_text) if priority_text else None,
        environment=_normalise_environment(environment) if environment else None,
        mpans_text=raw.get("mpans"),
        transaction_ids_text=raw.get("transaction_ids"),
    )


def normalise_priority(value: str) -> Priority | None:
    """P1..P4 from "P1", "Priority 2", "1 - Critical", "Sev 2", or the ServiceNow words."""
    value = value[:200]
    m = _PRIORITY_NUMBER_RE.search(value)
    if m:
        return _as_priority(m.group(1) or m.group(2))
    for pattern, priority in _PRIORITY_WORDS:
        if pattern.search(value):
            return priority
    return None


def _as_priority(digit: str) -> Priority:
    priorities: dict[str, Priority] = {"1": "P1", "2": "P2", "3": "P3", "4": "P4"}
    return priorities[digit]


def _normalise_environment(value: str) -> str:
    first = value.split(maxsplit=1)[0].strip(".,;()").lower() if value.strip() else ""
    return _ENVIRONMENTS.get(first, value[:200])


def _raw_fields(text: str) -> dict[str, str]:
    lines = text.splitlines()[:MAX_LINES]
    fields: dict[str, str] = {}
    i = 0
    while i < len(lines):
        label = _parse_label_line(lines[i])
        if label is None:
            i += 1
            continue
        value, i = _collect_value(lines, i + 1, label.value)
        if value and label.field not in fields:
            fields[label.field] = value
    return fields


def _parse_label_line(line: str) -> _LabelLine | None:
    return _label_in(_strip_decoration(line))


def _label_in(s: str) -> _LabelLine | None:
    """The known label opening ``s``, a line already stripped of decoration."""
    lead = _LEAD_RE.match(s)
    if lead is None or lead.group(1).lower() not in _LABEL_LEADS:
        return None
    m = _LABEL_LINE_RE.match(s[: _MAX_LABEL_CHARS + 8])
    if m is None:
        return None
    field = _LABELS.get(_SPACE_RE.sub(" ", m.group("label")).strip().lower())
    if field is None:
        return None
    value = s[m.start("value") :] if m.group("sep") else ""
    return _LabelLine(field, value.strip(" \t|*"))


def _strip_decoration(line: str) -> str:
    """Drop table pipes, bullets and markdown emphasis around a would-be label."""
    s = line.strip()
    if s.startswith("|"):
        s = s.strip("| \t")
    if s and (s[0] in _BULLET_FIRST or s[0].isdecimal()):  # isdecimal is exactly re's \d
        s = _BULLET_RE.sub("", s)
    if "**" in s or "__" in s:
        s = _MARKUP_RE.sub("", s)
    return s.strip()


def _collect_value(lines: list[str], i: int, first: str) -> tuple[str | None, int]:
    """Join the label's value with continuation lines until a blank line or another label."""
    parts = [first] if first else []
    if not first:
        i = _skip_blanks(lines, i)
    size = len(first)
    for line in _continuation(lines, i):
        parts.append(line)
        size += len(line)
        i += 1
        if size > MAX_FIELD_CHARS:
            break
    value = _SPACE_RE.sub(" ", " ".join(parts)).strip()[:MAX_FIELD_CHARS].strip()
    return (value or None), i


def _skip_blanks(lines: list[str], i: int) -> int:
    """A lone label may be separated from its value by blank lines (Outlook table cells)."""
    skipped = 0
    while i < len(lines) and not lines[i].strip() and skipped < _MAX_BLANKS_AFTER_LONE_LABEL:
        i += 1
        skipped += 1
    return i


def _continuation(lines: list[str], i: int) -> Iterator[str]:
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped or stripped.startswith("|") or _is_any_label(line):
            return
        yield _strip_decoration(line)
        i += 1


def _is_any_label(line: str) -> bool:
    s = _strip_decoration(line)
    if _label_in(s) is not None:
        return True
    return ":" in s[:_ANY_LABEL_COLON_BY] and bool(_ANY_LABEL_RE.match(s[:64]))


def unlabelled_text(text: str) -> str:
    """Prose outside labelled fields: the lines of each paragraph before its first label."""
    kept: list[str] = []
    in_label_block = False
    for line in text[:MAX_SCAN_CHARS].splitlines()[:MAX_LINES]:
        if not line.strip():
            in_label_block = False
            kept.append("")
        elif in_label_block or _is_any_label(line):
            in_label_block = True
        else:
            kept.append(line)
    return "\n".join(kept)


def label_free_text(text: str) -> str:
    """The text with known field labels removed and their values kept."""
    out: list[str] = []
    for line in text[:MAX_SCAN_CHARS].splitlines()[:MAX_LINES]:
        label = _parse_label_line(line)
        out.append(line if label is None else label.value)
    return "\n".join(out)
