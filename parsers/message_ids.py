"""Message-ID handling for threading: bounded, normalised, never trusted for identity."""

from __future__ import annotations

import re
from email.message import EmailMessage

from parsers.mime import header_values

_MSGID = re.compile(r"<([^<>\s]{1,250})>")


def message_ids(text: str, cap: int = 50) -> list[str]:
    """``<id>`` tokens from a References-style header; the last ``cap`` are the useful ones (B30)."""
    found = [f"<{m}>" for m in _MSGID.findall(text[-64 * 1024 :])]
    return found[-cap:]


def message_id(message: EmailMessage) -> str | None:
    values = header_values(message, "Message-ID", cap=1)
    ids = message_ids(values[0]) if values else []
    return ids[0] if ids else None


def thread_ids(message: EmailMessage, cap: int = 50) -> list[str]:
    """In-Reply-To first, then References newest first: the order a match is most likely."""
    in_reply_to = message_ids(" ".join(header_values(message, "In-Reply-To", cap=2)), cap)
    references = message_ids(" ".join(header_values(message, "References", cap=2)), cap)
    ordered = in_reply_to + list(reversed(references))
    return list(dict.fromkeys(ordered))[:cap]
