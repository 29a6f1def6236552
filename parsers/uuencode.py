"""Files uuencoded into a text body, as Lotus Notes and old clients send them.

Such a block is not prose: left in the body it buries what the sender wrote under
thousands of lines of encoded data (and its identifiers under noise). The body drops
it; evidence lists it as a file. One forward pass finds the blocks, so hostile text
with many "begin" lines costs one scan.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass

_UU_BEGIN = re.compile(r"^begin [0-7]{3,4} ([^\r\n]{1,255}?)[ \t]*\r?$", re.M)
_UU_END = re.compile(r"^end[ \t]*\r?$", re.M)
_UU_LINE = re.compile(r"[ -`]{0,100}\r?")
MAX_UU_BLOCKS = 20


@dataclass(frozen=True)
class UuBlock:
    """A uuencoded file inside a text body: Lotus Notes and old clients send files so."""

    name: str
    start: int  # offset of the "begin" line in the text
    end: int  # offset just past the "end" line
    lines: str  # the encoded lines
    complete: bool = True  # False: the text ended (or was cut) before the "end" line


def uuencoded_blocks(text: str) -> list[UuBlock]:
    """The ``begin 644 name`` ... ``end`` blocks of ``text``, at most MAX_UU_BLOCKS.

    One forward pass: a "begin" without its "end" stops the search, so hostile text
    costs one scan, never one scan per "begin".
    """
    blocks: list[UuBlock] = []
    pos = 0
    for _ in range(MAX_UU_BLOCKS * 10):  # invalid blocks count too
        if len(blocks) >= MAX_UU_BLOCKS or text.find("begin ", pos) < 0:
            break
        begin = _UU_BEGIN.search(text, pos)
        if begin is None:
            break
        end = _UU_END.search(text, begin.end())
        stop, pos = (end.start(), end.end()) if end else (len(text), len(text))
        lines = text[begin.end() : stop]
        if all(_UU_LINE.fullmatch(line) for line in lines.strip("\r\n").split("\n")):
            name = begin.group(1).strip()
            blocks.append(UuBlock(name, begin.start(), pos, lines, end is not None))
        if end is None:
            break  # an unterminated block runs to the end of a (truncated) part
    return blocks


def may_hold_uuencoded(text: str) -> bool:
    """Cheap test before decoding a part to look for uuencoded files in it."""
    return "begin " in text and _UU_BEGIN.search(text) is not None


def strip_uuencoded(text: str) -> str:
    """``text`` without its uuencoded files (evidence lists them), which are not prose."""
    if "begin " not in text:
        return text
    kept: list[str] = []
    cursor = 0
    for block in uuencoded_blocks(text):
        kept.append(text[cursor : block.start])
        cursor = block.end
    kept.append(text[cursor:])
    return "".join(kept)


def decode_uu(lines: str, max_bytes: int) -> bytes:
    """The bytes of a uuencoded block; lines some encoders pad wrongly are trimmed."""
    out: list[bytes] = []
    size = 0
    for line in lines.split("\n"):
        line = line.rstrip("\r")
        if not line:
            continue
        try:
            chunk = binascii.a2b_uu(line)
        except (binascii.Error, ValueError):
            length = (((ord(line[0]) - 32) & 63) * 4 + 5) // 3
            try:
                chunk = binascii.a2b_uu(line[:length])
            except (binascii.Error, ValueError):
                break
        out.append(chunk)
        size += len(chunk)
        if size >= max_bytes:
            break
    return b"".join(out)[:max_bytes]
