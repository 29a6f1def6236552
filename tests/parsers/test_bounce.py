"""Bounce recognition (reliability.md B57): who failed, why, and which of our messages."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parsers.bounce import Bounce, BounceRecipient, parse_bounce
from tests.parsers import fixtures_mail as fx

# (builder, address, status, action, permanent, reporting_mta)
BOUNCES: list[tuple[Callable[[], bytes], str, str, str, bool, str | None]] = [
    (fx.postfix_dsn, "meter.ops@supplier-a.example", "5.1.1", "failed", True, "mx1.elexon.example"),
    (fx.delayed_dsn, "settlement@dcc-b.example", "4.4.1", "delayed", False, "mx1.elexon.example"),
    (
        fx.office365_ndr,
        "settlement@supplier-b.example",
        "5.1.10",
        "failed",
        True,
        "DB9PR01MB0001.eurprd01.prod.outlook.example",
    ),
    (fx.exchange_legacy_ndr, "j.smith@dcc-c.example", "5.1.1", "failed", True, "dcc-c.example"),
    (
        fx.qmail_bounce,
        "readings@supplier-c.example",
        "5.1.1",
        "failed",
        True,
        "mail.supplier-c.example",
    ),
    (fx.exim_bounce, "agent@mop-d.example", "5.2.2", "failed", True, "relay.mop-d.example"),
    (fx.gmail_bounce, "ops.team@nhh-e.example", "5.1.1", "failed", True, "googlemail.com"),
]


@pytest.mark.parametrize(
    ("build", "address", "status", "action", "permanent", "mta"),
    BOUNCES,
    ids=[b[0].__name__ for b in BOUNCES],
)
def test_bounce_shapes(
    build: Callable[[], bytes],
    address: str,
    status: str,
    action: str,
    permanent: bool,
    mta: str | None,
) -> None:
    bounce = parse_bounce(fx.parse(build()))
    assert bounce is not None
    assert [r.address for r in bounce.recipients] == [address]
    first = bounce.recipients[0]
    assert (first.status, first.action) == (status, action)
    assert bounce.permanent is permanent
    assert bounce.original_message_id == fx.OUR_ID
    assert bounce.reporting_mta == mta
    assert address in bounce.reason and status in bounce.reason
    assert first.diagnostic and len(first.diagnostic) <= 500


# (builder, why it is not a bounce)
NOT_BOUNCES: list[tuple[Callable[[], bytes], str]] = [
    (fx.mdn_read_receipt, "a read receipt is a report, not a failure"),
    (fx.success_dsn, "Action: delivered is a success report"),
    (fx.outlook_oof_english, "out-of-office"),
    (fx.outlook_oof_german, "out-of-office"),
    (fx.list_message, "list mail"),
    (fx.human_mentions_undeliverable, "a person quoting bounce words"),
    (fx.human_forwards_bounce, "a person forwarding someone else's bounce"),
    (fx.human_with_suppress_header, "plain Outlook mail"),
]


@pytest.mark.parametrize(("build", "why"), NOT_BOUNCES, ids=[n[0].__name__ for n in NOT_BOUNCES])
def test_not_bounces(build: Callable[[], bytes], why: str) -> None:
    assert parse_bounce(fx.parse(build())) is None, why


HUMAN_BOUNCE_WORDS = [
    {"Subject": "Undeliverable: my last mail"},  # bounce subject, human sender, no notice
    {"Subject": "Returned mail: see transcript", "Return-Path": "<alex@supplier-a.example>"},
]


@pytest.mark.parametrize("headers", HUMAN_BOUNCE_WORDS)
def test_bounce_words_from_a_person_are_not_enough(headers: dict[str, str]) -> None:
    body = "Hi, my mail to meter.ops@supplier-a.example was undeliverable (550 5.1.1).\n"
    assert parse_bounce(fx.parse(fx.plain(headers, body))) is None


def test_envelope_null_sender_and_notice() -> None:
    body = (
        "Your message could not be delivered to the following recipients:\n\n"
        "  ops@dcc-b.example: 550 5.1.1 mailbox unavailable\n"
    )
    raw = fx.plain({"From": "Delivery Robot <robot@relay.example>", "Subject": "Notice"}, body)
    assert parse_bounce(fx.parse(raw)) is None  # no machine signal in the headers
    bounce = parse_bounce(fx.parse(raw), envelope_from="")
    assert bounce is not None
    assert bounce.recipients[0].address == "ops@dcc-b.example"
    assert bounce.recipients[0].status == "5.1.1"


def test_arf_feedback_report() -> None:
    bounce = parse_bounce(fx.parse(fx.arf_complaint()))
    assert bounce is not None
    assert bounce.recipients == (
        BounceRecipient("jane.doe@isp.example", None, "complained", "feedback-type: abuse"),
    )
    assert bounce.original_message_id == fx.OUR_ID
    assert bounce.permanent


def _ses_mail(kind: str, sender: str = "AWS Notifications <no-reply@sns.amazonaws.com>") -> bytes:
    event: dict[str, object] = {
        "notificationType": kind,
        "mail": {"commonHeaders": {"messageId": fx.OUR_ID}},
    }
    if kind == "Bounce":
        event["bounce"] = {
            "bounceType": "Transient",
            "bouncedRecipients": [
                {
                    "emailAddress": "ops@dcc-b.example",
                    "action": "delayed",
                    "status": "4.2.2",
                    "diagnosticCode": "smtp; 452 4.2.2 mailbox full",
                }
            ],
            "reportingMTA": "dsn; a1-2.smtp-out.eu-west-2.amazonses.com",
        }
    body = json.dumps({"Type": "Notification", "Message": json.dumps(event)})
    return fx.plain({"From": sender, "Subject": "AWS Notification Message"}, body)


def test_amazon_ses_json_notification() -> None:
    bounce = parse_bounce(fx.parse(_ses_mail("Bounce")))
    assert bounce is not None
    assert bounce.recipients[0] == BounceRecipient(
        "ops@dcc-b.example", "4.2.2", "delayed", "452 4.2.2 mailbox full"
    )
    assert bounce.permanent is False
    assert bounce.original_message_id == fx.OUR_ID
    assert bounce.reporting_mta == "a1-2.smtp-out.eu-west-2.amazonses.com"
    assert parse_bounce(fx.parse(_ses_mail("Delivery"))) is None
    # the same JSON pasted by a person into a question is not a bounce
    assert parse_bounce(fx.parse(_ses_mail("Bounce", "Alex <alex@supplier-a.example>"))) is None


def test_envelope_id_and_json() -> None:
    bounce = parse_bounce(fx.parse(fx.postfix_dsn()))
    assert bounce is not None
    assert bounce.envelope_id == "CPSD-000123-7"
    data = bounce.to_json()
    assert data["recipients"] == [
        {
            "address": "meter.ops@supplier-a.example",
            "status": "5.1.1",
            "action": "failed",
            "diagnostic": bounce.recipients[0].diagnostic,
        }
    ]
    assert data["original_message_id"] == fx.OUR_ID
    assert data["permanent"] is True
    assert set(data) >= {
        "recipients",
        "original_message_id",
        "reason",
        "permanent",
        "reporting_mta",
    }


def test_returned_original_as_message_rfc822() -> None:
    bounce = parse_bounce(fx.parse(fx.postfix_dsn(headers_only=False)))
    assert bounce is not None and bounce.original_message_id == fx.OUR_ID


def test_status_refined_from_diagnostic() -> None:
    raw = fx.postfix_dsn(status="5.0.0")
    bounce = parse_bounce(fx.parse(raw))
    assert bounce is not None and bounce.recipients[0].status == "5.1.1"


def test_multiple_recipients_mixed_outcome_is_permanent() -> None:
    raw = fx.postfix_dsn().replace(
        b"Final-Recipient: rfc822; meter.ops",
        b"Final-Recipient: rfc822; late@dcc-b.example\nAction: delayed\nStatus: 4.4.7\n\n"
        b"Final-Recipient: rfc822; meter.ops",
    )
    bounce = parse_bounce(fx.parse(raw))
    assert bounce is not None
    assert [(r.address, r.action) for r in bounce.recipients] == [
        ("late@dcc-b.example", "delayed"),
        ("meter.ops@supplier-a.example", "failed"),
    ]
    assert bounce.permanent
    assert "(+1 more)" in bounce.reason


def test_dsn_without_boundary_lines_still_parses() -> None:
    """A multipart/report whose boundary never appears (B15) is read as one text part."""
    raw = fx.postfix_dsn().replace(b"--4F2A.1769850902/mx1.elexon.example", b"")
    bounce = parse_bounce(fx.parse(raw))
    assert bounce is not None
    assert bounce.recipients[0].address == "meter.ops@supplier-a.example"
    assert bounce.recipients[0].status == "5.1.1"


def test_filter_wrapped_bounce_uses_the_inner_report() -> None:
    inner = fx.postfix_dsn().decode()
    raw = (
        "From: MAILER-DAEMON@filter.example\nTo: cpsd@elexon.example\n"
        "Subject: Returned mail\nMIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="w"\n\n--w\nContent-Type: text/plain\n\n'
        "The following addresses had permanent delivery errors\n\n--w\n"
        "Content-Type: message/rfc822\n\n" + inner + "\n--w--\n"
    )
    bounce = parse_bounce(fx.parse(raw))
    assert bounce is not None
    assert bounce.recipients[0].address == "meter.ops@supplier-a.example"


def test_diagnostic_is_bounded() -> None:
    raw = fx.postfix_dsn(diagnostic="smtp; 550 5.1.1 " + "x" * 5000)
    bounce = parse_bounce(fx.parse(raw))
    assert bounce is not None
    assert len(bounce.recipients[0].diagnostic or "") == 500


def test_recipients_are_bounded() -> None:
    blocks = "".join(
        f"Final-Recipient: rfc822; user{i}@dcc-b.example\nAction: failed\nStatus: 5.1.1\n\n"
        for i in range(500)
    )
    raw = fx.postfix_dsn().replace(
        b"Final-Recipient: rfc822; meter.ops", blocks.encode() + b"Final-Recipient: rfc822; x"
    )
    bounce = parse_bounce(fx.parse(raw))
    assert bounce is not None and len(bounce.recipients) == 50


def test_huge_hostile_body_is_fast() -> None:
    body = "Hi\n" + ">" * 700_000 + "\n" + ("a.a-" * 200_000) + "\n"
    raw = fx.plain({"From": "MAILER-DAEMON@mx.example", "Subject": "failure notice"}, body)
    message = fx.parse(raw)
    started = time.perf_counter()
    parse_bounce(message)
    assert time.perf_counter() - started < 2.0


def test_bounce_dataclasses_are_frozen() -> None:
    bounce = Bounce((), None, "x", True, None)
    with pytest.raises(AttributeError):
        bounce.reason = "y"  # type: ignore[misc]


class _Exploding(EmailMessage):
    def raw_items(self) -> Iterator[tuple[str, Any]]:
        raise ValueError("boom")

    def get_content_type(self) -> str:
        raise ValueError("boom")

    def get_payload(self, *args: object, **kwargs: object) -> object:
        raise ValueError("boom")


def test_never_raises_on_exploding_message() -> None:
    assert parse_bounce(_Exploding()) is None


MALFORMED = [
    b"",
    b"\n\n",
    b"Content-Type: multipart/report; report-type=delivery-status\n\nno boundary at all\n",
    b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\n\n--x\n"
    b"Content-Type: message/delivery-status\nContent-Transfer-Encoding: base64\n\n!!!!\n--x--\n",
    b"From: MAILER-DAEMON\nSubject: =?iso-2022-jp?b?GyRC?=\n\n\x1b$B%a!<%k\x1b(B\n",
    b"From: postmaster@x\nContent-Type: text/plain; charset=no-such-charset\n\n"
    b"Undeliverable \xff\xfe 550 5.1.1 <a@b.example>\n",
    b"From: postmaster@x\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\n"
    b"bm90IGJhc2U2NA===???\n",
    b"Content-Type: message/rfc822\n\nContent-Type: message/rfc822\n\n" * 50,
]


@pytest.mark.parametrize("raw", MALFORMED)
def test_malformed_never_raises(raw: bytes) -> None:
    result = parse_bounce(fx.parse(raw))
    assert result is None or isinstance(result, Bounce)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "From",
                    "Subject",
                    "Return-Path",
                    "Content-Type",
                    "X-Failed-Recipients",
                    "Auto-Submitted",
                    "Content-Transfer-Encoding",
                ]
            ),
            st.one_of(
                st.text(max_size=120),
                st.sampled_from(
                    [
                        "multipart/report; report-type=delivery-status; boundary=b",
                        "multipart/report; report-type=disposition-notification",
                        "MAILER-DAEMON <>",
                        "<>",
                        "base64",
                        "Undeliverable: x",
                    ]
                ),
            ),
        ),
        max_size=6,
    ),
    st.one_of(
        st.text(max_size=400),
        st.lists(
            st.sampled_from(
                [
                    "Undeliverable",
                    "550 5.1.1 <a\x00b@x.example>",
                    "Final-Recipient: rfc822; \u202eevil@x.example",
                    "Diagnostic-Code: smtp; 550 \x00 bad",
                    "--- Below this line is a copy of the message.",
                    "Message-ID: <id\x01@x>",
                    "Action: delayed",
                    "\n",
                    "{",
                ]
            ),
            max_size=12,
        ).map("\n".join),
    ),
    st.sampled_from([None, "", "a@b.example"]),
)
def test_arbitrary_headers_and_body_never_raise(
    headers: list[tuple[str, str]], body: str, envelope_from: str | None
) -> None:
    raw = "".join(f"{n}: {v}\n" for n, v in headers) + "\n" + body
    message = fx.parse(raw.encode("utf-8", "surrogateescape"))
    result = parse_bounce(message, envelope_from=envelope_from)
    if result is not None:
        assert isinstance(result.reason, str) and result.reason
        assert len(result.recipients) <= 50
        assert all(len(r.diagnostic or "") <= 500 for r in result.recipients)
        text = json.dumps(result.to_json(), ensure_ascii=False)
        assert not any(c in text for c in "\x00\r\n\u202e")  # values are safe single lines


# --- feedback without ARF, list-manager refusals, notices naming nobody ----------------
# Fixtures written for these tests in the shapes the senders use (no corpus copies).


def _original(to: str = "readings@supplier-c.example") -> str:
    """Headers of the message of ours that the notice is about."""
    return (
        f"From: CPSD Service Desk <{fx.OUR_ADDRESS}>\nTo: {to}\n"
        f"Subject: [CPSD-000123] Meter readings\nMessage-ID: {fx.OUR_ID}\n"
        "Date: Sat, 31 Jan 2026 09:15:00 +0000\n"
    )


def _forwarded_report(*, subject: str, text: str | None, marked: bool = True) -> bytes:
    """A complaint forwarded without ARF: a multipart/mixed carrying the reported message."""
    own = f"Content-Type: text/plain\n\n{text}\n--fbl\n" if text is not None else ""
    mark = "X-HmXmrOriginalRecipient: reader@mailbox.example\n" if marked else ""
    return (
        "From: complaints@feedback.mailbox.example\n"
        "To: abuse@elexon.example\n"
        f"Subject: {subject}\n"
        "Date: Sat, 31 Jan 2026 16:00:00 +0000\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="fbl"\n\n'
        f"--fbl\n{own}"
        "Content-Type: message/rfc822\nContent-Disposition: inline\n\n"
        f"{mark}X-Reporter-IP: 192.0.2.44\n" + _original("reader@mailbox.example") + "\nHello.\n"
        "--fbl--\n"
    ).encode()


@pytest.mark.parametrize(
    ("subject", "marked"),
    [
        ("complaint about message from 192.0.2.9", True),  # Outlook.com JMRP
        ("complaint about message from 192.0.2.9", False),  # the same title, unmarked (SES)
        ("Abuse report", True),  # Microsoft's mark, no words of its own
    ],
    ids=["titled and marked", "titled", "marked"],
)
def test_complaint_forwarded_without_arf(subject: str, marked: bool) -> None:
    bounce = parse_bounce(fx.parse(_forwarded_report(subject=subject, text=None, marked=marked)))
    assert bounce is not None
    assert bounce.recipients == (
        BounceRecipient("reader@mailbox.example", None, "complained", "feedback-type: abuse"),
    )
    assert bounce.original_message_id == fx.OUR_ID
    assert bounce.permanent and "complaint" in bounce.reason


@pytest.mark.parametrize(
    ("subject", "marked"),
    [
        ("Fwd: odd headers on this one", True),
        ("Complaint about message from Alex", False),
    ],
    ids=["marked message forwarded with words", "a person's complaint"],
)
def test_forwarded_message_from_a_person_is_not_a_complaint(subject: str, marked: bool) -> None:
    raw = _forwarded_report(subject=subject, text="Can the desk look at this one?", marked=marked)
    assert parse_bounce(fx.parse(raw)) is None


def test_apple_mail_unsubscribe_request() -> None:
    headers = {
        "From": "Reader <reader@mailbox.example>",
        "Subject": "unsubscribe",
        "Auto-Submitted": "auto-replied",
        "X-Apple-Unsubscribe": "true",
        "In-Reply-To": fx.OUR_ID,
    }
    body = "This mail client sent this message to unsubscribe.\n"
    bounce = parse_bounce(fx.parse(fx.plain(headers, body)))
    assert bounce is not None
    assert [(r.address, r.action) for r in bounce.recipients] == [
        ("reader@mailbox.example", "complained")
    ]
    assert bounce.original_message_id == fx.OUR_ID
    assert "opt-out" in bounce.reason
    # the header alone (no Auto-Submitted), or a person asking in words, is not enough
    del headers["Auto-Submitted"]
    assert parse_bounce(fx.parse(fx.plain(headers, body))) is None
    assert (
        parse_bounce(fx.parse(fx.plain({"Subject": "unsubscribe"}, "Please unsubscribe me")))
        is None
    )


def _list_notice(*, sender: str, subject: str, body: str) -> bytes:
    return fx.plain(
        {
            "From": sender,
            "To": fx.OUR_ADDRESS,
            "Subject": subject,
            "X-MLServer": "fml [fml 4.0.3 release (20011202/4.0.3)]",
            "Message-ID": "<202601311700.FMLAA01.settlement@lists.example>",
        },
        body,
    )


def test_list_manager_refusing_a_post() -> None:
    raw = _list_notice(
        sender="settlement-admin@lists.example",
        subject=f"You {fx.OUR_ADDRESS} are not member (settlement ML)",
        body="You are not a member of this mailing list <settlement@lists.example>.\n\n"
        "Send 'guide' to settlement-ctl@lists.example for the rules.\n",
    )
    bounce = parse_bounce(fx.parse(raw))
    assert bounce is not None
    assert [r.address for r in bounce.recipients] == ["settlement@lists.example"]
    assert bounce.permanent and "mailing list" in bounce.reason


def test_list_manager_loop_alert_names_our_message() -> None:
    original = "".join(
        f"   {line}\n" for line in _original("settlement@lists.example").splitlines()
    )
    raw = _list_notice(
        sender="settlement-admin@lists.example",
        subject="Loop Alert: Duplicated Message-ID (settlement ML)",
        body="Duplicated Message-ID in <settlement@lists.example>.\n\n\n"
        "Original mail as follows:\n\n" + original + "\n   Hello.\n",
    )
    bounce = parse_bounce(fx.parse(raw))
    assert bounce is not None
    assert bounce.original_message_id == fx.OUR_ID


@pytest.mark.parametrize(
    ("sender", "subject"),
    [
        ("Priya Shah <priya.shah@supplier-a.example>", "Re: not a member of the panel?"),
        ("settlement-admin@lists.example", "Monthly list statistics"),
    ],
    ids=["post distributed by the list", "admin notice that refuses nothing"],
)
def test_list_traffic_is_not_a_refusal(sender: str, subject: str) -> None:
    raw = _list_notice(sender=sender, subject=subject, body="See you <settlement@lists.example>\n")
    assert parse_bounce(fx.parse(raw)) is None


def test_daemon_notice_naming_only_its_own_addressee() -> None:
    """A list address bouncing to itself: the only address given is the notice's own To."""
    headers = {
        "From": '"Mailer-Daemon@relay.example" <errors@relay.example>',
        "To": "settlement@lists.example",
        "Subject": "Mail Delivery Error - settlement@lists.example",
        "Precedence": "bulk",
    }
    body = (
        "Your message to <settlement@lists.example> cannot be delivered due to the following"
        " error:\nsettlement@lists.example - no such mailbox at RELAY.EXAMPLE.\n"
    )
    bounce = parse_bounce(fx.parse(fx.plain(headers, body)))
    assert bounce is not None and bounce.recipients == ()
    # the same sender and subject with no failure words is a person's note, not a notice
    note = "Hi all, three parcels are waiting at reception.\n"
    headers = {"From": "Postmaster <postmaster@office.example>", "Subject": "Undelivered parcels"}
    assert parse_bounce(fx.parse(fx.plain(headers, note))) is None


