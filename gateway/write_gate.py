"""Accepts go first: the worker steps aside while a message waits to be stored.

SQLite has one writer at a time. The worker holds the write lock for a whole message
(~10 ms, most of it the ORM), then takes it again at once for the next; an accept
waiting for the lock polls with SQLite's busy handler, sleeping 1, 2, 5, 10… ms between
tries, and so almost never finds it free. Measured with the worker on and 8 SMTP clients:
the listener took 37 messages a second against ~900 with the worker off, every sender
waiting behind the backlog. Postfix's rule is the right one here: receiving mail comes
before working on it.

So this process counts the accepts it has in flight (requests sent to the accept
process and not yet answered). The worker ends its transaction after the message it is
on when one is waiting, and does not begin another until none is, or until
``MAX_WAIT_SECONDS`` has passed, so a flood slows the worker down but never stops it.
PostgreSQL has no such lock and gets no gate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

MAX_WAIT_SECONDS = 0.5


class WriteGate:
    def __init__(self) -> None:
        self._in_flight = 0
        self._changed = threading.Condition()

    @contextmanager
    def accepting(self) -> Iterator[None]:
        """Around one accept request, from sending it to its answer (any thread)."""
        with self._changed:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._changed:
                self._in_flight -= 1
                if not self._in_flight:
                    self._changed.notify_all()

    def busy(self) -> bool:
        return self._in_flight > 0

    def wait_clear(self, timeout: float = MAX_WAIT_SECONDS) -> bool:
        """Before a worker transaction: wait for accepts in flight; False if they outlasted
        ``timeout`` (the worker goes on anyway)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True
