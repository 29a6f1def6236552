"""winmail.dat whose only body is compressed RTF, as Outlook sends "rich text" mail."""

from __future__ import annotations

import base64
import struct
import time

from compressed_rtf import compress
from compressed_rtf.compressed_rtf import crc32

from parsers.body import best_text
from parsers.tnef import MAX_COMPRESSED_RTF_BYTES, MAX_RTF_BYTES, rtf_body_text, tnef_body
from tests.parsers.fixtures_mail import parse, tnef_object, winmail

PLAIN_RTF = rb"""{\rtf1\ansi\ansicpg1252\deff0\nouicompat{\fonttbl{\f0\fswiss\fcharset0 Calibri;}}
{\*\generator Riched20 16.0.17928}\viewkind4\uc1
\pard\f0\fs22\lang2057 Summary: meter reads missing for MPAN 1052601815905\par
Impact: 40 sites at the caf\'e9 unbilled, \u8364?2,000 a day\par
\par
Kind regards\par
Jo Bloggs\par
}"""

# Outlook's usual shape: the HTML body carried inside RTF (\fromhtml1).
HTML_IN_RTF = rb"""{\rtf1\ansi\ansicpg1252\fromhtml1 \fbidis \deff0{\fonttbl
{\f0\fswiss\fcharset0 Arial;}}
{\*\htmltag19 <html>}{\*\htmltag34 <head>}
{\*\htmltag161 <style>}{\*\htmltag241 p \{margin:0\}}{\*\htmltag169 </style>}
{\*\htmltag41 </head>}{\*\htmltag50 <body>}\htmlrtf {\htmlrtf0
{\*\htmltag64 <p>}\htmlrtf {\htmlrtf0 Summary: DIP rejects IF-041
\htmlrtf\par}\htmlrtf0
{\*\htmltag72 </p>}
{\*\htmltag64 <p>}\htmlrtf {\htmlrtf0 MPAN&nbsp;1052601815905 rejected &amp; resent
\htmlrtf\par}\htmlrtf0
{\*\htmltag72 </p>}{\*\htmltag58 </body>}{\*\htmltag27 </html>}}"""


def winmail_with_rtf(compressed: bytes) -> bytes:
    """A winmail.dat whose message properties hold only PR_RTF_COMPRESSED (0x1009)."""
    padded = compressed + b"\x00" * (-len(compressed) % 4)
    props = struct.pack("<IHHII", 1, 0x0102, 0x1009, 1, len(compressed)) + padded
    return winmail(tnef_object(1, 0x9003, 0x0006, props))  # attMAPIProps


def mail_with_winmail(data: bytes) -> bytes:
    return (
        b"From: Jo Bloggs <jo@brightenergy.example>\r\nSubject: reads missing\r\n"
        b'Content-Type: multipart/mixed; boundary="w"\r\n\r\n'
        b'--w\r\nContent-Type: application/ms-tnef; name="winmail.dat"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(data) + b"--w--\r\n"
    )


def test_an_rtf_only_winmail_dat_gives_its_text() -> None:
    body = best_text(parse(mail_with_winmail(winmail_with_rtf(compress(PLAIN_RTF)))))
    assert body.text.splitlines() == [
        "Summary: meter reads missing for MPAN 1052601815905",
        "Impact: 40 sites at the café unbilled, €2,000 a day",
        "",
        "Kind regards",
        "Jo Bloggs",
    ]
    assert body.source == "plain"
    assert "body read from winmail.dat (rich text)" in body.problems


def test_html_carried_in_rtf_reads_as_text_without_tags_or_entities() -> None:
    text = tnef_body(winmail_with_rtf(compress(HTML_IN_RTF))).rtf
    assert text is not None
    assert "<p>" not in text and "margin" not in text
    assert text.splitlines() == [
        "Summary: DIP rejects IF-041",
        "MPAN\xa01052601815905 rejected & resent",
    ]


def test_the_rtf_code_page_decodes_its_escapes() -> None:
    cyrillic = rb"{\rtf1\ansi\ansicpg1251\deff0 \'cf\'f0\'e8\'e2\'e5\'f2\par}"
    assert rtf_body_text(compress(cyrillic)) == "Привет"


def test_uncompressed_rtf_in_the_same_property_is_read_too() -> None:
    assert rtf_body_text(compress(PLAIN_RTF, compressed=False)) is not None


def test_a_corrupt_or_oversized_rtf_body_is_left_out_not_raised() -> None:
    good = compress(PLAIN_RTF)
    flipped = good[:20] + bytes([good[20] ^ 0xFF]) + good[21:]  # the CRC no longer holds
    assert rtf_body_text(flipped) is None
    assert rtf_body_text(good[:10]) is None  # shorter than its header
    assert rtf_body_text(good[: len(good) // 2]) is None  # cut short
    claims_huge = good[:4] + struct.pack("<I", 512 * 1024 * 1024) + good[8:]
    assert rtf_body_text(claims_huge) is None  # says it expands to 512 MB: not expanded
    assert rtf_body_text(b"\x00" * (MAX_COMPRESSED_RTF_BYTES + 1)) is None
    empty = best_text(parse(mail_with_winmail(winmail_with_rtf(flipped))))
    assert (empty.text, empty.source) == ("", "none")


def most_expanding(size: int) -> bytes:
    """A compressed RTF stream of ``size`` bytes that expands as far as the format allows
    (every token copies 17 bytes), built by hand: the library's compressor takes minutes."""
    body = bytearray()
    written = 207  # the initial dictionary's length (MS-OXRTFCP)
    while len(body) + 17 <= size - 16:
        body.append(0xFF)  # eight references follow
        for _ in range(8):
            offset = (written - 100) % 4096  # never the write position: never the end mark
            body += struct.pack(">H", offset << 4 | 15)
            written += 17
    header = struct.pack("<II", len(body) + 12, len(body) // 17 * 136) + b"LZFu"
    return header + struct.pack("<I", crc32(bytes(body))) + bytes(body)


def test_the_most_a_message_can_make_us_expand_reads_in_bounded_time() -> None:
    compressed = most_expanding(MAX_COMPRESSED_RTF_BYTES)
    started = time.perf_counter()
    text = rtf_body_text(compressed)
    took = time.perf_counter() - started
    assert text is None or len(text) <= MAX_RTF_BYTES
    assert took < 20, took  # a bound on the worst input, not a benchmark (~1 s here)
    assert rtf_body_text(most_expanding(MAX_COMPRESSED_RTF_BYTES + 64)) is None  # not tried
