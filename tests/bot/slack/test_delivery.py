"""The outbox delivers every card and update exactly once through 429s, 5xx, an outage and a slow Slack."""

from __future__ import annotations

import itertools
import time
from collections import Counter

import httpx
import pytest

from bot import ids
from handoffs.effects import UPDATE_CARD
from handoffs.lifecycle import Action, Actor, Request
from handoffs.model import HandoffIn
from tests.bot.slack.conftest import SlackHarness
from tests.bot.slack.e2e import create, fast_pacing, opened_view, snapshot, timed, wait_outbox_idle, wait_until
from tests.conftest import API_TOKEN
from tests.factories import lead, payload
from tests.fakes.slack_api import Call

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def card_posts(harness: SlackHarness, ref: str) -> list[Call]:
    """Successful top-level chat.postMessage calls for one handoff (its card)."""
    return [c for c in harness.slack.posted_cards() if str(c.params.get("text", "")).split(" · ")[0].endswith(ref)]


def assert_each_card_once(harness: SlackHarness, created: list[dict[str, object]]) -> dict[int, str]:
    """Every handoff's card arrived, exactly once, and its ts is the one stored; returns id -> card ts."""
    def all_posted() -> bool:
        stored = [harness.runtime.repo.get(int(str(c["id"]))) for c in created]
        return all(card_posts(harness, str(c["ref"])) for c in created) and all(h and h.card_ts for h in stored)

    wait_until(all_posted, timeout=20, what="every card")
    stamps: dict[int, str] = {}
    for handoff in created:
        posts = card_posts(harness, str(handoff["ref"]))
        assert len(posts) == 1, f"{handoff['ref']} was posted {len(posts)} times"
        stored = harness.runtime.repo.get(int(str(handoff["id"])))
        assert posts[0].response is not None
        assert stored is not None and stored.card_ts is not None and stored.card_ts == posts[0].response["ts"]
        stamps[stored.id] = stored.card_ts
    assert len(harness.slack.posted_cards()) == len(created)
    return stamps


def test_rate_limits_and_server_errors_deliver_every_card_and_reply_exactly_once(harness: SlackHarness) -> None:
    fast_pacing(harness)
    harness.slack.fail_next("chat.postMessage", count=3, status=429, retry_after=1)
    created = [create(harness) for _ in range(3)]
    stamps = assert_each_card_once(harness, created)
    assert len(harness.slack.calls("chat.postMessage", ok=False)) == 3
    failed_at = [c.received_at for c in harness.slack.calls("chat.postMessage", ok=False)]
    retried_at = min(c.received_at for c in harness.slack.posted_cards())
    assert retried_at - failed_at[-1] >= 0.9  # Retry-After was honoured
    assert all(later - earlier >= 0.9 for earlier, later in itertools.pairwise(failed_at))

    # every change: the card update and the thread reply fail with 500 first, then arrive once each
    harness.slack.fail_next("chat.postMessage", count=2, status=500)
    harness.slack.fail_next("chat.update", count=2, status=500)
    for handoff in created:
        assert harness.click(ids.CLAIM, int(str(handoff["id"])), "UALICE").status_code == 200
    wait_until(lambda: len(harness.slack.thread_replies()) >= 3, timeout=20, what="three thread replies")
    wait_outbox_idle(harness)

    replies = harness.slack.thread_replies()
    assert Counter(r.params["thread_ts"] for r in replies) == Counter(stamps.values())
    assert all("Claimed by <@UALICE>" in r.params["text"] for r in replies)
    for ts in stamps.values():
        final = harness.slack.updates(ts)
        assert final and "<@UALICE>" in str(final[-1].params["blocks"])
    assert len(harness.slack.posted_cards()) == 3  # still: no card twice
    assert len(harness.slack.calls("chat.postMessage", ok=False)) == 5
    assert len(harness.slack.calls("chat.update", ok=False)) == 2


def test_a_finished_send_frees_its_channel_for_its_next_row_without_waiting_for_the_timer(
    harness: SlackHarness,
) -> None:
    fast_pacing(harness)  # the pace allows a burst: only the sender's scans decide when each card goes
    harness.bot.senders.sender.poll_seconds = 10.0  # on its timer alone, one card of the channel each 10 s
    created = [create(harness) for _ in range(5)]
    assert_each_card_once(harness, created)
    sent_at = sorted(c.received_at for c in harness.slack.posted_cards())
    assert sent_at[-1] - sent_at[0] < 3.0


