"""The IMAP poller's pure parts: UID sets, batching and backoff."""

from __future__ import annotations

import random

from gateway.ingress.imap import (
    BACKOFF_BASE_SECONDS,
    BACKOFF_CAP_SECONDS,
    _batches,
    backoff_delay,
    uid_set,
)


def test_uid_sets_are_short_whatever_the_count() -> None:
    assert uid_set([5, 1, 2, 3, 9, 10]) == "1:3,5,9:10"
    assert uid_set(list(range(1, 5001))) == "1:5000"
    assert uid_set([7]) == "7"


def test_batches_keep_uid_order_and_fetch_large_mail_alone() -> None:
    uids = list(range(1, 12))
    batches = [list(b) for b in _batches(uids, large={4, 5, 11}, size=3)]
    assert batches == [[1, 2, 3], [4], [5], [6, 7, 8], [9, 10], [11]]
    assert [u for b in batches for u in b] == uids  # every UID once, in order


def test_backoff_grows_with_full_jitter_and_is_capped() -> None:
    rng = random.Random(7)
    for attempt in range(40):
        ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt)
        delays = [backoff_delay(attempt, rng) for _ in range(50)]
        assert all(0 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jitter: many gateways never retry in lock-step
    late = [backoff_delay(30, rng) for _ in range(200)]
    assert sum(late) / len(late) > BACKOFF_CAP_SECONDS / 4  # it does grow to the cap
