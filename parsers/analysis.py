"""One message in, every fact the gateway needs out: the `inspect` result.

This is the only place that decides *which text* each fact is read from, because that
choice is what makes correlation safe and counting honest:

* identifiers, MPANs and timestamps of a reply come from its new text only, so quoted
  history does not count twice; a new case or forward reads the whole body plus the
  forwarded messages;
* our case references are read from the subject, the whole body (our watermark is often
  quoted) and forwarded bodies, but never from a forwarded message's *headers*: inner
  From, Message-ID and In-Reply-To never speak for the outer message (B18);
* a message the bounded parser refuses still yields an Analysis saying why.

``analyse`` never raises; each extractor failing is recorded as a parse problem.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from typing import Any, Literal, TypeVar

from parsers.addresses import address_list, sender
from parsers.autoreply import auto_reply_reason
from parsers.body import best_text
from parsers.bounce import Bounce, parse_bounce
from parsers.completeness import find_problems
from parsers.evidence import Evidence, find_evidence, forwarded_messages, forwarded_texts
from parsers.fields import CaseFields, extract_fields
from parsers.identifiers import (
    TransactionId,
    find_case_references,
    find_external_references,
    find_identifiers,
)
from parsers.message_ids import message_id, thread_ids
from parsers.mime import (
    Limits,
    ParsedMessage,
    header_count,
    header_text,
    header_values,
    parse_bounded,
)
from parsers.mpan import DEFAULT_DISTRIBUTORS, MpanFinding, find_mpans
from parsers.reply import reply_text
from parsers.timestamps import find_timestamps

Kind = Literal["new", "reply", "forward", "auto_reply", "bounce"]
T = TypeVar("T")
U = TypeVar("U")  # a default of another type ([] for a list of findings, None)

MAX_RECIPIENTS = 100
MAX_SCAN_CHARS = 2_000_000  # text handed to the extractors, all sources together

_BANNERS = (
    r"^\s*(?:(?:\[[^\]]{0,40}\]|\(?external\)?\s*:|\*{1,3}\s*external\s*\*{1,3}|caution\s*:)\s*)*"
)
_FORWARD_PREFIX = re.compile(
    _BANNERS + r"(?:fwd?|wg|tr|vs|doorst|rv|vb|vl|enc|pd)\s*(?:\[\d{1,3}\]|\(\d{1,3}\))?\s*:",
    re.I,
)
_REPLY_PREFIX = re.compile(
    _BANNERS + r"(?:re|aw|sv|antw|r|res|rif|odp|atb|vá|ynt)\s*(?:\[\d{1,3}\]|\(\d{1,3}\))?\s*:",
    re.I,
)
_ANY_PREFIX = re.compile(
    _BANNERS + r"(?:(?:fwd?|wg|tr|vs|doorst|rv|vb|vl|enc|pd|re|aw|sv|antw|r|res|rif|odp|atb|vá|ynt)"
    r"\s*(?:\[\d{1,3}\]|\(\d{1,3}\))?\s*:\s*)*",
    re.I,
)


@dataclass(frozen=True)
class AnalysisOptions:
    """What the deployment knows: limits, distributors, party MPIDs, our prefix and domains."""

    limits: Limits = Limits()  # noqa: RUF009 - Limits is frozen, sharing it is safe
    distributors: frozenset[str] = DEFAULT_DISTRIBUTORS
    known_mpids: frozenset[str] | None = None
    reference_prefix: str = "CPSD"
    own_domains: frozenset[str] = frozenset()


_EMPTY_FIELDS = CaseFields(None, None, None, None, None, None, None)


@dataclass(frozen=True)
class Analysis:
    message: EmailMessage | None
    message_id: str | None = None
    from_address: str | None = None
    sender_problem: str | None = None
    to: tuple[str, ...] = ()
    subject: str = ""
    date: datetime | None = None
    kind: Kind = "new"
    references: tuple[str, ...] = ()
    subject_references: tuple[str, ...] = ()
    external_references: tuple[str, ...] = ()
    in_reply_to_ids: tuple[str, ...] = ()
    body_text: str = ""
    reply_text: str = ""
    fields: CaseFields = _EMPTY_FIELDS
    mpans: tuple[MpanFinding, ...] = ()
    transaction_ids: tuple[TransactionId, ...] = ()
    mpids: tuple[str, ...] = ()
    error_codes: tuple[str, ...] = ()
    interface_ids: tuple[str, ...] = ()
    timestamps: tuple[datetime, ...] = ()
    evidence: tuple[Evidence, ...] = ()
    problems: tuple[str, ...] = ()
    parse_problems: tuple[str, ...] = ()
    auto_reply: str | None = None
    bounce: Bounce | None = None
    # additions beyond design.md's shape (keys may be added, never renamed)
    cc: tuple[str, ...] = ()
    event_codes: tuple[str, ...] = ()
    own_thread_ids: tuple[str, ...] = ()
    body_source: str = "none"
    forwarded_count: int = 0

    def to_json(self) -> dict[str, Any]:
        """design.md's `inspect --json` object, plus added keys; JSON-serialisable."""
        return {
            "message_id": self.message_id,
            "from": self.from_address,
            "to": list(self.to),
            "subject": self.subject,
            "date": _iso(self.date),
            "kind": self.kind,
            "references": list(self.references),
            "external_references": list(self.external_references),
            "reply_text": self.reply_text,
            "fields": {
                "summary": self.fields.summary,
                "impact": self.fields.impact,
                "root_cause": self.fields.root_cause,
                "priority": self.fields.priority,
            },
            "mpans": [m.to_json() for m in self.mpans],
            "transaction_ids": [t.value for t in self.transaction_ids],
            "mpids": list(self.mpids),
            "error_codes": list(self.error_codes),
            "interface_ids": list(self.interface_ids),
            "timestamps": [_iso(t) for t in self.timestamps],
            "evidence": [e.to_json() for e in self.evidence],
            "problems": list(self.problems),
            # added keys
            "parse_problems": list(self.parse_problems),
            "sender_problem": self.sender_problem,
            "auto_reply": self.auto_reply,
            "bounce": self.bounce.to_json() if self.bounce is not None else None,
            "transaction_id_kinds": [t.kind for t in self.transaction_ids],
            "subject_references": list(self.subject_references),
            "in_reply_to_ids": list(self.in_reply_to_ids),
            "own_thread_ids": list(self.own_thread_ids),
            "cc": list(self.cc),
            "event_codes": list(self.event_codes),
            "environment": self.fields.environment,
            "body_source": self.body_source,
            "forwarded_messages": self.forwarded_count,
        }


