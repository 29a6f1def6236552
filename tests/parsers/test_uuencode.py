"""uuencoded files found in text bodies, bounded on hostile input."""

from __future__ import annotations

import time

from parsers.uuencode import decode_uu, strip_uuencoded, uuencoded_blocks
from tests.parsers.fixtures_mail import uuencode


def test_uuencoded_blocks_decode_and_are_bounded() -> None:
    data = bytes(range(256)) * 3
    text = uuencode("a.bin", data).decode()
    (block,) = uuencoded_blocks("intro\n" + text)
    assert block.name == "a.bin" and decode_uu(block.lines, 10_000) == data
    assert decode_uu(block.lines, 100) == data[:100]
    not_uu = "begin 644 plan.txt\nWe begin the migration at 09:00\nend\n"
    assert uuencoded_blocks(not_uu) == [] and strip_uuencoded(not_uu) == not_uu
    many = ("begin 644 x\n" * 50_000) + "M" * 60
    started = time.perf_counter()
    assert uuencoded_blocks(many) == []
    pairs = "begin 644 x\nnot uuencoded at all\nend\n" * 20_000
    assert uuencoded_blocks(pairs) == []
    assert time.perf_counter() - started < 1.0
