from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parsers import timestamps
from parsers.timestamps import find_timestamps, parse_timestamp


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # ISO 8601
        ("2026-01-31T09:15:00Z", utc(2026, 1, 31, 9, 15)),
        ("2026-01-31T09:15:00+01:00", utc(2026, 1, 31, 8, 15)),
        ("2026-01-31T09:15:00-05:00", utc(2026, 1, 31, 14, 15)),
        ("2026-01-31T09:15:00+0530", utc(2026, 1, 31, 3, 45)),
        ("2026-01-31T09:15:00.123456789Z", utc(2026, 1, 31, 9, 15, 0, 123456)),
        ("2026-01-31T09:15:00,5Z", utc(2026, 1, 31, 9, 15, 0, 500000)),
        ("2026-01-31 09:15", utc(2026, 1, 31, 9, 15)),  # winter: GMT
        ("2026-07-01 09:15", utc(2026, 7, 1, 8, 15)),  # summer: BST
        ("2026-07-01T09:15:00 UTC", utc(2026, 7, 1, 9, 15)),
        # UK day-first numeric
        ("31/01/2026 09:15", utc(2026, 1, 31, 9, 15)),
        ("31/01/2026 09:15:30", utc(2026, 1, 31, 9, 15, 30)),
        ("31-01-2026 09:15", utc(2026, 1, 31, 9, 15)),
        ("01/07/2026 09:15", utc(2026, 7, 1, 8, 15)),
        ("01/07/2026 09:15 GMT", utc(2026, 7, 1, 9, 15)),
        ("01/07/2026 09:15 BST", utc(2026, 7, 1, 8, 15)),
        ("31/01/2026 09:15 BST", utc(2026, 1, 31, 8, 15)),  # BST means +01:00, as stated
        ("01/07/2026 09:15 +01:00", utc(2026, 7, 1, 8, 15)),
        ("01/07/2026 09:15Z", utc(2026, 7, 1, 9, 15)),
        ("1/7/2026 9:15", utc(2026, 7, 1, 8, 15)),
        ("31/01/2026 at 9:15pm", utc(2026, 1, 31, 21, 15)),
        ("31/01/2026 12:05 am", utc(2026, 1, 31, 0, 5)),
        # month names
        ("31 Jan 2026 09:15", utc(2026, 1, 31, 9, 15)),
        ("31 January 2026 at 09:15", utc(2026, 1, 31, 9, 15)),
        ("1st July 2026, 09:15 (UTC)", utc(2026, 7, 1, 9, 15)),
        ("Sat, 31 Jan 2026 09:15:00 +0000", utc(2026, 1, 31, 9, 15)),
        ("Wednesday, 1 July 2026 09:15", utc(2026, 7, 1, 8, 15)),
        ("January 31, 2026 9:15 PM", utc(2026, 1, 31, 21, 15)),
        ("Sept 1 2026 09:15", utc(2026, 9, 1, 8, 15)),
        # time first
        ("09:15 on 31/01/2026", utc(2026, 1, 31, 9, 15)),
        ("9:15pm on Saturday 31st January 2026", utc(2026, 1, 31, 21, 15)),
        ("09:15 BST, 1 July 2026", utc(2026, 7, 1, 8, 15)),
    ],
)
def test_parse(value: str, expected: datetime) -> None:
    assert parse_timestamp(value) == expected
    assert find_timestamps(f"It failed at {value}, see the log.") == [expected]


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        "31/01/2026",  # a date alone is not a timestamp
        "2026-01-31",
        "31 January 2026",
        "09:15",
        "31/02/2026 09:15",  # impossible date
        "29/02/2026 09:15",  # not a leap year
        "31/13/2026 09:15",
        "2026-13-01T09:15",
        "2026-01-31T24:00",
        "2026-01-31T09:60",
        "2026-01-31T09:15:61",
        "31/01/2026 13:15 pm",
        "01/31/2026 09:15",  # month-first is never guessed
        "31/01/1850 09:15",
        "31/01/2026 09:15 +25:00",
        "2026-01-31T09:15:00Z and more",
    ],
)
def test_rejected(value: str) -> None:
    assert parse_timestamp(value) is None


