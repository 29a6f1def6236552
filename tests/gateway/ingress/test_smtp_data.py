"""Reading DATA in pieces takes exactly what aiosmtpd's line-by-line reader takes.

Two listeners on real sockets in one event loop: stock aiosmtpd and our session class,
each with a handler that only keeps what it was given. The same bytes go to both, split
into the same random pieces; the replies and the kept messages must be identical.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway.ingress.smtp import smtp_factory
from gateway.ingress.smtp_data import TOO_LONG, TOO_MUCH, read_data


class _Keeper:
    """Keeps each message's bytes; what aiosmtpd and our factory need of a handler."""

    def __init__(self) -> None:
        self.kept: list[bytes] = []
        self.sessions: set[Any] = set()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.kept.append(envelope.original_content)
        return "250 kept"


class _Pair:
    """Stock aiosmtpd and our session class, listening side by side on one loop."""

    def __init__(self, max_bytes: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.stock, self.ours = _Keeper(), _Keeper()

        def stock() -> SMTP:  # configured as smtp_factory configures ours
            return SMTP(
                self.stock,
                hostname="gw.example",
                data_size_limit=max_bytes,
                enable_SMTPUTF8=True,
                decode_data=False,
                timeout=10,
                command_call_limit={"NOOP": 50, "*": 5000},
            )

        ours = smtp_factory(self.ours, hostname="gw.example", max_bytes=max_bytes, timeout=10)  # type: ignore[arg-type]
        self.servers = [
            self.loop.run_until_complete(self.loop.create_server(f, "127.0.0.1", 0))
            for f in (stock, ours)
        ]

    def ports(self) -> list[int]:
        return [s.sockets[0].getsockname()[1] for s in self.servers]

    def transcripts(self, pieces: list[bytes]) -> list[bytes]:
        return [self.loop.run_until_complete(_session(port, pieces)) for port in self.ports()]

    def close(self) -> None:
        for server in self.servers:
            server.close()
        self.loop.close()


async def _session(port: int, pieces: list[bytes]) -> bytes:
    """Everything the server says to a client that sends the pieces after DATA, then QUIT."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    greeting = await reader.readline()
    assert greeting.startswith(b"220")
    for command in (b"HELO a.example", b"MAIL FROM:<a@b.example>", b"RCPT TO:<c@d.example>"):
        writer.write(command + b"\r\n")
        await reader.readline()
    writer.write(b"DATA\r\n")
    said = [await reader.readline()]
    for piece in pieces:
        writer.write(piece)
        await writer.drain()
        await asyncio.sleep(0)
    writer.write(b"QUIT\r\n")
    said.append(await asyncio.wait_for(reader.read(), timeout=10))  # up to the server's close
    writer.close()
    return b"".join(said)


@pytest.fixture(scope="module")
def pair() -> Iterator[_Pair]:
    both = _Pair(max_bytes=0)
    yield both
    both.close()


@pytest.fixture(scope="module")
def small_pair() -> Iterator[_Pair]:
    both = _Pair(max_bytes=300)
    yield both
    both.close()


def _one_message(body: bytes) -> bytes:
    """The body, if nothing in it ends the message early (the rest would be commands,
    and enough unknown ones make both servers hang up at a moment that varies)."""
    assume(b"\r\n.\r\n" not in b"\r\n" + body)
    return body


def _compare(
    both: _Pair, body: bytes, cuts: list[int], end: bytes = b"\r\n.\r\n"
) -> tuple[bytes, bytes]:
    stream = body + end + b"NOOP\r\n"  # a pipelined command after the end
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    pieces = [stream[a:b] for a, b in itertools.pairwise(points)]
    before = len(both.stock.kept), len(both.ours.kept)
    stock, ours = both.transcripts(pieces)
    kept = both.stock.kept[before[0] :], both.ours.kept[before[1] :]
    assert ours == stock
    assert kept[1] == kept[0]
    return ours, b"".join(kept[1])


_TOKENS = st.sampled_from(
    [b"x", b"yz ", b".", b"..", b"\r", b"\n", b"\r\n", b"\r\n.", b"\r\n..", b"\x80\xff", b"\0"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_TOKENS, max_size=60), st.lists(st.integers(0, 10_000), max_size=6))
def test_any_bytes_in_any_pieces_give_what_aiosmtpd_gives(
    pair: _Pair, tokens: list[bytes], cuts: list[int]
) -> None:
    _compare(pair, _one_message(b"".join(tokens)), cuts)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.one_of(_TOKENS, st.just(b"L" * 400), st.just(b"M" * 998)), max_size=12),
    st.lists(st.integers(0, 10_000), max_size=6),
)
def test_long_lines_are_refused_as_aiosmtpd_refuses_them(
    pair: _Pair, tokens: list[bytes], cuts: list[int]
) -> None:
    _compare(pair, _one_message(b"".join(tokens)), cuts)


@settings(max_examples=100, deadline=None)
@given(st.lists(_TOKENS, max_size=200), st.lists(st.integers(0, 10_000), max_size=6))
def test_too_much_data_is_refused_as_aiosmtpd_refuses_it(
    small_pair: _Pair, tokens: list[bytes], cuts: list[int]
) -> None:
    _compare(small_pair, _one_message(b"".join(tokens)), cuts)


@pytest.mark.parametrize(
    ("body", "kept"),
    [
        (b"", b"\r\n"),  # one empty line
        (b"Subject: x\r\n\r\nhello", b"Subject: x\r\n\r\nhello\r\n"),
        (b"..\r\n...\r\n..x", b".\r\n..\r\n.x\r\n"),  # one dot off each stuffed line
        (b"a\n.\nb\r.\rc", b"a\n.\nb\r.\rc\r\n"),  # bare LF / CR "ends" stay inside (B4)
        (b"a" * 999, b"a" * 999 + b"\r\n"),  # 1001 bytes with CRLF: the longest allowed
    ],
    ids=["empty-line", "plain", "dot-stuffed", "smuggling", "longest-line"],
)
def test_known_shapes(pair: _Pair, body: bytes, kept: bytes) -> None:
    said, got = _compare(pair, body, [7, 300])
    assert got == kept
    assert said.splitlines()[1].startswith(b"250 kept")
    assert said.splitlines()[2].startswith(b"250")  # the pipelined NOOP was answered


def test_an_early_end_leaves_the_rest_to_be_read_as_commands(pair: _Pair) -> None:
    said, got = _compare(pair, b"first\r\n.\r\nRSET", [8, 9, 10])
    assert got == b"first\r\n"
    # RSET, then the "." of the usual end is an unknown command, then NOOP and QUIT.
    codes = [line[:3] for line in said.splitlines()]
    assert codes == [b"354", b"250", b"250", b"500", b"250", b"221"]


def test_a_dot_as_the_very_first_line_is_an_empty_message(pair: _Pair) -> None:
    said, got = _compare(pair, b"", [1], end=b".\r\n")
    assert got == b"" and said.splitlines()[1].startswith(b"250 kept")


def test_refusals_read_to_the_end_before_answering(pair: _Pair, small_pair: _Pair) -> None:
    said, got = _compare(pair, b"a" * 1000, [3])
    assert said.splitlines()[1].decode() == TOO_LONG and got == b""
    said, got = _compare(small_pair, b"b\r\n" * 200, [50])
    assert said.splitlines()[1].decode() == TOO_MUCH and got == b""


def test_the_reader_leaves_the_next_command_in_the_stream() -> None:
    async def read() -> tuple[bytes, str | None, bytes]:
        reader = asyncio.StreamReader(limit=1001)
        reader.feed_data(b"Subject: x\r\n\r\nbody\r\n.\r\nMAIL FROM:<a@b.example>\r\n")
        content, refusal = await read_data(reader, max_bytes=None, max_line=1001)
        return content, refusal, await reader.readline()

    assert asyncio.run(read()) == (
        b"Subject: x\r\n\r\nbody\r\n",
        None,
        b"MAIL FROM:<a@b.example>\r\n",
    )
