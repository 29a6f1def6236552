"""What was worked out for the last few objects, so the walks over one message share it.

The body, evidence, auto-reply and forwarded-message checks each read the same message
and parts; the stdlib parses their headers again on every call. An entry is keyed by the
object's identity (a weak reference, so nothing is kept alive) and by a ``state`` the
caller takes from what the result depends on; an object changed in between, or a new
object at a recycled address, simply misses.
"""

from __future__ import annotations

import contextlib
import weakref
from typing import Generic, TypeVar

_O = TypeVar("_O")
_V = TypeVar("_V")


class Recent(Generic[_O, _V]):
    """The results for the last ``size`` objects; replacing a tuple keeps it thread-safe."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: tuple[tuple[weakref.ref[_O], object, _V], ...] = ()

    def get(self, obj: _O, state: object) -> _V | None:
        for ref, seen, value in self._entries:
            if ref() is obj and seen == state:
                return value
        return None

    def put(self, obj: _O, state: object, value: _V) -> None:
        with contextlib.suppress(TypeError):  # not weakly referenceable: nothing to key by
            entry = (weakref.ref(obj), state, value)
            self._entries = (entry, *self._entries[: self._size - 1])
