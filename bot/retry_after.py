"""`Retry-After` as the outbox and the webhook sender read it: seconds or an HTTP date, never without bounds."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def retry_after_seconds(value: str | None, now: datetime, *, cap: float) -> float | None:
    """`Retry-After` as seconds from now (it is a number of seconds or an HTTP date), at most `cap`; None when
    absent or not one of those (a negative number, `inf`, text)."""
    if not value:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        seconds = float(text)
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        seconds = (when.astimezone(UTC) - now).total_seconds() if when.tzinfo else 0.0
    return min(max(seconds, 0.0), cap)