def analyse(
    raw: bytes,
    options: AnalysisOptions = AnalysisOptions(),
    *,
    envelope_from: str | None = None,
    parsed: ParsedMessage | None = None,
) -> Analysis:
    """Everything `inspect` prints about ``raw``; pass ``parsed`` to reuse a parse_bounded result."""
    try:
        if parsed is None:
            parsed = parse_bounded(raw, options.limits)
    except Exception as exc:  # parse_bounded promises not to raise; belt and braces
        return Analysis(None, parse_problems=(f"parser failed: {type(exc).__name__}",))
    if parsed.message is None:
        return Analysis(None, parse_problems=tuple(parsed.problems) or ("message refused",))
    try:
        return _analyse(parsed.message, list(parsed.problems), options, envelope_from)
    except RecursionError:
        return Analysis(
            parsed.message, parse_problems=(*parsed.problems, "analysis gave up: nesting too deep")
        )
    except Exception as exc:  # the raw message is kept; a bug here must not lose it
        return Analysis(
            parsed.message,
            parse_problems=(*parsed.problems, f"analysis failed: {type(exc).__name__}"),
        )


def _analyse(
    msg: EmailMessage, problems: list[str], options: AnalysisOptions, envelope_from: str | None
) -> Analysis:
    def safely(label: str, default: U, fn: Callable[[], T]) -> T | U:
        try:
            return fn()
        except Exception as exc:
            problems.append(f"{label} failed: {type(exc).__name__}")
            return default

    identity = safely("sender", None, lambda: sender(msg))
    from_address = identity.address.addr_spec if identity and identity.address else None
    sender_problem = identity.problem if identity else "sender could not be read"
    if sender_problem:
        problems.append(f"sender: {sender_problem}")
    from_name = identity.address.display_name if identity and identity.address else ""
    to = safely(
        "To", (), lambda: tuple(a.addr_spec for a in address_list(msg, "To", MAX_RECIPIENTS))
    )
    cc = safely(
        "Cc", (), lambda: tuple(a.addr_spec for a in address_list(msg, "Cc", MAX_RECIPIENTS))
    )
    subject = safely("subject", "", lambda: header_text(msg, "Subject") or "")
    for name in ("Subject", "Message-ID", "Date"):
        if header_count(msg, name) > 1:
            problems.append(f"{header_count(msg, name)} {name} headers (only one is allowed)")
    date = safely("date", None, lambda: _date(msg, problems))
    own_id = safely("Message-ID", None, lambda: message_id(msg))
    thread = safely("threading headers", (), lambda: tuple(thread_ids(msg)))
    own_thread = tuple(t for t in thread if _domain_of_id(t) in _lower(options.own_domains))
    if own_id and _domain_of_id(own_id) in _lower(options.own_domains):
        problems.append("Message-ID is on our own domain: our own mail coming back?")
    if from_address and from_address.rpartition("@")[2] in _lower(options.own_domains):
        problems.append("From address is on our own domain")

    body = safely("body", None, lambda: best_text(msg))
    body_text = body.text if body else ""
    if body:
        problems.extend(body.problems)
    evidence = safely("evidence", [], lambda: find_evidence(msg))
    forwards = safely("forwarded messages", [], lambda: forwarded_texts(msg))
    inner_messages = safely("forwarded messages", [], lambda: forwarded_messages(msg))

    bounce = safely("bounce", None, lambda: parse_bounce(msg, envelope_from=envelope_from))
    auto = safely("auto-reply", None, lambda: auto_reply_reason(msg, envelope_from=envelope_from))
    kind = _kind(subject, thread, bounce, auto, inner_messages)

    new_text = safely(
        "reply text",
        body_text,
        lambda: reply_text(
            body_text, sender=" ".join(x for x in (from_name, from_address) if x) or None
        ),
    )
    whole = kind in ("new", "forward")
    body_scope = _join([body_text, *forwards])
    fact_text = _join([subject, body_scope]) if whole else new_text
    prefix = options.reference_prefix
    ids = safely(
        "identifiers",
        None,
        lambda: find_identifiers(
            fact_text, reference_prefix=prefix, known_mpids=options.known_mpids
        ),
    )
    if whole:
        wide_refs = list(ids.case_references) if ids else []
        external = list(ids.external_references) if ids else []
    else:
        everything = _join([subject, body_scope])
        wide_refs = safely("references", [], lambda: find_case_references(everything, prefix))
        external = safely(
            "external references",
            [],
            lambda: find_external_references(everything, reference_prefix=prefix),
        )
    subject_refs = safely("subject references", [], lambda: find_case_references(subject, prefix))
    mpans = safely("MPANs", [], lambda: find_mpans(fact_text, options.distributors))
    stamps = safely("timestamps", [], lambda: find_timestamps(fact_text))
    fields = safely(
        "fields", _EMPTY_FIELDS, lambda: extract_fields(body_text if whole else new_text)
    )
    references = _unique([*subject_refs, *wide_refs])

    completeness: list[str] = []
    if whole:
        has_reference = bool(mpans or (ids and ids.transaction_ids) or stamps)
        completeness = safely(
            "completeness",
            [],
            lambda: find_problems(
                fields, has_reference=has_reference, evidence_count=len(evidence), text=body_scope
            ),
        )

    return Analysis(
        message=msg,
        message_id=own_id,
        from_address=from_address,
        sender_problem=sender_problem,
        to=to,
        subject=subject,
        date=date,
        kind=kind,
        references=tuple(references),
        subject_references=tuple(_unique(subject_refs)),
        external_references=tuple(external),
        in_reply_to_ids=thread,
        body_text=body_text,
        reply_text=new_text,
        fields=fields,
        mpans=tuple(mpans),
        transaction_ids=ids.transaction_ids if ids else (),
        mpids=ids.mpids if ids else (),
        error_codes=ids.error_codes if ids else (),
        interface_ids=ids.interface_ids if ids else (),
        timestamps=tuple(stamps),
        evidence=tuple(evidence),
        problems=tuple(completeness),
        parse_problems=tuple(_unique(problems)),
        auto_reply=auto,
        bounce=bounce,
        cc=cc,
        event_codes=ids.event_codes if ids else (),
        own_thread_ids=own_thread,
        body_source=body.source if body else "none",
        forwarded_count=len(inner_messages),
    )


