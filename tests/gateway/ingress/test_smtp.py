"""The SMTP protocol object: set up cheaply, with exactly aiosmtpd's own tables."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.inbox import Accepted
from gateway.ingress.smtp import Handler, Storer, smtp_factory


class _NoCommits:
    async def commit(self, items: object, digests: object) -> list[Accepted]:
        raise AssertionError("not used")


class _NoStore:
    store_blocks = False

    def store_raw(self, raw: bytes) -> str:
        raise AssertionError("not used")


def _handler() -> Handler:
    storer = Storer(_NoStore(), _NoCommits(), ThreadPoolExecutor(1))  # type: ignore[arg-type]
    return Handler(storer, ["cpsd@elexon.example"])


def test_a_session_has_the_commands_hooks_and_auth_of_a_stock_aiosmtpd_session() -> None:
    async def build() -> tuple[SMTP, SMTP]:
        handler = _handler()
        ours = smtp_factory(handler, hostname="gw.example", max_bytes=1000, timeout=10)()
        stock = SMTP(handler, hostname="gw.example")
        return ours, stock

    ours, stock = asyncio.run(build())
    assert type(ours) is not SMTP
    assert set(ours._smtp_methods) == set(stock._smtp_methods)
    assert "DATA" in ours._smtp_methods and "STARTTLS" in ours._smtp_methods
    assert set(ours._handle_hooks) == set(stock._handle_hooks)
    assert set(ours._handle_hooks) == {"MAIL", "RCPT", "DATA", "exception"}
    assert set(ours._auth_methods) == set(stock._auth_methods)


def test_the_handler_still_shows_aiosmtpd_every_hook_it_has() -> None:
    defined = sorted(n for n in vars(Handler) if n.startswith("handle_"))
    assert defined == ["handle_DATA", "handle_MAIL", "handle_RCPT", "handle_exception"]
    assert [n for n in dir(_handler()) if n.startswith("handle_")] == defined


_ADDRESSES = [
    "",
    "<>",
    "<ops@brightenergy.example>",
    "<ops@brightenergy.example> SIZE=4096 BODY=8BITMIME",
    "<ops@brightenergy.example>  SIZE=1",
    "<ops@brightenergy.example>\tSIZE=1",
    "<ops@brightenergy.example>(comment) SIZE=1",
    "<ops@brightenergy.example> (comment)",
    "<ops@brightenergy.example>  ",
    "<ops@brightenergy.example>x",
    "<Ops.Team+CPSD-000001@Bright-Energy.Example>",
    "<ops..team@brightenergy.example>",
    "<.ops@brightenergy.example>",
    "<ops@brightenergy.example.>",
    "ops@brightenergy.example",
    " <ops@brightenergy.example>",
    "<alice@example.org)<bob@example.org>",
    '<"quoted local"@brightenergy.example>',
    "<@relay.example:ops@brightenergy.example>",
    "<ops@[192.0.2.1]>",
    "<ópš@bright.example>",
    "<" + "a" * 80 + "@brightenergy.example>",
    "<ops@brightenergy.example",
    "ops",
    "<ops@>",
    "<<ops@brightenergy.example>>",
]


@pytest.mark.parametrize("limit", [0, 64])
def test_mail_and_rcpt_addresses_parse_exactly_as_stock_aiosmtpd(limit: int) -> None:
    ours, stock = asyncio.run(_pair())
    ours.local_part_limit = stock.local_part_limit = limit
    for arg in _ADDRESSES:
        assert ours._getaddr(arg) == stock._getaddr(arg), arg


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from('<>@"().:;, \\[]aZ0=-_é\t'), max_size=40))
def test_any_argument_parses_as_stock_aiosmtpd_or_is_refused_where_it_crashes(
    arg: str,
) -> None:
    ours, stock = _PAIR
    try:
        expected = stock._getaddr(arg)
    except Exception:  # the stdlib parser's own crashes: stock answers 451
        expected = (None, None)  # we answer 553, a malformed address
    assert ours._getaddr(arg) == expected


async def _pair() -> tuple[SMTP, SMTP]:
    handler = _handler()
    return (
        smtp_factory(handler, hostname="gw.example", max_bytes=1000, timeout=10)(),
        SMTP(handler, hostname="gw.example"),
    )


_PAIR = asyncio.run(_pair())
