"""Parsed header values, remembered within a memory budget.

The stdlib parses a structured header again on every ``msg[name]``, and the pipeline's
parsers ask for the same few headers of a message many times, so parsed values are
remembered. What is remembered must be bounded in memory, not in entries: a parsed
header keeps its whole parse tree, about 35 times its text for an unstructured field and
about 400 times for an address list (a 2 KB To: of 60 recipients holds ~830 KB), so the
8,192 entries of an ``lru_cache`` could grow a long-running gateway by gigabytes. Each
entry is charged its text times that weight, and the oldest go first once the budget is
spent; the working set of a few messages fits many times over.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

ADDRESS_FIELDS = frozenset(
    {"from", "to", "cc", "bcc", "sender", "reply-to", "resent-from", "resent-to",
     "resent-cc", "resent-bcc", "resent-sender"}
)  # fmt: skip
ADDRESS_WEIGHT = 12  # an address list's parse tree against an unstructured one's, per byte


class HeaderCache:
    """Least recently used first out, within ``budget`` weighted characters; thread-safe."""

    def __init__(self, budget: int) -> None:
        self._budget = budget
        self._used = 0
        self._entries: OrderedDict[tuple[object, str, str], tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        return self._used

    def get(self, key: tuple[object, str, str], parse: Callable[[], Any]) -> Any:
        """The parsed value for ``key`` (policy, name, value), parsing it at most once
        while it stays within the budget."""
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                return found[0]
        parsed = parse()  # outside the lock: another thread may parse the same value too
        _, name, value = key
        cost = len(value) * (ADDRESS_WEIGHT if name.lower() in ADDRESS_FIELDS else 1) + 64
        if cost > self._budget // 8:
            return parsed  # one such value would push out too many others
        with self._lock:
            if key not in self._entries:
                self._entries[key] = (parsed, cost)
                self._used += cost
                while self._used > self._budget:
                    _, (_, freed) = self._entries.popitem(last=False)
                    self._used -= freed
        return parsed
