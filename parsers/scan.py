"""ASCII case folding for cheap case-insensitive scans, and literal scans to go with it.

Lower-case patterns run over folded text instead of IGNORECASE over the original because
that is many times faster. ``str.translate`` folds exactly A-Z, but on non-ASCII text it
costs about 15 times what ``str.lower`` does; ``str.lower`` also folds non-ASCII letters,
which a pattern made of ASCII literals, ``\\w``, ``\\s``, ``\\b`` and ``\\d`` cannot tell
apart (checked over every code point), except for the two characters whose lower case is
ASCII or longer than one character.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator
from functools import lru_cache

ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_LOWER_CHANGES_CLASS = ("\u0130", "\u212a")  # İ -> "i̇" (two characters), Kelvin sign -> "k"
_SPARSE = 32  # anchors rarer than one per this many characters are worth jumping to


@lru_cache(maxsize=2)  # one text is scanned for several kinds in a row
def folded(text: str) -> str:
    """``text`` with A-Z lowered, position for position.

    Every ASCII character comes out exactly as ``text.translate(ASCII_LOWER)`` has it; a
    non-ASCII character may be lower-cased but stays non-ASCII, in the same ``\\w``,
    ``\\s`` and ``\\d`` classes (and never becomes a dash, bullet or other punctuation).
    """
    if text.isascii() or not any(ch in text for ch in _LOWER_CHANGES_CLASS):
        return text.lower()
    return text.translate(ASCII_LOWER)


def literal_starts(text: str, literals: tuple[str, ...]) -> Iterator[int]:
    """Where ``re.finditer("|".join(literals), text)`` finds its matches, using str.find.

    Leftmost match first, the earlier literal winning a tie, and no match starting inside
    the previous one: the same non-overlapping positions the regex gives.
    """
    if not all(literals):  # an empty literal matches everywhere; let re spell that out
        yield from (m.start() for m in re.finditer("|".join(map(re.escape, literals)), text))
        return
    nexts = [text.find(literal) for literal in literals]
    while True:
        best = -1
        for k, pos in enumerate(nexts):
            if pos != -1 and (best == -1 or pos < nexts[best]):
                best = k
        if best == -1:
            return
        start = nexts[best]
        yield start
        end = start + len(literals[best])
        for k, pos in enumerate(nexts):
            if pos != -1 and pos < end:
                nexts[k] = text.find(literals[k], end)


def anchored_matches(
    text: str, anchors: tuple[tuple[str, int], ...], pattern: re.Pattern[str]
) -> Iterator[re.Match[str]]:
    """``pattern.finditer(text)``, visiting only where the pattern can start.

    Each ``(literal, offset)`` says: a match starting at p may have ``literal`` at
    p + offset, and every match has one of them. str.find jumps between those places
    instead of the regex trying every position (slow for patterns that open with a
    lookbehind). Where they turn out dense, the regex's own scan takes over from there,
    so the cost never grows much past the plain scan's.
    """
    if not all(literal for literal, _ in anchors):
        yield from pattern.finditer(text)
        return
    visits = len(text) // _SPARSE + _SPARSE
    nexts = [_next_start(text, literal, offset, 0) for literal, offset in anchors]
    resume = 0
    while True:
        live = [pos for pos in nexts if pos != -1]
        if not live:
            return
        visits -= 1
        if visits < 0:  # no match starts before resume, so the regex may go on from there
            yield from pattern.finditer(text, resume)
            return
        start = min(live)
        m = pattern.match(text, start)
        resume = start + 1
        if m is not None:
            yield m
            resume = max(m.end(), resume)
        for k, pos in enumerate(nexts):
            if pos != -1 and pos < resume:
                literal, offset = anchors[k]
                nexts[k] = _next_start(text, literal, offset, resume)


def _next_start(text: str, literal: str, offset: int, start: int) -> int:
    """First p >= start with ``literal`` at p + offset, or -1."""
    found = text.find(literal, start + offset)
    return -1 if found == -1 else found - offset
