"""Each correlation strategy with its own table: what finds a case, and what must not."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway import cases
from gateway.app import App, build
from gateway.context import MessageContext, Sender
from gateway.models import ExternalReference, Message, Outbox, utcnow
from gateway.settings import Settings
from gateway.steps import correlate
from parsers.analysis import analyse

RAISER = "ops@brightenergy.example"


@pytest.fixture
def app(settings: Settings) -> Iterator[App]:
    app = build(settings)
    with app.sessions.begin() as session:
        for _ in range(3):
            case = cases.open_case(
                session,
                prefix="CPSD",
                subject="s",
                party_id="BRIGHTSUP",
                address=RAISER,
                priority="P3",
                now=utcnow(),
            )
        session.add(
            ExternalReference(
                case_id=case.id, party_id="DCC", reference="INC0012345", learned_at=utcnow()
            )
        )
        session.add(
            Outbox(
                case_id=2,
                message_id="<cpsd-000002.ab@elexon.example>",
                kind="notice",
                template="acknowledgement",
                template_version="x",
                mail_from="a@b",
                recipients=[RAISER],
                subject="s",
                raw=b"",
                status="sent",
                next_attempt_at=utcnow(),
                created_at=utcnow(),
            )
        )
        session.add(
            Message(
                sha256="0" * 64,
                content_key="1" * 64,
                size=1,
                source="t",
                envelope_to=[],
                message_id="<first@brightenergy.example>",
                received_at=utcnow(),
                status="processed",
                case_id=1,
            )
        )
    yield app
    app.close()


def _headers(subject: str, extra: str = "", to: str = "cpsd@elexon.example") -> bytes:
    return (
        f"From: {RAISER}\r\nTo: {to}\r\nSubject: {subject}\r\n{extra}"
        "Message-ID: <new@brightenergy.example>\r\n\r\n"
    ).encode()


def _run(
    app: App, strategy: correlate.Strategy, raw: bytes, body: str = "", sender: Sender | None = None
) -> str | None:
    raw = raw + body.encode()
    with app.sessions() as session:
        row = Message(
            sha256="2" * 64,
            content_key="3" * 64,
            size=len(raw),
            source="t",
            envelope_to=["cpsd@elexon.example"],
            received_at=utcnow(),
            status="received",
        )
        session.add(row)
        session.flush()
        ctx = MessageContext(
            row=row, raw=raw, analysis=analyse(raw), sender=sender or Sender("party", RAISER, None)
        )
        ctx.row.subject = ctx.analysis.subject  # type: ignore[union-attr]
        deps = build_deps(app, session)
        case = strategy(ctx, deps)
        reference = case.reference if case else None
        session.rollback()
        return reference


def build_deps(app: App, session):  # type: ignore[no-untyped-def]
    return app.worker._make_deps(session)


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("[CPSD-000002] DIP rejects IF-041", "CPSD-000002"),
        ("RE: [CPSD-000002] DIP rejects IF-041", "CPSD-000002"),
        ("AW: AW: Re: [CPSD-000002] x", "CPSD-000002"),
        ("SV: VS: Antw: R: TR: FW: WG: Fwd: [CPSD-000002] x", "CPSD-000002"),
        ("[EXTERNAL] RE: [CPSD-000002] x", "CPSD-000002"),
        ("[EXT] re: cpsd-000002 brackets dropped", "CPSD-000002"),
        ("=?utf-8?q?AW=3A_=5BCPSD-000002=5D_St=C3=B6rung?=", "CPSD-000002"),
        ("RE: a subject that was folded\r\n [CPSD-000003] by a client", "CPSD-000003"),
        ("RE: [CPSD-999999] not a case here", None),
        ("RE: DIP rejects IF-041", None),
        ("RE: [XCPSD-000002] lookalike", None),
    ],
)
def test_by_subject(app: App, subject: str, expected: str | None) -> None:
    assert _run(app, correlate.by_subject, _headers(subject)) == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ("In-Reply-To: <cpsd-000002.ab@elexon.example>\r\n", "CPSD-000002"),
        ("References: <other@x.example> <first@brightenergy.example>\r\n", "CPSD-000001"),
        (
            "In-Reply-To: <unknown@x.example>\r\nReferences: <cpsd-000002.ab@elexon.example>\r\n",
            "CPSD-000002",
        ),
        ("In-Reply-To: <unknown@x.example>\r\n", None),
        ("", None),
    ],
)
def test_by_thread(app: App, headers: str, expected: str | None) -> None:
    assert _run(app, correlate.by_thread, _headers("RE: no reference", headers)) == expected


@pytest.mark.parametrize(
    ("to", "expected"),
    [
        ("cpsd+CPSD-000003@elexon.example", "CPSD-000003"),
        ("CPSD+cpsd-000003@ELEXON.example", "CPSD-000003"),
        ("other+CPSD-000003@elexon.example", None),
        ("cpsd@elexon.example", None),
    ],
)
def test_by_plus_address(app: App, to: str, expected: str | None) -> None:
    assert _run(app, correlate.by_plus_address, _headers("hello", to=to)) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("Thanks.\r\n\r\n> -- \r\n> CPSD reference: [CPSD-000003]\r\n", "CPSD-000003"),
        ("see CPSD-000001 for the history\r\n", "CPSD-000001"),
        ("no reference at all\r\n", None),
    ],
)
def test_by_body_reference(app: App, body: str, expected: str | None) -> None:
    assert _run(app, correlate.by_body_reference, _headers("hello"), body) == expected


@pytest.mark.parametrize(
    ("sender", "body", "expected"),
    [
        (Sender("party", "servicedesk@dcc.example", None), "INC0012345 update", None),
        ("DCC", "Update on INC0012345: still investigating", "CPSD-000003"),
        ("DCC", "Update on INC0099999", None),
        ("BRIGHTSUP", "Update on INC0012345", None),  # another party's ticket number
    ],
)
def test_by_external_reference(app: App, sender: object, body: str, expected: str | None) -> None:
    if isinstance(sender, str):
        party = app.directory.by_id(sender)
        assert party is not None
        sender = Sender("party", party.contact, party)
    assert isinstance(sender, Sender)
    assert _run(app, correlate.by_external_reference, _headers("hello"), body, sender) == expected


def test_strategies_run_in_the_documented_order() -> None:
    assert [name for name, _ in correlate.STRATEGIES] == [
        "thread",
        "subject_reference",
        "plus_address",
        "body_reference",
        "external_reference",
    ]
