"""The write gate: accepts in flight are counted, and the worker waits for them, boundedly."""

from __future__ import annotations

import threading
import time

from gateway.write_gate import WriteGate


def test_busy_while_an_accept_is_in_flight_and_clear_after() -> None:
    gate = WriteGate()
    assert not gate.busy() and gate.wait_clear(0.01)
    with gate.accepting(), gate.accepting():
        assert gate.busy()
    assert not gate.busy()


def test_the_worker_waits_for_accepts_and_wakes_when_they_end() -> None:
    gate = WriteGate()
    entered, release = threading.Event(), threading.Event()

    def accept() -> None:
        with gate.accepting():
            entered.set()
            release.wait(5)

    thread = threading.Thread(target=accept)
    thread.start()
    assert entered.wait(5)
    threading.Timer(0.1, release.set).start()
    started = time.monotonic()
    assert gate.wait_clear(5) is True
    assert 0.05 < time.monotonic() - started < 4  # woken by the accept's end, not the timeout
    thread.join(5)


def test_a_flood_of_accepts_delays_the_worker_but_never_stops_it() -> None:
    gate = WriteGate()
    with gate.accepting():
        started = time.monotonic()
        assert gate.wait_clear(0.2) is False
        assert time.monotonic() - started >= 0.2
    assert not gate.busy()


def test_an_accept_that_fails_still_leaves_the_gate() -> None:
    gate = WriteGate()
    try:
        with gate.accepting():
            raise OSError("the accept process died")
    except OSError:
        pass
    assert not gate.busy()
