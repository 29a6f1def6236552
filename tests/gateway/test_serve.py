"""serve's worker and delivery loops back off while the database is down."""

from __future__ import annotations

from gateway.serve import UNAVAILABLE_MAX_SECONDS, _Outage


def test_waits_double_from_half_a_second_to_thirty_then_reset() -> None:
    outage = _Outage()
    waits = [outage.wait_after(OSError("gone")) for _ in range(9)]
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert max(waits) == UNAVAILABLE_MAX_SECONDS
    outage.over()  # a pass that worked
    assert outage.wait_after(OSError("gone again")) == 0.5
