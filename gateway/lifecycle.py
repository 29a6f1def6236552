"""The CPSD case lifecycle and SLA clocks: pure functions, no database.

States follow Elexon's portal (raised → triage → assigned → awaiting party → resolved →
closed) plus ``info_required`` (the raiser owes us information) and ``redirected``
(resolved by pointing the raiser at the right desk). Only listed transitions happen;
everything else is refused with a reason a person can act on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo


class State(StrEnum):
    RAISED = "raised"
    TRIAGE = "triage"
    ASSIGNED = "assigned"
    AWAITING_PARTY = "awaiting_party"
    INFO_REQUIRED = "info_required"
    RESOLVED = "resolved"
    REDIRECTED = "redirected"
    CLOSED = "closed"


OPEN_STATES = frozenset(
    {State.RAISED, State.TRIAGE, State.ASSIGNED, State.AWAITING_PARTY, State.INFO_REQUIRED}
)
DONE_STATES = frozenset({State.RESOLVED, State.REDIRECTED, State.CLOSED})

_WORKING = {State.TRIAGE, State.ASSIGNED, State.AWAITING_PARTY, State.INFO_REQUIRED}
TRANSITIONS: dict[State, frozenset[State]] = {
    State.RAISED: frozenset(_WORKING | {State.RESOLVED, State.REDIRECTED}),
    State.TRIAGE: frozenset(_WORKING - {State.TRIAGE} | {State.RESOLVED, State.REDIRECTED}),
    State.ASSIGNED: frozenset(_WORKING - {State.ASSIGNED} | {State.RESOLVED, State.REDIRECTED}),
    State.AWAITING_PARTY: frozenset(
        _WORKING - {State.AWAITING_PARTY} | {State.RESOLVED, State.REDIRECTED}
    ),
    State.INFO_REQUIRED: frozenset(
        _WORKING - {State.INFO_REQUIRED} | {State.RESOLVED, State.REDIRECTED}
    ),
    # A resolved case is reopened by new information, or closed with a closure notice.
    State.RESOLVED: frozenset({State.TRIAGE, State.CLOSED}),
    State.REDIRECTED: frozenset({State.TRIAGE, State.CLOSED}),
    # Closed is final but for a reply within the reopen window.
    State.CLOSED: frozenset({State.TRIAGE}),
}


class TransitionError(Exception):
    """A change the lifecycle does not allow; the message says why."""


def can_move(current: str, target: str) -> bool:
    try:
        return State(target) in TRANSITIONS[State(current)]
    except ValueError:
        return False


def move(current: str, target: str) -> State:
    """The new state, or TransitionError naming both states and what is allowed instead."""
    try:
        here, there = State(current), State(target)
    except ValueError as exc:
        raise TransitionError(f"unknown state: {exc}") from None
    if there not in TRANSITIONS[here]:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[here]))
        raise TransitionError(
            f"a case that is {here.value} cannot become {there.value} (allowed: {allowed})"
        )
    return there


def can_close(state: str, open_children: int) -> str | None:
    """None when closing is allowed, else the reason (CPSD: the parent waits for its children)."""
    if open_children:
        return f"{open_children} child case(s) still open; the original case stays open until they are resolved"
    if not can_move(state, State.CLOSED):
        return f"a case that is {state} must be resolved before it is closed"
    return None


@dataclass(frozen=True)
class Target:
    """Response and resolution targets of one priority, and which clock they run on."""

    response: timedelta
    resolution: timedelta
    business_hours: bool


@dataclass(frozen=True)
class Calendar:
    """Business hours: working weekdays, opening times, and holidays, in one time zone."""

    zone: ZoneInfo
    start: time = time(9, 0)
    end: time = time(17, 30)
    weekdays: frozenset[int] = frozenset({0, 1, 2, 3, 4})
    holidays: frozenset[date] = frozenset()

    def is_working_day(self, day: date) -> bool:
        return day.weekday() in self.weekdays and day not in self.holidays


def add_time(start: datetime, duration: timedelta, calendar: Calendar, business: bool) -> datetime:
    """``start + duration``, counting only business hours when ``business`` is set."""
    if not business:
        return start + duration
    remaining = duration
    local = start.astimezone(calendar.zone)
    for _ in range(3660):  # at most ten years of days: bounded even with odd calendars
        day = local.date()
        opens = datetime.combine(day, calendar.start, calendar.zone)
        closes = datetime.combine(day, calendar.end, calendar.zone)
        if calendar.is_working_day(day) and local < closes:
            begin = max(local, opens)
            available = closes - begin
            if remaining <= available:
                return (begin + remaining).astimezone(start.tzinfo)
            remaining -= available
        local = datetime.combine(day + timedelta(days=1), calendar.start, calendar.zone)
    raise ValueError("calendar has no working time")


def due_times(opened: datetime, target: Target, calendar: Calendar) -> tuple[datetime, datetime]:
    """(response due, resolution due) for a case opened at ``opened``."""
    return (
        add_time(opened, target.response, calendar, target.business_hours),
        add_time(opened, target.resolution, calendar, target.business_hours),
    )


def breaching(
    now: datetime, opened: datetime, due: datetime | None, warn_fraction: float
) -> str | None:
    """ "breached" past the target, "near" once ``warn_fraction`` of the time is used, else None."""
    if due is None:
        return None
    if now >= due:
        return "breached"
    total = (due - opened).total_seconds()
    if total > 0 and (now - opened).total_seconds() >= warn_fraction * total:
        return "near"
    return None
