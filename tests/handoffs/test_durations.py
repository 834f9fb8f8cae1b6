from __future__ import annotations

from datetime import timedelta

import pytest

from handoffs.durations import format_duration, humanize, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("4h", timedelta(hours=4)),
        ("3d", timedelta(days=3)),
        ("1w", timedelta(weeks=1)),
        (" 90m ", timedelta(minutes=90)),
        ("2 h", timedelta(hours=2)),
    ],
)
def test_parse_duration_accepts_number_and_unit(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "4", "h", "0m", "-5m", "1.5h", "4hours", "4H", "4h30m", "ten minutes"])
def test_parse_duration_refuses_anything_else_with_a_hint(text: str) -> None:
    with pytest.raises(ValueError, match=r"30s, 15m, 4h, 3d"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["366d", "53w", "99999999999999d"])
def test_parse_duration_refuses_spans_over_a_year_instead_of_overflowing(text: str) -> None:
    with pytest.raises(ValueError, match=r"too long.*at most 365d"):
        parse_duration(text)


def test_a_year_is_still_a_duration() -> None:
    assert parse_duration("365d") == timedelta(days=365)


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(seconds=45), "45s"),
        (timedelta(minutes=90), "90m"),
        (timedelta(hours=4), "4h"),
        (timedelta(days=2), "2d"),
        (timedelta(days=14), "2w"),
        (timedelta(seconds=3601), "3601s"),
    ],
)
def test_format_duration_is_the_shortest_exact_form(delta: timedelta, text: str) -> None:
    assert format_duration(delta) == text
    assert parse_duration(text) == delta


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(seconds=12), "12s"),
        (timedelta(minutes=3, seconds=40), "3m"),
        (timedelta(hours=2, minutes=5), "2h 5m"),
        (timedelta(hours=2), "2h"),
        (timedelta(days=4, hours=3, minutes=59), "4d 3h"),
        (timedelta(days=1), "1d"),
        (timedelta(seconds=-30), "0s"),
    ],
)
def test_humanize_rounds_down_for_people(delta: timedelta, text: str) -> None:
    assert humanize(delta) == text
