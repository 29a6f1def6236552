"""Attachments as evidence: names (B34, B36, B39), forwards (B18), winmail.dat, bounds."""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest

from parsers.evidence import (
    clean_filename,
    evidence_files,
    find_evidence,
    forwarded_texts,
    tnef_names,
)
from tests.parsers.fixtures_mail import tnef_object, winmail

PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def parse(raw: bytes) -> EmailMessage:
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(msg, EmailMessage)
    return msg


def mixed(*parts: bytes) -> bytes:
    body = b"".join(b"--b\r\n" + p + b"\r\n" for p in parts)
    return (
        b'From: a@b.example\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n" + body + b"--b--\r\n"
    )


def attachment(
    disposition: bytes, data: bytes, ctype: bytes = b"application/octet-stream"
) -> bytes:
    return (
        b"Content-Type: " + ctype + b"\r\nContent-Disposition: " + disposition + b"\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(data)
    )


def tnef(files: list[tuple[str, bytes]]) -> bytes:
    """A minimal winmail.dat: one attachment per file."""
    objects: list[bytes] = []
    for filename, data in files:
        objects += [
            tnef_object(2, 0x9002, 0x0006, b"\x00" * 14),  # attachment rendering: starts one
            tnef_object(2, 0x8010, 0x0001, filename.encode() + b"\x00"),
            tnef_object(2, 0x800F, 0x0006, data),
        ]
    return winmail(*objects)


def test_attachment_facts() -> None:
    msg = parse(
        mixed(attachment(b'attachment; filename="dip-status.pdf"', PDF, b"application/pdf"))
    )
    (item,) = find_evidence(msg)
    assert item.to_json() == {
        "filename": "dip-status.pdf",
        "content_type": "application/pdf",
        "size": len(PDF),
        "sha256": hashlib.sha256(PDF).hexdigest(),
        "sniffed_type": "application/pdf",
        "inline": False,
        "from_forward": False,
        "contents": [],
    }


@pytest.mark.parametrize(
    ("disposition", "expected"),
    [
        (b"attachment; filename*=utf-8''%E2%82%AC-report.pdf", "€-report.pdf"),
        (b"attachment; filename*0*=utf-8''%E2%82; filename*1*=%AC.txt", "€.txt"),
        (b"attachment; filename*1=b.txt; filename*0=a", "ab.txt"),
        (b'attachment; filename="=?utf-8?B?w6TDtsO8LnBkZg==?="', "äöü.pdf"),
        (b'attachment; filename="=?iso-8859-1?Q?r=E9sum=E9.pdf?="', "résumé.pdf"),
    ],
)
def test_rfc2231_and_rfc2047_names(disposition: bytes, expected: str) -> None:
    (item,) = find_evidence(parse(mixed(attachment(disposition, b"x"))))
    assert item.filename == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("/etc/passwd", "passwd"),
        ("C:\\Windows\\system32\\evil.dll", "evil.dll"),
        ("C:evil.txt", "evil.txt"),
        ("a\x00b.txt", "ab.txt"),
        ("..", "attachment-3"),
        ("...", "attachment-3"),
        ("", "attachment-3"),
        (None, "attachment-3"),
        ("invoice\u202efdp.exe", "invoicefdp.exe"),
        ("line\r\nbreak.txt", "line break.txt"),
        ("zero\u200bwidth.txt", "zerowidth.txt"),
        ("x" * 300 + ".pdf", "x" * 196 + ".pdf"),
    ],
)
def test_clean_filename(raw: str | None, expected: str) -> None:
    assert clean_filename(raw, 3) == expected


def test_traversal_name_in_a_real_header_is_cleaned() -> None:
    disposition = b"attachment; filename*=utf-8''..%2F..%2Fetc%2Fpasswd"
    (item,) = find_evidence(parse(mixed(attachment(disposition, b"root:x"))))
    assert item.filename == "passwd"


def test_declared_type_is_kept_and_sniffed_type_told_apart() -> None:
    (item,) = find_evidence(
        parse(mixed(attachment(b'attachment; filename="pic.png"', PDF, b"image/png")))
    )
    assert (item.content_type, item.sniffed_type) == ("image/png", "application/pdf")


