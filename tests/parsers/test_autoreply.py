"""Auto-reply detection (reliability.md B53-B59): answer humans, never robots."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from email.message import EmailMessage, Message
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parsers.autoreply import auto_reply_reason, is_out_of_office, suppressed_auto_responses
from tests.parsers import fixtures_mail as fx

# (id, extra headers on a human-looking message, envelope_from, expected reason or None)
HEADER_CASES: list[tuple[str, dict[str, str], str | None, str | None]] = [
    ("plain human mail", {}, "alex.smith@supplier-a.example", None),
    ("Auto-Submitted: no", {"Auto-Submitted": "no"}, None, None),
    ("auto-replied", {"Auto-Submitted": "auto-replied"}, None, "Auto-Submitted: auto-replied"),
    (
        "auto-generated with comment",
        {"Auto-Submitted": "auto-generated (failure)"},
        None,
        "Auto-Submitted: auto-generated",
    ),
    ("auto-notified", {"Auto-Submitted": "Auto-Notified"}, None, "Auto-Submitted: auto-notified"),
    ("X-Autoreply", {"X-Autoreply": "yes"}, None, "X-Autoreply: yes"),
    ("X-Autorespond", {"X-Autorespond": "On vacation"}, None, "X-Autorespond: On vacation"),
    ("X-Auto-Response", {"X-Auto-Response": "1"}, None, "X-Auto-Response: 1"),
    ("X-Autoreply: no is not a reason", {"X-Autoreply": "no"}, None, None),
    ("Apple vacation", {"X-Apple-Action": "vacation"}, None, "X-Apple-Action: vacation"),
    ("Precedence bulk", {"Precedence": "bulk"}, None, "Precedence: bulk"),
    ("Precedence junk", {"Precedence": "junk"}, None, "Precedence: junk"),
    ("Precedence list", {"Precedence": "List"}, None, "Precedence: list"),
    ("Precedence auto_reply", {"Precedence": "auto_reply"}, None, "Precedence: auto_reply"),
    ("Precedence first-class", {"Precedence": "first-class"}, None, None),
    ("X-Precedence", {"X-Precedence": "bulk"}, None, "X-Precedence: bulk"),
    ("List-Id", {"List-Id": "<updates.lists.example>"}, None, "mailing list (List-Id)"),
    (
        "List-Unsubscribe",
        {"List-Unsubscribe": "<mailto:leave@lists.example>"},
        None,
        "mailing list (List-Unsubscribe)",
    ),
    ("X-Loop", {"X-Loop": "yes"}, None, "loop header (X-Loop)"),
    (
        "RT loop header",
        {"X-RT-Loop-Prevention": "Desk"},
        None,
        "loop header (X-RT-Loop-Prevention)",
    ),
    ("Return-Path <>", {"Return-Path": "<>"}, None, "null return path (Return-Path: <>)"),
    ("MAIL FROM:<>", {}, "", "null return path (MAIL FROM:<>)"),
    (
        "MAILER-DAEMON",
        {"From": "Mail Delivery System <MAILER-DAEMON@mx.example>"},
        None,
        "system sender (MAILER-DAEMON@mx.example)",
    ),
    (
        "postmaster",
        {"From": "postmaster@dcc-b.example"},
        None,
        "system sender (postmaster@dcc-b.example)",
    ),
    (
        "noreply",
        {"From": "Portal <noreply@portal.example>"},
        None,
        "no-reply sender (noreply@portal.example)",
    ),
    (
        "do-not-reply",
        {"From": "do-not-reply@portal.example"},
        None,
        "no-reply sender (do-not-reply@portal.example)",
    ),
    ("cron", {"X-Cron-Env": "<SHELL=/bin/sh>"}, None, "cron job output (X-Cron-Env)"),
    ("X-Auto-Generated", {"X-Auto-Generated": "yes"}, None, "X-Auto-Generated: yes"),
    (
        "Exchange inbox-rule loop",
        {"X-MS-Exchange-Inbox-Rules-Loop": "ops@supplier-a.example"},
        None,
        "loop header (X-MS-Exchange-Inbox-Rules-Loop)",
    ),
    ("suppress header alone (B55)", {"X-Auto-Response-Suppress": "All"}, None, None),
    (
        "MDN content type",
        {"Content-Type": 'multipart/report; report-type=disposition-notification; boundary="x"'},
        None,
        "read receipt (message disposition notification)",
    ),
]


@pytest.mark.parametrize(
    ("headers", "envelope_from", "expected"),
    [case[1:] for case in HEADER_CASES],
    ids=[case[0] for case in HEADER_CASES],
)
def test_auto_reply_reason_headers(
    headers: dict[str, str], envelope_from: str | None, expected: str | None
) -> None:
    message = fx.parse(fx.plain(headers))
    assert auto_reply_reason(message, envelope_from=envelope_from) == expected


OOF_SUBJECTS = [
    "Automatic reply: [CPSD-000123] Missing D0010 flows",
    "Auto-Reply: Re: meter readings",
    "AutoReply: settlement",
    "Autoreply - CPSD-000123",
    "Out of Office: CPSD-000123",
    "Out of the office: CPSD-000123",
    "Out of Office AutoReply: CPSD-000123",
    "Abwesenheitsnotiz: Zählerstände",
    "Automatische Antwort: Zählerstände",
    "Réponse automatique : relevés",
    "Absence: relevés",
    "Respuesta automática: lecturas",
    "Risposta automatica: letture",
    "Fraværsmelding: målerstand",
    "Frånvaro: mätarställning",
    "Afwezig: meterstanden",
    "Automatisch antwoord: meterstanden",
    "Odpowiedź automatyczna: odczyty",
    "Auto: settlement",
    "[EXTERNAL] Automatic reply: settlement",
    "[Automatic reply] settlement",
    "[Out of office] CPSD-000123",
    "Re:   CPSD-000123 meter readings (Automatic Response)",
    "Re: settlement [Auto-Reply]",
    "Αυτόματη απάντηση: μετρήσεις",
    "【自動返信】メーター検針",
    "不在通知: 検針データ",
    "自动答复: 抄表数据",
    "자동 회신: 검침",
]
HUMAN_SUBJECTS = [
    "Absence of D0010 flows since Monday",
    "Out of office cover for the SF run on Friday",
    "Automation of the D0036 upload",
    "Autumn settlement calendar",
    "Re: undeliverable D0010 flows",
    "Fwd: question about Automatic reply settings in the portal",
    "Re: holiday rota (on vacation)",
    "Re: the (automatic response) setting is broken",
    "[CPSD-000123] Absence of readings",
]


@pytest.mark.parametrize("subject", OOF_SUBJECTS)
def test_out_of_office_subjects(subject: str) -> None:
    message = fx.parse(fx.plain({"Subject": subject}))
    assert auto_reply_reason(message) == "out-of-office subject"
    assert is_out_of_office(message)


@pytest.mark.parametrize("subject", HUMAN_SUBJECTS)
def test_human_subjects_are_not_out_of_office(subject: str) -> None:
    message = fx.parse(fx.plain({"Subject": subject}))
    assert auto_reply_reason(message) is None
    assert not is_out_of_office(message)


def test_encoded_oof_subject() -> None:
    message = fx.parse(fx.plain({"Subject": "=?utf-8?q?Abwesenheitsnotiz=3A_Z=C3=A4hler?="}))
    assert is_out_of_office(message)


# (fixture, expected reason, is_out_of_office)
FIXTURE_CASES = [
    (fx.outlook_oof_english, "out-of-office subject", True),
    (fx.outlook_oof_german, "X-Autoreply: yes", True),
    (fx.list_message, "Precedence: list", False),
    (fx.mdn_read_receipt, "read receipt (message disposition notification)", False),
    (fx.postfix_dsn, "Auto-Submitted: auto-replied", False),
    (fx.office365_ndr, "delivery status notification (multipart/report)", False),
    (fx.exchange_legacy_ndr, "system sender (postmaster@dcc-c.example)", False),
    (fx.qmail_bounce, "null return path (Return-Path: <>)", False),
    (fx.exim_bounce, "Auto-Submitted: auto-replied", False),
    (
        fx.arf_complaint,
        "abuse feedback report (multipart/report; report-type=feedback-report)",
        False,
    ),
    (fx.human_mentions_undeliverable, None, False),
    (fx.human_forwards_bounce, None, False),
    (fx.human_with_suppress_header, None, False),
]


@pytest.mark.parametrize(
    ("build", "reason", "oof"), FIXTURE_CASES, ids=[c[0].__name__ for c in FIXTURE_CASES]
)
def test_fixtures(build: Callable[[], bytes], reason: str | None, oof: bool) -> None:
    message = fx.parse(build())
    assert auto_reply_reason(message) == reason
    assert is_out_of_office(message) is oof


def test_list_mail_with_oof_subject_is_list_mail() -> None:
    message = fx.parse(fx.plain({"Subject": "Out of office: x", "List-Id": "<l.example>"}))
    assert not is_out_of_office(message)
    assert auto_reply_reason(message) == "mailing list (List-Id)"


def test_exim_bounce_with_auto_replied_is_not_out_of_office() -> None:
    assert not is_out_of_office(fx.parse(fx.exim_bounce()))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("All", {"ALL"}),
        ("OOF, AutoReply", {"OOF", "AUTOREPLY"}),
        ("DR, NDR, RN, NRN, OOF, AutoReply", {"DR", "NDR", "RN", "NRN", "OOF", "AUTOREPLY"}),
        ("dr;oof", {"DR", "OOF"}),
        ("", set()),
    ],
)
def test_suppressed_auto_responses(value: str, expected: set[str]) -> None:
    message = fx.parse(fx.plain({"X-Auto-Response-Suppress": value}))
    assert suppressed_auto_responses(message) == frozenset(expected)
    assert auto_reply_reason(message) is None  # B55: a request, not a sign of automation


def test_suppressed_absent() -> None:
    assert suppressed_auto_responses(fx.parse(fx.plain({}))) == frozenset()


def test_programmatic_message() -> None:
    message = EmailMessage()
    message["From"] = "noreply@portal.example"
    message["Subject"] = "Automatic reply: hello"
    assert auto_reply_reason(message) == "out-of-office subject"
    assert is_out_of_office(message)


class _Exploding(EmailMessage):
    """A message whose every header access raises, as malformed headers can."""

    def raw_items(self) -> Iterator[tuple[str, Any]]:
        raise ValueError("boom")

    def get_content_type(self) -> str:
        raise ValueError("boom")


def test_never_raises_on_exploding_message() -> None:
    message = _Exploding()
    assert auto_reply_reason(message) is None or isinstance(auto_reply_reason(message), str)
    assert suppressed_auto_responses(message) == frozenset()
    assert is_out_of_office(message) is False


MALFORMED = [
    b"From: <<<@@@>>>\nSubject: =?utf-8?b?####?=\nAuto-Submitted:\n\nbody\n",
    b'From: "unterminated <a@b\nReturn-Path: <<>\nPrecedence: \xff\xfe bulk\n\nbody\n',
    b"Message-ID: <a@b>>\nX-Auto-Response-Suppress: ,,,;;;\xff\n\n",
    b"Content-Type: multipart/report; report-type=\nFrom: postmaster\n\n",
    b"\n\n\n",
    b"",
    b"From: " + b"a" * 100000 + b"@example.com\nSubject: " + b"x" * 100000 + b"\n\n",
]


@pytest.mark.parametrize("raw", MALFORMED)
def test_malformed_headers_never_raise(raw: bytes) -> None:
    message = fx.parse(raw)
    reason = auto_reply_reason(message, envelope_from=None)
    assert reason is None or isinstance(reason, str)
    assert isinstance(suppressed_auto_responses(message), frozenset)
    assert isinstance(is_out_of_office(message), bool)


HEADER_NAMES = st.sampled_from(
    [
        "From",
        "Subject",
        "Return-Path",
        "Auto-Submitted",
        "Precedence",
        "X-Auto-Response-Suppress",
        "X-Autoreply",
        "List-Id",
        "Content-Type",
        "Message-ID",
        "Sender",
        "X-Loop",
        "To",
    ]
)
HEADER_VALUES = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    st.sampled_from(
        [
            "=?utf-8?q?=E2=80=AE?=",
            "=?bogus?b?!!!?=",
            "<>",
            '"a\\" <b@c>',
            "multipart/report; report-type=disposition-notification",
            "auto-replied",
            "a@b, <c@d>; (comment",
        ]
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=8), st.sampled_from([None, "", "x@y"])
)
def test_arbitrary_header_values_never_raise(
    headers: list[tuple[str, str]], envelope_from: str | None
) -> None:
    # Raw bytes as they arrive (CR/LF/NUL and 8-bit included), parsed like ingress does.
    raw = "".join(f"{name}: {value}\n" for name, value in headers) + "\nbody\n"
    message = fx.parse(raw.encode("utf-8", "surrogateescape"))
    reason = auto_reply_reason(message, envelope_from=envelope_from)
    assert reason is None or (isinstance(reason, str) and len(reason) < 400)
    assert reason is None or not any(c in reason for c in "\x00\r\n\u202e")
    assert all(isinstance(t, str) for t in suppressed_auto_responses(message))
    assert isinstance(is_out_of_office(message), bool)
    compat = Message()
    for name, value in headers:
        compat[name] = value  # compat32 stores anything
    assert auto_reply_reason(compat) is None or isinstance(auto_reply_reason(compat), str)  # type: ignore[arg-type]
