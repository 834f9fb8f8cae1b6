"""The outbox sender against answers a real network or Slack can give: odd `Retry-After`s, an `ok` without a
message ts, permanent refusals missing from the list, a 5xx in the middle of a thread.

Each test failed on the sender before it was fixed (each docstring says how). The sender's rules do not depend
on the database, so these run on SQLite only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from handoffs.effects import direct_message
from handoffs.lifecycle import Action, Actor, Request
from tests.bot.slack.conftest import SlackHarness
from tests.bot.slack.e2e import create, fast_pacing, wait_outbox_idle, wait_until
from tests.conftest import API_TOKEN
from tests.factories import lead
from tests.fakes.slack_api import FakeSlack, _Answer

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

# method -> list of one-shot answer factories (call params -> _Answer), used in order; installed per test
Rule = Callable[[FakeSlack, Any], "_Answer | None"]


@pytest.fixture
def answers(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[Rule]]]:
    """Lets a test answer the next calls of a method with any JSON body / status / headers (test-side only)."""
    queued: dict[str, list[Rule]] = {}
    real = FakeSlack._answer

    def answer(self: FakeSlack, call: Any) -> _Answer:
        rules = queued.get(call.method)
        if rules:
            rule = rules.pop(0)
            made = rule(self, call)
            if made is not None:
                return made
        return real(self, call)

    monkeypatch.setattr(FakeSlack, "_answer", answer)
    yield queued


def deliveries(harness: SlackHarness, ref: str) -> list[dict[str, Any]]:
    shown = httpx.get(f"{harness.server.url}/api/handoffs/{ref}", headers=AUTH, timeout=5)
    assert shown.status_code == 200
    return list(shown.json()["deliveries"])


# --- 1. a thread's replies change order after a 5xx --------------------------------------------


def test_thread_replies_keep_their_order_when_one_answer_is_a_500(harness: SlackHarness) -> None:
    """A reply that got a 5xx backed off, and the channel's next due row, a later reply in the same thread, went
    first: the thread read "released" before "claimed". A reply now waits behind an earlier one of its handoff."""
    fast_pacing(harness)
    created = create(harness)
    wait_outbox_idle(harness)
    handoff = harness.runtime.repo.get(int(created["id"]))
    assert handoff is not None and handoff.card_ts
    harness.slack.fail_next("chat.postMessage", count=1, status=500)  # the claim's thread reply
    service = harness.runtime.service
    service.act(handoff.id, Request(Action.claim), Actor("UANNA"))
    service.act(handoff.id, Request(Action.release), Actor("UANNA"))
    wait_outbox_idle(harness)
    replies = [m["text"].lower() for m in harness.slack.thread_messages("CHANDOFFS", handoff.card_ts)]
    assert len(replies) == 2, replies
    assert "claim" in replies[0] and "release" in replies[1], f"thread out of order: {replies}"


# --- 2. Retry-After on a 503 is ignored ---------------------------------------------------------


def test_retry_after_on_a_503_is_honoured(harness: SlackHarness) -> None:
    """Only a 429 (or `ratelimited`) was read for `Retry-After`: a 503 that said 3 s was retried after the
    ordinary back-off (~1–2 s)."""
    fast_pacing(harness)
    harness.slack.fail_next("chat.postMessage", count=1, status=503, retry_after=3)
    created = create(harness)
    harness.card_of(int(created["id"]))
    posts = harness.slack.calls("chat.postMessage")
    failed = [c for c in posts if c.status == 503]
    assert failed, [c.summary() for c in posts]
    retried = [c for c in posts if c.received_at > failed[0].received_at]
    gap = retried[0].received_at - failed[0].received_at
    assert gap >= 2.9, f"retried {gap:.1f}s after a 503 that said Retry-After: 3"


# --- 3. an out-of-range Retry-After wedges the channel forever, silently -----------------------


def test_an_absurd_retry_after_does_not_wedge_the_channel_silently(
    harness: SlackHarness, answers: dict[str, list[Rule]],
) -> None:
    """`Retry-After: 999999999999` paused the channel for 31,000 years, then overflowed `timedelta` inside the
    error handler: nothing logged, no `last_error`, the channel's rows held for ever. It is now capped."""
    fast_pacing(harness)
    answers["chat.postMessage"] = [
        lambda fake, call: _Answer(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "999999999999"})
    ]
    created = create(harness)
    wait_until(lambda: harness.slack.calls("chat.postMessage"), what="the 429")
    time.sleep(1.0)
    [card_row] = [d for d in deliveries(harness, str(created["ref"])) if d["kind"] == "slack.post_card"]
    pause = harness.bot.senders.sender.pacer.wait_hint("CHANDOFFS", time.monotonic())
    assert card_row["last_error"] == "ratelimited" and pause <= 86400, (
        f"row {card_row}, channel CHANDOFFS paused for {pause:.3g}s")