def test_handoffs_are_accepted_while_slack_is_down_and_delivered_once_when_it_is_back(harness: SlackHarness) -> None:
    fast_pacing(harness)
    harness.slack.down()
    results = [timed(lambda: httpx.post(f"{harness.server.url}/api/handoffs", json=lead(urgency="low"),
                                        headers=AUTH, timeout=5)) for _ in range(3)]
    assert [r.status_code for r, _ in results] == [201, 201, 201]
    assert max(seconds for _, seconds in results) < 1.0
    created = [r.json() for r, _ in results]

    # a click while Slack is down is still acknowledged at once
    response, seconds = timed(lambda: harness.click(ids.CLAIM, created[0]["id"], "UALICE"))
    assert response.status_code == 200 and seconds < 1.0
    wait_until(lambda: any(row.last_error for row in harness.runtime.repo.outbox_for(created[0]["id"])),
               what="a failed attempt while Slack is down")

    harness.slack.up()
    assert_each_card_once(harness, created)
    wait_outbox_idle(harness)
    replies = harness.slack.thread_replies()
    assert len(replies) == 1 and "Claimed by <@UALICE>" in replies[0].params["text"]
    assert len(harness.slack.posted_cards()) == 3


def test_a_permanent_error_fails_that_card_visibly_without_blocking_other_channels(harness: SlackHarness) -> None:
    harness.slack.fail_channel("CSALES", "channel_not_found")
    doomed = create(harness, **lead(urgency="high"))  # hot-leads route: CSALES
    assert doomed["channel"] == "CSALES"
    fine = create(harness)
    assert fine["channel"] == "CHANDOFFS"

    harness.card_of(fine["id"])

    def deliveries() -> list[dict[str, object]]:
        shown = httpx.get(f"{harness.server.url}/api/handoffs/{doomed['ref']}", headers=AUTH, timeout=5)
        assert shown.status_code == 200
        return list(shown.json()["deliveries"])

    failed = wait_until(lambda: [d for d in deliveries() if d["state"] == "failed"], what="a failed delivery")
    assert failed[0]["kind"] == "slack.post_card" and failed[0]["last_error"] == "channel_not_found"
    assert len(harness.slack.calls("chat.postMessage", channel="CSALES")) == 1  # not retried: it cannot succeed
    health = httpx.get(f"{harness.server.url}/healthz", timeout=5)
    assert health.status_code == 200
    assert health.json()["outbox"]["failed"] >= 1
    assert health.json()["outbox"]["last_failure"] == "channel_not_found"

    # the other channel keeps flowing: a new card and an update there arrive
    later = create(harness)
    harness.card_of(later["id"])
    harness.click(ids.CLAIM, fine["id"], "UBOB")
    ts = harness.runtime.repo.get(fine["id"]).card_ts  # type: ignore[union-attr]
    wait_until(lambda: harness.slack.updates(ts), what="the update in the healthy channel")
    assert harness.runtime.repo.get(doomed["id"]).card_ts is None  # type: ignore[union-attr]


def failed_deliveries(harness: SlackHarness, ref: str) -> list[dict[str, object]]:
    shown = httpx.get(f"{harness.server.url}/api/handoffs/{ref}", headers=AUTH, timeout=5)
    assert shown.status_code == 200
    return [d for d in shown.json()["deliveries"] if d["state"] == "failed"]


def test_a_channel_that_refuses_every_post_fails_the_card_at_once_not_after_a_day_of_retries(
    harness: SlackHarness,
) -> None:
    harness.slack.fail_channel("CSALES", "restricted_action_read_only_channel")  # an announcement-only channel
    doomed = create(harness, **lead(urgency="high"))
    assert doomed["channel"] == "CSALES"
    [failed] = wait_until(lambda: failed_deliveries(harness, str(doomed["ref"])), what="a failed delivery")
    assert failed["kind"] == "slack.post_card" and failed["last_error"] == "restricted_action_read_only_channel"
    assert len(harness.slack.calls("chat.postMessage", channel="CSALES")) == 1


