"""The SLA sweep end to end: the real bot (scheduler, sweep, outbox) nudges, escalates, and hears the answers.

check_every 1s, a claim SLA of 2s, repeat_every 2s, max_nudges 2: an unclaimed handoff is nudged twice in its
card's thread, then escalated once to `escalate_to`, and nothing more.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot import ids
from bot.runtime import Runtime
from bot.sweep import Sweeper
from handoffs.config import HandoffConfig, parse_config
from handoffs.lifecycle import Action, Actor, Refused, Request
from handoffs.model import HandoffEdit, Status
from handoffs.nudges import StallReason
from tests.bot.slack.conftest import SIGNING_SECRET, SlackHarness
from tests.bot.slack.e2e import create, fast_pacing, wait_outbox_idle, wait_until
from tests.conftest import DEFAULT_CONFIG, WEBHOOK_SECRET
from tests.factories import handoff_in
from tests.fakes.slack_api import Call
from tests.fakes.slack_signing import FORM, block_action_body, post_signed
from tests.fakes.webhook_receiver import WebhookReceiver

FAST_SLA = {urgency: {"claim": "2s", "resolve": "3s"} for urgency in ("low", "normal", "high", "urgent")}
FAST_NUDGES = {"check_every": "1s", "repeat_every": "2s", "max_nudges": 2, "escalate_to": "CLEADS"}
SWEEP_CONFIG: dict[str, Any] = {**DEFAULT_CONFIG, "sla": FAST_SLA, "nudges": FAST_NUDGES}


@pytest.fixture
def handoff_config() -> HandoffConfig:
    return parse_config(SWEEP_CONFIG)


def reminders(harness: SlackHarness, card_ts: str) -> list[Call]:
    return [c for c in harness.slack.calls("chat.postMessage", ok=True)
            if c.params.get("thread_ts") == card_ts and str(c.params.get("text", "")).startswith("⏰")]


def escalations(harness: SlackHarness, channel: str = "CLEADS") -> list[Call]:
    return harness.slack.calls("chat.postMessage", ok=True, channel=channel)


def actions_of(harness: SlackHarness | Runtime, handoff_id: int) -> list[str]:
    runtime = harness.runtime if isinstance(harness, SlackHarness) else harness
    return [e.action for e in runtime.repo.events(handoff_id) if e.action in ("nudged", "escalated")]


def test_unclaimed_is_nudged_twice_in_its_thread_then_escalated_once(harness: SlackHarness) -> None:
    fast_pacing(harness)
    created = create(harness, title="<!here> renew ACME")
    card_ts = str(harness.card_of(created["id"]).response["ts"])
    wait_until(lambda: escalations(harness), timeout=20, what="the escalation")
    time.sleep(4)  # two more repeat intervals: nothing else may come
    wait_outbox_idle(harness)
    assert actions_of(harness, created["id"]) == ["nudged", "nudged", "escalated"]
    sent = reminders(harness, card_ts)
    assert len(sent) == 2 and len(escalations(harness)) == 1
    assert "(Reminder 1 of 2)" in str(sent[0].params["blocks"]) and "(Reminder 2 of 2)" in str(sent[1].params["blocks"])
    assert all("<!here>" not in str(call.params) for call in [*sent, *escalations(harness)])
    events = [e for e in harness.runtime.repo.events(created["id"]) if e.action in ("nudged", "escalated")]
    assert [e.data["reason"] for e in events] == ["unclaimed"] * 3
    assert events[-1].data["to"] == ["CLEADS"]
    handoff = harness.runtime.repo.get(created["id"])
    assert handoff is not None and handoff.escalated_at is not None and handoff.nudge_count == 2


def test_an_owned_handoff_is_nudged_by_dm_with_its_buttons(harness: SlackHarness) -> None:
    fast_pacing(harness)
    created = create(harness, owner="UANNA", due_at=_in(seconds=1))
    dm = wait_until(lambda: harness.slack.calls("chat.postMessage", ok=True, channel="UANNA"), timeout=15,
                    what="the reminder DM")[0]
    action_ids = {element["action_id"] for block in dm.params["blocks"] if block["type"] == "actions"
                  for element in block["elements"]}
    assert {ids.OPEN_CARD, ids.NUDGE_SNOOZE_HOUR, ids.NUDGE_SNOOZE_TOMORROW, ids.STALL_BLOCKED,
            ids.STALL_NEED_INFO, ids.STALL_WRONG_OWNER} <= action_ids
    assert created["ref"] in dm.params["text"] and "late" in dm.params["text"]


def reminder_dm_with_its_answer_lost(harness: SlackHarness) -> tuple[int, list[int]]:
    """The owner's first reminder DM is stored by Slack, its answer lost (500); returns that reminder's outbox row
    and the outbox rows of every DM the owner got, once the outbox is idle."""
    fast_pacing(harness)
    created = create(harness, owner="UANNA", due_at=_in(seconds=2))
    harness.card_of(created["id"])
    harness.slack.lose_answer_next("chat.postMessage")
    lost = wait_until(lambda: harness.slack.calls("chat.postMessage", ok=False, channel="UANNA"), timeout=15,
                      what="the reminder whose answer is lost")[0]
    wait_outbox_idle(harness)
    rows = [m["metadata"]["event_payload"]["outbox_id"] for m in harness.slack.channel_messages("UANNA")]
    return lost.params["metadata"]["event_payload"]["outbox_id"], rows


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_reminder_dm_slack_stored_but_whose_answer_was_lost_arrives_once(harness: SlackHarness) -> None:
    """The retry opens the owner's DM with the app, finds the reminder by its metadata there, and posts nothing
    (it used to post a second copy: the app did not look in DMs)."""
    lost_row, rows = reminder_dm_with_its_answer_lost(harness)
    assert rows.count(lost_row) == 1, f"reminder rows posted to UANNA: {rows}"
    [opened] = harness.slack.calls("conversations.open", ok=True)
    assert opened.params["users"] == "UANNA"
    [looked] = harness.slack.calls("conversations.history", ok=True)
    assert opened.response is not None and looked.params["channel"] == opened.response["channel"]["id"]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_reminder_dm_is_posted_again_when_the_app_may_not_open_dms(harness: SlackHarness) -> None:
    """An app installed from a manifest without im:write: the look cannot be made, so the reminder is posted
    again (a second copy), not failed for good."""
    harness.slack.fail_next("conversations.open", status=200, error="missing_scope")
    lost_row, rows = reminder_dm_with_its_answer_lost(harness)
    assert rows.count(lost_row) == 2, f"reminder rows posted to UANNA: {rows}"


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_new_due_time_for_an_escalated_unclaimed_handoff_does_not_escalate_it_again(runtime: Runtime) -> None:
    """Open, it is late for its claim deadline: an approver's new due time leaves that deadline where it was, so
    the queue is not reminded from 1 again and it is not escalated a second time (SPEC §7: once)."""
    created = runtime.service.submit(handoff_in(confidence=0.5), actor="producer").handoff
    assert created.status is Status.open and created.approvers == ["ULEAD"] and created.claim_by is not None
    now = created.claim_by + timedelta(seconds=1)
    runtime.clock = runtime.service.clock = lambda: now
    sweeper = Sweeper(runtime)
    for _ in range(3):
        sweeper.tick()
        now += timedelta(seconds=3)
    assert actions_of(runtime, created.id) == ["nudged", "nudged", "escalated"]
    edit = HandoffEdit(due_at=now + timedelta(days=2))
    runtime.service.act(created.id, Request(Action.edit, edit=edit), Actor("ULEAD"))
    for _ in range(3):
        now += timedelta(seconds=3)
        sweeper.tick()
    assert actions_of(runtime, created.id) == ["nudged", "nudged", "escalated"]


def reminder_dms(harness: SlackHarness, user: str) -> list[Call]:
    return [c for c in harness.slack.calls("chat.postMessage", ok=True, channel=user)
            if str(c.params.get("text", "")).startswith("⏰")]


def test_a_queue_reminder_held_back_by_slack_is_not_posted_once_someone_claimed(harness: SlackHarness) -> None:
    """SPEC §7: the queue is reminded while nobody has claimed it. A reminder Slack rate-limits (429) and sent
    after a claim used to tell the thread "nobody has claimed it" all the same."""
    fast_pacing(harness)
    created = create(harness)
    card_ts = str(harness.card_of(created["id"]).response["ts"])
    harness.slack.fail_next("chat.postMessage", status=429, retry_after=3)
    wait_until(lambda: harness.slack.calls("chat.postMessage", ok=False, channel="CHANDOFFS"), timeout=15,
               what="the reminder, rate limited")
    assert "nudged" in harness.events(created["id"])
    harness.runtime.service.act(created["id"], Request(Action.claim), Actor("UANNA"))
    wait_until(lambda: harness.slack.thread_replies("CHANDOFFS", card_ts), timeout=15, what="the claim's reply")
    wait_outbox_idle(harness)
    assert reminders(harness, card_ts) == []


def test_a_reminder_dm_held_back_by_slack_does_not_reach_the_previous_owner(harness: SlackHarness) -> None:
    """Anna's reminder is rate limited, then the handoff is reassigned to Ben: Anna used to get it all the same,
    with Snooze and Wrong owner buttons refused to her as not hers."""
    fast_pacing(harness)
    created = create(harness, owner="UANNA", due_at=_in(seconds=2))
    harness.card_of(created["id"])
    harness.slack.fail_next("chat.postMessage", status=429, retry_after=3)
    wait_until(lambda: harness.slack.calls("chat.postMessage", ok=False, channel="UANNA"), timeout=15,
               what="Anna's reminder, rate limited")
    harness.runtime.service.act(created["id"], Request(Action.reassign, new_owner="UBEN"), Actor("UMANAGER"))
    wait_until(lambda: reminder_dms(harness, "UBEN"), timeout=15, what="Ben's own reminder")
    wait_outbox_idle(harness)
    assert reminder_dms(harness, "UANNA") == []


def test_closed_before_its_deadline_is_never_nudged(harness: SlackHarness) -> None:
    fast_pacing(harness)
    created = create(harness, owner="UANNA")
    harness.card_of(created["id"])
    harness.runtime.service.act(created["id"], Request(Action.close, outcome="done"), Actor("UANNA"))
    time.sleep(4)
    assert actions_of(harness, created["id"]) == []
    assert not harness.slack.calls("chat.postMessage", channel="UANNA")


def test_snooze_from_a_reminder_holds_the_next_one_back(harness: SlackHarness) -> None:
    fast_pacing(harness)
    created = create(harness, owner="UANNA", due_at=_in(seconds=1))
    wait_until(lambda: harness.slack.calls("chat.postMessage", ok=True, channel="UANNA"), timeout=15, what="a DM")
    assert harness.click(ids.NUDGE_SNOOZE_HOUR, created["id"], "UANNA").status_code == 200
    handoff = harness.runtime.repo.get(created["id"])
    assert handoff is not None and handoff.snoozed_until is not None
    assert handoff.snoozed_until - harness.runtime.clock() > timedelta(minutes=59)
    time.sleep(4)
    assert actions_of(harness, created["id"]) == ["nudged"]
    assert "snoozed" in harness.events(created["id"])


def test_snooze_pressed_in_a_reminder_dm_is_confirmed_there(harness: SlackHarness) -> None:
    """As a stall reason is thanked: the card's thread, where the snooze is also said, may be a channel the
    clicker is not looking at."""
    created = create(harness, owner="UANNA")
    harness.card_of(created["id"])
    body = block_action_body(ids.NUDGE_SNOOZE_HOUR, str(created["id"]), "UANNA", channel="DANNA")
    assert post_signed(harness.events_url, body, FORM, SIGNING_SECRET).status_code == 200
    [told] = wait_until(lambda: harness.slack.ephemerals("UANNA"), what="the confirmation")
    assert told.params["channel"] == "DANNA"
    assert told.params["text"].startswith(f"💤 Snoozed *{created['ref']}* until <!date^")


def test_wrong_owner_puts_it_back_in_the_queue_and_tells_the_approvers(harness: SlackHarness) -> None:
    fast_pacing(harness)
    created = create(harness, owner="UANNA", approvers=["ULEAD"])
    harness.card_of(created["id"])
    for _ in range(2):  # a double click: the second used to be taken too (the approvers were told twice)
        assert harness.click(ids.STALL_WRONG_OWNER, created["id"], "UANNA").status_code == 200
    handoff = harness.runtime.repo.get(created["id"])
    assert handoff is not None and handoff.owner is None and handoff.status.value == "open"
    events = harness.runtime.repo.events(created["id"])
    assert [e.data.get("reason") for e in events if e.action == "stall_reason"] == ["wrong owner"]
    assert events[-1].action == "refused" and events[-1].data["code"] == "already_noted"
    wait_outbox_idle(harness)
    [told] = harness.slack.calls("chat.postMessage", ok=True, channel="ULEAD")
    assert created["ref"] in told.params["text"] and "back in the queue" in told.params["text"]
    # each click is answered from its own thread, so the two answers may reach Slack in either order
    answers = sorted(c.params["text"] for c in harness.slack.ephemerals("UANNA"))
    assert [a.split(":")[0] for a in answers] == ["Already noted", "Thanks"], answers
    harness.runtime.service.act(created["id"], Request(Action.reassign, new_owner="UANNA"), Actor("ULEAD"))
    assert harness.click(ids.STALL_WRONG_OWNER, created["id"], "UANNA").status_code == 200  # hers again: anew
    events = harness.runtime.repo.events(created["id"])
    assert [e.data.get("reason") for e in events if e.action == "stall_reason"] == ["wrong owner", "wrong owner"]


def test_the_same_answer_given_at_the_same_instant_counts_once(harness: SlackHarness) -> None:
    """Eight copies of one answer at once (a reminder open on several devices): one `stall_reason`, seven told
    "Already noted". The check used to be read-then-write, so answers read before any was written all counted."""
    created = create(harness, owner="UANNA")
    harness.card_of(created["id"])
    copies = 8
    barrier = threading.Barrier(copies)

    def answer(_: int) -> str:
        barrier.wait(timeout=10)
        try:
            harness.runtime.service.answer_nudge(created["id"], StallReason.blocked, Actor("UANNA"), told=lambda _: [])
        except Refused as refused:
            return refused.code
        return "noted"

    with ThreadPoolExecutor(copies) as pool:
        outcomes = sorted(pool.map(answer, range(copies)))
    assert outcomes == ["already_noted"] * (copies - 1) + ["noted"]
    events = harness.runtime.repo.events(created["id"])
    assert [e.data.get("reason") for e in events if e.action == "stall_reason"] == ["blocked"]


def test_blocked_is_logged_counted_and_said_in_the_thread(harness: SlackHarness) -> None:
    fast_pacing(harness)
    created = create(harness, owner="UANNA")
    card_ts = str(harness.card_of(created["id"]).response["ts"])
    assert harness.click(ids.STALL_BLOCKED, created["id"], "UANNA").status_code == 200
    assert harness.click(ids.STALL_BLOCKED, created["id"], "UANNA").status_code == 200  # a double click: once
    assert harness.click(ids.STALL_NEED_INFO, created["id"], "USTRANGER").status_code == 200  # refused: not theirs
    reasons = [e.data.get("reason") for e in harness.runtime.repo.events(created["id"]) if e.action == "stall_reason"]
    assert reasons == ["blocked"]
    assert harness.click(ids.NUDGE, created["id"], "UMANAGER").status_code == 200  # a new reminder ...
    assert harness.click(ids.STALL_BLOCKED, created["id"], "UANNA").status_code == 200  # ... is answered anew
    reasons = [e.data.get("reason") for e in harness.runtime.repo.events(created["id"]) if e.action == "stall_reason"]
    assert reasons == ["blocked", "blocked"]
    wait_until(lambda: [c for c in harness.slack.calls("chat.postMessage", ok=True)
                        if c.params.get("thread_ts") == card_ts and "blocked" in str(c.params.get("text"))],
               what="the thread line")
    wait_until(lambda: harness.slack.ephemerals("USTRANGER"), what="the refusal")


def _in(*, seconds: int) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def test_escalation_is_a_signed_webhook_to_the_callback_url(harness: SlackHarness) -> None:
    fast_pacing(harness)
    with WebhookReceiver(WEBHOOK_SECRET.encode()) as receiver:
        created = create(harness, callback_url=receiver.url("/callback"))
        wait_until(lambda: receiver.requests(event="escalated"), timeout=20, what="the escalated webhook")
        [escalated] = receiver.requests(event="escalated")
        body = escalated.json()
        assert escalated.valid and body["handoff"]["id"] == created["id"]
        assert body["actor"] == {"id": "sla", "type": "system"} and body["handoff"]["escalated_at"]
        assert [r.event for r in receiver.requests()].count("escalated") == 1
