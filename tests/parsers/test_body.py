"""Body selection and decoding on hand-built messages (B15, B31-B33, B40)."""

from __future__ import annotations

import base64
import time
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

import pytest

from parsers.body import best_text, decode_part, html_to_text, part_info
from parsers.charsets import decode_bytes
from parsers.tnef import tnef_body
from parsers.uuencode import decode_uu, uuencoded_blocks
from tests.parsers.fixtures_mail import tnef_object, uuencode, winmail


def parse(raw: bytes) -> EmailMessage:
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(msg, EmailMessage)
    return msg


def single(
    body: bytes, ctype: str = "text/plain; charset=utf-8", cte: str = "8bit"
) -> EmailMessage:
    head = f"From: a@b.example\r\nContent-Type: {ctype}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n"
    return parse(head.encode() + body)


ALTERNATIVE = b"""From: a@b.example
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain; charset=us-ascii

Plain wins.
--alt
Content-Type: text/html; charset=us-ascii

<p>HTML loses.</p>
--alt--
"""

OUTLOOK_TABLE = """<html><head><style>p.MsoNormal {margin:0}</style></head><body>
<p class=MsoNormal>Hello CPSD,<o:p></o:p></p>
<table class=MsoTableGrid border=1 cellspacing=0 cellpadding=0>
<tr><td width=180 valign=top><p class=MsoNormal><b>Summary</b><o:p></o:p></p></td>
<td width=400 valign=top><p class=MsoNormal>DIP rejects IF-041 flows<o:p></o:p></p></td></tr>
<tr><td><p class=MsoNormal><b>Impact</b></p></td><td><p class=MsoNormal>200 customers unbilled</p>
<p class=MsoNormal>since Monday</p></td></tr>
<tr><td><p class=MsoNormal><b>MPAN</b></p></td><td><p class=MsoNormal>1012345678901<br>1098765432109</p></td></tr>
<tr><td>Priority</td><td>P2</td></tr>
</table>
<p class=MsoNormal>Regards,<br>Jo</p></body></html>"""


def test_plain_is_preferred_over_html() -> None:
    body = best_text(parse(ALTERNATIVE))
    assert (body.source, body.text.strip()) == ("plain", "Plain wins.")


def test_html_only_outlook_table_rows_become_lines() -> None:
    msg = single(OUTLOOK_TABLE.encode(), "text/html; charset=utf-8")
    body = best_text(msg)
    assert body.source == "html"
    assert body.html is not None and "<table" in body.html
    lines = body.text.splitlines()
    assert "Summary | DIP rejects IF-041 flows" in lines
    assert "Impact | 200 customers unbilled since Monday" in lines
    assert "MPAN | 1012345678901 1098765432109" in lines
    assert "Priority | P2" in lines
    assert "Hello CPSD," in lines


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        (
            "<table><tr><th>Label</th><th>Value</th></tr><tr><td>a</td><td>b</td></tr></table>",
            "Label | Value\na | b",
        ),
        ("<table><tr><td>a<td>b<tr><td>c<td>d</table>", "a | b\nc | d"),  # no closing tags
        ("<table><tr><td></td><td>x</td><td></td></tr></table>", "x"),  # spacer cells
        (
            "<table><tr><td><table><tr><td>in1</td><td>in2</td></tr></table></td></tr></table>",
            "in1 | in2",
        ),
        ("<p>1. step one - see &lt;x&gt; &amp; more</p>", "1. step one - see <x> & more"),
        ("<p>a<br>b</p><blockquote>quoted</blockquote>", "a\nb\n\n> quoted"),
        ('<a href="https://x.example/">link text</a><img src="cid:1" alt="logo">', "link text"),
        ("<script>alert(1)</script><p>shown</p>", "shown"),
        ("<p>a&nbsp;b</p>", "a b"),
    ],
)
def test_html_to_text(html: str, expected: str) -> None:
    assert html_to_text(html) == expected


def test_utf8_label_on_latin1_body_is_rescued() -> None:
    msg = single("Caf\xe9 cr\xe8me: the meter reads \xa3100".encode("latin-1"))
    body = best_text(msg)
    assert body.text == "Café crème: the meter reads £100"
    assert any("not valid utf-8" in p for p in body.problems)


@pytest.mark.parametrize("charset", ["x-unknown", "unknown-8bit", "no-such-charset", "utf-7"])
def test_unknown_or_refused_charsets_fall_back(charset: str) -> None:
    msg = single("Stra\xdfe 5".encode("cp1252"), f"text/plain; charset={charset}")
    assert best_text(msg).text == "Straße 5"


def test_utf7_html_is_never_interpreted() -> None:
    msg = single(b"+ADw-script+AD4-alert(1)+ADw-/script+AD4-", "text/html; charset=utf-7")
    body = best_text(msg)
    assert "<script" not in body.text
    assert "+ADw-script+AD4-" in body.text


def test_gb2312_label_decodes_gbk_characters() -> None:
    text = "测试邮件 鎔"  # the last character is GBK-only
    msg = single(text.encode("gb18030"), "text/plain; charset=gb2312")
    assert best_text(msg).text == text