def test_a_rate_limit_in_an_ok_false_answer_is_waited_out_like_a_429(harness: SlackHarness) -> None:
    harness.slack.fail_next("chat.postMessage", status=200, error="ratelimited")
    created = create(harness)
    harness.card_of(created["id"])
    assert [c.error for c in harness.slack.calls("chat.postMessage")] == ["ratelimited", None]
    # Slack said it did not post: the try is refunded, so the retry does not first search the channel's history
    # for a card that may have been stored (what a try of unknown outcome needs).
    assert not harness.slack.calls("conversations.history")
    assert not failed_deliveries(harness, str(created["ref"]))


def test_a_reply_waiting_for_its_card_does_not_hold_up_the_channel_it_waits_in(harness: SlackHarness) -> None:
    """A handoff made from a message in CSALES replies in that message's thread once its card (in CHANDOFFS) is
    posted; while CHANDOFFS fails, that reply waits, first in CSALES' queue. Other cards in CSALES go on."""
    harness.slack.fail_channel("CHANDOFFS", "internal_error")  # retried with back-off: the card keeps waiting
    source = harness.runtime.service.submit(HandoffIn.model_validate(payload()), actor="UALICE",
                                            source_message=("CSALES", "1700000000.000100"))
    assert source.handoff.channel == "CHANDOFFS"
    wait_until(lambda: harness.slack.calls("chat.postMessage", channel="CHANDOFFS"), what="the failing card post")
    time.sleep(1.2)  # the waiting reply has been looked at, and put back, at least once
    hot = create(harness, **lead(urgency="high"))
    assert hot["channel"] == "CSALES"
    harness.card_of(hot["id"])  # before the fix it never came: the waiting reply took every send of CSALES
    assert harness.runtime.repo.get(source.handoff.id).card_ts is None  # type: ignore[union-attr]


def test_clicks_are_acknowledged_fast_while_slack_answers_after_five_seconds(harness: SlackHarness) -> None:
    created = create(harness, owner="UALICE")
    other = create(harness)
    harness.card_of(created["id"])
    harness.card_of(other["id"])
    harness.slack.set_delay(5)
    try:
        claim, claim_seconds = timed(lambda: harness.click(ids.CLAIM, other["id"], "UBOB"))
        edit, edit_seconds = timed(lambda: harness.click(ids.EDIT, created["id"], "UALICE"))
        assert claim.status_code == 200 and edit.status_code == 200
        print(f"\nSlack delayed 5 s: claim ack {claim_seconds * 1000:.0f} ms, edit ack {edit_seconds * 1000:.0f} ms")
        assert claim_seconds < 1.0 and edit_seconds < 1.0
        # the modal is still requested (by the lazy listener, after the ack) and the claim is stored
        opened = opened_view(harness, ids.EDIT_MODAL)
        assert opened.params["view"]["callback_id"] == ids.EDIT_MODAL
        assert harness.runtime.repo.get(other["id"]).owner == "UBOB"  # type: ignore[union-attr]
    finally:
        harness.slack.stop()  # ends the 5-second answers at once, so the bot stops quickly


