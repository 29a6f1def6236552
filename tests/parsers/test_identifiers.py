from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parsers.identifiers import (
    Identifiers,
    TransactionId,
    find_case_references,
    find_external_references,
    find_identifiers,
    transaction_kind,
)

T_ID = "T-IF-041-1009012345-REGS-20260131-0123456789ABCDEF"
S_ID = "S-IF-035-2200000003-REGS-19700101-0"
CI_ID = "CI-20260131-0123456789ABCDEF"
UUID = "6f1c2a4e-1b2c-4d3e-8f90-123456789abc"


def ids(text: str, known_mpids: frozenset[str] | None = None) -> Identifiers:
    return find_identifiers(text, known_mpids=known_mpids)


# --- case references ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Re: [CPSD-000123] DIP rejects", ["CPSD-000123"]),
        ("our ref CPSD-000123.", ["CPSD-000123"]),
        ("cpsd-000123 and Cpsd-000124", ["CPSD-000123", "CPSD-000124"]),
        ("CPSD-000123 CPSD-000123", ["CPSD-000123"]),
        ("dated CPSD-20260131-0001", ["CPSD-20260131-0001"]),
        ("XCPSD-000123", []),
        ("CPSD-000123X", []),
        ("CPSD-12345", []),
        ("CPSD-0001234567890123", []),
        ("CPSD 000123", []),
        ("CPSD_000123", []),
    ],
)
def test_case_references(text: str, expected: list[str]) -> None:
    assert find_case_references(text) == expected


def test_case_reference_prefix() -> None:
    assert find_case_references("[XPSD-000777] CPSD-000123", "XPSD") == ["XPSD-000777"]


# --- external references -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("INC0012345 and CS0012345", ["INC0012345", "CS0012345"]),
        ("RITM0001234 REQ0001234 SCTASK0001234 PRB0001234 CHG0001234", None),
        ("Ref:MSG1234567", ["Ref:MSG1234567"]),
        ("Ref:MSG3846157_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P", ["Ref:MSG3846157"]),
        ("[1G7EOR-0Q2J]", ["1G7EOR-0Q2J"]),
        ("Ticket #12345 and Request #678", ["#12345", "#678"]),
        ("[#1234] Re: stuff", ["#1234"]),
        ("[#Freshworks-1234]", ["#Freshworks-1234"]),
        ("INC001234", []),
        ("XINC0012345", []),
        ("INC0012345X", []),
        ("[URGENT-TEST]", []),
        ("[CPSD-000123]", []),
        ("Ref:CPSD000123", []),
        ("[#CPSD-000123]", []),
        ("ref:MSG1234567", []),
    ],
)
def test_external_references(text: str, expected: list[str] | None) -> None:
    found = find_external_references(text)
    assert found == (expected if expected is not None else text.split())


def test_external_references_in_order_and_deduplicated() -> None:
    text = "[#99] INC0012345 Ref:MSG1 INC0012345 Ticket #99"
    assert find_external_references(text) == ["#99", "INC0012345", "Ref:MSG1"]


# --- transaction IDs -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (UUID, "uuid"),
        (UUID.upper(), "uuid"),
        (T_ID, "dip_transaction"),
        ("T-IF-041-10090123456-SUPC-20260131-0123456789abcdef", "dip_transaction"),
        (S_ID, "dip_sender_reference"),
        (CI_ID, "dip_correlation"),
        ("abc12345xyz", "opaque"),
    ],
)
def test_transaction_kind(value: str, kind: str) -> None:
    assert transaction_kind(value) == kind


@pytest.mark.parametrize("value", [UUID, T_ID, S_ID, CI_ID])
def test_structured_ids_found_without_label(value: str) -> None:
    assert ids(f"see {value}, thanks").transaction_ids == (
        TransactionId(value, transaction_kind(value)),
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Transaction ID: abc12345xyz", ["abc12345xyz"]),
        ("Transaction IDs: abc12345, def67890; ghi_1234-5", ["abc12345", "def67890", "ghi_1234-5"]),
        ("Transaction ID(s): abc12345 def67890 and more", ["abc12345", "def67890"]),
        ("Correlation ID: corr-000001", ["corr-000001"]),
        ('{"transactionID": "a1b2c3d4e5", "transactionTimestamp": "x"}', ["a1b2c3d4e5"]),
        ('"senderUniqueReference":"ref-00000042"', ["ref-00000042"]),
        ("senderCorrelationID = 42424242", ["42424242"]),
        ("Transaction ID: not available yet", []),
        ("Transaction ID: a1b2", []),
        ("random words abc12345xyz here", []),
        ("Transaction ID:\nabc12345xyz", ["abc12345xyz"]),
        ("Transaction ID: see below\nabc12345xyz", []),
    ],
)
def test_labelled_opaque_ids(text: str, expected: list[str]) -> None:
    assert [t.value for t in ids(text).transaction_ids] == expected


def test_labelled_structured_keeps_its_kind() -> None:
    found = ids(f"Transaction ID: {T_ID}, abc12345xyz").transaction_ids
    assert found == (TransactionId(T_ID, "dip_transaction"), TransactionId("abc12345xyz", "opaque"))


