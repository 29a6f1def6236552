"""Sender identity and recipient lists on the address shapes B21-B25."""

from __future__ import annotations

import pytest

from parsers.addresses import address_list, normalise_domain, parse_addr_spec, sender
from parsers.mime import parse_bounded


def message(headers: bytes) -> object:
    parsed = parse_bounded(headers + b"\r\n\r\nbody")
    assert parsed.message is not None
    return parsed.message


@pytest.mark.parametrize(
    ("from_header", "address"),
    [
        (b"From: Ops <ops@brightenergy.example>", "ops@brightenergy.example"),
        (b"From: ops@BrightEnergy.EXAMPLE", "ops@brightenergy.example"),  # B23 mixed case
        (b"From: =?utf-8?q?M=C3=BCller?= <m@xn--bcher-kva.example>", "m@xn--bcher-kva.example"),
    ],
)
def test_sender_identity_is_the_addr_spec(from_header: bytes, address: str) -> None:
    result = sender(message(from_header))  # type: ignore[arg-type]
    assert result.problem is None and result.address is not None
    assert result.address.addr_spec == address


@pytest.mark.parametrize(
    ("from_header", "address"),
    [
        pytest.param(
            b'From: "ops@party.example" <ops@party.example>',  # Outlook/Exchange default
            "ops@party.example",
        ),
        pytest.param(
            b'From: "ceo@partner.example" <x@evil.example>',  # B22: identity is the addr-spec
            "x@evil.example",
        ),
        pytest.param(
            b"From: =?utf-8?q?a=2C_b_=3Cevil=40x=3E?= <real@party.example>",  # B25
            "real@party.example",
        ),
        pytest.param(
            b"From: m@b\xc3\xbccher.example",  # B35: SMTPUTF8 raw UTF-8 domain
            "m@xn--bcher-kva.example",
        ),
    ],
)
def test_sender_shapes_the_matrix_says_to_accept(from_header: bytes, address: str) -> None:
    result = sender(message(from_header))  # type: ignore[arg-type]
    assert result.address is not None and result.address.addr_spec == address


@pytest.mark.parametrize(
    "headers",
    [
        b"From: alice@example.org)<bob@example.org>",  # B21, CVE-2023-27043
        b'From: "a@b"@evil.example',  # B23 quoted local part
        b"From: a@b@c.example",  # B23, CVE-2019-16056
        b"From: ops@bright\xe2\x80\x8benergy.example",  # B23 invisible code point
        b"From: a@party.example\r\nFrom: forged@party.example",  # B24 duplicate From
        b"From: a@party.example, b@party.example",  # two addresses
        b"Subject: no from at all",
        b"From: =?x-bad?q?x?= <>",  # B25 unknown charset, empty address
    ],
)
def test_ambiguous_senders_are_refused(headers: bytes) -> None:
    result = sender(message(headers))  # type: ignore[arg-type]
    assert result.address is None and result.problem


def test_recipient_lists_are_bounded_and_skip_junk() -> None:
    to = b", ".join([b"a@party.example", b"not an address", b"B@Party.Example"] * 50)
    found = address_list(message(b"From: x@y.example\r\nTo: " + to), "To", cap=10)  # type: ignore[arg-type]
    assert len(found) == 10
    assert {a.key for a in found} == {"a@party.example", "b@party.example"}


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("Example.COM.", "example.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("localhost", None),
        ("-bad.example", None),
        ("a" * 300 + ".example", None),
        ("ex\u200bample.com", None),
    ],
)
def test_normalise_domain(domain: str, expected: str | None) -> None:
    assert normalise_domain(domain) == expected


def test_parse_addr_spec_refuses_oddities() -> None:
    assert parse_addr_spec("ops@party.example") is not None
    for bad in ('"q"@party.example', "a@b@c.example", "nodomain", "x" * 65 + "@p.example"):
        assert parse_addr_spec(bad) is None


def test_raw_8bit_display_name_keeps_the_sender() -> None:
    name = "Служба учёта".encode("cp1251")
    msg = message(
        b"From: "
        + name
        + b" <desk@party.example>\r\nContent-Type: text/plain; charset=windows-1251"
    )
    result = sender(msg)  # type: ignore[arg-type]
    assert result.address is not None and result.address.addr_spec == "desk@party.example"
    assert result.address.display_name == "Служба учёта"


def test_raw_8bit_bytes_never_hide_a_second_address() -> None:
    # Shift_JIS would read 0x81 0x40 as one character and so hide the first "@"; the
    # header must stay malformed rather than become a single, different address.
    msg = message(
        b"From: a\x81@evil.example <ops@party.example>\r\nContent-Type: text/plain; charset=shift_jis"
    )
    result = sender(msg)  # type: ignore[arg-type]
    assert result.address is None and result.problem


def test_bare_host_sender_is_kept() -> None:
    result = sender(message(b"From: Cron Daemon <root@localhost>"))  # type: ignore[arg-type]
    assert result.address is not None and result.address.addr_spec == "root@localhost"
    assert parse_addr_spec("root@localhost") is not None
    assert normalise_domain("localhost") is None  # a party's domain still needs a dot