def test_a_change_committed_while_a_card_update_is_being_prepared_still_reaches_the_card(
    harness: SlackHarness, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sender reads which pending updates a send covers, and the handoff it renders: a release committed
    in between must end up on the card (it used to be marked sent with the claimed state shown)."""
    fast_pacing(harness)
    created = create(harness)
    card = harness.card_of(created["id"])
    store = harness.bot.senders.sender.store
    real_latest = store.latest_pending_id
    interleaved: list[int] = []

    def latest_with_a_release_in_between(handoff_id: int, kind: str) -> int | None:
        if kind == UPDATE_CARD and not interleaved:  # the claim's update: a release commits in between
            interleaved.append(handoff_id)
            harness.runtime.service.act(handoff_id, Request(Action.release), Actor("UANNA"))
        return real_latest(handoff_id, kind)

    monkeypatch.setattr(store, "latest_pending_id", latest_with_a_release_in_between)
    assert harness.click(ids.CLAIM, created["id"], "UANNA").status_code == 200
    wait_until(lambda: interleaved, what="the claim's card update")
    wait_outbox_idle(harness)
    assert snapshot(harness, created["id"])[0] == "open"
    last = harness.slack.updates(card.response["ts"])[-1]
    shown = [e["action_id"] for b in last.params["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert ids.CLAIM in shown, "the card still shows the claimed state after the release"


def test_a_card_slack_stored_but_whose_answer_was_lost_is_found_and_not_posted_again(harness: SlackHarness) -> None:
    """chat.postMessage takes effect and answers 500 (as after a timeout, or a kill before the ts was stored):
    the retry finds the card by its metadata in the channel's history and records its ts."""
    fast_pacing(harness)
    harness.slack.lose_answer_next("chat.postMessage")
    created = create(harness)
    wait_outbox_idle(harness)
    cards = [m for m in harness.slack.channel_messages("CHANDOFFS") if m.get("metadata")]
    assert len(cards) == 1, f"{len(cards)} cards in the channel"
    assert cards[0]["metadata"] == {"event_type": "handoff_card", "event_payload": {"handoff_id": created["id"]}}
    stored = harness.runtime.repo.get(created["id"])
    assert stored is not None and stored.card_ts == cards[0]["ts"]
    [looked] = harness.slack.calls("conversations.history")
    assert looked.params["channel"] == "CHANDOFFS" and looked.params["include_all_metadata"] in ("1", "true", True)
    # the card is the one the bot updates: a claim reaches it
    assert harness.click(ids.CLAIM, created["id"], "UANNA").status_code == 200
    wait_until(lambda: harness.slack.updates(cards[0]["ts"]), what="the claim's update of the card")


def claim_with_its_reply_answer_lost(harness: SlackHarness) -> tuple[dict[str, object], str]:
    """A handoff whose card is up, claimed while Slack stores the claim's thread reply and loses its answer."""
    fast_pacing(harness)
    created = create(harness)
    wait_outbox_idle(harness)
    handoff = harness.runtime.repo.get(int(created["id"]))
    assert handoff is not None and handoff.card_ts
    harness.slack.lose_answer_next("chat.postMessage")
    assert harness.click(ids.CLAIM, created["id"], "UANNA").status_code == 200
    wait_outbox_idle(harness)
    return created, handoff.card_ts


def test_a_thread_reply_slack_stored_but_whose_answer_was_lost_is_found_and_not_posted_again(
    harness: SlackHarness,
) -> None:
    """As for a card: the retry finds the reply by its metadata in the card's thread, and posts nothing."""
    _, card_ts = claim_with_its_reply_answer_lost(harness)
    replies = harness.slack.thread_messages("CHANDOFFS", card_ts)
    assert len(replies) == 1, f"{len(replies)} replies in the thread: {[m['text'] for m in replies]}"
    assert "claimed" in replies[0]["text"].lower()
    assert replies[0]["metadata"]["event_type"] == "handoff_message"
    [looked] = harness.slack.calls("conversations.replies")
    assert looked.params["channel"] == "CHANDOFFS" and looked.params["ts"] == card_ts
    assert looked.params["include_all_metadata"] in ("1", "true", True)


def test_a_reply_is_posted_again_when_slack_will_not_let_the_retry_look(harness: SlackHarness) -> None:
    """An app installed without the history scopes: the look answers missing_scope, and the reply is posted
    again (a second copy), not failed for good as a missing_scope on the post itself would be."""
    harness.slack.fail_next("conversations.replies", status=200, error="missing_scope")
    created, card_ts = claim_with_its_reply_answer_lost(harness)
    assert len(harness.slack.thread_messages("CHANDOFFS", card_ts)) == 2
    shown = httpx.get(f"{harness.server.url}/api/handoffs/{created['ref']}", headers=AUTH, timeout=5).json()
    assert [d["state"] for d in shown["deliveries"] if d["state"] not in ("sent", "coalesced")] == [], shown


def test_a_retried_card_post_that_never_reached_slack_is_posted_once(harness: SlackHarness) -> None:
    fast_pacing(harness)
    harness.slack.fail_next("chat.postMessage", count=2, status=500)
    created = create(harness)
    wait_outbox_idle(harness)
    assert len(card_posts(harness, str(created["ref"]))) == 1
    assert len([m for m in harness.slack.channel_messages("CHANDOFFS") if m.get("metadata")]) == 1
    assert len(harness.slack.calls("conversations.history")) == 2  # looked before each retry, found nothing
