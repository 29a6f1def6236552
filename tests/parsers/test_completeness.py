from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parsers.completeness import (
    EVIDENCE_PROBLEM,
    IMPACT_PROBLEM,
    REFERENCE_PROBLEM,
    SUMMARY_PROBLEM,
    find_problems,
)
from parsers.fields import extract_fields

COMPLETE = """Summary: DIP rejects IF-041 from our REGS
Impact: 2,000 customers cannot switch supplier since 31/01/2026 09:15
MPAN: 1052601815905
Evidence: DIP portal message status attached
"""


def problems(text: str, *, has_reference: bool = True, evidence_count: int = 0) -> list[str]:
    return find_problems(
        extract_fields(text), has_reference=has_reference, evidence_count=evidence_count, text=text
    )


def without(line_start: str) -> str:
    return "\n".join(line for line in COMPLETE.splitlines() if not line.startswith(line_start))


def test_messages_are_exact() -> None:
    assert (
        SUMMARY_PROBLEM == "Please add a short summary of the issue (a line starting 'Summary:')."
    )
    assert IMPACT_PROBLEM == (
        "Please describe the impact: who or what is affected, and since when "
        "(a line starting 'Impact:')."
    )
    assert REFERENCE_PROBLEM == (
        "Please give at least one reference: an MPAN, a DIP transaction ID, "
        "or the time window in which it happened."
    )
    assert EVIDENCE_PROBLEM == (
        "Please attach the evidence you gathered (for example the DIP portal message status "
        "or the returned error codes), or say why there is none."
    )


def test_complete_case() -> None:
    assert problems(COMPLETE) == []


def test_complete_with_attachment_instead_of_evidence_line() -> None:
    assert problems(without("Evidence"), evidence_count=1) == []


def test_missing_summary() -> None:
    assert problems(without("Summary")) == [SUMMARY_PROBLEM]


def test_missing_impact() -> None:
    text = "Summary: DIP rejects IF-041\nMPAN: 1052601815905\nEvidence: portal status attached"
    assert problems(text) == [IMPACT_PROBLEM]


def test_missing_reference() -> None:
    assert problems(COMPLETE, has_reference=False) == [REFERENCE_PROBLEM]


def test_missing_evidence() -> None:
    assert problems(without("Evidence")) == [EVIDENCE_PROBLEM]


def test_empty_message_has_every_problem() -> None:
    assert problems("", has_reference=False) == [
        SUMMARY_PROBLEM,
        IMPACT_PROBLEM,
        REFERENCE_PROBLEM,
        EVIDENCE_PROBLEM,
    ]


def test_prose_counts_as_summary_and_impact() -> None:
    text = (
        "Since this morning the DIP rejects every IF-041 we send for the MPAN below, "
        "so customers cannot switch.\n\nMPAN: 1052601815905\n\nThe portal shows status "
        "REJECTED, screenshot below."
    )
    assert problems(text) == []


def test_short_greeting_is_not_a_summary() -> None:
    text = "Hi team,\nsee below.\nThanks\n\nImpact: customers blocked\nEvidence: attached"
    assert problems(text) == [SUMMARY_PROBLEM]


def test_labelled_lines_are_not_prose_summary() -> None:
    text = (
        "Impact: two thousand domestic customers cannot switch supplier this week\n"
        "Evidence: the DIP portal message status export is attached to this email"
    )
    assert problems(text) == [SUMMARY_PROBLEM]


def test_empty_impact_label_does_not_count() -> None:
    text = "Summary: DIP rejects IF-041\nImpact:\n\nEvidence: attached"
    assert problems(text) == [IMPACT_PROBLEM]


@pytest.mark.parametrize(
    "sentence",
    [
        "This affects our REGS service.",
        "We are unable to send IF-041.",
        "We cannot send IF-041.",
        "IF-041 is failing.",
        "Our customers are waiting.",
        "The impact is growing.",
    ],
)
def test_impact_words(sentence: str) -> None:
    text = f"Summary: DIP rejects IF-041\n\n{sentence}\n\nEvidence: attached"
    assert problems(text) == []


@pytest.mark.parametrize(
    "sentence",
    [
        "There is no evidence because the DIP portal is down.",
        "Screenshot below.",
        "See below for the log.",
        "The DIP portal shows the message as rejected.",
        "Error code SP001 came back.",
        "The DIP returned a 500.",
        "Supporting evidence: log extract pasted in the next section",
    ],
)
def test_evidence_explained(sentence: str) -> None:
    assert problems(without("Evidence") + "\n\n" + sentence) == []


def test_evidence_label_without_value_does_not_count() -> None:
    assert problems(without("Evidence") + "\nEvidence:\n") == [EVIDENCE_PROBLEM]


def test_see_attached_without_attachment_is_a_problem() -> None:
    assert problems(without("Evidence") + "\nPlease see attached.") == [EVIDENCE_PROBLEM]


def test_fast_on_large_input() -> None:
    for text in ("a" * 5_000_000, "word " * 1_000_000, "\n\n" * 2_000_000, "Impact:\n" * 500_000):
        started = time.perf_counter()
        problems(text, has_reference=False)
        assert time.perf_counter() - started < 3.0


@given(st.text(), st.booleans(), st.integers(min_value=-1, max_value=3))
def test_property_never_raises(text: str, has_reference: bool, evidence_count: int) -> None:
    found = problems(text, has_reference=has_reference, evidence_count=evidence_count)
    allowed = [SUMMARY_PROBLEM, IMPACT_PROBLEM, REFERENCE_PROBLEM, EVIDENCE_PROBLEM]
    assert found == [p for p in allowed if p in found]
    assert (REFERENCE_PROBLEM in found) == (not has_reference)