def test_inline_image_is_told_apart() -> None:
    image = (
        b"Content-Type: image/png\r\nContent-ID: <logo@x>\r\nContent-Disposition: inline\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(PNG)
    )
    items = find_evidence(parse(mixed(image, attachment(b'attachment; filename="a.pdf"', PDF))))
    assert [(e.filename, e.inline) for e in items] == [("attachment-1", True), ("a.pdf", False)]


FORWARD = b"""From: ops@brightenergy.example
To: cpsd@elexon.example
Subject: FW: DIP rejection
Content-Type: multipart/mixed; boundary="outer"

--outer
Content-Type: text/plain

Forwarding what the DCC sent us.
--outer
Content-Type: message/rfc822

From: support@dcc.example
Message-ID: <inner@dcc.example>
Subject: DIP rejection for IF-041
Content-Type: multipart/mixed; boundary="inner"

--inner
Content-Type: text/plain

Transaction DIP-TX-7781 was rejected. Your case CPSD-000123.
--inner
Content-Type: application/pdf
Content-Disposition: attachment; filename="portal.pdf"
Content-Transfer-Encoding: base64

JVBERi0xLjQK
--inner--
--outer--
"""


def test_forwarded_message_and_its_attachment_are_evidence() -> None:
    msg = parse(FORWARD)
    items = find_evidence(msg)
    assert [(e.filename, e.content_type, e.from_forward) for e in items] == [
        ("DIP rejection for IF-041.eml", "message/rfc822", False),
        ("portal.pdf", "application/pdf", True),
    ]
    assert items[0].size > 100 and len(items[0].sha256) == 64
    assert items[1].sniffed_type == "application/pdf"


def test_forwarded_texts_carry_the_inner_body() -> None:
    texts = forwarded_texts(parse(FORWARD))
    assert len(texts) == 1 and "CPSD-000123" in texts[0]


def test_winmail_dat_lists_its_contents() -> None:
    data = tnef([("report.pdf", PDF), ("readings.csv", b"a,b\n")])
    part = attachment(b'attachment; filename="winmail.dat"', data, b"application/ms-tnef")
    (item,) = find_evidence(parse(mixed(part)))
    assert item.contents == ("report.pdf", "readings.csv")
    assert tnef_names(b"not tnef") == ()
    assert tnef_names(data[:40]) == ()  # truncated: best effort, no exception


def test_broken_base64_attachment_still_listed() -> None:
    part = (
        b'Content-Type: application/pdf\r\nContent-Disposition: attachment; filename="x.pdf"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBER!!i0xLjQK*\r\n"
    )
    (item,) = find_evidence(parse(mixed(part)))
    assert item.size > 0 and item.problem and "base64" in item.problem


def test_bounds_on_count_and_decoded_bytes() -> None:
    parts = [attachment(b'attachment; filename="f%d.bin"' % i, b"x" * 1000) for i in range(30)]
    msg = parse(mixed(*parts))
    assert len(find_evidence(msg, max_parts=5)) == 5
    items = find_evidence(msg, max_decoded_bytes=2500)
    assert len(items) == 30
    assert [e.sha256 != "" for e in items][:4] == [True, True, True, False]
    assert items[-1].problem == "not decoded: decoded-size budget used up"


def test_hostile_rfc2231_segments_are_bounded() -> None:
    segments = b"; ".join(b"filename*%d*=%%41" % i for i in range(10_000))
    msg = parse(mixed(attachment(b"attachment; " + segments, b"x")))
    started = time.perf_counter()
    (item,) = find_evidence(msg)
    assert time.perf_counter() - started < 0.5
    assert item.filename == "A" * 64
    assert item.problem is not None


def test_single_part_message_is_not_evidence() -> None:
    assert find_evidence(parse(b"From: a@b.example\r\n\r\nhello\r\n")) == []


def test_delivery_status_blocks_are_not_evidence() -> None:
    raw = b"""From: MAILER-DAEMON@x.example
Content-Type: multipart/report; report-type=delivery-status; boundary="r"

--r
Content-Type: text/plain

Delivery failed.
--r
Content-Type: message/delivery-status

Reporting-MTA: dns; x.example

Final-Recipient: rfc822; a@b.example
Action: failed
Status: 5.1.1
--r--
"""
    assert find_evidence(parse(raw)) == []


