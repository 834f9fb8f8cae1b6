"""App Home end to end: opening the tab publishes the viewer's board; acting from it republishes it."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from bot import ids
from bot.blocks.home import HOME_BLOCK_LIMIT
from handoffs.model import HandoffIn
from tests.bot.slack.conftest import SIGNING_SECRET, SlackHarness
from tests.bot.slack.e2e import create, fast_pacing, input_values, opened_view, submit_view, wait_until
from tests.factories import payload
from tests.fakes.slack_api import Call
from tests.fakes.slack_signing import FORM, JSON, block_action_body, event_body, post_signed, select_value

HOSTILE = "<!channel> @here <@U123>"
BARE_BROADCAST = re.compile(r"@(here|channel|everyone)", re.IGNORECASE)
WAIT = 15.0


def open_home(harness: SlackHarness, user: str, tab: str = "home") -> httpx.Response:
    event = {"type": "app_home_opened", "user": user, "channel": f"D{user[1:]}", "tab": tab,
             "event_ts": f"{datetime.now(UTC).timestamp():.6f}"}
    response = post_signed(harness.events_url, event_body(event), JSON, SIGNING_SECRET)
    assert response.status_code == 200, response.text
    return response


def home_click(harness: SlackHarness, action_id: str, handoff_id: int, user: str) -> httpx.Response:
    """A button pressed on the App Home: the payload carries the home view and no channel or message."""
    body = block_action_body(action_id, str(handoff_id), user, view={"id": "VHOME", "type": "home"})
    response = post_signed(harness.events_url, body, FORM, SIGNING_SECRET)
    assert response.status_code == 200, response.text
    return response


def published(harness: SlackHarness, user: str, count: int = 1) -> Call:
    """The `count`-th views.publish for `user` (waits for it)."""
    calls = harness.slack.wait_for("views.publish", count=count, timeout=WAIT, ok=True, user_id=user)
    return calls[count - 1]


def view_of(call: Call) -> dict[str, Any]:
    view = call.params["view"]
    assert isinstance(view, dict)
    return view


def headings(call: Call) -> list[str]:
    return [b["text"]["text"] for b in view_of(call)["blocks"] if b["type"] == "section" and "text" in b
            and b["text"]["text"].startswith(("📥", "✅", "🙋", "⏰"))]


def buttons(call: Call) -> list[tuple[str, str]]:
    return [(e["action_id"], e["value"]) for b in view_of(call)["blocks"] if b["type"] == "actions"
            for e in b["elements"]]


def test_the_owner_sees_what_is_assigned_to_them(harness: SlackHarness) -> None:
    mine = create(harness, owner="UANNA")
    open_home(harness, "UANNA")
    call = published(harness, "UANNA")
    view = view_of(call)
    assert view["type"] == "home"
    assert headings(call) == ["📥 *Assigned to you* (1)", "✅ *Awaiting your approval*",
                              "🙋 *Unclaimed in your queues*"]
    assert (ids.CLOSE, str(mine["id"])) in buttons(call)
    assert f"*{mine['ref']}*" in json.dumps(view)


def test_an_approver_sees_what_awaits_their_approval(harness: SlackHarness) -> None:
    waiting = create(harness, owner="UANNA", approvers=["ULEAD"], requires_approval=True)
    open_home(harness, "ULEAD")
    call = published(harness, "ULEAD")
    assert "✅ *Awaiting your approval* (1)" in headings(call)
    assert buttons(call)[:2] == [(ids.APPROVE, str(waiting["id"])), (ids.REJECT, str(waiting["id"]))]
    assert "*Awaiting your approval*\n1" in json.dumps(view_of(call), ensure_ascii=False).replace("\\n", "\n")


def test_a_manager_sees_the_stalled_list(harness: SlackHarness) -> None:
    overdue = create(harness, owner="UANNA", due_at=(datetime.now(UTC) - timedelta(hours=2)).isoformat())
    open_home(harness, "UMANAGER")
    call = published(harness, "UMANAGER")
    assert "⏰ *Stalled* (1)" in headings(call)
    text = json.dumps(view_of(call), ensure_ascii=False)
    assert f"*{overdue['ref']}*" in text and "late*" in text
    assert (ids.CLOSE, str(overdue["id"])) in buttons(call)  # a manager may close it

    open_home(harness, "UANNA")  # the owner is no manager: no stalled list, but their own stalled count
    anna = published(harness, "UANNA")
    assert not any(heading.startswith("⏰") for heading in headings(anna))
    assert "*Yours, stalled*\\n1" in json.dumps(view_of(anna))


def test_an_empty_home_is_friendly_and_the_messages_tab_publishes_nothing(harness: SlackHarness) -> None:
    open_home(harness, "UNEW", tab="messages")
    open_home(harness, "UNEW")
    call = published(harness, "UNEW")
    text = json.dumps(view_of(call), ensure_ascii=False)
    assert "Nothing assigned to you. 🎉" in text and "Nothing waits for your approval." in text
    assert "You are in no queue yet" in text
    assert buttons(call) == []
    assert len(harness.slack.calls("views.publish", user_id="UNEW")) == 1


def test_claim_pressed_on_the_home_claims_and_republishes_it(harness: SlackHarness) -> None:
    created = create(harness)  # open in CHANDOFFS
    harness.card_of(created["id"])
    open_home(harness, "UCARL")
    published(harness, "UCARL")

    home_click(harness, ids.CLAIM, created["id"], "UCARL")
    handoff = harness.runtime.repo.get(created["id"])
    assert handoff is not None and handoff.status.value == "claimed" and handoff.owner == "UCARL"
    again = published(harness, "UCARL", count=2)
    assert "📥 *Assigned to you* (1)" in headings(again)
    assert (ids.CLOSE, str(created["id"])) in buttons(again)
    # the card in its channel follows, as for a click on the card
    wait_until(lambda: [c for c in harness.slack.updates(handoff.card_ts) if "UCARL" in json.dumps(c.params)],
               what="the card update")

    # a refused click from the home (no channel to whisper in) is told in the app's DM
    home_click(harness, ids.CLAIM, created["id"], "UDAVE")
    dm = harness.slack.wait_for("chat.postMessage", ok=True, channel="UDAVE", timeout=WAIT)[0]
    assert "already claimed" in dm.params["text"] and "<@UCARL>" in dm.params["text"]
    published(harness, "UDAVE")  # and their home shows how things are now


def test_close_from_the_home_opens_the_modal_and_its_submission_republishes(harness: SlackHarness) -> None:
    mine = create(harness, owner="UANNA")
    harness.card_of(mine["id"])
    home_click(harness, ids.CLOSE, mine["id"], "UANNA")
    opened = opened_view(harness, ids.CLOSE_MODAL)
    at_click = published(harness, "UANNA")  # the click republished the home: still assigned, nothing closed
    assert "📥 *Assigned to you* (1)" in headings(at_click)
    response = submit_view(harness, opened, input_values(**{ids.CLOSE_OUTCOME: select_value("done")}), "UANNA")
    assert response.status_code == 200, response.text
    handoff = harness.runtime.repo.get(mine["id"])
    assert handoff is not None and handoff.status.value == "closed"
    after = published(harness, "UANNA", count=2)  # only the submission publishes again
    assert "📥 *Assigned to you*" in headings(after)
    assert "*Closed by you, last 7 days*\\n1" in json.dumps(view_of(after))


def test_producer_text_never_pings_from_the_home(harness: SlackHarness) -> None:
    create(harness, owner="UANNA", title=HOSTILE)
    create(harness, title=f"open {HOSTILE}", approvers=["UANNA"], requires_approval=True)
    open_home(harness, "UANNA")
    text = json.dumps(view_of(published(harness, "UANNA")), ensure_ascii=False)
    assert "&lt;!channel&gt;" in text
    for live in ("<!channel>", "<@U123>", "<!here>"):
        assert live not in text
    assert not BARE_BROADCAST.search(text)


def test_the_home_stays_within_a_hundred_blocks_with_five_hundred_assigned(harness: SlackHarness) -> None:
    fast_pacing(harness, rate=1000.0, burst=1000.0)  # the 500 cards are not what this test is about
    service = harness.runtime.service
    for _ in range(500):
        service.submit(HandoffIn.model_validate(payload(owner="UBUSY")), actor="producer")
    harness.runtime.notify()
    open_home(harness, "UBUSY")
    call = harness.slack.wait_for("views.publish", ok=True, user_id="UBUSY", timeout=120)[0]
    blocks = view_of(call)["blocks"]
    assert len(blocks) <= HOME_BLOCK_LIMIT
    assert "📥 *Assigned to you* (500)" in headings(call)
    assert any("…and 490 more" in e["text"] for b in blocks if b["type"] == "context" for e in b["elements"])
