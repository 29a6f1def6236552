"""analyse(): the `inspect --json` result on hand-built messages, and its refusals."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parsers.analysis import Analysis, AnalysisOptions, analyse
from parsers.mime import Limits

DESIGN_KEYS = {
    "message_id", "from", "to", "subject", "date", "kind", "references",
    "external_references", "reply_text", "fields", "mpans", "transaction_ids", "mpids",
    "error_codes", "interface_ids", "timestamps", "evidence", "problems",
}  # fmt: skip
VALID_CORE = "1052601815905"
OTHER_CORE = "1012345678908"


def mail(
    body: str = "Summary: DIP rejects IF-041\nImpact: 200 customers unbilled\n",
    *,
    subject: str = "DIP rejects IF-041",
    headers: str = "",
    content_type: str = "text/plain; charset=utf-8",
    sender: str = "Ops Team <ops@brightenergy.example>",
) -> bytes:
    head = (
        f"From: {sender}\r\nTo: CPSD <cpsd@elexon.example>, desk@elexon.example\r\n"
        f"Cc: lead@brightenergy.example\r\nSubject: {subject}\r\n"
        "Date: Fri, 27 Nov 2026 09:15:00 +0000\r\nMessage-ID: <m1@brightenergy.example>\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: {content_type}\r\n{headers}"
    )
    return (head + "\r\n" + body.replace("\n", "\r\n")).encode()


def test_json_has_the_design_shape_and_serialises() -> None:
    result = analyse(mail(f"Summary: DIP rejects IF-041 for MPAN {VALID_CORE}\nImpact: none\n"))
    data = result.to_json()
    assert set(data) >= DESIGN_KEYS
    json.dumps(data)
    assert data["from"] == "ops@brightenergy.example"
    assert data["to"] == ["cpsd@elexon.example", "desk@elexon.example"]
    assert data["date"] == "2026-11-27T09:15:00Z"
    assert data["message_id"] == "<m1@brightenergy.example>"
    assert data["kind"] == "new"
    assert set(data["fields"]) == {"summary", "impact", "root_cause", "priority"}
    assert data["mpans"][0] == {
        "core": VALID_CORE, "distributor_id": "10", "valid": True, "problem": None,
    }  # fmt: skip
    assert "IF-041" in data["interface_ids"]
    assert result.cc == ("lead@brightenergy.example",)


@pytest.mark.parametrize(
    ("subject", "headers", "kind"),
    [
        ("FW: DIP down", "", "forward"),
        ("Fwd: DIP down", "", "forward"),
        ("WG: DIP down", "", "forward"),
        ("TR: DIP down", "", "forward"),
        ("VS: DIP down", "", "forward"),
        ("Doorst: DIP down", "", "forward"),
        ("[EXTERNAL] fw: DIP down", "", "forward"),
        ("RE: DIP down", "", "reply"),
        ("AW: DIP down", "", "reply"),
        ("SV: DIP down", "", "reply"),
        ("Antw: DIP down", "", "reply"),
        ("R: DIP down", "", "reply"),
        ("Re[2]: DIP down", "", "reply"),
        ("[EXTERNAL] RE: FW: DIP down", "", "reply"),
        ("DIP down", "In-Reply-To: <x@elexon.example>\r\n", "reply"),
        ("DIP down", "References: <x@elexon.example>\r\n", "reply"),
        ("DIP down", "", "new"),
        ("Reading the DIP docs", "", "new"),
        ("Out of office", "Auto-Submitted: auto-replied\r\n", "auto_reply"),
    ],
)
def test_kind(subject: str, headers: str, kind: str) -> None:
    assert analyse(mail(subject=subject, headers=headers)).kind == kind


BOUNCE = b"""From: MAILER-DAEMON@mx.brightenergy.example
To: cpsd@elexon.example
Subject: Undelivered Mail Returned to Sender
Content-Type: multipart/report; report-type=delivery-status; boundary="r"

--r
Content-Type: text/plain

Delivery to ops@brightenergy.example failed permanently.
--r
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.brightenergy.example