def test_named_inline_text_part_is_evidence() -> None:
    part = (
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Disposition: inline; filename*0*=utf-8''%E2%82%AC-readings; filename*1=.csv\r\n"
        b"\r\nmpan,read\r\n"
    )
    (item,) = find_evidence(parse(mixed(part)))
    assert (item.filename, item.content_type) == ("€-readings.csv", "text/plain")


def test_blank_names_on_body_parts_are_not_files() -> None:
    part = b'Content-Type: text/plain; name=" "\r\nContent-Disposition: inline\r\n\r\nmore body\r\n'
    assert find_evidence(parse(mixed(part))) == []


@pytest.mark.parametrize(
    ("charset", "name"),
    [
        ("GB2312", "电表读数报告.xls"),
        ("windows-1251", "Отчёт по счётчикам.pdf"),
        ("utf-8", "Zählerstände.pdf"),
    ],
)
def test_raw_8bit_filename_uses_the_declared_charset(charset: str, name: str) -> None:
    raw_name = name.encode("gb2312" if charset == "GB2312" else charset)
    raw = (
        b'From: a@b.example\r\nContent-Type: multipart/mixed; boundary="b"; charset="'
        + charset.encode()
        + b'"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b\r\n'
        b'Content-Type: application/octet-stream; name="' + raw_name + b'"\r\n'
        b'Content-Disposition: attachment; filename="' + raw_name + b'"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\neA==\r\n--b--\r\n"
    )
    (item,) = find_evidence(parse(raw))
    assert item.filename == name


def test_gb2312_labelled_rfc2231_name_with_gbk_characters() -> None:
    quoted = "".join(f"%{b:02X}" for b in "镕钢报告.xls".encode("gbk"))
    disposition = f"attachment; filename*=gb2312''{quoted}".encode()
    (item,) = find_evidence(parse(mixed(attachment(disposition, b"x"))))
    assert item.filename == "镕钢报告.xls"


def test_uuencoded_file_in_the_text_is_evidence() -> None:
    data = PNG + bytes(range(200))
    lines = b"".join(binascii.b2a_uu(data[i : i + 45]) for i in range(0, len(data), 45))
    body = b"Screenshot follows.\n\nbegin 644 portal.png\n" + lines + b"`\nend\n"
    msg = parse(b"From: a@b.example\r\nContent-Type: text/plain\r\n\r\n" + body)
    (item,) = find_evidence(msg)
    assert (item.filename, item.size, item.sniffed_type) == ("portal.png", len(data), "image/png")
    assert evidence_files(msg) == [("portal.png", "application/octet-stream", data)]


def test_deeply_forwarded_long_message_is_hashed_within_a_line_budget() -> None:
    # Each forward is serialised for its hash, and a forward inside one again: 4 MB of
    # empty lines five forwards deep took 10 s (the generator writes line by line).
    raw = b"From: c@d.example\r\nSubject: data\r\n\r\n" + b"\n" * 600_000
    for _ in range(6):
        raw = b"From: a@b.example\r\nSubject: Fwd\r\nContent-Type: message/rfc822\r\n\r\n" + raw
    msg = parse(raw)
    started = time.perf_counter()
    items = find_evidence(msg)
    assert time.perf_counter() - started < 0.6
    assert len(items) == 5 and len(items[0].sha256) == 64
    assert items[-1].sha256 == "" and "not hashed" in (items[-1].problem or "")


def test_forward_with_a_megabyte_subject_is_listed_fast() -> None:
    # fuzz: a forwarded message whose Subject was 1 MB ("On On On ...") took over 12 s:
    # its Subject parsed (superlinear even for unstructured text), then folded to hash it
    inner = b"From: c@d.example\r\nSubject: x" + b" On" * 300_000 + b"\r\n\r\nhello\r\n"
    raw = mixed(b"Content-Type: message/rfc822\r\n\r\n" + inner)
    msg = parse(raw)
    started = time.perf_counter()
    items = find_evidence(msg)
    assert time.perf_counter() - started < 0.5
    assert len(items) == 1 and items[0].filename.startswith("x On On")
    assert items[0].sha256 == "" and "not hashed" in (items[0].problem or "")
