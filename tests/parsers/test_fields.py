from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parsers.fields import (
    MAX_FIELD_CHARS,
    CaseFields,
    extract_fields,
    label_free_text,
    normalise_priority,
    unlabelled_text,
)

EMPTY = CaseFields(None, None, None, None, None, None, None)


def test_plain_text_template() -> None:
    text = """Hi CPSD,

Summary: DIP rejects IF-041 from our REGS
Impact: 2,000 customers cannot switch supplier
Root cause: expired DIP certificate
Priority: P2
Environment: PROD
MPANs: 1052601815905, 1183016613184
Transaction IDs: abc12345, def67890

Thanks
"""
    assert extract_fields(text) == CaseFields(
        summary="DIP rejects IF-041 from our REGS",
        impact="2,000 customers cannot switch supplier",
        root_cause="expired DIP certificate",
        priority="P2",
        environment="PROD",
        mpans_text="1052601815905, 1183016613184",
        transaction_ids_text="abc12345, def67890",
    )


def test_to_json() -> None:
    fields = extract_fields("Summary: x\nPriority: low\nMPAN: 1052601815905")
    assert fields.to_json() == {
        "summary": "x",
        "impact": None,
        "root_cause": None,
        "priority": "P4",
        "environment": None,
    }


@pytest.mark.parametrize(
    "line",
    [
        "Summary: DIP rejects IF-041",
        "summary:DIP rejects IF-041",
        "SUMMARY : DIP rejects IF-041",
        "**Summary:** DIP rejects IF-041",
        "**Summary**: DIP rejects IF-041",
        "*Summary:* DIP rejects IF-041",
        "__Summary:__ DIP rejects IF-041",
        "- Summary: DIP rejects IF-041",
        "* Summary: DIP rejects IF-041",
        "• Summary: DIP rejects IF-041",
        "1. Summary: DIP rejects IF-041",
        "Summary - DIP rejects IF-041",
        "Summary – DIP rejects IF-041",
        "Summary\tDIP rejects IF-041",
        "| Summary | DIP rejects IF-041 |",
        "Summary | DIP rejects IF-041",
        "|Summary|DIP rejects IF-041|",
        "| **Summary** | DIP rejects IF-041 |",
        "Issue summary: DIP rejects IF-041",
        "  Summary:   DIP   rejects\tIF-041  ",
    ],
)
def test_label_forms(line: str) -> None:
    assert extract_fields(line).summary == "DIP rejects IF-041"


@pytest.mark.parametrize(
    ("label", "attribute"),
    [
        ("Impact", "impact"),
        ("Business impact", "impact"),
        ("Description of impact", "impact"),
        ("Root cause", "root_cause"),
        ("Potential root cause", "root_cause"),
        ("Likely root cause", "root_cause"),
        ("MPAN", "mpans_text"),
        ("MPANs", "mpans_text"),
        ("MPAN(s)", "mpans_text"),
        ("Transaction ID", "transaction_ids_text"),
        ("Transaction IDs", "transaction_ids_text"),
        ("Transaction ID(s)", "transaction_ids_text"),
    ],
)
def test_label_synonyms(label: str, attribute: str) -> None:
    assert getattr(extract_fields(f"{label}: the value"), attribute) == "the value"


def test_multi_line_value_until_blank_line() -> None:
    text = "Impact: all REGS messages\n  are queued since 09:00\nand retried\n\nNot part of it"
    assert extract_fields(text).impact == "all REGS messages are queued since 09:00 and retried"


def test_multi_line_value_until_next_label() -> None:
    text = "Summary: DIP rejects\nIF-041 messages\nImpact: none yet\nNote: ends here\ntail"
    fields = extract_fields(text)
    assert fields.summary == "DIP rejects IF-041 messages"
    assert fields.impact == "none yet"


def test_label_alone_with_value_below() -> None:
    text = "Summary\nDIP rejects IF-041\nsince Monday\n\nImpact:\n\nAll customers\n"
    fields = extract_fields(text)
    assert fields.summary == "DIP rejects IF-041 since Monday"
    assert fields.impact == "All customers"


def test_outlook_table_cells_on_separate_lines() -> None:
    text = "| Summary |\n| DIP rejects IF-041 |\n"
    assert extract_fields(text).summary is None  # a new table row is a new cell, not a value
    text = "Summary\n\nDIP rejects IF-041\n\nPriority\n\nHigh\n"
    fields = extract_fields(text)
    assert (fields.summary, fields.priority) == ("DIP rejects IF-041", "P2")


