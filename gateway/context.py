"""The typed context that flows through the pipeline, and what a step may return."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from sqlalchemy.orm import Session

from gateway.commands import Parsed
from gateway.models import Case, Message
from gateway.outbound import Identity
from gateway.parties import Directory, Party
from gateway.rawstore import RawStore
from gateway.render import Renderer
from gateway.settings import Settings
from parsers.analysis import Analysis, AnalysisOptions
from parsers.mime import ParsedMessage

Outcome = Literal["case_created", "case_updated", "quarantined", "ignored", "failed"]
SenderKind = Literal["party", "staff", "unknown", "invalid"]


@dataclass(frozen=True)
class Stop:
    """Ends the pipeline for this message with a recorded outcome and a human-readable reason."""

    outcome: Outcome
    reason: str


@dataclass(frozen=True)
class Sender:
    kind: SenderKind
    address: str | None
    party: Party | None = None
    problem: str | None = None

    @property
    def label(self) -> str:
        return self.address or "unknown sender"


@dataclass(frozen=True)
class Outgoing:
    """A mail an effect step wants sent; the reply step renders and queues it."""

    template: str
    to: tuple[str, ...]
    context: dict[str, Any]
    case: Case | None
    kind: str = "notice"  # auto_reply | notice | update | outbound_case | alert
    automatic: bool = True  # Auto-Submitted: auto-replied / auto-generated, never "no"
    attachments: tuple[tuple[str, str, bytes], ...] = ()


class Acting(Protocol):
    """Who is acting on a case and where its mails go: a message, or a person at the CLI."""

    outgoing: list[Outgoing]

    @property
    def actor(self) -> str: ...

    @property
    def message_row_id(self) -> int | None: ...

    @property
    def reply_address(self) -> str | None: ...


@dataclass
class Operator:
    """A person acting from the command line."""

    actor: str
    outgoing: list[Outgoing] = field(default_factory=list)
    message_row_id: int | None = None
    reply_address: str | None = None


@dataclass
class MessageContext:
    row: Message
    raw: bytes
    parsed: ParsedMessage | None = None
    analysis: Analysis | None = None
    automatic: str | None = None
    sender: Sender | None = None
    case: Case | None = None
    matched_by: str | None = None
    case_created: bool = False
    released: bool = False  # an operator released it from quarantine
    unverified: str | None = None  # why the sender is not verified, when policy let it in
    commands: Parsed | None = None
    notes: list[str] = field(default_factory=list)
    outgoing: list[Outgoing] = field(default_factory=list)
    outcome: Outcome | None = None
    reason: str | None = None

    @property
    def actor(self) -> str:
        return self.sender.label if self.sender else "gateway"

    @property
    def message_row_id(self) -> int | None:
        return self.row.id

    @property
    def reply_address(self) -> str | None:
        return self.sender.address if self.sender else None


@dataclass(frozen=True)
class Deps:
    """What steps may use; built by app.py, the session is the worker's transaction."""

    session: Session
    settings: Settings
    directory: Directory
    renderer: Renderer
    identity: Identity
    analysis_options: AnalysisOptions
    now: datetime
    store: RawStore


Step = Callable[[MessageContext, Deps], Stop | None]
