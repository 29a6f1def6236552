"""What a raised case still lacks, worded for the party who sent it.

CPSD rules: a case needs a summary of the issue, its impact, at least one reference (MPAN,
transaction ID or time window) and supporting evidence, attached or explained. The checks
are lenient about form (prose counts) and strict about substance.
"""

from __future__ import annotations

import re
from itertools import islice

from parsers.fields import CaseFields, label_free_text, unlabelled_text
from parsers.scan import folded

MAX_SCAN_CHARS = 2_000_000
_MIN_SUMMARY_CHARS = 40
_MIN_SUMMARY_WORDS = 6

SUMMARY_PROBLEM = "Please add a short summary of the issue (a line starting 'Summary:')."
IMPACT_PROBLEM = (
    "Please describe the impact: who or what is affected, and since when "
    "(a line starting 'Impact:')."
)
REFERENCE_PROBLEM = (
    "Please give at least one reference: an MPAN, a DIP transaction ID, "
    "or the time window in which it happened."
)
EVIDENCE_PROBLEM = (
    "Please attach the evidence you gathered (for example the DIP portal message status "
    "or the returned error codes), or say why there is none."
)

_PARAGRAPH_SPLIT_RE = re.compile(r"\n[ \t\r]*\n")
_WORD_RE = re.compile(r"[A-Za-z]{2,}")
_IMPACT_WORDS_RE = re.compile(
    r"\bimpact|\baffect|\bunable to\b|\bcannot\b|\bcan'?t\b|\bcan not\b|\bfailing\b"
    r"|\bfail(?:s|ed|ure)?\b|\bcustomers?\b|\boutage\b|\bblocked\b|\bprevent",
)
_EVIDENCE_LABEL_RE = re.compile(
    r"^[ \t*>•-]*(?:supporting\s+)?evidence\**\s*[:\-–|]\s*\**\s*\S", re.MULTILINE
)
_EVIDENCE_WORDS_RE = re.compile(
    r"\bno evidence\b|\bscreenshots?\b|\bsee below\b|\b(?:as|pasted|shown|copied) below\b"
    r"|\bportal shows\b|\bportal status\b|\bmessage status\b|\berror codes?\b"
    r"|\bresponse codes?\b|\brejection (?:reason )?codes?\b|\breturned\b|\brejected with\b"
    r"|\blogs? (?:show|extract|excerpt)|\bextract below\b"
)
# The word patterns are lower-case and run on ASCII-lowered text (parsers.scan.folded, which
# they cannot tell from str.translate's): much faster than IGNORECASE.


def find_problems(
    fields: CaseFields, *, has_reference: bool, evidence_count: int, text: str
) -> list[str]:
    """Problems in CPSD order (summary, impact, reference, evidence); [] when complete."""
    text = text[:MAX_SCAN_CHARS]
    problems: list[str] = []
    if not fields.summary and not _has_meaningful_paragraph(unlabelled_text(text)):
        problems.append(SUMMARY_PROBLEM)
    if not fields.impact and not _IMPACT_WORDS_RE.search(_lower(label_free_text(text))):
        problems.append(IMPACT_PROBLEM)
    if not has_reference:
        problems.append(REFERENCE_PROBLEM)
    if evidence_count <= 0 and not _explains_evidence(text):
        problems.append(EVIDENCE_PROBLEM)
    return problems


def _has_meaningful_paragraph(text: str) -> bool:
    """Prose of a sentence or more says what the issue is, even without a 'Summary:' line."""
    for n, paragraph in enumerate(_PARAGRAPH_SPLIT_RE.split(text, maxsplit=1_000)):
        if n >= 1_000:
            return False
        collapsed = " ".join(paragraph.split())
        if len(collapsed) >= _MIN_SUMMARY_CHARS and _enough_words(collapsed):
            return True
    return False


def _enough_words(paragraph: str) -> bool:
    first_words = islice(_WORD_RE.finditer(paragraph), _MIN_SUMMARY_WORDS)
    return sum(1 for _ in first_words) == _MIN_SUMMARY_WORDS


def _explains_evidence(text: str) -> bool:
    lowered = _lower(text)
    return bool(_EVIDENCE_LABEL_RE.search(lowered) or _EVIDENCE_WORDS_RE.search(lowered))


def _lower(text: str) -> str:
    return folded(text)
