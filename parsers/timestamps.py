"""Timestamps quoted in CPSD mail, as aware UTC datetimes.

Only values with a time of day count: a date alone is too vague to locate a DIP message.
Numeric dates are day-first (UK); month-first is never guessed. A time without a zone is
UK local time, so a summer date is BST.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MAX_SCAN_CHARS = 2_000_000
MAX_RESULTS = 500
_MAX_VALUE_CHARS = 200
_YEARS = range(1970, 2200)
_MAX_ANCHORS = 5_000  # "hh:mm" sites examined; a log dump beyond that adds nothing new
_BEFORE_CHARS = 48  # "31st September 2026, at 0" fits
_AFTER_CHARS = 96  # ":15:00.123456789 a.m. (UTC), on Wednesday, 30th September 2026"
_ANCHOR_RE = re.compile(r":\d\d")
_YEAR_RE = re.compile(r"(?:19|2[01])\d\d")

_MONTHS = {
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
    "jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12,
}  # fmt: skip
_MONTH = (
    r"(?P<mon>jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_TIME = r"(?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:[.,](?P<frac>\d{1,9}))?)?"
_AMPM = r"(?:\s?(?P<ampm>[ap]\.?m\.?)(?![a-z]))?"
# Attached "-hh:mm" is only an offset in ISO form; elsewhere "09:15-10:15" is a range.
_ZONE = (
    r"(?:\s?\(?(?P<name>Z|UTC|GMT|BST)\)?(?![A-Za-z])"
    r"|\s?(?P<osign>\+)(?P<oh>\d{2}):?(?P<om>\d{2})?"
    r"|\s(?P<nsign>-)(?P<nh>\d{2}):?(?P<nm>\d{2}))?(?![:\d])"
)
_ISO_ZONE = (
    r"(?:\s?(?P<name>Z|UTC|GMT|BST)(?![A-Za-z])"
    r"|\s?(?P<osign>[+-])(?P<oh>\d{2}):?(?P<om>\d{2})?)?(?![:\d])"
)
_WEEKDAY_RE = re.compile(r"^(?:mon|tue|wed|thu|fri|sat|sun)[a-z]{0,6}\.?,?\s+", re.IGNORECASE)
_ALIAS = re.compile(r"^[ab]_")  # date groups renamed in the time-first pattern
_JOIN = r"(?:,?\s{1,3}(?:at\s{1,3})?|T)"
_DMY = r"(?P<d>\d{1,2})[/.-](?P<m>\d{1,2})[/.-](?P<y>\d{4})"
_D_MON_Y = r"(?P<d>\d{1,2})(?:st|nd|rd|th)?\s{1,3}" + _MONTH + r",?\s{1,3}(?P<y>\d{4})"
_MON_D_Y = _MONTH + r"\s{1,3}(?P<d>\d{1,2})(?:st|nd|rd|th)?,?\s{1,3}(?P<y>\d{4})"

_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        r"(?<![\d-])(?<!\d\.)(?P<y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})(?:T|\s{1,3})"
        + _TIME
        + _ISO_ZONE,
        r"(?<![\d/.-])" + _DMY + _JOIN + _TIME + _AMPM + _ZONE,
        r"(?<![\d])" + _D_MON_Y + _JOIN + _TIME + _AMPM + _ZONE,
        r"(?<![A-Za-z])" + _MON_D_Y + _JOIN + _TIME + _AMPM + _ZONE,
        r"(?<![\d:.])" + _TIME + _AMPM + _ZONE + r",?\s{1,3}(?:on\s{1,3})?"
        r"(?:(?:mon|tue|wed|thu|fri|sat|sun)[a-z]{0,6},?\s{1,3})?"
        r"(?:" + _DMY.replace("?P<", "?P<a_") + "|" + _D_MON_Y.replace("?P<", "?P<b_") + r")"
        r"(?![\d/])",
    )
)


def find_timestamps(text: str, *, default_tz: str = "Europe/London") -> list[datetime]:
    """All date-with-time values in text, in UTC, deduplicated, in order of appearance."""
    local = _zone(default_tz)
    text = text[:MAX_SCAN_CHARS]
    found = sorted(_matches(text, local), key=lambda pair: pair[0])
    seen: dict[datetime, None] = {}
    for _, value in found:
        seen.setdefault(value, None)
        if len(seen) >= MAX_RESULTS:
            break
    return list(seen)


def parse_timestamp(value: str, *, default_tz: str = "Europe/London") -> datetime | None:
    """One timestamp filling the whole string (surrounding spaces allowed), else None."""
    local = _zone(default_tz)
    value = value.strip()
    if len(value) > _MAX_VALUE_CHARS:
        return None
    value = _WEEKDAY_RE.sub("", value, count=1)
    for pattern in _PATTERNS:
        m = pattern.fullmatch(value)
        if m:
            return _to_utc(m, local)
    return None


def _matches(text: str, local: tzinfo) -> Iterator[tuple[int, datetime]]:
    """Try the patterns only in a window around each "hh:mm", so the cost follows the times."""
    covered = 0
    found = 0
    for n, anchor in enumerate(_ANCHOR_RE.finditer(text)):
        if n >= _MAX_ANCHORS or found >= MAX_RESULTS:
            return
        if anchor.start() < covered or not text[anchor.start() - 1 : anchor.start()].isdigit():
            continue
        best = _best_at(text, anchor.start(), local)
        if best is not None:
            covered = best[1]
            found += 1
            yield best[0], best[2]


def _best_at(text: str, colon: int, local: tzinfo) -> tuple[int, int, datetime] | None:
    """The longest timestamp whose time contains this colon; ties go to the earliest start."""
    lo = max(0, colon - _BEFORE_CHARS)
    hi = min(len(text), colon + _AFTER_CHARS)
    if not _YEAR_RE.search(text, lo, hi):
        return None
    best: tuple[int, int, datetime] | None = None
    for pattern in _PATTERNS:
        for m in pattern.finditer(text, lo, hi):
            if not m.start() < colon < m.end() or (m.end() == hi < len(text)):
                continue
            value = _to_utc(m, local)
            if value is not None and (best is None or m.end() - m.start() > best[1] - best[0]):
                best = (m.start(), m.end(), value)
    return best


def _to_utc(m: re.Match[str], local: tzinfo) -> datetime | None:
    """Build the datetime; impossible dates and times give None rather than an error."""
    parts = {_ALIAS.sub("", k): v for k, v in m.groupdict().items() if v is not None}
    try:
        naive = _naive(parts)
        zone = _explicit_zone(parts) or local
        return naive.replace(tzinfo=zone).astimezone(UTC)
    except (ValueError, OverflowError, KeyError):
        return None


def _naive(parts: dict[str, str]) -> datetime:
    year = int(parts["y"])
    if year not in _YEARS:
        raise ValueError("year out of range")
    month = _MONTHS[parts["mon"][:3].lower()] if "mon" in parts else int(parts["m"])
    hour = _hour(int(parts["h"]), parts.get("ampm"))
    micro = int(parts.get("frac", "0")[:6].ljust(6, "0"))
    second = int(parts.get("s", "0"))
    return datetime(year, month, int(parts["d"]), hour, int(parts["mi"]), second, micro)


def _hour(hour: int, ampm: str | None) -> int:
    if ampm is None:
        return hour
    if not 1 <= hour <= 12:
        raise ValueError("12-hour clock out of range")
    return hour % 12 + (12 if ampm[0].lower() == "p" else 0)


def _explicit_zone(parts: dict[str, str]) -> tzinfo | None:
    name = parts.get("name", "").upper()
    if name == "BST":
        return timezone(timedelta(hours=1))
    if name in ("Z", "UTC", "GMT"):
        return UTC
    sign = parts.get("osign") or parts.get("nsign")
    if sign is None:
        return None
    hours = int(parts.get("oh") or parts.get("nh") or "0")
    minutes = int(parts.get("om") or parts.get("nm") or "0")
    if hours > 14 or minutes > 59:
        raise ValueError("offset out of range")
    delta = timedelta(hours=hours, minutes=minutes)
    return timezone(-delta if sign == "-" else delta)


@lru_cache(maxsize=16)
def _zone(name: str) -> tzinfo:
    """The local zone; UK rules are built in so a host without tzdata still gets BST right."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        if name in ("Europe/London", "GB", "GB-Eire"):
            return _UkTime()
        raise ValueError(f"unknown time zone {name!r}") from None


class _UkTime(tzinfo):
    """GMT, or BST from 01:00 UTC on the last Sunday of March to the last Sunday of October."""

    def utcoffset(self, dt: datetime | None) -> timedelta:
        return timedelta(hours=1) if dt is not None and self._summer(dt) else timedelta(0)

    def dst(self, dt: datetime | None) -> timedelta:
        return self.utcoffset(dt)

    def tzname(self, dt: datetime | None) -> str:
        return "BST" if self.utcoffset(dt) else "GMT"

    @staticmethod
    def _summer(dt: datetime) -> bool:
        start = _last_sunday(dt.year, 3).replace(hour=1)
        end = _last_sunday(dt.year, 10).replace(hour=1)
        naive = dt.replace(tzinfo=None)
        return start <= naive < end


def _last_sunday(year: int, month: int) -> datetime:
    last = datetime(year, month, 31)
    return last - timedelta(days=(last.weekday() + 1) % 7)
