from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from gateway.lifecycle import (
    TRANSITIONS,
    Calendar,
    State,
    Target,
    TransitionError,
    add_time,
    breaching,
    can_close,
    can_move,
    due_times,
    move,
)

ALLOWED = {
    ("raised", "triage"),
    ("raised", "assigned"),
    ("raised", "awaiting_party"),
    ("raised", "info_required"),
    ("raised", "resolved"),
    ("raised", "redirected"),
    ("triage", "assigned"),
    ("triage", "awaiting_party"),
    ("triage", "info_required"),
    ("triage", "resolved"),
    ("triage", "redirected"),
    ("assigned", "triage"),
    ("assigned", "awaiting_party"),
    ("assigned", "info_required"),
    ("assigned", "resolved"),
    ("assigned", "redirected"),
    ("awaiting_party", "triage"),
    ("awaiting_party", "assigned"),
    ("awaiting_party", "info_required"),
    ("awaiting_party", "resolved"),
    ("awaiting_party", "redirected"),
    ("info_required", "triage"),
    ("info_required", "assigned"),
    ("info_required", "awaiting_party"),
    ("info_required", "resolved"),
    ("info_required", "redirected"),
    ("resolved", "triage"),
    ("resolved", "closed"),
    ("redirected", "triage"),
    ("redirected", "closed"),
    ("closed", "triage"),
}


@pytest.mark.parametrize(("current", "target"), list(itertools.product(State, State)))
def test_every_pair_of_states(current: State, target: State) -> None:
    allowed = (current.value, target.value) in ALLOWED
    assert can_move(current, target) is allowed
    if allowed:
        assert move(current, target) is target
    else:
        with pytest.raises(TransitionError, match=f"cannot become {target.value}"):
            move(current, target)


def test_table_matches_the_documented_pairs() -> None:
    assert {(a.value, b.value) for a, bs in TRANSITIONS.items() for b in bs} == ALLOWED


def test_unknown_states_are_refused() -> None:
    assert not can_move("raised", "lost")
    with pytest.raises(TransitionError, match="unknown state"):
        move("limbo", "closed")


@pytest.mark.parametrize(
    ("state", "children", "reason"),
    [
        ("resolved", 0, None),
        ("redirected", 0, None),
        ("resolved", 1, "1 child case(s) still open"),
        ("triage", 0, "must be resolved before it is closed"),
        ("closed", 0, "must be resolved before it is closed"),
    ],
)
def test_closing_waits_for_children_and_resolution(
    state: str, children: int, reason: str | None
) -> None:
    result = can_close(state, children)
    assert (result is None) if reason is None else (reason in (result or ""))


LONDON = ZoneInfo("Europe/London")
CAL = Calendar(zone=LONDON, holidays=frozenset({date(2026, 12, 25)}))


@pytest.mark.parametrize(
    ("start", "hours", "expected"),
    [
        # Inside a working day.
        (
            datetime(2026, 11, 27, 10, 0, tzinfo=LONDON),
            2,
            datetime(2026, 11, 27, 12, 0, tzinfo=LONDON),
        ),
        # Friday afternoon rolls over the weekend to Monday.
        (
            datetime(2026, 11, 27, 16, 30, tzinfo=LONDON),
            2,
            datetime(2026, 11, 30, 10, 0, tzinfo=LONDON),
        ),
        # Before opening counts from 09:00.
        (
            datetime(2026, 11, 30, 7, 0, tzinfo=LONDON),
            1,
            datetime(2026, 11, 30, 10, 0, tzinfo=LONDON),
        ),
        # Christmas Day is a holiday.
        (
            datetime(2026, 12, 24, 17, 0, tzinfo=LONDON),
            1,
            datetime(2026, 12, 28, 9, 30, tzinfo=LONDON),
        ),
        # Summer time: the clock is local.
        (datetime(2026, 7, 1, 8, 0, tzinfo=UTC), 1, datetime(2026, 7, 1, 10, 0, tzinfo=LONDON)),
    ],
)
def test_business_hours(start: datetime, hours: float, expected: datetime) -> None:
    assert add_time(start, timedelta(hours=hours), CAL, business=True) == expected


def test_round_the_clock_targets_ignore_the_calendar() -> None:
    opened = datetime(2026, 11, 28, 23, 0, tzinfo=UTC)  # a Saturday night
    response, resolution = due_times(
        opened, Target(timedelta(minutes=30), timedelta(hours=6), False), CAL
    )
    assert response == opened + timedelta(minutes=30)
    assert resolution == opened + timedelta(hours=6)


def test_breaching_and_near() -> None:
    opened = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    due = opened + timedelta(hours=10)
    assert breaching(opened + timedelta(hours=1), opened, due, 0.8) is None
    assert breaching(opened + timedelta(hours=9), opened, due, 0.8) == "near"
    assert breaching(opened + timedelta(hours=11), opened, due, 0.8) == "breached"
    assert breaching(opened, opened, None, 0.8) is None
