"""Closing the loop: a handoff made from a Slack message answers in that message's thread when it ends.

End to end over real HTTP: the message shortcut (or an intake channel) makes the handoff, the card's modals
or the API end it, and the fake Slack records the reply in the source thread.
"""

from __future__ import annotations

import httpx
import pytest

from bot import ids
from bot.blocks.replies import outcome_reply_text
from handoffs.config import HandoffConfig, parse_config
from handoffs.effects import OUTCOME_REPLY
from handoffs.lifecycle import Action, Actor, Request
from handoffs.model import Handoff
from tests.bot.slack.conftest import SIGNING_SECRET, SlackHarness
from tests.bot.slack.e2e import (
    create,
    fast_pacing,
    input_values,
    opened_view,
    submit_view,
    wait_outbox_idle,
    wait_until,
)
from tests.conftest import API_TOKEN, API_TOKEN_NAME, DEFAULT_CONFIG
from tests.fakes.slack_api import Call
from tests.fakes.slack_signing import (
    FORM,
    JSON,
    event_body,
    message_event,
    post_signed,
    select_value,
    shortcut_body,
    text_value,
)

SOURCE = "CGENERAL"
INTAKE = "CINTAKE"
PRODUCER = "UAGENT"
HOSTILE = "<!channel> pay at <https://evil.test|bank.com> now @here, ask <@UBOSS> <!subteam^S123|@ops>"


@pytest.fixture
def handoff_config() -> HandoffConfig:
    """The shared test configuration plus an intake channel (the harness builds its runtime from this)."""
    return parse_config({**DEFAULT_CONFIG, "intake_channels": [{"channel": INTAKE, "producers": [PRODUCER]}]})


def from_message(harness: SlackHarness, ts: str, title: str) -> Handoff:
    """Run "Create handoff" on the message `ts` in #general as UALICE; the handoff once its card is posted."""
    body = shortcut_body(ids.MESSAGE_SHORTCUT, "UALICE", type="message_action", channel_id=SOURCE,
                         message={"text": title, "ts": ts})
    assert post_signed(harness.events_url, body, FORM, SIGNING_SECRET).status_code == 200
    opened = opened_view(harness, ids.NEW_MODAL)
    submitted = submit_view(harness, opened, input_values(**{
        ids.NEW_TITLE: text_value(title), ids.NEW_NEXT_ACTION: text_value("Book the demo with Jane"),
        ids.NEW_KIND: select_value("task"), ids.NEW_URGENCY: select_value("normal"),
    }), "UALICE")
    assert submitted.status_code == 200 and submitted.json()["response_action"] == "update", submitted.text
    [handoff] = [h for h in harness.runtime.repo.page().items if h.source_ts == ts]
    harness.card_of(handoff.id)
    return handoff


def claim(harness: SlackHarness, handoff: Handoff, user: str = "UALICE") -> None:
    assert harness.click(ids.CLAIM, handoff.id, user).status_code == 200
    wait_until(lambda: harness.events(handoff.id)[-1] == "claimed", what=f"{handoff.ref} claimed")


def source_replies(harness: SlackHarness, ts: str, count: int) -> list[Call]:
    """The thread replies under the source message, once there are `count` of them."""
    return wait_until(lambda: (r := harness.slack.thread_replies(SOURCE, ts)) and len(r) >= count and r,
                      what=f"{count} replies under the source message {ts}")


def assert_inert(text: str) -> None:
    for live in ("<!channel>", "<!here>", "<https://", "<@UBOSS>", "<!subteam", "@here"):
        assert live not in text, text


# ---------------------------------------------------------------- pure: the reply's text


def test_the_outcome_reply_names_the_outcome_and_who_decided() -> None:
    closed = outcome_reply_text("H-7", "closed", "UALICE", {"outcome": "won", "note": "Jane signed"},
                                actor_is_system=False)
    assert closed == "🏁 Handoff H-7 was closed as *won* by <@UALICE>: Jane signed"
    rejected = outcome_reply_text("H-7", "rejected", "ULEAD", {"reason": "Wrong customer"}, actor_is_system=False)
    assert rejected == "⛔ Handoff H-7 was rejected by <@ULEAD>: Wrong customer"
    approved = outcome_reply_text("H-7", "approved", "ULEAD", {"outcome": "approved", "note": None},
                                  actor_is_system=False)
    assert approved == "✅ Handoff H-7 was approved and closed by <@ULEAD>."
    by_api = outcome_reply_text("H-7", "closed", "<!here>", {"outcome": "done"}, actor_is_system=True)
    assert by_api == "🏁 Handoff H-7 was closed as *done* by &lt;!here&gt;."
    hostile = outcome_reply_text("H-7", "closed", "UALICE", {"outcome": "<@UBOSS>", "note": HOSTILE},
                                 actor_is_system=False)
    assert hostile.count("<@") == 1  # the closer, nobody else
    assert_inert(hostile)


# ---------------------------------------------------------------- end to end