def test_broken_base64_never_raises() -> None:
    msg = single(b"SGVsbG8g!!V29y\nbGQ", "text/plain; charset=utf-8", "base64")
    body = best_text(msg)
    assert body.text == "Hello World"
    assert any("base64" in p for p in body.problems)


def test_broken_quoted_printable_keeps_text() -> None:
    msg = single(
        b"Price =ZZ and =E2=82=AC5 and soft=\nbreak",
        "text/plain; charset=utf-8",
        "quoted-printable",
    )
    assert best_text(msg).text == "Price =ZZ and €5 and softbreak"


def test_nul_characters_are_removed() -> None:
    msg = single(b"a\x00b\r\nc")
    assert best_text(msg).text == "ab\nc"


def test_attached_text_and_forwarded_bodies_are_not_the_body() -> None:
    raw = b"""From: a@b.example
Content-Type: multipart/mixed; boundary="m"

--m
Content-Type: text/plain; charset=utf-8
Content-Disposition: attachment; filename="log.txt"

attached log
--m
Content-Type: message/rfc822

From: inner@c.example
Subject: inner

inner body
--m
Content-Type: text/html; charset=utf-8

<p>outer html</p>
--m--
"""
    body = best_text(parse(raw))
    assert (body.source, body.text) == ("html", "outer html")


def test_empty_plain_beside_html_uses_html() -> None:
    raw = ALTERNATIVE.replace(b"Plain wins.", b"   ")
    assert best_text(parse(raw)).text == "HTML loses."


def test_multipart_without_boundary_is_read_as_text() -> None:
    raw = b"From: a@b.example\nContent-Type: multipart/mixed\n\njust text\n"
    body = best_text(parse(raw))
    assert body.text.strip() == "just text"


def test_no_text_part_gives_none() -> None:
    body = best_text(single(b"\x89PNG", "image/png"))
    assert (body.source, body.text) == ("none", "")


def test_body_is_bounded() -> None:
    body = best_text(single(b"x" * 50_000), max_chars=10_000)
    assert len(body.text) == 10_000
    assert any("truncated" in p for p in body.problems)


def test_decode_part_and_decode_bytes() -> None:
    part = single(b"caf\xc3\xa9")
    assert decode_part(part, 100) == "café"
    assert decode_part(part, 3) == "caf"
    assert decode_bytes(b"\xff\xfe\xfd", None)[0]  # something, never an exception


def test_oversized_parameter_header_is_read_without_the_stdlib_parser() -> None:
    segments = "; ".join(f"filename*{i}*=%41" for i in range(10_000))
    msg = parse(
        f"Content-Type: text/plain\nContent-Disposition: attachment; {segments}\n\nx".encode()
    )
    info = part_info(msg)
    assert info.disposition == "attachment"
    assert info.filename == "A" * 64
    assert info.problem is not None


APPLE_SPLIT = b"""From: ops@party.example
Content-Type: multipart/mixed; boundary="split"

--split
Content-Type: text/plain; charset=us-ascii

Summary: reads rejected since Monday, screenshot below.

--split
Content-Type: application/pdf; name="portal.pdf"
Content-Disposition: inline; filename="portal.pdf"
Content-Transfer-Encoding: base64

JVBERi0xLjQK

--split
Content-Type: text/plain; charset=us-ascii

MPAN: 1012345678901 is the second affected supply.
--split
Content-Type: text/plain; charset=us-ascii
Content-Disposition: inline; filename="notes.txt"

a named text part is a file, not more body
--split--
"""


def test_text_after_an_inline_attachment_is_still_body() -> None:
    body = best_text(parse(APPLE_SPLIT))
    assert "screenshot below" in body.text and "1012345678901" in body.text
    assert "named text part" not in body.text


def test_alternative_parts_are_never_joined() -> None:
    body = best_text(parse(ALTERNATIVE))
    assert "HTML loses" not in body.text


def test_continuations_are_bounded() -> None:
    parts = b"".join(b"--m\nContent-Type: text/plain\n\npart %d\n" % i for i in range(200))
    raw = b'From: a@b.example\nContent-Type: multipart/mixed; boundary="m"\n\n' + parts + b"--m--\n"
    text = best_text(parse(raw)).text
    assert "part 0" in text and "part 20" in text and "part 21" not in text


def test_message_that_is_only_a_forwarded_message_is_read_through() -> None:
    raw = b"""From: relay@party.example
Subject: forwarded message from the desk
Content-Type: message/rfc822

From: desk@other.example
Subject: DIP outage
Content-Type: text/plain; charset=utf-8

Transaction ID: T-IF-041-1009012345-REGS-20261127-0123456789ABCDEF
"""
    body = best_text(parse(raw))
    assert body.source == "plain" and "T-IF-041-1009012345" in body.text


def test_named_text_parts_without_disposition_give_the_body() -> None:
    raw = b"""From: a@b.example
Content-Type: multipart/mixed; boundary="n"

--n
Content-Type: text/plain; name="message.txt"

Impact: no reads settle for 40 sites
--n
Content-Type: image/png; name="x.png"
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--n--
"""
    body = best_text(parse(raw))
    assert (body.source, body.text.strip()) == ("plain", "Impact: no reads settle for 40 sites")


