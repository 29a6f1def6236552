"""Attachments as case evidence: what was sent, under a name safe to show.

Names come from hostile input (B34, B36, B39): RFC 2231 continuations, encoded words,
"../../etc/passwd", right-to-left overrides. We only ever *display* them, storage uses
the hash, but a display name must still be a plain basename. Forwarded messages
(message/rfc822) are evidence themselves and so are their attachments, which is how
people pass on what a third party sent them. Everything is counted and capped.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import re
import unicodedata
from dataclasses import dataclass
from email.message import EmailMessage, Message
from typing import Any

import filetype

from parsers.body import (
    HeaderBudget,
    PartInfo,
    best_text,
    decode_part,
    decoded_bytes,
    part_info,
    raw_payload,
)
from parsers.charsets import message_charset_hints
from parsers.mime import header_text, walk_parts
from parsers.tnef import is_winmail, tnef_attachment_names
from parsers.uuencode import decode_uu, may_hold_uuencoded, uuencoded_blocks

MAX_FORWARD_DEPTH = 5
MAX_WALK = 2000
MAX_FILENAME_CHARS = 200
MAX_FORWARDED_TEXTS = 20
MAX_FORWARDED_CHARS = 500_000
MAX_UU_TEXT_BYTES = 16 * 1024 * 1024  # a text part read for uuencoded files
# Work (lines) the generator may do to hash forwarded messages, all of them together: it
# writes line by line (about 0.3 us each) and folds headers (about 1 us a character),
# and each forward nested in another is written again: 4 MB of empty lines five
# forwards deep took 10 s, a 1 MB Subject in a forward 11 s.
MAX_FORWARD_HASH_WORK = 1_000_000
_MAX_HASHED_HEADERS = 10_000  # per part of a forwarded message
_SNIFF_BYTES = 8192

_NOT_EVIDENCE = frozenset(
    {
        "text/plain",
        "text/html",
        "text/enriched",
        "text/rfc822-headers",
        "message/delivery-status",
        "message/global-delivery-status",
        "message/disposition-notification",
        "message/feedback-report",
        "message/global-headers",
    }
)
_FORWARD_TYPES = frozenset({"message/rfc822", "message/global"})
# Text types clients show inline even when named: with a filename they are files too.
_NAMED_TEXT = frozenset({"text/plain", "text/html"})
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class Evidence:
    """One attachment (or forwarded message) as a case sees it."""

    filename: str
    content_type: str
    sniffed_type: str | None
    size: int
    sha256: str
    inline: bool = False
    from_forward: bool = False
    contents: tuple[str, ...] = ()
    problem: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "filename": self.filename,
            "content_type": self.content_type,
            "size": self.size,
            "sha256": self.sha256,
            "sniffed_type": self.sniffed_type,
            "inline": self.inline,
            "from_forward": self.from_forward,
            "contents": list(self.contents),
        }
        if self.problem:
            out["problem"] = self.problem
        return out


def find_evidence(
    msg: EmailMessage, *, max_parts: int = 200, max_decoded_bytes: int = 64 * 1024 * 1024
) -> list[Evidence]:
    """Attachments, embedded images and forwarded messages, in message order."""
    walker = _Walker(max_parts=max_parts, budget=max_decoded_bytes)
    with contextlib.suppress(Exception):  # RecursionError too; parts found so far count
        walker.walk(msg)
    return walker.found


def forwarded_texts(msg: EmailMessage, *, max_chars: int = MAX_FORWARDED_CHARS) -> list[str]:
    """Body texts of attached messages, so identifiers quoted in a forward still count."""
    texts: list[str] = []
    remaining = max_chars
    try:
        for inner, _depth in _forwarded_messages(msg):
            if len(texts) >= MAX_FORWARDED_TEXTS or remaining <= 0:
                break
            body = best_text(inner, max_chars=remaining)
            if body.text:
                texts.append(body.text)
                remaining -= len(body.text)
    except Exception:
        pass
    return texts


def forwarded_messages(msg: EmailMessage) -> list[EmailMessage]:
    """The messages attached as message/rfc822, outermost first, bounded in number and depth."""
    try:
        return [inner for inner, _ in _forwarded_messages(msg)][:MAX_FORWARDED_TEXTS]
    except Exception:
        return []


def clean_filename(raw: str | None, index: int) -> str:
    """A display-safe basename; "attachment-<index>" when nothing usable is left."""
    name = raw or ""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _DRIVE.sub("", name)
    name = "".join(
        " " if ch in "\t\r\n" else ch
        for ch in name
        if ch in "\t\r\n" or unicodedata.category(ch) not in _UNSAFE_CATEGORIES
    )
    name = " ".join(name.split()).strip(" .")
    if len(name) > MAX_FILENAME_CHARS:
        _, dot, ext = name.rpartition(".")
        keep = ext if dot and len(ext) <= 16 else ""
        name = name[: MAX_FILENAME_CHARS - len(keep) - 1].rstrip() + ("." + keep if keep else "")
    if not name or set(name) <= {"."}:
        return f"attachment-{index}"
    return name


class _Walker:
    def __init__(self, *, max_parts: int, budget: int) -> None:
        self.found: list[Evidence] = []
        self.max_parts = max_parts
        self.budget = budget
        self.headers = HeaderBudget()
        self.visited = 0
        self.hash_work = MAX_FORWARD_HASH_WORK

    def walk(self, root: Message) -> None:
        self.headers.hints = message_charset_hints(root)
        stack: list[tuple[Message, int, bool]] = [(root, 0, False)]
        while stack and self.visited < MAX_WALK and len(self.found) < self.max_parts:
            part, depth, forwarded = stack.pop()
            self.visited += 1
            info = part_info(part, self.headers)
            ctype = info.content_type
            payload = raw_payload(part)
            if ctype in _FORWARD_TYPES and part is not root:
                self._add_forward(part, info, forwarded)
                if depth < MAX_FORWARD_DEPTH and isinstance(payload, list):
                    inner = [p for p in payload if isinstance(p, Message)]
                    stack.extend((p, depth + 1, True) for p in reversed(inner))
                continue
            if isinstance(payload, list):
                if ctype in _NOT_EVIDENCE:  # delivery-status blocks parse as pseudo-parts
                    continue
                stack.extend(
                    (p, depth, forwarded) for p in reversed(payload) if isinstance(p, Message)
                )
                continue
            if ctype == "text/plain" and not info.is_attachment:
                self._add_uuencoded(part, info, forwarded)
            if part is root and not info.is_attachment:
                continue  # a single-part message is its own body
            if (
                info.is_attachment
                or (info.filename is not None and ctype in _NAMED_TEXT)  # a text file shown inline
                or (ctype not in _NOT_EVIDENCE and not ctype.startswith("multipart/"))
            ):
                self._add_leaf(part, info, forwarded)

    def _add_leaf(self, part: Message, info: PartInfo, forwarded: bool) -> None:
        index = len(self.found) + 1
        name = clean_filename(info.filename, index)
        inline = _is_inline(info)
        if self.budget <= 0:
            problem = "not decoded: decoded-size budget used up"
            self.found.append(
                Evidence(
                    name, info.content_type, None, _estimated_size(part), "", inline, forwarded,
                    (), problem,
                )
            )  # fmt: skip
            return
        data, problems = decoded_bytes(part, self.budget, info)
        self.budget -= len(data)
        if info.problem:
            problems.insert(0, info.problem)
        contents: tuple[str, ...] = ()
        if is_winmail(info.content_type, info.filename):
            contents = tnef_names(data)
        self.found.append(
            Evidence(
                filename=name,
                content_type=info.content_type,
                sniffed_type=_sniff(data),
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                inline=inline,
                from_forward=forwarded,
                contents=contents,
                problem="; ".join(problems) or None,
            )
        )

    def _add_uuencoded(self, part: Message, info: PartInfo, forwarded: bool) -> None:
        """Files uuencoded inside a text body (Lotus Notes, old clients) are attachments."""
        payload = raw_payload(part)
        if not isinstance(payload, str) or self.budget <= 0 or not may_hold_uuencoded(payload):
            return
        text = decode_part(part, min(self.budget, MAX_UU_TEXT_BYTES))
        for block in uuencoded_blocks(text):
            if len(self.found) >= self.max_parts or self.budget <= 0:
                return
            data = decode_uu(block.lines, self.budget)
            self.budget -= len(data)
            self.found.append(
                Evidence(
                    filename=clean_filename(block.name, len(self.found) + 1),
                    content_type="application/octet-stream",
                    sniffed_type=_sniff(data),
                    size=len(data),
                    sha256=hashlib.sha256(data).hexdigest(),
                    from_forward=forwarded,
                    problem=None if block.complete else "uuencoded file has no end line",
                )
            )

    def _add_forward(self, part: Message, info: PartInfo, forwarded: bool) -> None:
        index = len(self.found) + 1
        name = info.filename
        payload = raw_payload(part)
        inner = payload[0] if isinstance(payload, list) and payload else None
        if not name and isinstance(inner, EmailMessage):
            subject = header_text(inner, "Subject", max_len=150)
            name = f"{subject}.eml" if subject else None
        size, work = _forward_extent(inner if inner is not None else part)
        problem = info.problem
        if work > self.hash_work or size > self.budget:
            digest = ""
            problem = "; ".join(x for x in (problem, "not hashed: too large to serialise") if x)
        else:
            data = _serialise(part, inner)
            self.hash_work -= work
            self.budget -= len(data)
            size, digest = len(data), hashlib.sha256(data).hexdigest()
        self.found.append(
            Evidence(
                filename=clean_filename(name or "forwarded-message.eml", index),
                content_type=info.content_type,
                sniffed_type=None,
                size=size,
                sha256=digest,
                inline=False,
                from_forward=forwarded,
                contents=(),
                problem=problem,
            )
        )


def _forwarded_messages(msg: Message) -> list[tuple[EmailMessage, int]]:
    out: list[tuple[EmailMessage, int]] = []
    stack: list[tuple[Message, int]] = [(msg, 0)]
    budget = HeaderBudget(hints=message_charset_hints(msg))
    seen = 0
    while stack and seen < MAX_WALK and len(out) < MAX_FORWARDED_TEXTS:
        part, depth = stack.pop()
        seen += 1
        payload = raw_payload(part)
        if not isinstance(payload, list):
            continue
        ctype = part_info(part, budget).content_type
        if ctype in _FORWARD_TYPES and part is not msg:
            if depth >= MAX_FORWARD_DEPTH:
                continue
            for inner in payload:
                if isinstance(inner, EmailMessage):
                    out.append((inner, depth + 1))
            stack.extend((p, depth + 1) for p in reversed(payload) if isinstance(p, Message))
        elif ctype not in _NOT_EVIDENCE:
            stack.extend((p, depth) for p in reversed(payload) if isinstance(p, Message))
    return out


def _forward_extent(message: Message) -> tuple[int, int]:
    """Characters of a forwarded message's payloads, and the generator's work to write it.

    The work is its lines, plus four per header character (folding a header costs about
    1 us a character, four times a line); cheap to count (str.count over each part), so
    a forward too large to serialise is known first.
    """
    size = work = 0
    for part in walk_parts(message, cap=MAX_WALK):  # type: ignore[arg-type]
        headers = list(itertools.islice(part.raw_items(), _MAX_HASHED_HEADERS + 1))
        if len(headers) > _MAX_HASHED_HEADERS:
            return size, MAX_FORWARD_HASH_WORK + 1
        work += sum(1 + 4 * len(str(value)) for _, value in headers)
        payload = raw_payload(part)
        if isinstance(payload, str):
            size += len(payload)
            work += payload.count("\n") + payload.count("\r")
    return size, work


def _is_inline(info: PartInfo) -> bool:
    """An embedded image (inline, with a Content-ID), told apart from an attachment."""
    return info.disposition in ("inline", "") and info.content_id


def _estimated_size(part: Message) -> int:
    payload = raw_payload(part)
    if not isinstance(payload, str):
        return 0
    cte = str(part.get("content-transfer-encoding", "")).lower()
    return len(payload) * 3 // 4 if cte == "base64" else len(payload)


def _sniff(data: bytes) -> str | None:
    if not data:
        return None
    try:
        kind = filetype.guess(data[:_SNIFF_BYTES])
    except Exception:
        return None
    return str(kind.mime) if kind is not None else None


def _serialise(part: Message, inner: Message | None) -> bytes:
    """Bytes of a forwarded message for hashing; the raw form is gone after parsing."""
    from email import policy
    from email.generator import BytesGenerator
    from io import BytesIO

    target = inner if inner is not None else part
    buffer = BytesIO()
    try:
        BytesGenerator(buffer, mangle_from_=False, policy=policy.compat32).flatten(target)
        return buffer.getvalue()
    except Exception:
        try:
            return str(target).encode("utf-8", "surrogateescape")
        except Exception:
            return b""


def tnef_names(data: bytes) -> tuple[str, ...]:
    """Names of the files inside an Outlook winmail.dat, cleaned as any other name."""
    return tuple(clean_filename(name, i) for i, name in enumerate(tnef_attachment_names(data), 1))


def evidence_files(
    msg: EmailMessage, *, max_files: int = 40, max_total_bytes: int = 20 * 1024 * 1024
) -> list[tuple[str, str, bytes]]:
    """(filename, declared type, decoded bytes) of the attachments, to pass evidence on.

    Only parts with a file name that are not embedded images count, and files uuencoded
    inside a text part; a file that would take the total over ``max_total_bytes`` is left
    out (its name is still in the facts).
    """
    files: list[tuple[str, str, bytes]] = []
    total = 0
    with contextlib.suppress(Exception):
        for index, part in enumerate(walk_parts(msg, cap=500)):
            if part.is_multipart() or len(files) >= max_files:
                continue
            if part.get_content_type() == "text/plain" and may_hold_uuencoded(
                str(raw_payload(part))
            ):
                text = decode_part(part, max_total_bytes)
                for block in uuencoded_blocks(text)[: max_files - len(files)]:
                    data = decode_uu(block.lines, max_total_bytes + 1)
                    if total + len(data) > max_total_bytes:
                        continue
                    total += len(data)
                    uu_name = clean_filename(block.name, index)
                    files.append((uu_name, "application/octet-stream", data))
            name = part.get_filename()
            if not name or (part.get_content_disposition() == "inline" and part.get("Content-ID")):
                continue
            data, _ = decoded_bytes(part, max_total_bytes)
            if total + len(data) > max_total_bytes:
                continue
            total += len(data)
            files.append((clean_filename(name, index), part.get_content_type(), data))
    return files
