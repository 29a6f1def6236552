from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parsers.mpan import (
    DEFAULT_DISTRIBUTORS,
    PRIMES,
    MpanFinding,
    check_digit,
    find_mpans,
    validate_core,
)

# domain.md 1.5, valid cores (including the IDNO and DIP-fixture extras).
VALID_CORES = [
    "1052601815905",
    "1183016613184",
    "1260913909960",  # remainder 10 -> 0
    "1411777741210",  # remainder 10 -> 0
    "1554728038523",
    "1780841485259",
    "1976122202970",  # remainder 0
    "2301826330435",
    "2448395486208",
    "2657986828284",
    "3280729022271",
    "1900012374324",
]

# domain.md 1.5, invalid inputs with the expected problem.
INVALID_CORES = [
    ("1052601815904", "bad check digit"),
    ("1260913909961", "bad check digit"),
    ("1411777742110", "bad check digit"),
    ("1900012374325", "bad check digit"),
    ("1234567890123", "bad check digit"),
    ("105260181590", "12 digits"),
    ("10526018159050", "14 digits"),
    ("10526O1815905", "non-digit"),
    ("0052601815902", "unknown distributor 00"),
    ("0952601815903", "unknown distributor 09"),
    ("9952601815908", "unknown distributor 99"),
    ("4052601815903", "unknown distributor 40"),
]


def cores(text: str) -> list[str]:
    return [f.core for f in find_mpans(text)]


def test_constants() -> None:
    assert PRIMES == (3, 5, 7, 13, 17, 19, 23, 29, 31, 37, 41, 43)
    assert frozenset(f"{n}" for n in range(10, 39)) == DEFAULT_DISTRIBUTORS


@pytest.mark.parametrize("core", VALID_CORES)
def test_valid_cores(core: str) -> None:
    assert validate_core(core) is None
    assert check_digit(core[:12]) == int(core[12])


@pytest.mark.parametrize(("core", "problem"), INVALID_CORES)
def test_invalid_cores(core: str, problem: str) -> None:
    assert validate_core(core) == problem


def test_distributor_reported_before_check_digit() -> None:
    assert validate_core("9952601815900") == "unknown distributor 99"


def test_custom_distributor_set() -> None:
    assert validate_core("4052601815903", frozenset({"40"})) is None
    assert validate_core("1052601815905", frozenset({"40"})) == "unknown distributor 10"


@pytest.mark.parametrize("bad", ["", "12345678901", "1234567890123", "12345678901a"])
def test_check_digit_rejects_bad_input(bad: str) -> None:
    with pytest.raises(ValueError):
        check_digit(bad)


def test_unicode_digits_are_non_digit() -> None:
    assert validate_core("１052601815905") == "non-digit"


@pytest.mark.parametrize("core", VALID_CORES)
def test_find_bare_valid_cores(core: str) -> None:
    [finding] = find_mpans(f"Please check {core} today.")
    assert finding == MpanFinding(core, core[:2], True, None, None, None)


@pytest.mark.parametrize(("core", "problem"), INVALID_CORES)
def test_find_labelled_invalid(core: str, problem: str) -> None:
    [finding] = find_mpans(f"MPAN: {core}")
    assert (finding.core, finding.valid, finding.problem) == (core, False, problem)


