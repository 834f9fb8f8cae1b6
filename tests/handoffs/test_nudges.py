"""The nudge policy with a fixed clock: schedule, recipients, escalation, business hours, time zones, snooze."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from handoffs.config import HandoffConfig, parse_config
from handoffs.model import Handoff, Status
from handoffs.nudges import Decision, Lateness, Step, decide, earliest_look, scheduled_at, snooze_until_tomorrow
from tests.conftest import DEFAULT_CONFIG
from tests.factories import make_handoff

BERLIN = ZoneInfo("Europe/Berlin")
TOKYO = ZoneInfo("Asia/Tokyo")
NEW_YORK = ZoneInfo("America/New_York")
# Wednesday 12 March 2025, 10:00 UTC = 11:00 in Berlin
WED = datetime(2025, 3, 12, 10, 0, tzinfo=UTC)
S = timedelta(seconds=1)


def config_with(**nudges: Any) -> HandoffConfig:
    extra: dict[str, Any] = {}
    if nudges.pop("business_hours", False):
        extra["business_hours"] = {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "18:00"}
    return parse_config({
        **DEFAULT_CONFIG, **extra, "timezone": "Europe/Berlin", "managers": ["UMANAGER"],
        "nudges": {"check_every": "1s", "repeat_every": "2s", "max_nudges": 2, **nudges},
    })


def unclaimed(claim_by: datetime, **fields: Any) -> Handoff:
    return make_handoff(status=Status.open, owner=None, queue="CHANDOFFS", claim_by=claim_by, **fields)


def run_sweeps(handoff: Handoff, config: HandoffConfig, start: datetime, seconds: int,
               zone: ZoneInfo = BERLIN) -> list[tuple[int, Step]]:
    """Tick once a second like the sweep; apply each nudge/escalation as storage would. (second, step) acted."""
    acted: list[tuple[int, Step]] = []
    look = earliest_look(handoff, config)
    for second in range(seconds + 1):
        now = start + second * S
        if look is None or look > now:
            continue
        decision = decide(handoff, config, now, zone)
        handoff = applied(handoff, decision, now)
        if decision.step in (Step.nudge, Step.escalate):
            acted.append((second, decision.step))
        look = decision.look_again_at
    return acted


def applied(handoff: Handoff, decision: Decision, now: datetime) -> Handoff:
    """The handoff as storage writes it after the sweep acts on `decision` at `now`."""
    if decision.step is Step.nudge:
        return replace(handoff, nudge_count=decision.nudge_number, last_nudged_at=now)
    if decision.step is Step.escalate:
        return replace(handoff, escalated_at=now)
    return handoff


def test_unclaimed_twice_nudged_then_escalated_once_then_nothing() -> None:
    config = config_with()
    handoff = unclaimed(claim_by=WED + 2 * S)
    assert run_sweeps(handoff, config, WED, 60) == [(2, Step.nudge), (4, Step.nudge), (6, Step.escalate)]


def test_the_queue_is_nudged_in_the_card_thread_and_the_owner_by_dm() -> None:
    config = config_with()
    queue_nudge = decide(unclaimed(claim_by=WED), config, WED + S, BERLIN)
    assert (queue_nudge.step, queue_nudge.in_card_thread, queue_nudge.reason) == (Step.nudge, True, Lateness.unclaimed)
    assert queue_nudge.late_by == S and queue_nudge.nudge_number == 1
    owned = make_handoff(status=Status.claimed, due_at=WED, claim_by=WED - timedelta(hours=1), approvers=[])
    owner_nudge = decide(owned, config, WED + S, BERLIN)
    assert (owner_nudge.recipients, owner_nudge.in_card_thread, owner_nudge.reason) == (
        ("UOWNER",), False, Lateness.overdue)


def test_awaiting_approval_reminds_the_approvers_too() -> None:
    config = config_with()
    waiting = make_handoff(status=Status.claimed, requires_approval=True, claim_by=WED, due_at=WED + timedelta(days=1))
    decision = decide(waiting, config, WED + S, BERLIN)
    assert decision.reason is Lateness.awaiting_approval
    assert decision.recipients == ("UOWNER", "UAPPROVER")


def test_escalates_to_the_route_then_global_then_managers() -> None:
    handoff, later = unclaimed(claim_by=WED, nudge_count=2), WED + 10 * S
    assert decide(handoff, config_with(escalate_to="CLEADS"), later, BERLIN).escalate_to == ("CLEADS",)
    assert decide(handoff, config_with(), later, BERLIN).escalate_to == ("UMANAGER",)
    routed = parse_config({**DEFAULT_CONFIG, "nudges": {"max_nudges": 0, "escalate_to": "CLEADS"}, "routes": [
        {"name": "default", "channel": "CHANDOFFS", "escalate_to": "UBOSS"}]})
    assert decide(replace(handoff, nudge_count=0), routed, later, BERLIN).escalate_to == ("UBOSS",)


def test_max_nudges_zero_escalates_at_the_deadline() -> None:
    assert run_sweeps(unclaimed(claim_by=WED + 3 * S), config_with(max_nudges=0), WED, 30) == [(3, Step.escalate)]


def test_not_yet_due_waits_until_the_deadline() -> None:
    decision = decide(unclaimed(claim_by=WED + timedelta(hours=1)), config_with(), WED, BERLIN)
    assert (decision.step, decision.look_again_at) == (Step.wait, WED + timedelta(hours=1))


@pytest.mark.parametrize("status", [Status.closed, Status.rejected])
def test_a_handoff_finished_between_two_ticks_is_not_nudged(status: Status) -> None:
    config = config_with()
    handoff = unclaimed(claim_by=WED)
    first = decide(handoff, config, WED + S, BERLIN)
    assert first.step is Step.nudge
    finished = replace(handoff, status=status, nudge_count=1, outcome="done", closed_at=WED + S)
    assert decide(finished, config, WED + 10 * S, BERLIN).step is Step.done
    assert earliest_look(finished, config) is None


def test_claiming_starts_a_new_phase_on_the_due_time() -> None:
    config = config_with()
    claimed = make_handoff(status=Status.claimed, claim_by=WED, due_at=WED + timedelta(hours=4), nudge_count=0,
                           approvers=[])
    assert decide(claimed, config, WED + S, BERLIN).step is Step.wait
    assert earliest_look(claimed, config) == WED + timedelta(hours=4)


def test_snooze_holds_everything_back_until_it_ends() -> None:
    config = config_with()
    snoozed = unclaimed(claim_by=WED, snoozed_until=WED + timedelta(hours=1))
    assert decide(snoozed, config, WED + 10 * S, BERLIN).step is Step.wait
    assert earliest_look(snoozed, config) == WED + timedelta(hours=1)
    assert decide(snoozed, config, WED + timedelta(hours=1), BERLIN).step is Step.nudge


def test_a_long_overdue_handoff_gets_one_reminder_not_a_burst() -> None:
    config = config_with(repeat_every="1h", max_nudges=3)
    handoff = unclaimed(claim_by=WED - timedelta(days=2))
    decision = decide(handoff, config, WED, BERLIN)
    assert decision.step is Step.nudge and decision.look_again_at == WED + timedelta(hours=1)
    assert decision.late_by == timedelta(days=2)


# --- business hours ---------------------------------------------------------------------------------------


def business(**nudges: Any) -> HandoffConfig:
    return config_with(business_hours=True, business_hours_only=True, **nudges)


def test_a_nudge_due_at_night_waits_for_the_morning() -> None:
    thursday_night = datetime(2025, 3, 13, 21, 0, tzinfo=BERLIN)
    decision = decide(unclaimed(claim_by=thursday_night), business(), thursday_night + S, BERLIN)
    assert decision.step is Step.wait
    assert decision.look_again_at == datetime(2025, 3, 14, 9, 0, tzinfo=BERLIN)


def test_a_nudge_due_on_friday_evening_waits_for_monday() -> None:
    friday_evening = datetime(2025, 3, 14, 18, 30, tzinfo=BERLIN)
    decision = decide(unclaimed(claim_by=friday_evening), business(), friday_evening + timedelta(hours=2), BERLIN)
    assert decision.look_again_at == datetime(2025, 3, 17, 9, 0, tzinfo=BERLIN)
    saturday = datetime(2025, 3, 15, 12, 0, tzinfo=BERLIN)
    assert decide(unclaimed(claim_by=friday_evening), business(), saturday, BERLIN).step is Step.wait


def test_repeats_count_business_hours_only() -> None:
    config = business(repeat_every="2h")
    deadline = datetime(2025, 3, 14, 17, 0, tzinfo=BERLIN)  # Friday 17:00, nudged once already
    handoff = unclaimed(claim_by=deadline, nudge_count=1)
    # one business hour on Friday, the second on Monday from 09:00
    assert scheduled_at(handoff, config, BERLIN) == datetime(2025, 3, 17, 10, 0, tzinfo=BERLIN)


def test_the_owners_own_morning_counts() -> None:
    config = business()
    # Berlin Wednesday 23:30 = Tokyo Thursday 07:30: the owner in Tokyo starts at 09:00 their time
    deadline = datetime(2025, 3, 12, 23, 30, tzinfo=BERLIN)
    owned = make_handoff(status=Status.claimed, due_at=deadline, claim_by=deadline - timedelta(hours=1), approvers=[])
    tokyo = decide(owned, config, deadline + S, TOKYO)
    berlin = decide(owned, config, deadline + S, BERLIN)
    assert tokyo.look_again_at == datetime(2025, 3, 13, 9, 0, tzinfo=TOKYO)
    assert berlin.look_again_at == datetime(2025, 3, 13, 9, 0, tzinfo=BERLIN)
    assert decide(owned, config, datetime(2025, 3, 13, 9, 0, tzinfo=TOKYO), TOKYO).step is Step.nudge


def test_without_business_hours_only_nights_do_not_matter() -> None:
    night = datetime(2025, 3, 13, 23, 0, tzinfo=BERLIN)
    config = config_with(business_hours=True)  # business hours for SLAs, but nudges any time
    assert decide(unclaimed(claim_by=night), config, night + S, BERLIN).step is Step.nudge


@pytest.mark.parametrize("zone", [BERLIN, TOKYO, NEW_YORK, ZoneInfo("UTC")])
@pytest.mark.parametrize("hour", [0, 7, 9, 13, 17, 18, 22])
@pytest.mark.parametrize("count", [0, 1, 2])
def test_the_sweep_never_looks_too_late(zone: ZoneInfo, hour: int, count: int) -> None:
    """The stored look time (zone-free) is never after the real moment, in any zone, any day of the week."""
    config = business(repeat_every="1d")
    for day in range(7):
        deadline = datetime(2025, 3, 10 + day, hour, 0, tzinfo=BERLIN)
        handoff = unclaimed(claim_by=deadline, nudge_count=count, snoozed_until=deadline + timedelta(hours=day))
        last_nudged = unclaimed(claim_by=deadline, nudge_count=count + 1,
                                last_nudged_at=deadline + timedelta(hours=3 * day + 1))
        for case in (handoff, last_nudged):
            look, real = earliest_look(case, config), scheduled_at(case, config, zone)
            assert look is not None and real is not None and look <= real


def sweep_at_each_look(handoff: Handoff, config: HandoffConfig, until: datetime,
                       zone: ZoneInfo = BERLIN) -> list[tuple[datetime, Step]]:
    """Sweep exactly at each look the policy asks for, as storage would apply what it decides; what acted when."""
    acted: list[tuple[datetime, Step]] = []
    look = earliest_look(handoff, config)
    while look is not None and look <= until:
        now = look
        decision = decide(handoff, config, now, zone)
        handoff = applied(handoff, decision, now)
        if decision.step in (Step.nudge, Step.escalate):
            acted.append((now.astimezone(zone), decision.step))
        look = decision.look_again_at
        assert look is None or look > now or decision.step is not Step.wait, "a wait that never ends"
    return acted


def test_nothing_goes_out_after_closing_also_when_the_last_reminder_was_late_in_the_day() -> None:
    """Snoozed until 17:30: the first reminder goes then, and the next ones wait for the morning; they used to
    go at 18:30, 19:30 and escalate at 20:30."""
    monday = datetime(2025, 3, 10, 11, 0, tzinfo=BERLIN)
    handoff = unclaimed(claim_by=monday, snoozed_until=monday.replace(hour=17, minute=30))
    acted = sweep_at_each_look(handoff, business(repeat_every="1h", max_nudges=3), monday + timedelta(days=3))
    tuesday = datetime(2025, 3, 11, tzinfo=BERLIN)
    assert acted == [
        (monday.replace(hour=17, minute=30), Step.nudge),  # then half an hour of business time on Monday...
        (tuesday.replace(hour=9, minute=30), Step.nudge),  # ...and half an hour on Tuesday
        (tuesday.replace(hour=10, minute=30), Step.nudge),
        (tuesday.replace(hour=11, minute=30), Step.escalate),
    ]


def test_a_sweep_that_comes_after_closing_waits_for_the_morning() -> None:
    """A reminder due at 17:00 that nobody sent then (the bot was down) does not go out at 22:00."""
    handoff = unclaimed(claim_by=datetime(2025, 3, 10, 17, 0, tzinfo=BERLIN))
    decision = decide(handoff, business(), datetime(2025, 3, 10, 22, 0, tzinfo=BERLIN), BERLIN)
    assert decision.step is Step.wait and decision.look_again_at == datetime(2025, 3, 11, 9, 0, tzinfo=BERLIN)


def test_repeats_of_part_of_a_day_add_up_in_business_hours() -> None:
    """Two repeats of 12h are 24 business hours; read as one business day (9h), the schedule ran backwards."""
    config = business(repeat_every="12h", max_nudges=5)
    deadline = datetime(2025, 3, 10, 11, 0, tzinfo=BERLIN)
    moments = [scheduled_at(unclaimed(claim_by=deadline, nudge_count=count), config, BERLIN) for count in range(4)]
    assert moments == [deadline, datetime(2025, 3, 11, 14, 0, tzinfo=BERLIN),
                       datetime(2025, 3, 12, 17, 0, tzinfo=BERLIN), datetime(2025, 3, 14, 11, 0, tzinfo=BERLIN)]


def test_never_two_reminders_closer_than_repeat_every_whatever_is_written_between() -> None:
    """The gap is the handoff's own (`last_nudged_at`), not only the look the sweep stored: an edit rewrites the
    look from the deadline, and the next reminder used to follow within a minute."""
    config = config_with(repeat_every="1h", max_nudges=3)
    last = WED + timedelta(hours=6)  # the first reminder went out late (after a snooze)
    handoff = unclaimed(claim_by=WED, nudge_count=1, last_nudged_at=last)
    assert earliest_look(handoff, config) == last + timedelta(hours=1)
    decision = decide(handoff, config, last + timedelta(minutes=5), BERLIN)
    assert decision.step is Step.wait and decision.look_again_at == last + timedelta(hours=1)
    assert decide(handoff, config, last + timedelta(hours=1), BERLIN).step is Step.nudge


def test_snooze_until_tomorrow_is_the_next_opening_in_the_persons_zone() -> None:
    config = config_with(business_hours=True)
    friday = datetime(2025, 3, 14, 16, 0, tzinfo=BERLIN)
    assert snooze_until_tomorrow(friday, config, BERLIN) == datetime(2025, 3, 17, 9, 0, tzinfo=BERLIN)
    assert snooze_until_tomorrow(WED, config, TOKYO) == datetime(2025, 3, 13, 9, 0, tzinfo=TOKYO)


def test_a_reminder_due_in_the_repeated_hour_of_a_clock_change_is_not_scheduled_before_the_sweep_looks() -> None:
    """Berlin, 26 October 2025, a round-the-clock desk: the deadline at 02:15 CET (the hour's second run) put the
    next reminder at 02:30 CEST, 45 minutes before the deadline and before the look the sweep stores."""
    config = parse_config({
        **DEFAULT_CONFIG, "timezone": "Europe/Berlin",
        "business_hours": {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "00:00", "end": "23:59"},
        "nudges": {"check_every": "1m", "repeat_every": "15m", "max_nudges": 3, "business_hours_only": True},
    })
    deadline = datetime(2025, 10, 26, 1, 15, tzinfo=UTC)
    handoff = unclaimed(claim_by=deadline, nudge_count=1, last_nudged_at=deadline)
    look, real = earliest_look(handoff, config), scheduled_at(handoff, config, BERLIN)
    assert real == deadline + timedelta(minutes=15)
    assert look is not None and look <= real


@pytest.mark.parametrize(("pressed", "until"), [
    (datetime(2025, 3, 11, 0, 30), datetime(2025, 3, 11, 9, 0)),  # Tuesday 00:30: this morning, not Wednesday's
    (datetime(2025, 3, 11, 3, 59), datetime(2025, 3, 11, 9, 0)),
    (datetime(2025, 3, 11, 4, 0), datetime(2025, 3, 12, 9, 0)),  # from 04:00 "tomorrow" is the next day
    (datetime(2025, 3, 11, 7, 0), datetime(2025, 3, 12, 9, 0)),
    (datetime(2025, 3, 10, 23, 0), datetime(2025, 3, 11, 9, 0)),
    (datetime(2025, 3, 14, 19, 0), datetime(2025, 3, 17, 9, 0)),  # Friday evening: Monday
    (datetime(2025, 3, 15, 1, 0), datetime(2025, 3, 17, 9, 0)),  # the night after Friday: Monday still
])
def test_snooze_until_tomorrow_counts_the_small_hours_as_the_night_before(pressed: datetime, until: datetime) -> None:
    config = config_with(business_hours=True)
    snoozed = snooze_until_tomorrow(pressed.replace(tzinfo=BERLIN).astimezone(UTC), config, BERLIN)
    assert snoozed == until.replace(tzinfo=BERLIN)


def test_snooze_until_tomorrow_never_ends_in_the_past_when_business_hours_open_before_dawn() -> None:
    config = parse_config({**DEFAULT_CONFIG, "timezone": "Europe/Berlin",
                           "business_hours": {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "02:00",
                                              "end": "18:00"}})
    tuesday_0330 = datetime(2025, 3, 11, 3, 30, tzinfo=BERLIN)
    assert snooze_until_tomorrow(tuesday_0330, config, BERLIN) == datetime(2025, 3, 12, 2, 0, tzinfo=BERLIN)
    tuesday_0130 = datetime(2025, 3, 11, 1, 30, tzinfo=BERLIN)
    assert snooze_until_tomorrow(tuesday_0130, config, BERLIN) == datetime(2025, 3, 11, 2, 0, tzinfo=BERLIN)