# --- 4. ok:true without a usable ts -------------------------------------------------------------


def test_a_card_post_answered_ok_with_a_null_ts_does_not_record_the_string_none(
    harness: SlackHarness, answers: dict[str, list[Rule]],
) -> None:
    """An `ok` answer with `ts: null` stored the card's ts as "None": every update then went to a message that does
    not exist. Such an answer is now of unknown outcome, like a timeout: the next try finds the card by its
    metadata and records its real ts."""
    fast_pacing(harness)

    def stored_but_ts_null(fake: FakeSlack, call: Any) -> _Answer:
        body = fake._post_message(call.params)
        return _Answer(200, {**body, "ts": None})

    answers["chat.postMessage"] = [stored_but_ts_null]
    created = create(harness)
    wait_outbox_idle(harness)
    cards = [m for m in harness.slack.channel_messages("CHANDOFFS") if m.get("metadata")]
    assert len(cards) == 1
    stored = harness.runtime.repo.get(int(created["id"]))
    assert stored is not None
    assert stored.card_ts == cards[0]["ts"], f"card_ts stored as {stored.card_ts!r}"


def test_a_card_post_answered_ok_with_an_empty_ts_does_not_spin_its_thread_replies(
    harness: SlackHarness, answers: dict[str, list[Rule]],
) -> None:
    """With `ts: ""` stored, a thread reply found no card, saw its post sent and was put back at once, for ever,
    at full speed, without a Slack call."""
    fast_pacing(harness)

    def stored_but_ts_empty(fake: FakeSlack, call: Any) -> _Answer:
        body = fake._post_message(call.params)
        return _Answer(200, {**body, "ts": ""})

    answers["chat.postMessage"] = [stored_but_ts_empty]
    created = create(harness)
    wait_until(lambda: harness.slack.calls("chat.postMessage"), what="the card post")
    time.sleep(0.5)
    store = harness.bot.senders.sender.store
    retries: list[int] = []
    real_retry = store.retry

    def counting_retry(row_id: int, **kwargs: Any) -> None:
        retries.append(row_id)
        real_retry(row_id, **kwargs)

    store.retry = counting_retry  # type: ignore[method-assign]
    harness.runtime.service.act(int(created["id"]), Request(Action.claim), Actor("UANNA"))
    time.sleep(2.0)
    store.retry = real_retry  # type: ignore[method-assign]
    stored = harness.runtime.repo.get(int(created["id"]))
    assert stored is not None
    assert len(retries) < 10, (f"card_ts={stored.card_ts!r}; the claim's reply was put back {len(retries)} "
                               f"times in 2 s without a single Slack call")


# --- 5. permanent refusals that are retried for a day -------------------------------------------


@pytest.mark.parametrize("code", ["invalid_blocks_format", "not_allowed_token_type", "access_denied",
                                  "msg_blocks_too_long"])
def test_a_permanent_refusal_of_a_card_fails_at_once(harness: SlackHarness, code: str) -> None:
    """These permanent refusals were missing from PERMANENT_ERRORS: the card was retried for a day, pending, not
    failed (not in `deliveries` as failed, not in /healthz)."""
    harness.slack.fail_channel("CSALES", code)
    doomed = create(harness, **lead(urgency="high"))
    assert doomed["channel"] == "CSALES"
    [row] = wait_until(lambda: [d for d in deliveries(harness, str(doomed["ref"]))
                                if d["kind"] == "slack.post_card" and d["state"] == "failed"], what="the failure")
    tries = len(harness.slack.calls("chat.postMessage", channel="CSALES"))
    assert row["state"] == "failed" and tries == 1, f"{code}: {row['state']} after {tries} posts"


def test_a_dm_refused_with_messages_tab_disabled_fails_at_once(harness: SlackHarness) -> None:
    """A DM refused because the app's Messages tab is off gets the same answer until an admin changes the app; it
    was retried for a day, pending."""
    created = create(harness)
    wait_outbox_idle(harness)
    harness.slack.fail_channel("UDAVE", "messages_tab_disabled")
    harness.runtime.repo.enqueue([direct_message("UDAVE", "You may not approve H-1")],
                                 handoff_id=int(created["id"]))
    harness.bot.senders.sender.wake()
    [row] = wait_until(lambda: [d for d in deliveries(harness, str(created["ref"]))
                                if d["kind"] == "slack.direct_message" and d["state"] == "failed"], what="the failure")
    tries = len(harness.slack.calls("chat.postMessage", channel="UDAVE"))
    assert row["state"] == "failed" and tries == 1, f"{row['state']} after {tries} posts"


