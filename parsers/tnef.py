"""The body Outlook hides in winmail.dat (TNEF), when it sent no other.

Outlook's "rich text" mail can reach us as a multipart whose only body is an
``application/ms-tnef`` attachment. tnefparse reads its plain or HTML body; an RTF-only
body stays unread (nothing we ship converts RTF), and the message then has no text.
"""

from __future__ import annotations

import logging

from tnefparse import TNEF

from parsers.charsets import decode_bytes

logging.getLogger("tnefparse").setLevel(logging.ERROR)  # it logs every odd attribute

MAX_TNEF_BYTES = 16 * 1024 * 1024
MAX_TNEF_NAMES = 100
TNEF_TYPES = frozenset({"application/ms-tnef", "application/vnd.ms-tnef"})


def is_winmail(content_type: str, filename: str | None) -> bool:
    """A TNEF part: by its type, or by the name Outlook gives it whatever the type says."""
    return content_type in TNEF_TYPES or (filename or "").lower().endswith("winmail.dat")


def tnef_body(data: bytes) -> tuple[str | None, str | None]:
    """(plain, html) body of an Outlook TNEF stream, best effort; (None, None) if none."""
    if not data or len(data) > MAX_TNEF_BYTES:
        return None, None
    try:
        parsed = TNEF(data, do_checksum=False)
        return _tnef_text(parsed.body), _tnef_text(parsed.htmlbody)
    except Exception:  # RecursionError included: embedded TNEF recurses
        return None, None


def tnef_attachment_names(data: bytes) -> list[str]:
    """Names of the files inside a winmail.dat as Outlook wrote them, best effort."""
    if not data or len(data) > MAX_TNEF_BYTES:
        return []
    try:
        parsed = TNEF(data, do_checksum=False)
        names: list[str] = []
        for attachment in parsed.attachments[:MAX_TNEF_NAMES]:
            try:
                name = attachment.long_filename()
            except Exception:
                name = getattr(attachment, "name", "")
            if isinstance(name, bytes):
                name = name.decode("utf-8", "replace")
            if not name and not getattr(attachment, "data", b""):
                continue  # a truncated stream: an attachment record with nothing in it
            names.append(str(name or ""))
        return names
    except Exception:  # RecursionError included: embedded TNEF recurses
        return []


def _tnef_text(value: object) -> str | None:
    if isinstance(value, bytes):
        text, _ = decode_bytes(value.rstrip(b"\x00"), None)
        return text
    return str(value).rstrip("\x00") if value else None