Final-Recipient: rfc822; ops@brightenergy.example
Action: failed
Status: 5.1.1
--r--
"""


def test_bounce_kind_wins() -> None:
    result = analyse(BOUNCE, envelope_from="")
    assert result.kind == "bounce" and result.bounce is not None
    assert result.to_json()["bounce"]["permanent"] is True


REPLY = f"""The MPAN is {VALID_CORE}, rejected at 27/11/2026 09:00.

On Thu, 26 Nov 2026 at 10:00, CPSD <cpsd@elexon.example> wrote:
> Which MPAN? Earlier you gave {OTHER_CORE} on 20/11/2026 08:00.
> Ref: CPSD-000123
"""


def test_reply_facts_come_from_the_new_text_but_references_from_everything() -> None:
    result = analyse(mail(REPLY, subject="RE: DIP rejects IF-041"))
    assert result.kind == "reply"
    assert result.reply_text.startswith("The MPAN is") and "Which MPAN" not in result.reply_text
    assert [m.core for m in result.mpans] == [VALID_CORE]
    assert result.timestamps == (datetime(2026, 11, 27, 9, 0, tzinfo=UTC),)
    assert result.references == ("CPSD-000123",)  # our watermark, quoted
    assert result.problems == ()  # completeness is for new cases only


def test_subject_references() -> None:
    result = analyse(mail(subject="RE: [CPSD-000123] DIP", body="thanks"))
    assert result.subject_references == ("CPSD-000123",)
    assert result.references == ("CPSD-000123",)


HTML_TABLE = f"""<html><body><p class=MsoNormal>Dear CPSD,</p>
<table class=MsoTableGrid><tr><td><p class=MsoNormal><b>Summary</b></p></td>
<td><p class=MsoNormal>Settlement flows rejected by the DIP since the release</p></td></tr>
<tr><td><p>Impact</p></td><td><p>200 customers cannot be billed</p></td></tr>
<tr><td><p>Priority</p></td><td><p>P2</p></td></tr>
<tr><td><p>MPAN</p></td><td><p>{VALID_CORE}<br>{OTHER_CORE}</p></td></tr>
</table></body></html>"""


def test_html_only_outlook_table() -> None:
    result = analyse(mail(HTML_TABLE, content_type="text/html; charset=utf-8"))
    assert result.body_source == "html"
    assert result.fields.summary == "Settlement flows rejected by the DIP since the release"
    assert result.fields.impact == "200 customers cannot be billed"
    assert result.fields.priority == "P2"
    assert {m.core for m in result.mpans} == {VALID_CORE, OTHER_CORE}


def test_22_digit_supply_number() -> None:
    supply = "000393100" + VALID_CORE  # MHHS top line (profile class, SSC, tariff) + core
    result = analyse(mail(f"Summary: meter issue\nSupply number: {supply}\n"))
    assert [(m.core, m.valid) for m in result.mpans] == [(VALID_CORE, True)]
    assert result.mpans[0].to_json()["supply_number"] == supply


FORWARD = f"""From: Ops <ops@brightenergy.example>
To: cpsd@elexon.example
Subject: FW: DIP rejection
Message-ID: <outer@brightenergy.example>
Content-Type: multipart/mixed; boundary="outer"

--outer
Content-Type: text/plain

See the DCC's message below.
--outer
Content-Type: message/rfc822

From: Mallory <mallory@other-party.example>
Message-ID: <inner@other-party.example>
In-Reply-To: <stolen@elexon.example>
Subject: DIP rejection
Content-Type: multipart/mixed; boundary="inner"

--inner
Content-Type: text/plain

MPAN {VALID_CORE} rejected; your case CPSD-000777.
--inner
Content-Type: application/pdf
Content-Disposition: attachment; filename="portal.pdf"
Content-Transfer-Encoding: base64