def test_leap_day_accepted() -> None:
    assert parse_timestamp("29/02/2028 09:15") == utc(2028, 2, 29, 9, 15)


def test_dst_boundaries() -> None:
    assert parse_timestamp("28/03/2026 12:00") == utc(2026, 3, 28, 12)
    assert parse_timestamp("29/03/2026 12:00") == utc(2026, 3, 29, 11)
    assert parse_timestamp("24/10/2026 12:00") == utc(2026, 10, 24, 11)
    assert parse_timestamp("25/10/2026 12:00") == utc(2026, 10, 25, 12)


def test_default_tz() -> None:
    assert parse_timestamp("31/01/2026 09:15", default_tz="UTC") == utc(2026, 1, 31, 9, 15)
    value = parse_timestamp("31/01/2026 09:15", default_tz="America/New_York")
    assert value == utc(2026, 1, 31, 14, 15)


def test_built_in_uk_rules_match_zoneinfo() -> None:
    uk = timestamps._UkTime()
    for month in range(1, 13):
        for day in (1, 15, 28):
            local = datetime(2026, month, day, 12, tzinfo=uk)
            expected = parse_timestamp(f"{day:02d}/{month:02d}/2026 12:00")
            assert local.astimezone(UTC) == expected


def test_unknown_zone_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        parse_timestamp("31/01/2026 09:15", default_tz="Mars/Olympus")


def test_find_in_order_deduplicated_utc() -> None:
    text = (
        "First seen 01/07/2026 09:15 (BST), again at 2026-07-01T08:15:00Z,\n"
        "then 31 Jan 2026 10:00 and 01/07/2026 09:15:30. Date only: 02/07/2026."
    )
    assert find_timestamps(text) == [
        utc(2026, 7, 1, 8, 15),
        utc(2026, 1, 31, 10),
        utc(2026, 7, 1, 8, 15, 30),
    ]
    assert all(v.tzinfo is UTC for v in find_timestamps(text))


def test_range_is_not_an_offset() -> None:
    found = find_timestamps("between 31/01/2026 09:15-10:15 the DIP was down")
    assert found == [utc(2026, 1, 31, 9, 15)]


def test_not_glued_to_numbers() -> None:
    assert find_timestamps("ref 131/01/2026 09:15") == []
    assert find_timestamps("v1.2026-01-31T09:15") == []


def test_results_capped() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    text = "\n".join(
        (start + timedelta(minutes=n)).strftime("%Y-%m-%dT%H:%M:%SZ") for n in range(700)
    )
    assert len(find_timestamps(text)) == 500


@pytest.mark.parametrize(
    "text",
    [
        "1" * 5_000_000,
        "1:11 " * 1_000_000,
        "2026 1:11 " * 500_000,
        "31/01/2026 09:15 " * 300_000,
        "12 " * 2_000_000,
        "1 jan 2026 " * 500_000,
    ],
)
def test_fast_on_large_input(text: str) -> None:
    started = time.perf_counter()
    find_timestamps(text)
    assert time.perf_counter() - started < 3.0


def test_parse_bounds_input_length() -> None:
    assert parse_timestamp("31/01/2026 09:15" + " " * 10 + "x" * 1_000_000) is None


@given(st.text())
def test_property_never_raises(text: str) -> None:
    for value in find_timestamps(text):
        assert value.tzinfo is UTC
    parse_timestamp(text)


@given(st.text(alphabet="0123456789/-: TZ+.apmBSTGMUCJanuary,", max_size=80))
def test_property_never_raises_on_date_soup(text: str) -> None:
    find_timestamps(text)
    parse_timestamp(text)


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2199, 12, 30)))
def test_property_iso_round_trip(value: datetime) -> None:
    aware = value.replace(tzinfo=UTC)
    assert parse_timestamp(aware.isoformat()) == aware