def test_closing_with_the_modal_replies_in_the_source_thread(harness: SlackHarness) -> None:
    fast_pacing(harness)
    ts = "1700000200.000100"
    handoff = from_message(harness, ts, "Customer ACME wants a demo")
    [created] = source_replies(harness, ts, 1)
    assert created.params["text"].startswith(f"📌 Handoff {handoff.ref} created")
    claim(harness, handoff)

    assert harness.click(ids.CLOSE, handoff.id, "UALICE").status_code == 200
    modal = opened_view(harness, ids.CLOSE_MODAL)
    response = submit_view(harness, modal, input_values(**{
        ids.CLOSE_OUTCOME: select_value("done"), ids.CLOSE_NOTE: text_value(HOSTILE),
    }), "UALICE")
    assert response.status_code == 200, response.text

    _, closed = source_replies(harness, ts, 2)
    assert (closed.channel, closed.params["thread_ts"]) == (SOURCE, ts)
    text = closed.params["text"]
    assert text.startswith(f"🏁 Handoff {handoff.ref} was closed as *done* by <@UALICE>: ")
    assert "&lt;!channel&gt; pay at &lt;https://evil.test|bank.com&gt;" in text
    assert text.count("<@") == 1
    assert_inert(text)

    # reopening says nothing in the source thread; the card's own thread tells it
    harness.runtime.service.act(handoff.id, Request(Action.reopen), Actor("UMANAGER"))
    wait_outbox_idle(harness)
    assert len(harness.slack.thread_replies(SOURCE, ts)) == 2


def test_rejecting_replies_with_the_reason(harness: SlackHarness) -> None:
    fast_pacing(harness)
    ts = "1700000300.000100"
    handoff = from_message(harness, ts, "Refund request from Globex")
    claim(harness, handoff)

    assert harness.click(ids.REJECT, handoff.id, "UALICE").status_code == 200
    modal = opened_view(harness, ids.REJECT_MODAL)
    response = submit_view(harness, modal, input_values(**{ids.REJECT_REASON: text_value(HOSTILE)}), "UALICE")
    assert response.status_code == 200, response.text

    _, rejected = source_replies(harness, ts, 2)
    assert (rejected.channel, rejected.params["thread_ts"]) == (SOURCE, ts)
    text = rejected.params["text"]
    assert text.startswith(f"⛔ Handoff {handoff.ref} was rejected by <@UALICE>: &lt;!channel&gt; pay at")
    assert text.count("<@") == 1
    assert_inert(text)


def test_closing_from_the_api_names_the_api_client(harness: SlackHarness) -> None:
    fast_pacing(harness)
    ts = "1700000400.000100"
    handoff = from_message(harness, ts, "Quote for Initech")
    claim(harness, handoff)

    response = httpx.post(f"{harness.server.url}/api/handoffs/{handoff.ref}/outcome",
                          json={"outcome": "done", "note": "Signed in the CRM"},
                          headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=10)
    assert response.status_code == 200, response.text

    _, closed = source_replies(harness, ts, 2)
    assert closed.params["text"] == (
        f"🏁 Handoff {handoff.ref} was closed as *done* by {API_TOKEN_NAME}: Signed in the CRM")


def test_a_handoff_not_made_from_a_message_replies_only_in_its_card_thread(harness: SlackHarness) -> None:
    fast_pacing(harness)
    handoff_id = create(harness, owner="UALICE")["id"]
    card = harness.card_of(handoff_id)
    harness.runtime.service.act(handoff_id, Request(Action.close, outcome="done"), Actor("UALICE"))
    wait_until(lambda: harness.slack.thread_replies("CHANDOFFS", card.response["ts"]), what="the card's reply")
    wait_outbox_idle(harness)

    assert [c.channel for c in harness.slack.thread_replies()] == ["CHANDOFFS"]
    assert not [row for row in harness.runtime.repo.outbox_for(handoff_id) if row.kind == OUTCOME_REPLY]


def test_an_intake_channel_handoff_gets_the_outcome_in_its_thread(harness: SlackHarness) -> None:
    fast_pacing(harness)
    ts = "1700000500.000100"
    payload = {"title": "Renewal for Umbrella", "next_action": "Send the renewal deck"}
    event = message_event(INTAKE, PRODUCER, "New handoff", ts=ts,
                          metadata={"event_type": "handoff", "event_payload": payload})
    assert post_signed(harness.events_url, event_body(event), JSON, SIGNING_SECRET).status_code == 200
    [handoff] = harness.runtime.repo.page().items
    harness.runtime.service.act(handoff.id, Request(Action.claim), Actor("UBEN"))
    harness.runtime.service.act(handoff.id, Request(Action.close, outcome="no_action"), Actor("UBEN"))

    replies = wait_until(lambda: (r := harness.slack.thread_replies(INTAKE, ts)) and len(r) >= 2 and r,
                         what="the created and the outcome replies")
    assert replies[0].params["text"].startswith(f"📌 Handoff {handoff.ref} created")
    assert replies[1].params["text"] == f"🏁 Handoff {handoff.ref} was closed as *no_action* by <@UBEN>."