JVBERi0xLjQK
--inner--
--outer--
""".encode()


def test_forward_counts_inner_body_but_never_inner_headers() -> None:
    result = analyse(FORWARD)
    assert result.kind == "forward"
    assert result.message_id == "<outer@brightenergy.example>"
    assert result.from_address == "ops@brightenergy.example"
    assert result.in_reply_to_ids == ()
    assert result.references == ("CPSD-000777",)
    assert [m.core for m in result.mpans] == [VALID_CORE]
    assert [(e.filename, e.from_forward) for e in result.evidence] == [
        ("DIP rejection.eml", False),
        ("portal.pdf", True),
    ]


def test_forward_as_attachment_with_mirrored_subject() -> None:
    raw = FORWARD.replace(b"Subject: FW: DIP rejection", b"Subject: DIP rejection")
    assert analyse(raw).kind == "forward"


@pytest.mark.parametrize(
    "raw",
    [
        b"From: a@b.example\r\n" + b"X-H: v\r\n" * 50_000 + b"\r\nbody",
        b"From: a@b.example\r\nTo: "
        + b", ".join(b"u%d@x.example" % i for i in range(20_000))
        + b"\r\n\r\nx",
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + b"--b\r\n\r\nx\r\n" * 20_000,
    ],
    ids=["50k-headers", "20k-recipients", "20k-parts"],
)
def test_refused_hostile_message_still_gives_an_analysis(raw: bytes) -> None:
    result = analyse(raw)
    assert result.message is None and result.kind == "new"
    assert result.parse_problems
    json.dumps(result.to_json())


def test_oversized_message_is_refused_by_the_limits() -> None:
    result = analyse(mail("x" * 5000), AnalysisOptions(limits=Limits(max_bytes=1000)))
    assert result.message is None and "limit" in result.parse_problems[0]


@pytest.mark.parametrize(
    "date", ["31 Feb 99999 25:61 +9999", "garbage", "Fri, 27 Nov 2026 09:15:00 +9999", ""]
)
def test_garbage_date_is_none(date: str) -> None:
    raw = mail().replace(b"Fri, 27 Nov 2026 09:15:00 +0000", date.encode())
    assert analyse(raw).date is None


def test_subject_is_decoded_and_cleaned() -> None:
    raw = mail(subject="=?utf-8?q?hello=0D=0ABcc:_victim=40evil.example?=")
    assert analyse(raw).subject == "hello Bcc: victim@evil.example"


def test_sender_problems_are_reported() -> None:
    raw = mail(sender="alice@example.org)<bob@example.org>")
    result = analyse(raw)
    assert result.from_address is None and result.sender_problem
    assert any(p.startswith("sender:") for p in result.parse_problems)


def test_own_domain_is_flagged() -> None:
    raw = mail(headers="In-Reply-To: <abc@cpsd.elexon.example>\r\n")
    raw = raw.replace(b"<m1@brightenergy.example>", b"<m2@cpsd.elexon.example>")
    result = analyse(raw, AnalysisOptions(own_domains=frozenset({"cpsd.elexon.example"})))
    assert result.own_thread_ids == ("<abc@cpsd.elexon.example>",)
    assert any("own domain" in p for p in result.parse_problems)


def test_completeness_problems_for_a_thin_new_case() -> None:
    result = analyse(mail("help"))
    assert result.kind == "new" and len(result.problems) >= 3


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_analyse_never_raises_on_arbitrary_bytes(raw: bytes) -> None:
    result = analyse(raw)
    assert isinstance(result, Analysis)
    json.dumps(result.to_json())


MESSAGE_PIECES = st.sampled_from(
    [
        b"From: a@b.example\r\n", b"Subject: =?utf-8?q?=00=0A?=\r\n", b"Content-Type: multipart/mixed; boundary=b\r\n",
        b"Content-Type: text/html; charset=utf-7\r\n", b"Content-Transfer-Encoding: base64\r\n",
        b"\r\n", b"--b\r\n", b"--b--\r\n", b"<table><tr><td>x", b"> quoted\r\n", b"On x wrote:\r\n",
        b"Content-Type: message/rfc822\r\n", b"Content-Disposition: attachment; filename*0*=x''%FF\r\n",
        b"SGVsbG8=\r\n", b"\xff\xfe\x00", b"Date: 31 Feb 99999\r\n", b"In-Reply-To: <a@b>\r\n",
    ]
)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(MESSAGE_PIECES, max_size=40))
def test_analyse_never_raises_on_mail_shaped_bytes(pieces: list[bytes]) -> None:
    result = analyse(b"".join(pieces))
    json.dumps(result.to_json())
