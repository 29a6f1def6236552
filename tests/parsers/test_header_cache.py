"""Parsed headers are remembered within a memory budget, not a count of entries."""

from __future__ import annotations

import tracemalloc

from parsers.header_cache import HeaderCache
from parsers.mime import POLICY


def _to_field(i: int) -> str:
    return ", ".join(f"Desk {i} {j} <desk{i}.{j}@party{j}.example>" for j in range(60))[:2000]


def test_a_value_asked_for_again_is_parsed_once() -> None:
    cache = HeaderCache(budget=100_000)
    calls: list[str] = []

    def parse() -> str:
        calls.append("parsed")
        return "parsed value"

    key = (POLICY, "Subject", "DIP rejects IF-041")
    assert cache.get(key, parse) == cache.get(key, parse) == "parsed value"
    assert calls == ["parsed"]


def test_the_oldest_go_first_once_the_budget_is_spent() -> None:
    cache = HeaderCache(budget=1_000)
    for i in range(50):
        cache.get((POLICY, "Subject", f"case {i:03d} " + "x" * 40), lambda: object())
    assert cache.used <= 1_000
    seen: list[int] = []
    cache.get((POLICY, "Subject", "case 049 " + "x" * 40), lambda: seen.append(49))
    cache.get((POLICY, "Subject", "case 000 " + "x" * 40), lambda: seen.append(0))
    assert seen == [0]  # the newest was still there, the oldest was not


def test_address_lists_cost_more_than_their_length() -> None:
    cache = HeaderCache(budget=1_000_000)
    cache.get((POLICY, "Subject", "s" * 100), lambda: None)
    plain = cache.used
    cache.get((POLICY, "To", "t" * 100), lambda: None)
    assert cache.used - plain > 10 * plain // 2


def test_many_distinct_long_recipient_lists_do_not_grow_the_process() -> None:
    """Each 2 KB To: of 60 recipients holds ~830 KB of parse tree once parsed: 2,000 of
    them, all kept, came to 1.6 GB."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(150):
            POLICY.header_fetch_parse("To", _to_field(i))
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 40 * 1024 * 1024  # 150 kept would be ~125 MB


def test_a_parsed_header_from_the_cache_is_the_stdlib_one() -> None:
    first = POLICY.header_fetch_parse("To", "Jo Bloggs <jo@brightenergy.example>")
    again = POLICY.header_fetch_parse("To", "Jo Bloggs <jo@brightenergy.example>")
    assert first is again
    assert [a.addr_spec for a in first.addresses] == ["jo@brightenergy.example"]