# --- interface IDs and event codes ----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("IF-041 and PUB-035", ["IF-041", "PUB-035"]),
        ("IF041, PUB035", ["IF-041", "PUB-035"]),
        ("if-033", ["IF-033"]),
        (T_ID, ["IF-041"]),
        ("IF-041 IF041", ["IF-041"]),
        ("IF-0412", []),
        ("XIF-041", []),
        ("if041", []),
        ("GIF041", []),
    ],
)
def test_interface_ids(text: str, expected: list[str]) -> None:
    assert list(ids(text).interface_ids) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("eventCode [MSAppSPRequest]", ["MSAppSPRequest"]),
        ("[MSAppAccepted] [EXTERNAL] [Image] [cid:image001.png]", ["MSAppAccepted"]),
        ('"eventCode": "ReadingCos"', ["ReadingCos"]),
        ("Event code: MSAppSPRequest", ["MSAppSPRequest"]),
        ("event code: unknown", []),
    ],
)
def test_event_codes(text: str, expected: list[str]) -> None:
    assert list(ids(text).event_codes) == expected


# --- MPIDs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "known", "expected"),
    [
        ("MPID: EELC", None, ["EELC"]),
        ("MPIDs: eelc, LOND", None, ["EELC", "LOND"]),
        ("Participant ID: MRCY", None, ["MRCY"]),
        ("Market Participant ID - OESL (supplier)", None, ["OESL"]),
        ("MPID: EELCX", None, []),
        ("EELC said hello", None, []),
        ("EELC said hello to LOND", frozenset({"EELC"}), ["EELC"]),
        ("eelc lowercase", frozenset({"EELC"}), []),
        ("IF-EELC", frozenset({"EELC"}), []),
        ("participant ID: 1009012345", None, []),
        ("| MPID |\n| EELC |", None, ["EELC"]),
    ],
)
def test_mpids(text: str, known: frozenset[str] | None, expected: list[str]) -> None:
    assert list(ids(text, known_mpids=known).mpids) == expected


# --- error codes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Error code: SP000 - Proposed Appointment ACCEPTED", ["SP000"]),
        ("error codes: SP001, SP002", ["SP001", "SP002"]),
        ("Response code: A", ["A"]),
        ("Rejection code: ERR-1234.", ["ERR-1234"]),
        ("response code: HTTP 503", ["HTTP 503"]),
        ("The flow was rejected with J0107", ["J0107"]),
        ("DIP returned error AB1234 for the message", ["AB1234"]),
        ("J0107 Rejection Reason Code", ["J0107"]),
        ("Error code: none", []),
        ("Error code: INC0012345", []),
        ("Error code: IF-041", []),
        ("SP000 appears without context", []),
        ("error in ISO8601 and SHA256 and IF041", []),
        ("error: MPID EELC", []),
        ("Error code: CPSD-000123", []),
    ],
)
def test_error_codes(text: str, expected: list[str]) -> None:
    assert list(ids(text).error_codes) == expected


def test_mpid_is_not_an_error_code() -> None:
    assert ids("MPID: EELC. Error code: EELC").error_codes == ()


# --- everything at once ----------------------------------------------------------------


def test_find_identifiers_full_message() -> None:
    text = f"""Re: [CPSD-000123] DIP rejects IF-041 [#4567] INC0012345
Transaction ID: {T_ID}
MPID: BRGT
Error code: SP000
[MSAppSPRequest]
"""
    assert ids(text) == Identifiers(
        transaction_ids=(TransactionId(T_ID, "dip_transaction"),),
        interface_ids=("IF-041",),
        event_codes=("MSAppSPRequest",),
        mpids=("BRGT",),
        error_codes=("SP000",),
        external_references=("#4567", "INC0012345"),
        case_references=("CPSD-000123",),
    )


def test_counts_are_capped() -> None:
    text = " ".join(f"INC{n:07d}" for n in range(1_000))
    assert len(ids(text).external_references) == 500


@pytest.mark.parametrize(
    "text",
    [
        "a" * 5_000_000,
        "0" * 5_000_000,
        "Transaction ID: " * 300_000,
        "[Ab" * 2_000_000,
        "Error code: A1 " * 400_000,
        "IF-041 " * 800_000,
        "-a" * 3_000_000,
        "Ref:M" + "1" * 5_000_000,
        "ab1-" * 1_500_000,
    ],
)
def test_fast_on_large_input(text: str) -> None:
    start = time.perf_counter()
    ids(text, known_mpids=frozenset({"AAAA"}))
    assert time.perf_counter() - start < 3.0


@given(st.text())
def test_property_never_raises(text: str) -> None:
    found = ids(text, known_mpids=frozenset({"EELC"}))
    for tx in found.transaction_ids:
        assert transaction_kind(tx.value) == tx.kind


@given(st.text(alphabet="TSCIFPUB-0123456789abcdefABCDEF:[]# RefMSGINC\n", max_size=300))
def test_property_never_raises_on_id_soup(text: str) -> None:
    ids(text)