@pytest.mark.parametrize(
    ("text", "core", "supply"),
    [
        ("018011001052601815905", "1052601815905", "018011001052601815905"),
        ("0003931001052601815905", "1052601815905", "0003931001052601815905"),
        ("01 801 100 1052601815905", "1052601815905", "018011001052601815905"),
        ("S 01 801 100 1052601815905", "1052601815905", "018011001052601815905"),
        ("S 00 0393 100 1052601815905", "1052601815905", "0003931001052601815905"),
        ("10 5260 1815 905", "1052601815905", None),
        ("10-5260-1815-905", "1052601815905", None),
        ("S1052601815905", "1052601815905", None),
        ("| 1052601815905 |", "1052601815905", None),
        ("1052601815905 2 kWh", "1052601815905", None),
        ("3 1052601815905", "1052601815905", None),
        ("31-01-2026 1052601815905", "1052601815905", None),
        ('{"MPANCore": "1900012374324", "distributorDIPID": "1009012345"}', "1900012374324", None),
        ("MPAN core 1052601815905", "1052601815905", None),
        ("Supply number: 018011001052601815905", "1052601815905", "018011001052601815905"),
        ("MSID 1052601815905", "1052601815905", None),
        ("1052601815905.", "1052601815905", None),
    ],
)
def test_forms(text: str, core: str, supply: str | None) -> None:
    [finding] = find_mpans(text)
    assert (finding.core, finding.valid, finding.supply_number) == (core, True, supply)


def test_top_line_fields() -> None:
    [legacy] = find_mpans("018011001052601815905")
    assert legacy.top_line == {"profile_class": "01", "mtc": "801", "llfc": "100"}
    [mhhs] = find_mpans("0003931001052601815905")
    assert mhhs.top_line == {"profile_class": "00", "ssc": "0393", "duos_tariff": "100"}
    assert mhhs.to_json() == {
        "core": "1052601815905",
        "distributor_id": "10",
        "valid": True,
        "problem": None,
        "supply_number": "0003931001052601815905",
    }


def test_to_json_without_supply_number() -> None:
    [finding] = find_mpans("1052601815905")
    assert finding.to_json() == {
        "core": "1052601815905",
        "distributor_id": "10",
        "valid": True,
        "problem": None,
    }


def test_several_in_order_deduplicated() -> None:
    text = "MPANs: 1183016613184, 1052601815905 1183016613184\n018011001052601815905"
    found = find_mpans(text)
    assert [f.core for f in found] == ["1183016613184", "1052601815905"]
    assert found[1].supply_number == "018011001052601815905"


def test_space_separated_list() -> None:
    assert cores("1052601815905 1183016613184 1260913909960") == [
        "1052601815905",
        "1183016613184",
        "1260913909960",
    ]


@pytest.mark.parametrize(
    "text",
    [
        "Call +44 20 7946 0000 or 020 7946 0958 or 07700 900123",
        "T-IF-041-1009012345-REGS-20260131-0123456789ABCDEF",
        "S-IF-035-2200000003-REGS-19700101-0",
        "id 12345678-1052-6018-1590-512345678901",
        "ABC1052601815905",
        "1052601815905XYZ",
        "REF-1052601815905",
        "a run: 105260181590512",
        "1.1052601815905",
        "2026-01-31T09:15:00Z 31/01/2026 09:15",
        "9952601815908 is not labelled",
        "0952601815903",
        "Meter 1234567890",
    ],
)
def test_not_reported(text: str) -> None:
    assert find_mpans(text) == []


def test_longer_digit_run_not_split() -> None:
    assert find_mpans("10526018159051234") == []
    assert find_mpans("x 105260181590512 y") == []


def test_unlabelled_known_distributor_bad_check_digit_reported() -> None:
    [finding] = find_mpans("we tried 1052601815904 again")
    assert (finding.valid, finding.problem) == (False, "bad check digit")


def test_unlabelled_spaced_invalid_with_known_distributor() -> None:
    [finding] = find_mpans("see 10 5260 1815 904")
    assert (finding.core, finding.problem) == ("1052601815904", "bad check digit")


def test_labelled_wrong_lengths() -> None:
    assert [(f.core, f.problem) for f in find_mpans("MPAN: 10 5260 1815 90")] == [
        ("105260181590", "12 digits")
    ]
    text = "MPANs:\n1052601815904\n105260181590\n\nMeter 12345678901"
    assert [f.problem for f in find_mpans(text)] == ["bad check digit", "12 digits"]


def test_label_in_table_row_with_separate_cells() -> None:
    [finding] = find_mpans("| MPAN | 10526018159050 |")
    assert finding.problem == "14 digits"


