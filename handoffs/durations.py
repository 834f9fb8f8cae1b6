"""Durations written the way people write them in `handoffs.yml`: `30s`, `15m`, `4h`, `3d`."""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_DURATION = timedelta(days=365)


class WrittenInHours(timedelta):
    """A duration written in seconds, minutes or hours (`24h`, `1440m`). With business hours, a span of whole days
    counts business days (`1d` is one business day), but one written in hours counts business hours, also when
    it is a whole number of days: `24h` is 24 business hours, later than `23h` (handoffs.sla.business_span)."""


class WrittenInWeeks(timedelta):
    """A duration written in weeks (`1w`). With business hours it counts the business days of that many weeks
    (Monday to Friday: five a week), not seven business days a week (handoffs.sla.business_span)."""


_WRITTEN_IN: dict[str, type[timedelta]] = {
    "s": WrittenInHours, "m": WrittenInHours, "h": WrittenInHours, "d": timedelta, "w": WrittenInWeeks,
}


def parse_duration(text: str) -> timedelta:
    """Parse `30s`, `15m`, `4h`, `3d` or `1w`; raise ValueError naming the accepted form. A duration written in
    s, m or h is a WrittenInHours, one written in w a WrittenInWeeks."""
    match = _DURATION.match(str(text))
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"not a duration: {text!r} (write a positive number and a unit: 30s, 15m, 4h, 3d)")
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds > MAX_DURATION.total_seconds():  # also keeps timedelta and deadline arithmetic from overflowing
        raise ValueError(f"too long: {text!r} (at most {MAX_DURATION.days}d)")
    return _WRITTEN_IN[match.group(2)](seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """The shortest exact form of a duration, e.g. 90 minutes -> `90m`, 2 days -> `2d`."""
    seconds = int(delta.total_seconds())
    for unit in ("w", "d", "h", "m"):
        if seconds and seconds % _UNIT_SECONDS[unit] == 0:
            return f"{seconds // _UNIT_SECONDS[unit]}{unit}"
    return f"{seconds}s"


def humanize(delta: timedelta) -> str:
    """A rounded, readable span for people: `3m`, `2h 5m`, `4d 3h`."""
    seconds = max(0, int(delta.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    return f"{minutes}m" if minutes else f"{seconds}s"
