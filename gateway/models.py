"""SQLAlchemy 2.0 typed models. Portable SQL only: the same schema runs on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.sql import false
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware UTC datetimes; SQLite would otherwise hand back naive ones."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        return value if value.tzinfo else value.replace(tzinfo=UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Message(Base):
    """One inbound message as accepted; the raw bytes live in the raw store under ``sha256``."""

    __tablename__ = "messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    content_key: Mapped[str] = mapped_column(String(64), unique=True)
    size: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(200))
    envelope_from: Mapped[str | None] = mapped_column(String(320))
    envelope_to: Mapped[list[str]] = mapped_column(JSON, default=list)
    message_id: Mapped[str | None] = mapped_column(String(255), index=True)
    message_id_conflict: Mapped[bool] = mapped_column(Boolean, default=False)
    from_address: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str | None] = mapped_column(String(998))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    status: Mapped[str] = mapped_column(String(20), index=True, default="received")
    outcome: Mapped[str | None] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    matched_by: Mapped[str | None] = mapped_column(String(40))
    sent_copy: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )  # from a Sent folder
    sender_kind: Mapped[str | None] = mapped_column(String(20))
    sender_party: Mapped[str | None] = mapped_column(String(64))
    # pass | fail | unverified, from our MTA's Authentication-Results; None: not checked
    authentication: Mapped[str | None] = mapped_column(String(20))
    # A worker is on it since then (committed before it starts); cleared when it is done.
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(200))  # host:pid:token
    # Claims that never finished: the process died while working on this message.
    interruptions: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    # Set instead of case_id for a case opened in the same transaction: the flush fills
    # in the id, so opening a case needs no flush of its own (as Event.case, Outbox.case).
    case: Mapped[Case | None] = relationship()


class Case(Base):
    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reference: Mapped[str] = mapped_column(String(40), unique=True)
    state: Mapped[str] = mapped_column(String(20), index=True)
    priority: Mapped[str] = mapped_column(String(2), default="P4")
    subject: Mapped[str] = mapped_column(String(998))
    summary: Mapped[str | None] = mapped_column(Text)
    impact: Mapped[str | None] = mapped_column(Text)
    raised_by_party: Mapped[str | None] = mapped_column(String(64), index=True)
    raised_by_address: Mapped[str | None] = mapped_column(String(320))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    response_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolution: Mapped[str | None] = mapped_column(Text)
    redirected_to: Mapped[str | None] = mapped_column(String(200))
    major: Mapped[bool] = mapped_column(Boolean, default=False)
    notes: Mapped[str | None] = mapped_column(Text)
    facts: Mapped[dict[str, list[str]] | None] = mapped_column(JSON)  # MPANs, IDs, evidence…

    parent: Mapped[Case | None] = relationship(remote_side=[id], back_populates="children")
    children: Mapped[list[Case]] = relationship(back_populates="parent")
    parties: Mapped[list[CaseParty]] = relationship(
        back_populates="case", cascade="all, delete-orphan"
    )


class CaseParty(Base):
    """Parties on a case: only their addresses (and staff) may add to it."""

    __tablename__ = "case_parties"
    __table_args__ = (UniqueConstraint("case_id", "party_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    party_id: Mapped[str] = mapped_column(String(64), index=True)
    role: Mapped[str] = mapped_column(String(20))

    case: Mapped[Case] = relationship(back_populates="parties")


class ExternalReference(Base):
    """Another desk's ticket number for one of our cases (e.g. a ServiceNow INC…)."""

    __tablename__ = "external_references"
    __table_args__ = (UniqueConstraint("party_id", "reference"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    party_id: Mapped[str] = mapped_column(String(64))
    reference: Mapped[str] = mapped_column(String(100), index=True)
    learned_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Event(Base):
    """Append-only audit trail: every case change names the message or person behind it."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(320))
    detail: Mapped[str] = mapped_column(Text, default="")
    message_row_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    outbox_row_id: Mapped[int | None] = mapped_column(ForeignKey("outbox.id"))

    # Set instead of outbox_row_id for a row queued in the same transaction: the flush
    # fills in the id, so queueing a mail needs no flush of its own.
    outbox_row: Mapped[Outbox | None] = relationship()
    case: Mapped[Case] = relationship()  # likewise for a case opened in this transaction


class Outbox(Base):
    """One outbound mail, rendered once: the bytes and Message-ID never change between attempts."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    kind: Mapped[str] = mapped_column(String(20))  # auto_reply | notice | update | alert
    template: Mapped[str] = mapped_column(String(80))
    template_version: Mapped[str] = mapped_column(String(64))
    mail_from: Mapped[str] = mapped_column(String(320))
    recipients: Mapped[list[str]] = mapped_column(JSON)
    subject: Mapped[str] = mapped_column(String(998))
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    priority: Mapped[int] = mapped_column(Integer, default=5)
    # pending | sending | sent | failed | held (rate limit) | bounced
    status: Mapped[str] = mapped_column(String(20), index=True, default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cause_message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    # Delivery state (migration 0004): a row is "sending" only while claimed_at/lease_until
    # say a worker holds it; a lease that ran out means that worker died mid-send.
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    retry_until: Mapped[datetime | None] = mapped_column(UTCDateTime)  # None: created + retry_for
    # address -> {"status": "sent" | "deferred" | "failed", "reply": the relay's answer}
    recipient_status: Mapped[dict[str, dict[str, str]] | None] = mapped_column(JSON)

    __table_args__ = (Index("ix_outbox_kind_created_at", "kind", "created_at"),)

    case: Mapped[Case | None] = relationship()  # as Event.case


class AutomaticRecipient(Base):
    """One recipient of one automatic reply: the rate limit counts these by address.

    The outbox keeps recipients as a JSON list, which no index can search; without this
    table every automatic reply read every other one of the last hour (quadratic in a
    flood, exactly when the limit matters).
    """

    __tablename__ = "automatic_recipients"
    __table_args__ = (Index("ix_automatic_recipients_address_at", "address", "at"),)

    outbox_id: Mapped[int] = mapped_column(ForeignKey("outbox.id"), primary_key=True)
    address: Mapped[str] = mapped_column(String(320), primary_key=True)  # lower-cased
    at: Mapped[datetime] = mapped_column(UTCDateTime)

    outbox: Mapped[Outbox] = relationship()  # as Event.outbox_row


class RawMessage(Base):
    """Raw inbound bytes, content-addressed; written in the accept transaction."""

    __tablename__ = "raw_messages"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    stored_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MailboxState(Base):
    """Where an IMAP poller is in one folder: resync when UIDVALIDITY changes."""

    __tablename__ = "mailbox_state"
    __table_args__ = (UniqueConstraint("mailbox", "folder"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mailbox: Mapped[str] = mapped_column(String(100))
    folder: Mapped[str] = mapped_column(String(255))
    uidvalidity: Mapped[int] = mapped_column(BigInteger)  # 32-bit unsigned in IMAP
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Counter(Base):
    """Portable sequence (SQLite has none): case reference numbers."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[int] = mapped_column(Integer)