def test_label_alone_on_its_line() -> None:
    [finding] = find_mpans("MPAN\n105260181590\n")
    assert finding.problem == "12 digits"


def test_label_does_not_cover_other_labelled_numbers() -> None:
    assert cores("MPAN: 1052601815905 DIP ID: 100901234567") == ["1052601815905"]


def test_non_digit_labelled() -> None:
    [finding] = find_mpans("MPAN: 10526O1815905 (typed from the meter)")
    assert (finding.core, finding.distributor_id, finding.problem) == (
        "10526O1815905",
        "10",
        "non-digit",
    )


def test_invalid_supply_number_labelled() -> None:
    [finding] = find_mpans("Supply number: 01 801 100 1052601815904")
    assert (finding.core, finding.problem, finding.supply_number) == (
        "1052601815904",
        "bad check digit",
        "018011001052601815904",
    )


def test_table_rows_do_not_glue() -> None:
    text = "| 1052601815905 | 2 | kWh |\n| 1183016613184 | 3 | kWh |"
    assert cores(text) == ["1052601815905", "1183016613184"]


def test_result_count_is_capped() -> None:
    first12s = [f"10{n:010d}" for n in range(600)]
    text = "\n".join(c + str(check_digit(c)) for c in first12s)
    assert len(find_mpans(text)) == 500


@pytest.mark.parametrize(
    "text",
    [
        "1 " * 2_500_000,
        "1-" * 2_500_000,
        "1052601815905 " * 400_000,
        "MPAN: " * 900_000,
        "9" * 5_000_000,
        ("MPAN " + "1 " * 20 + "\n") * 120_000,
        "ab 12 " * 900_000,
    ],
)
def test_fast_on_large_input(text: str) -> None:
    start = time.perf_counter()
    find_mpans(text)
    assert time.perf_counter() - start < 3.0


@given(
    st.sampled_from(sorted(DEFAULT_DISTRIBUTORS)),
    st.text(alphabet="0123456789", min_size=10, max_size=10),
)
def test_property_computed_check_digit_validates(dist: str, body: str) -> None:
    first12 = dist + body
    core = first12 + str(check_digit(first12))
    assert validate_core(core) is None
    assert [f.core for f in find_mpans(f"MPAN: {core}")] == [core]


def _remainder(core: str) -> int:
    return sum(p * int(d) for p, d in zip(PRIMES, core[:12], strict=True)) % 11


valid_cores = st.builds(
    lambda dist, body: dist + body + str(check_digit(dist + body)),
    st.sampled_from(sorted(DEFAULT_DISTRIBUTORS)),
    st.text(alphabet="0123456789", min_size=10, max_size=10),
)


@given(
    st.one_of(st.sampled_from(VALID_CORES), valid_cores),
    st.integers(min_value=0, max_value=12),
    st.integers(min_value=1, max_value=9),
)
def test_property_single_digit_change_never_validates(core: str, pos: int, delta: int) -> None:
    """Never, except the algorithm's own blind spot: remainders 0 and 10 share check digit 0."""
    changed = core[:pos] + str((int(core[pos]) + delta) % 10) + core[pos + 1 :]
    blind_spot = (
        pos < 12
        and core[12] == "0"
        and {_remainder(core), _remainder(changed)} == {0, 10}
        and changed[:2] in DEFAULT_DISTRIBUTORS
    )
    assert (validate_core(changed) is None) == blind_spot


def test_blind_spot_example() -> None:
    """1260913909960 (remainder 10) and 1260913959960 (remainder 0) both end in 0."""
    assert validate_core("1260913959960") is None


@given(st.text())
def test_property_never_raises_on_text(text: str) -> None:
    for finding in find_mpans(text):
        assert finding.valid == (finding.problem is None)


@given(st.text(alphabet="0123456789 -S\n|", max_size=300))
def test_property_never_raises_on_digit_soup(text: str) -> None:
    found = find_mpans(text)
    assert len({f.core for f in found}) == len(found)
    for finding in found:
        if finding.valid:
            assert validate_core(finding.core) is None