def tnef_with_body(text: bytes) -> bytes:
    """A minimal winmail.dat holding only a message body (attBody)."""
    return winmail(tnef_object(1, 0x800C, 0x0002, text))


def test_body_only_inside_winmail_dat_is_read() -> None:
    data = base64.encodebytes(tnef_with_body(b"Summary: meter reads missing\r\n\x00"))
    raw = (
        b'From: ops@party.example\r\nContent-Type: application/ms-tnef; name="winmail.dat"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + data
    )
    body = best_text(parse(raw))
    assert body.text.strip() == "Summary: meter reads missing"
    assert "body read from winmail.dat" in body.problems
    assert tnef_body(b"not tnef") == (None, None, None)


def test_winmail_dat_is_not_read_when_there_is_a_text_body() -> None:
    data = base64.encodebytes(tnef_with_body(b"inside"))
    raw = (
        b'From: a@b.example\r\nContent-Type: multipart/mixed; boundary="t"\r\n\r\n'
        b"--t\r\nContent-Type: text/plain\r\n\r\noutside\r\n--t\r\n"
        b"Content-Type: application/ms-tnef\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + data
        + b"--t--\r\n"
    )
    assert best_text(parse(raw)).text.strip() == "outside"


def test_uuencoded_file_is_taken_out_of_the_body() -> None:
    file = uuencode("dip-status.pdf", b"%PDF-1.4\n" + bytes(range(256)) * 4)
    body = best_text(single(b"Status report attached.\n\n" + file + b"\nRegards, Jo\n"))
    assert body.text.split() == ["Status", "report", "attached.", "Regards,", "Jo"]


@pytest.mark.parametrize(
    "document",
    [
        b"<html><body><p>Reads <b>missing</b> since 09:00</p></body></html>",
        b'\xef\xbb\xbf<?xml version="1.0"?>\n<!DOCTYPE html>\n<html><body>'
        b"<div>Reads missing since 09:00</div></body></html>\n",
    ],
)
def test_html_document_in_a_text_part_is_converted(document: bytes) -> None:
    body = best_text(single(document, "text/plain; charset=utf-8"))
    assert body.source == "html"
    assert " ".join(body.text.split()) == "Reads missing since 09:00"


def test_text_that_only_mentions_markup_stays_text() -> None:
    text = b"Please remove the <html> tag from the template; it breaks the portal."
    body = best_text(single(text))
    assert (body.source, body.text) == ("plain", text.decode())


def test_uuencoded_file_cut_short_is_still_taken_out() -> None:
    file = uuencode("log.bin", bytes(range(256)) * 8)
    cut = file[: len(file) // 2]  # the part was truncated before the "end" line
    body = best_text(single(b"Log follows.\n" + cut))
    assert body.text.strip() == "Log follows."
    (block,) = uuencoded_blocks(cut.decode())
    assert not block.complete and decode_uu(block.lines, 10_000)


# --- html.parser rescans to the end of the text from every unterminated construct ---


@pytest.mark.parametrize(
    "unit",
    ["<x ", "<a\n", "<a b='", "<a b=c", "<!--", "<![CDATA[", "<?", "<br", "<a b='x>", "<!--x>"],
)
def test_unterminated_markup_converts_in_linear_time(unit: str) -> None:
    # 40 KB of "<x " took 16 s, 600 KB of "<!--" 220 s (Python 3.11's html.parser)
    html = "<html><body><p>Meter 1052601815905</p>" + unit * (60_000 // len(unit))
    started = time.perf_counter()
    text = html_to_text(html)
    assert time.perf_counter() - started < 0.5
    assert text.startswith("Meter 1052601815905")


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<p>a</p><!-- x <b> y --><p>b</p>", "a\n\nb"),
        ("<p>5 < 6 and <b>bold</b></p>", "5 < 6 and bold"),
        # html.parser showed the rest as raw text, "<p>b" included
        ("<p>a</p><!-- never closed <p>b</p>", "a\n\n<!-- never closed\n\nb"),
        ('<p title="x > y">a</p><p>b <i', "a\n\nb <i"),
        ("<!--[if gte mso 9]><xml><o:x>1</o:x></xml><![endif]--><p>a</p>", "a"),
        ("<p>a<![if !supportLists]>-<![endif]>b</p>", "a-b"),
    ],
)
def test_defused_markup_reads_as_it_did(html: str, expected: str) -> None:
    assert html_to_text(html) == expected


def test_html_body_with_too_many_tags_converts_a_prefix() -> None:
    # 600 KB of "<?" (the costliest markup per character) took 2.6 s to convert
    msg = single(b"<html><body><p>first</p>" + b"<?" * 290_000, "text/html")
    started = time.perf_counter()
    body = best_text(msg)
    assert time.perf_counter() - started < 0.6
    assert body.text.startswith("first")
    assert any("tags and entities" in p for p in body.problems)
