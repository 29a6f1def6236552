"""The body Outlook hides in winmail.dat (TNEF), when it sent no other.

Outlook's "rich text" mail can reach us as a multipart whose only body is an
``application/ms-tnef`` attachment. tnefparse reads its plain or HTML body. Often there
is only compressed RTF (PR_RTF_COMPRESSED, MS-OXRTFCP): compressed_rtf expands it and
striprtf turns it into text, both bounded, since the expansion runs in pure Python.
"""

from __future__ import annotations

import codecs
import html
import logging
import re
import struct
from typing import NamedTuple

from compressed_rtf import decompress
from striprtf.striprtf import rtf_to_text
from tnefparse import TNEF

from parsers.charsets import decode_bytes

logging.getLogger("tnefparse").setLevel(logging.ERROR)  # it logs every odd attribute

MAX_TNEF_BYTES = 16 * 1024 * 1024
MAX_TNEF_NAMES = 100
TNEF_TYPES = frozenset({"application/ms-tnef", "application/vnd.ms-tnef"})
# Outlook's RTF for a long mail is tens of KB compressed; the expansion (at most ~8x)
# and the RTF reader are pure Python, about a second for the largest we take.
MAX_COMPRESSED_RTF_BYTES = 256 * 1024
MAX_RTF_BYTES = 2 * 1024 * 1024
_ANSICPG = re.compile(rb"\\ansicpg(\d{1,5})")


class TnefBody(NamedTuple):
    plain: str | None
    html: str | None
    rtf: str | None  # the RTF body as text, read only when there is neither of the others


def is_winmail(content_type: str, filename: str | None) -> bool:
    """A TNEF part: by its type, or by the name Outlook gives it whatever the type says."""
    return content_type in TNEF_TYPES or (filename or "").lower().endswith("winmail.dat")


def tnef_body(data: bytes) -> TnefBody:
    """The body of an Outlook TNEF stream, best effort; all None if there is none."""
    if not data or len(data) > MAX_TNEF_BYTES:
        return TnefBody(None, None, None)
    try:
        parsed = TNEF(data, do_checksum=False)
        plain, html_body = _tnef_text(parsed.body), _tnef_text(parsed.htmlbody)
        # The raw property: tnefparse's own rtfbody would expand it without a bound.
        compressed = getattr(parsed, "_rtfbody", None)
    except Exception:  # RecursionError included: embedded TNEF recurses
        return TnefBody(None, None, None)
    rtf = None
    if not (plain or "").strip() and not (html_body or "").strip() and compressed:
        rtf = rtf_body_text(bytes(compressed))
    return TnefBody(plain, html_body, rtf)


def rtf_body_text(compressed: bytes) -> str | None:
    """Text of a compressed RTF body; None when it is too large or not readable."""
    if not 16 <= len(compressed) <= MAX_COMPRESSED_RTF_BYTES:
        return None
    size, raw_size = struct.unpack_from("<II", compressed)
    if raw_size > MAX_RTF_BYTES or size + 4 > len(compressed):
        return None  # says it expands past our bound, or is cut short
    try:
        rtf = decompress(compressed[: size + 4])[:MAX_RTF_BYTES]
        text = rtf_to_text(rtf.decode("latin-1"), encoding=_codepage(rtf), errors="replace")
    except Exception:  # a corrupt stream (bad CRC, unknown type) or RTF it cannot read
        return None
    if not isinstance(text, str):
        return None
    if b"\\fromhtml" in rtf:  # HTML carried in RTF: the text keeps its entities
        text = html.unescape(text)
    return text.replace("\x00", "").strip() or None


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


def _codepage(rtf: bytes) -> str:
    """The code page of the RTF's \\'xx escapes (\\ansicpgN), cp1252 when unnamed or unknown."""
    found = _ANSICPG.search(rtf[:4096])
    if found:
        name = f"cp{int(found.group(1))}"
        try:
            codecs.lookup(name)
            return name
        except LookupError:
            pass
    return "cp1252"


def _tnef_text(value: object) -> str | None:
    if isinstance(value, bytes):
        text, _ = decode_bytes(value.rstrip(b"\x00"), None)
        return text
    return str(value).rstrip("\x00") if value else None
