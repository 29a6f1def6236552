"""SLA settings → the pure lifecycle clock: due times for a case at its priority."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from gateway.lifecycle import Calendar, Target, due_times
from gateway.models import Case
from gateway.settings import Settings, SettingsError


def calendar(settings: Settings) -> Calendar:
    sla = settings.sla
    try:
        return Calendar(
            zone=ZoneInfo(settings.gateway.timezone),
            start=time.fromisoformat(sla.business_start),
            end=time.fromisoformat(sla.business_end),
            weekdays=frozenset(d - 1 for d in sla.business_days),
            holidays=frozenset(date.fromisoformat(h) for h in sla.holidays),
        )
    except ValueError as exc:
        raise SettingsError(f"{settings.source}: [sla] {exc}") from None


def target(settings: Settings, priority: str) -> Target:
    level = priority.lower() if priority in ("P1", "P2", "P3", "P4") else "p4"
    sla = settings.sla
    return Target(
        response=timedelta(hours=getattr(sla, f"{level}_response_hours")),
        resolution=timedelta(hours=getattr(sla, f"{level}_resolution_hours")),
        business_hours=getattr(sla, f"{level}_business_hours"),
    )


def set_due(case: Case, settings: Settings, start: datetime | None = None) -> None:
    """(Re)compute a case's due times, e.g. when it is raised or its priority changes."""
    response, resolution = due_times(
        start or case.opened_at, target(settings, case.priority), calendar(settings)
    )
    case.response_due_at, case.due_at = response, resolution