def _kind(
    subject: str,
    thread: tuple[str, ...],
    bounce: Bounce | None,
    auto: str | None,
    inner: list[EmailMessage],
) -> Kind:
    if bounce is not None:
        return "bounce"
    if auto is not None:
        return "auto_reply"
    if _FORWARD_PREFIX.match(subject):
        return "forward"
    if inner and not _REPLY_PREFIX.match(subject):
        outer = _bare_subject(subject)
        inner_subjects = {_bare_subject(header_text(m, "Subject") or "") for m in inner[:5]}
        if not outer or outer in inner_subjects:
            return "forward"  # "forward as attachment": the outer subject mirrors the inner
    if _REPLY_PREFIX.match(subject) or thread:
        return "reply"
    return "new"


def _bare_subject(subject: str) -> str:
    return " ".join(_ANY_PREFIX.sub("", subject, count=1).split()).lower()


def _date(msg: EmailMessage, problems: list[str]) -> datetime | None:
    values = header_values(msg, "Date", cap=1)
    if not values:
        return None
    value = str(values[0])[:200]
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError, IndexError, OSError):
        parsed = None
    if parsed is None:
        problems.append("Date header unreadable; arrival time should be used")
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError, OSError):
        problems.append("Date header out of range")
        return None


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    try:
        utc = value.astimezone(UTC) if value.tzinfo else value
    except (OverflowError, ValueError):
        utc = value
    return utc.replace(tzinfo=None, microsecond=0).isoformat() + "Z"


def _domain_of_id(msgid: str) -> str:
    return msgid.strip("<>").rpartition("@")[2].lower()


def _lower(values: Iterable[str]) -> frozenset[str]:
    return frozenset(v.lower() for v in values)


def _join(texts: list[str]) -> str:
    out: list[str] = []
    remaining = MAX_SCAN_CHARS
    for text in texts:
        if remaining <= 0:
            break
        piece = text[:remaining]
        out.append(piece)
        remaining -= len(piece) + 2
    return "\n\n".join(out)


def _unique(values: Iterable[T]) -> list[T]:
    return list(dict.fromkeys(values))
