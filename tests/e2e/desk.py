"""A service desk in a test: the real app on a real SQLite file, fed like `ingest` feeds it.

Mail goes in through inbox.accept and the worker exactly as `cpsd-gateway ingest` does;
mail comes out of the outbox through the maildir transport, parsed back for asserting.
"""

from __future__ import annotations

from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

from sqlalchemy import select

from gateway import app as app_module
from gateway.inbox import Envelope
from gateway.models import Case, Message, Outbox
from gateway.settings import Settings
from gateway.views import case_detail
from gateway.worker import Processed

RAISER = "ops@brightenergy.example"
STAFF = "jo.bloggs@elexon.example"
STAFF_DESK = "servicedesk-team@elexon.example"
DCC_DESK = "servicedesk@dcc.example"


@dataclass
class Sent:
    row_id: int
    template: str
    to: list[str]
    message: EmailMessage

    @property
    def text(self) -> str:
        body = self.message.get_body(("plain",))
        return body.get_content() if body is not None else ""


class Desk:
    def __init__(self, settings: Settings) -> None:
        self.app = app_module.build(settings)
        self._seen_outbox = 0

    def close(self) -> None:
        self.app.close()

    def receive(self, raw: bytes, *, sent_copy: bool = False) -> Processed:
        accepted = self.app.inbox.accept(raw, Envelope(), "test")
        assert not accepted.duplicate, "the story sent the same message twice"
        if sent_copy:
            with self.app.sessions.begin() as session:
                row = session.get(Message, accepted.message_row_id)
                assert row is not None
                row.sent_copy = True
        (done,) = self.app.worker.process([accepted.message_row_id])
        self.app.deliverer.deliver_due()
        return done

    def outbox(self) -> list[Sent]:
        with self.app.sessions() as session:
            rows = session.scalars(select(Outbox).order_by(Outbox.id)).all()
            return [
                Sent(
                    r.id,
                    r.template,
                    list(r.recipients),
                    message_from_bytes(r.raw, policy=policy.default),
                )  # type: ignore[arg-type]
                for r in rows
            ]

    def new_mail(self) -> list[Sent]:
        """What was sent since the last call."""
        sent = self.outbox()
        fresh = sent[self._seen_outbox :]
        self._seen_outbox = len(sent)
        return fresh

    def case(self, reference: str) -> dict[str, Any]:
        with self.app.sessions() as session:
            case = session.scalar(select(Case).where(Case.reference == reference))
            assert case is not None, f"no case {reference}"
            return case_detail(session, case)

    def quarantined(self) -> list[Message]:
        with self.app.sessions() as session:
            return list(session.scalars(select(Message).where(Message.status == "quarantined")))


def mail(
    *,
    sender: str,
    subject: str,
    body: str,
    to: str = "cpsd@elexon.example",
    in_reply_to: str | None = None,
    references: str | None = None,
    html: str | None = None,
    headers: dict[str, str] | None = None,
    message_id: str | None = None,
) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = "Fri, 27 Nov 2026 10:00:00 +0000"
    message["Message-ID"] = message_id or make_msgid(domain=sender.rpartition("@")[2])
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
        message["References"] = references or in_reply_to
    for key, value in (headers or {}).items():
        del message[key]  # a header given here replaces the default (Date)
        message[key] = value
    message.set_content(body)
    if html is not None:
        message.add_alternative(html, subtype="html")
    return message.as_bytes()


def reply_to(sent: Sent, *, sender: str, body: str, subject_prefix: str = "RE: ") -> bytes:
    """A reply to one of our mails, threaded the way mail clients do it."""
    original = sent.message
    references = f"{original.get('References', '')} {original['Message-ID']}".strip()
    return mail(
        sender=sender,
        subject=f"{subject_prefix}{original['Subject']}",
        body=body,
        in_reply_to=original["Message-ID"],
        references=references,
    )