def test_temporary_code_in_a_notice_that_gave_up_is_permanent() -> None:
    body = (
        "Hi. This is the qmail-send program at relay.supplier-c.example.\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
        "<readings@supplier-c.example>:\n"
        "Sorry, I wasn't able to establish an SMTP connection. (#4.4.1)\n\n"
        "--- Below this line is a copy of the message.\n\n" + _original() + "\nHello.\n"
    )
    headers = {"From": "MAILER-DAEMON@relay.supplier-c.example", "Subject": "failure notice"}
    bounce = parse_bounce(fx.parse(fx.plain(headers, body)))
    assert bounce is not None
    assert bounce.recipients[0].status == "4.4.1"
    assert bounce.permanent and bounce.recipients[0].action == "failed"


def _filter_notice(subject: str, text: str, sender: str) -> bytes:
    return (
        f"From: {sender}\nTo: {fx.OUR_ADDRESS}\nSubject: {subject}\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="n"\n\n'
        f"--n\nContent-Type: text/plain; charset=utf-8\n\n{text}\n"
        f"--n\nContent-Type: message/rfc822\n\n{_original('ops@dcc-b.example')}\nHello.\n--n--\n"
    ).encode()


@pytest.mark.parametrize(
    ("subject", "text"),
    [
        (
            "Mail could not be delivered",
            "Sent <<< RCPT TO:<ops@dcc-b.example>\n"
            "Received >>> 550 5.1.1 <ops@dcc-b.example>... user unknown",
        ),
        ("メール配信に失敗しました", "メールを配信できません。\n宛先: ops@dcc-b.example"),
    ],
    ids=["english", "japanese"],
)
def test_filter_notices_from_a_plain_sender_address(subject: str, text: str) -> None:
    """Mail filters write from a notification address, not MAILER-DAEMON: their subject counts."""
    raw = _filter_notice(subject, text, '"Gateway Notification" <no-reply@gw.dcc-b.example>')
    bounce = parse_bounce(fx.parse(raw))
    assert bounce is not None
    assert bounce.recipients[0].address == "ops@dcc-b.example"
    assert bounce.original_message_id == fx.OUR_ID


