"""Decoding bytes and raw header text whatever the label says (B33, B35)."""

from __future__ import annotations

import base64

import pytest

from parsers.charsets import (
    decode_bytes,
    decode_raw_header,
    message_charset_hints,
    widen_encoded_words,
)
from tests.parsers.fixtures_mail import parse


@pytest.mark.parametrize("label", ["iso-8859-1", "windows-1252", "iso-8859-15", "us-ascii"])
def test_utf8_bytes_under_a_single_byte_label_are_utf8(label: str) -> None:
    text, problem = decode_bytes("Müller paid £100 – ok".encode(), label)
    assert text == "Müller paid £100 – ok" and problem


@pytest.mark.parametrize(
    ("text", "label"),
    [("Müller, Straße", "iso-8859-1"), ("Тётя Ёлка", "windows-1251"), ("Łódź", "iso-8859-2")],
)
def test_real_single_byte_text_keeps_its_label(text: str, label: str) -> None:
    assert decode_bytes(text.encode(label), label) == (text, None)


def test_raw_8bit_header_text_is_decoded_with_hints() -> None:
    raw = "Служба учёта".encode("cp1251").decode("ascii", "surrogateescape")
    assert decode_raw_header(raw, ["windows-1251"]) == "Служба учёта"
    utf8 = "Grüße".encode().decode("ascii", "surrogateescape")
    assert decode_raw_header(utf8, ["iso-8859-1"]) == "Grüße"  # valid UTF-8 wins
    assert decode_raw_header("plain ascii", ["gb2312"]) == "plain ascii"


def test_raw_8bit_decoding_never_swallows_ascii_structure() -> None:
    # In Shift_JIS, 0x81 0x40 is one character: decoding with it would eat the "@".
    raw = b"a\x81@evil.example <b@good.example>".decode("ascii", "surrogateescape")
    decoded = decode_raw_header(raw, ["shift_jis"])
    assert decoded.count("@") == 2 and decoded.endswith("<b@good.example>")


def test_message_charset_hints() -> None:
    msg = parse(
        b"Subject: =?koi8-r?B?8NLJ18XU?=\r\nContent-Type: text/plain; charset=windows-1251\r\n\r\nx"
    )
    assert message_charset_hints(msg) == ("windows-1251", "koi8-r")


def test_gb2312_label_on_gbk_encoded_words() -> None:
    word = base64.b64encode("镕钢".encode("gbk")).decode()  # 镕 is GBK, not GB2312
    assert widen_encoded_words(f"=?gb2312?B?{word}?=") == f"=?gb18030?B?{word}?="
    assert widen_encoded_words("=?utf-8?q?x?= plain") == "=?utf-8?q?x?= plain"


def test_mostly_utf8_with_a_broken_sequence_stays_utf8() -> None:
    cell = (
        '<td style="padding:5px"><a href="https://portal.example/r?x=1">Профиль | Отчёт</a></td>\n'
    )
    data = (cell * 20).encode() + b"\xd1f." + (cell * 5).encode()  # one character cut in two
    decoded, _ = decode_bytes(data, "utf-8")
    assert decoded.count("Профиль | Отчёт") == 25 and decoded.count("\ufffd") == 1
