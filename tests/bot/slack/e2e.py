"""Helpers for the end-to-end Slack tests: card inspection, overflow / user-picker clicks, real modal submits."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx

from bot import ids
from bot.outbox import ChannelPacer
from tests.bot.slack.conftest import SIGNING_SECRET, SlackHarness
from tests.factories import payload
from tests.fakes.slack_api import Call
from tests.fakes.slack_signing import FORM, block_action_body, post_signed, view_submission_body

WAIT = 10.0


def wait_until(probe: Callable[[], Any], timeout: float = WAIT, what: str = "condition") -> Any:
    """Poll `probe` until it returns something truthy; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def wait_outbox_idle(harness: SlackHarness, timeout: float = 20) -> None:
    """Until nothing is pending in the outbox (as /healthz reports it): no Slack write can follow."""
    def idle() -> bool:
        response = httpx.get(f"{harness.server.url}/healthz", timeout=5)
        return int(response.json()["outbox"]["pending"]) == 0

    wait_until(idle, timeout=timeout, what="an empty outbox")


def fast_pacing(harness: SlackHarness, rate: float = 50.0, burst: float = 10.0) -> None:
    """Pace each channel faster than Slack's 1 message a second, where pacing is not what a test is about.

    Retry-After pauses still apply: they live in the pacer too.
    """
    harness.bot.senders.sender.pacer = ChannelPacer(rate=rate, burst=burst)


def create(harness: SlackHarness, **fields: Any) -> dict[str, Any]:
    """POST a handoff with a unique title (the harness' default title would be deduplicated)."""
    return harness.create(**payload(**fields))


def block_types(call: Call) -> list[str]:
    return [block["type"] for block in call.params.get("blocks") or []]


def card_text(call: Call) -> str:
    """Everything a card shows, serialised (text and blocks), for substring checks."""
    return json.dumps({"text": call.params.get("text"), "blocks": call.params.get("blocks")}, ensure_ascii=False)


def wait_update(harness: SlackHarness, ts: str, predicate: Callable[[Call], bool], what: str) -> Call:
    """The latest chat.update of the card `ts` that satisfies `predicate` (waits for it)."""
    found = wait_until(lambda: [c for c in harness.slack.updates(ts) if predicate(c)], what=what)
    return found[-1]


def wait_replies(harness: SlackHarness, channel: str, ts: str, count: int) -> list[Call]:
    return wait_until(lambda: (r := harness.slack.thread_replies(channel, ts)) and len(r) >= count and r,
                      what=f"{count} thread replies under {ts}")


def click_overflow(harness: SlackHarness, verb: str, handoff_id: int, user: str) -> httpx.Response:
    """Pick an overflow-menu option on the card, as Slack sends it."""
    handoff = harness.runtime.repo.get(handoff_id)
    assert handoff is not None and handoff.card_ts and handoff.channel
    action = {
        "action_id": ids.MORE, "block_id": f"{ids.CARD_ACTIONS_BLOCK}:{handoff_id}", "type": "overflow",
        "selected_option": {"text": {"type": "plain_text", "text": verb}, "value": f"{verb}:{handoff_id}"},
        "action_ts": f"{time.time():.6f}",
    }
    body = block_action_body(ids.MORE, "", user, channel=handoff.channel, message_ts=handoff.card_ts,
                             actions=[action])
    return post_signed(harness.events_url, body, FORM, SIGNING_SECRET)


def pick_user(
    harness: SlackHarness, handoff_id: int, user: str, selected: str, *, message_ts: str | None = None,
    legacy_block: bool = False,
) -> httpx.Response:
    """Choose a person in the card's Reassign user picker. The element carries no value: its block id names the
    handoff, or, on a card posted before block ids did (`legacy_block`), the message's ts tells which card it is.
    `message_ts`: the message clicked on, the card itself by default."""
    handoff = harness.runtime.repo.get(handoff_id)
    assert handoff is not None and handoff.card_ts and handoff.channel
    block_id = ids.CARD_ACTIONS_BLOCK if legacy_block else f"{ids.CARD_ACTIONS_BLOCK}:{handoff_id}"
    action = {
        "action_id": ids.REASSIGN, "block_id": block_id, "type": "users_select",
        "selected_user": selected, "initial_user": None, "action_ts": f"{time.time():.6f}",
    }
    body = block_action_body(ids.REASSIGN, "", user, channel=handoff.channel,
                             message_ts=message_ts or handoff.card_ts, actions=[action])
    return post_signed(harness.events_url, body, FORM, SIGNING_SECRET)


def opened_view(harness: SlackHarness, callback_id: str, count: int = 1) -> Call:
    """The `count`-th views.open call for a modal `callback_id` (waits for it)."""
    calls = harness.slack.wait_for(
        lambda c: c.method == "views.open" and c.params["view"].get("callback_id") == callback_id, count=count,
        timeout=WAIT,
    )
    return calls[count - 1]


def submit_view(harness: SlackHarness, opened: Call, values: dict[str, Any], user: str) -> httpx.Response:
    """Submit the modal that the bot really opened (its callback id and private_metadata)."""
    view = opened.params["view"]
    body = view_submission_body(view["callback_id"], values, user, private_metadata=view["private_metadata"],
                                blocks=view.get("blocks"))
    return post_signed(harness.events_url, body, FORM, SIGNING_SECRET)


def input_values(**entries: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """`view.state.values` with block_id == action_id, as the product's modals are built."""
    return {block_id: {block_id: entry} for block_id, entry in entries.items()}


def form_values(opened: Call, **changes: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """What Slack sends back for the whole form the bot opened: each input as it was prefilled, but `changes`."""
    values: dict[str, dict[str, Any]] = {}
    for block in opened.params["view"]["blocks"]:
        if block["type"] != "input":
            continue
        element, block_id = block["element"], block["block_id"]
        if element["type"] == "plain_text_input":
            entry: dict[str, Any] = {"type": "plain_text_input", "value": element.get("initial_value")}
        elif element["type"] == "static_select":
            entry = {"type": "static_select", "selected_option": element.get("initial_option")}
        else:
            entry = {"type": element["type"], "selected_date_time": element.get("initial_date_time")}
        values[block_id] = {element["action_id"]: changes.get(block_id, entry)}
    return values


def timed(send: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = send()
    return response, time.monotonic() - started


def snapshot(harness: SlackHarness, handoff_id: int) -> tuple[str, int, str | None]:
    handoff = harness.runtime.repo.get(handoff_id)
    assert handoff is not None
    return handoff.status.value, handoff.version, handoff.owner


def refusals(harness: SlackHarness, handoff_id: int) -> list[dict[str, Any]]:
    return [dict(e.data, actor=e.actor) for e in harness.runtime.repo.events(handoff_id) if e.action == "refused"]