def test_returned_headers_without_a_space_after_the_colon_are_not_recipients() -> None:
    body = (
        "This message was created automatically by mail delivery software.\n"
        "A message that you sent could not be delivered to one or more of its recipients.\n\n"
        "ops@dcc-b.example Invalid Address, ERROR_CODE :550, mailbox unavailable\n\n\n"
        "Received:from mx.relay.example by mx2.relay.example with SMTP id 77; Sat, 31 Jan 2026\n"
        f"Message-ID:{fx.OUR_ID}\nFrom:CPSD <{fx.OUR_ADDRESS}>\nTo:<ops@dcc-b.example>\n"
        "Cc:<settlement@supplier-b.example>\n"
    )
    headers = {"From": "mailer-daemon@mail.relay.example", "Subject": "Undelivered Mail"}
    bounce = parse_bounce(fx.parse(fx.plain(headers, body)))
    assert bounce is not None
    assert [r.address for r in bounce.recipients] == ["ops@dcc-b.example"]
    assert bounce.original_message_id == fx.OUR_ID


def test_html_notice_of_unclosed_tags_is_read_in_linear_time() -> None:
    # 30,000 "<br" in an HTML part: "[^>]*" rescanned to the end from each (9 s)
    msg = fx.parse(
        b"From: jo@x.example\r\nSubject: hi\r\nContent-Type: text/html\r\n\r\n" + b"<br" * 30_000
    )
    started = time.perf_counter()
    assert parse_bounce(msg) is None
    assert time.perf_counter() - started < 0.3