def test_table_rows() -> None:
    text = (
        "| Field | Value |\n"
        "| --- | --- |\n"
        "| Summary | DIP rejects IF-041 |\n"
        "| Impact | 200 customers unbilled |\n"
        "| Priority | 1 - Critical |\n"
        "| Environment | Production |\n"
    )
    fields = extract_fields(text)
    assert (fields.summary, fields.impact, fields.priority, fields.environment) == (
        "DIP rejects IF-041",
        "200 customers unbilled",
        "P1",
        "PROD",
    )


def test_description_is_summary_only_without_summary() -> None:
    assert extract_fields("Description: the DIP is slow").summary == "the DIP is slow"
    text = "Description: long text\nSummary: short"
    assert extract_fields(text).summary == "short"


def test_first_value_wins_and_empty_is_none() -> None:
    assert extract_fields("Summary: first\nSummary: second").summary == "first"
    assert extract_fields("Summary:\n\n\n\nx").summary is None
    assert extract_fields("Summary:   \n") == EMPTY


def test_unlabelled_lines_are_ignored() -> None:
    assert extract_fields("A summary of what happened: the DIP broke") == EMPTY
    assert extract_fields("Summary of events is attached") == EMPTY
    assert extract_fields("> Summary: quoted text") == EMPTY


def test_field_is_capped() -> None:
    text = "Summary: " + "word " * 2_000
    summary = extract_fields(text).summary
    assert summary is not None and len(summary) <= MAX_FIELD_CHARS


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Production", "PROD"),
        ("prod", "PROD"),
        ("PROD", "PROD"),
        ("UIT", "UIT"),
        ("sit", "SIT"),
        ("DEV", "DEV"),
        ("Development", "DEV"),
        ("Pre-production", "Pre-production"),
    ],
)
def test_environment(value: str, expected: str) -> None:
    assert extract_fields(f"Environment: {value}").environment == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("P1", "P1"),
        ("p2", "P2"),
        ("P 3", "P3"),
        ("Priority 1", "P1"),
        ("priority: 4", "P4"),
        ("1 - Critical", "P1"),
        ("2 - High", "P2"),
        ("3 - Moderate", "P3"),
        ("4 - Low", "P4"),
        ("3", "P3"),
        ("Critical", "P1"),
        ("High", "P2"),
        ("Medium", "P3"),
        ("Moderate", "P3"),
        ("Low", "P4"),
        ("Sev 2", "P2"),
        ("Severity 2", "P2"),
        ("sev1", "P1"),
        ("P2 (High)", "P2"),
        ("", None),
        ("P5", None),
        ("whenever", None),
        ("5", None),
    ],
)
def test_normalise_priority(value: str, expected: str | None) -> None:
    assert normalise_priority(value) == expected


def test_priority_and_severity_labels() -> None:
    assert extract_fields("Priority: High").priority == "P2"
    assert extract_fields("Severity: Sev 1").priority == "P1"
    assert extract_fields("Priority: whenever").priority is None


def test_unlabelled_text_keeps_only_prose() -> None:
    text = "Hello team, the DIP broke.\nSummary: x\ncontinued\n\nMore prose here.\nImpact: y"
    assert " ".join(unlabelled_text(text).split()) == "Hello team, the DIP broke. More prose here."


def test_label_free_text_keeps_values() -> None:
    assert label_free_text("Impact: none\nother") == "none\nother"


def test_fast_on_large_input() -> None:
    for text in ("Summary: " * 600_000, "a\n" * 2_500_000, "Summary\n" * 600_000, "x" * 5_000_000):
        started = time.perf_counter()
        extract_fields(text)
        assert time.perf_counter() - started < 3.0


@given(st.text())
def test_property_never_raises(text: str) -> None:
    fields = extract_fields(text)
    for value in (fields.summary, fields.impact, fields.root_cause):
        assert value is None or (value == value.strip() and len(value) <= MAX_FIELD_CHARS)


@given(st.text(alphabet="Summary:Impact|*-\t\n PriorityP1High ", max_size=200))
def test_property_never_raises_on_label_soup(text: str) -> None:
    extract_fields(text)
    normalise_priority(text)
