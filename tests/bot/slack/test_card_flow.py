"""A handoff from the API becomes one card; each button works end to end over real HTTP."""

from __future__ import annotations

from bot import ids
from tests.bot.slack.conftest import SlackHarness, _wait
from tests.fakes.slack_signing import select_value, text_value


def _buttons(call: object) -> set[str]:
    blocks = call.params["blocks"]
    return {e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]}


def test_created_handoff_posts_one_card_then_claim_updates_it_and_replies_in_thread(harness: SlackHarness) -> None:
    created = harness.create()
    card = harness.card_of(created["id"])
    assert card.params["channel"] == "CHANDOFFS"
    assert ids.CLAIM in _buttons(card)

    response = harness.click(ids.CLAIM, created["id"], "UALICE")
    assert response.status_code == 200

    card_ts = card.response["ts"]
    update = harness.slack.wait_for(lambda c: c.method == "chat.update" and c.params.get("ts") == card_ts)[0]
    assert ids.CLAIM not in _buttons(update)
    assert ids.CLOSE in _buttons(update)
    reply = harness.slack.wait_for(lambda c: c.method == "chat.postMessage" and c.params.get("thread_ts"))[0]
    assert "UALICE" in reply.params["text"]
    assert len(harness.slack.posted_cards()) == 1
    assert harness.events(created["id"]) == ["created", "claimed"]


def test_close_through_the_modal_ends_with_outcome_and_no_buttons(harness: SlackHarness) -> None:
    created = harness.create()
    harness.card_of(created["id"])
    harness.click(ids.CLAIM, created["id"], "UALICE")
    response = harness.click(ids.CLOSE, created["id"], "UALICE")
    assert response.status_code == 200
    opened = harness.slack.wait_for("views.open")[0]
    assert opened.params["view"]["callback_id"] == ids.CLOSE_MODAL

    submitted = harness.submit(ids.CLOSE_MODAL, {ids.CLOSE_OUTCOME: {ids.CLOSE_OUTCOME: select_value("done")},
                                                 ids.CLOSE_NOTE: {ids.CLOSE_NOTE: text_value("all good")}},
                               "UALICE", created["id"])
    assert submitted.status_code == 200, submitted.text
    assert harness.runtime.repo.get(created["id"]).status.value == "closed"  # type: ignore[union-attr]

    def final_update() -> list[object]:
        return [c for c in harness.slack.updates() if "actions" not in {b["type"] for b in c.params["blocks"]}]

    last = _wait(final_update)[-1]
    assert "done" in str(last.params["blocks"])
