"""Webhooks end to end: the real bot (API, Slack endpoint, outbox, webhook sender) on SQLite and PostgreSQL,
delivering to receivers on loopback that check every signature with the README's snippet.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import httpx
import pytest

from bot import ids
from bot.runtime import Runtime, build_runtime
from bot.server import build_bot
from bot.webhooks import Backoff, WebhookSender, _retry_after_seconds, signed_headers
from handoffs.config import HandoffConfig, parse_config
from handoffs.model import HandoffIn
from handoffs.webhooks import DEFAULT_SECRET_ENV
from storage.outbox import OutboxStore
from tests.bot.slack.conftest import SIGNING_SECRET, SlackHarness
from tests.bot.slack.e2e import create, fast_pacing, input_values, opened_view, submit_view, wait_until
from tests.conftest import API_TOKEN, API_TOKEN_NAME, DEFAULT_CONFIG, WEBHOOK_SECRET, LiveServer, make_settings
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_signing import text_value
from tests.fakes.webhook_receiver import Answer, Received, WebhookReceiver, readme_verify

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
DECISIONS_SECRET = "decisions-secret-0123456789abcdef"
TIMEOUT = 0.5  # the sender's timeout in the timeout tests (`hasty_hooks`): a receiver that sleeps 1 s times it out
# Elsewhere: a loaded machine can keep a healthy receiver's answer past half a second, and the retry that follows
# (the same delivery id again, as it should be) is not what those tests are about.
PATIENT_TIMEOUT = 5.0


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """Callback URLs point here; signed with HANDOFF_WEBHOOK_SECRET."""
    with WebhookReceiver(WEBHOOK_SECRET.encode()) as hooks:
        yield hooks


@pytest.fixture
def decisions() -> Iterator[WebhookReceiver]:
    """A configured endpoint for approved/rejected/closed, with its own secret (secret_env)."""
    with WebhookReceiver(DECISIONS_SECRET.encode()) as hooks:
        yield hooks


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack() as slack:
        yield slack


@contextmanager
def running_bot(database_url: str, slack: FakeSlack, config: HandoffConfig, **settings: Any) -> Iterator[SlackHarness]:
    """The whole bot, with quick retries (the policy's shape, not its pace); a short webhook timeout unless given."""
    values: dict[str, Any] = {"slack_api_url": slack.url, "slack_signing_secret": SIGNING_SECRET,
                              "webhook_timeout_seconds": TIMEOUT, **settings}
    runtime = build_runtime(make_settings(database_url, **values), config=config)
    bot = build_bot(runtime)
    bot.senders.webhooks.backoff = Backoff(first=0.05, cap=0.2)
    bot.start()
    try:
        with LiveServer(bot.asgi) as server:
            harness = SlackHarness(slack, server, runtime, bot)
            fast_pacing(harness)
            yield harness
    finally:
        bot.stop()
        runtime.close()


@contextmanager
def hooked_bot(
    database_url: str, slack: FakeSlack, decisions: WebhookReceiver, timeout: float
) -> Iterator[SlackHarness]:
    config = parse_config({**DEFAULT_CONFIG, "webhooks": [
        {"url": decisions.url("/decisions"), "events": ["approved", "rejected", "closed"],
         "secret_env": "DECISIONS_SECRET"},
    ]})
    with running_bot(database_url, slack, config, environment={"DECISIONS_SECRET": DECISIONS_SECRET},
                     webhook_timeout_seconds=timeout) as bot:
        yield bot


@pytest.fixture
def hooks(database_url: str, fake_slack: FakeSlack, decisions: WebhookReceiver) -> Iterator[SlackHarness]:
    with hooked_bot(database_url, fake_slack, decisions, PATIENT_TIMEOUT) as bot:
        yield bot


@pytest.fixture
def hasty_hooks(database_url: str, fake_slack: FakeSlack, decisions: WebhookReceiver) -> Iterator[SlackHarness]:
    with hooked_bot(database_url, fake_slack, decisions, TIMEOUT) as bot:
        yield bot


def shown(harness: SlackHarness, ref: str) -> dict[str, Any]:
    response = httpx.get(f"{harness.server.url}/api/handoffs/{ref}", headers=AUTH, timeout=5)
    assert response.status_code == 200, response.text
    return dict(response.json())


def webhook_rows(harness: SlackHarness, ref: str) -> list[dict[str, Any]]:
    return [d for d in shown(harness, ref)["deliveries"] if d["kind"] == "webhook"]


def settled(harness: SlackHarness, ref: str, state: str, count: int = 1) -> list[dict[str, Any]]:
    """The handoff's webhook deliveries once `count` of them are in `state` (waits)."""
    return wait_until(lambda: (rows := webhook_rows(harness, ref)) and
                      sum(r["state"] == state for r in rows) >= count and rows,
                      what=f"{count} {state} webhook(s) of {ref}")


def arrivals_for(receiver: WebhookReceiver, handoff_id: int) -> list[Received]:
    return [r for r in receiver.requests() if r.json()["handoff"]["id"] == handoff_id]


def seen(received: list[Received]) -> Counter[tuple[int, str]]:
    return Counter((r.json()["handoff"]["id"], r.event) for r in received)


# --- every event, once, signed ------------------------------------------------------------------


def test_each_event_arrives_once_per_delivery_id_signed_for_its_endpoint(
    hooks: SlackHarness, receiver: WebhookReceiver, decisions: WebhookReceiver
) -> None:
    callback = receiver.url("/callback")
    first = create(hooks, approvers=["ULEAD"], callback_url=callback)
    hid = first["id"]
    hooks.card_of(hid)
    assert hooks.click(ids.CLAIM, hid, "UBOB").status_code == 200
    assert hooks.click(ids.EDIT, hid, "UBOB").status_code == 200
    edited = submit_view(hooks, opened_view(hooks, ids.EDIT_MODAL), input_values(**{
        ids.EDIT_TITLE: text_value("Call ACME back before Friday"),
        ids.EDIT_NEXT_ACTION: text_value("Phone Jane about the quote"),
    }), "UBOB")
    assert edited.status_code == 200 and not edited.content, edited.text
    assert hooks.click(ids.APPROVE, hid, "ULEAD").status_code == 200
    closed = httpx.post(f"{hooks.server.url}/api/handoffs/{first['ref']}/outcome", json={"outcome": "done"},
                        headers=AUTH, timeout=5)
    assert closed.status_code == 200, closed.text

    second = create(hooks, approvers=["ULEAD"], callback_url=callback)
    hooks.card_of(second["id"])
    assert hooks.click(ids.REJECT, second["id"], "ULEAD").status_code == 200
    rejected = submit_view(hooks, opened_view(hooks, ids.REJECT_MODAL),
                           input_values(**{ids.REJECT_REASON: text_value("Wrong customer")}), "ULEAD")
    assert rejected.status_code == 200 and not rejected.content, rejected.text

    settled(hooks, first["ref"], "sent", count=7)  # 5 to the callback, approved and closed to the endpoint
    settled(hooks, second["ref"], "sent", count=3)
    everything = receiver.requests() + decisions.requests()
    assert all(r.valid for r in everything)  # each receiver checks with its own secret
    assert Counter(r.delivery for r in everything).most_common(1)[0][1] == 1  # each delivery id once
    assert seen(receiver.requests()) == Counter({
        (hid, "created"): 1, (hid, "claimed"): 1, (hid, "edited"): 1, (hid, "approved"): 1, (hid, "closed"): 1,
        (second["id"], "created"): 1, (second["id"], "rejected"): 1,
    })
    assert seen(decisions.requests()) == Counter({(hid, "approved"): 1, (hid, "closed"): 1,
                                                  (second["id"], "rejected"): 1})

    bodies = {(r.json()["handoff"]["id"], r.event): r.json() for r in receiver.requests()}
    for request in everything:
        body = request.json()
        assert (body["event"], body["delivery"]) == (request.event, request.delivery)
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["User-Agent"].startswith("handoff-bot")
    assert bodies[(hid, "created")]["actor"] == {"id": "producer", "type": "system"}
    assert bodies[(hid, "claimed")]["actor"] == {"id": "UBOB", "type": "user"}
    assert bodies[(hid, "claimed")]["handoff"]["status"] == "claimed"
    assert bodies[(hid, "edited")]["handoff"]["title"] == "Call ACME back before Friday"
    assert bodies[(hid, "approved")]["actor"] == {"id": "ULEAD", "type": "user"}
    assert bodies[(hid, "approved")]["handoff"]["status"] == "approved"
    assert (bodies[(hid, "closed")]["handoff"]["status"], bodies[(hid, "closed")]["handoff"]["outcome"]) == (
        "closed", "done")
    assert bodies[(second["id"], "rejected")]["handoff"]["outcome_note"] == "Wrong customer"
    versions = [bodies[(hid, event)]["handoff"]["version"] for event in ("created", "claimed", "edited", "approved",
                                                                          "closed")]
    assert versions == [1, 2, 3, 4, 5]

    rows = webhook_rows(hooks, first["ref"])
    assert {r["delivery"] for r in rows} == {r.delivery for r in everything if r.json()["handoff"]["id"] == hid}
    assert all(r["attempts"] == 1 and r["last_error"] is None and r["done_at"] for r in rows)
    assert {r["url"] for r in rows} == {callback, decisions.url("/decisions")}


def test_a_duplicates_producer_hears_the_decisions_on_the_handoff_it_duplicates(
    hooks: SlackHarness, receiver: WebhookReceiver
) -> None:
    """Its `callback_url` used to be dropped: the 200 named `duplicate_of`, and then that producer heard nothing."""
    body = {"title": "Refund order 1042", "next_action": "Check the refund", "source": {"system": "triage"}}
    first = create(hooks, **body, external_id="a", callback_url=receiver.url("/first"))
    repeats = [{**body, "external_id": f"dup-{n}", "callback_url": url} for n, url in enumerate([
        receiver.url("/second"), receiver.url("/second"), receiver.url("/first").upper().replace("/FIRST", "/first"),
    ])]
    for repeat in repeats:
        answer = httpx.post(f"{hooks.server.url}/api/handoffs", json=repeat, headers=AUTH, timeout=5)
        assert answer.status_code == 200 and answer.json()["duplicate_of"] == first["ref"], answer.text
    hid = first["id"]
    hooks.card_of(hid)
    assert hooks.click(ids.CLAIM, hid, "UBOB").status_code == 200

    settled(hooks, first["ref"], "sent", count=3)  # created to /first; claimed to /first and /second, once each
    assert sorted((r.path, r.event) for r in receiver.requests()) == [
        ("/first", "claimed"), ("/first", "created"), ("/second", "claimed")]
    assert all(r.valid for r in receiver.requests())
    seen_again = [e.data for e in hooks.runtime.repo.events(hid) if e.action == "seen_again"]
    assert [data["callback_kept"] for data in seen_again] == [True, True, True]


def test_the_receivers_check_fails_for_a_tampered_body_an_old_timestamp_or_another_secret(
    receiver: WebhookReceiver,
) -> None:
    verify = readme_verify()
    secret = WEBHOOK_SECRET.encode()
    body = b'{"event":"closed","handoff":{"id":1}}'
    now = str(int(time.time()))
    good = signed_headers(secret=WEBHOOK_SECRET, event="closed", delivery="d1", body=body, timestamp=now)

    assert verify(secret, good, body)
    assert not verify(secret, good, body.replace(b"closed", b"claimed"))
    assert not verify(b"another-secret-0123456789", good, body)
    stale = str(int(time.time()) - 301)
    assert not verify(secret, signed_headers(secret=WEBHOOK_SECRET, event="closed", delivery="d1", body=body,
                                             timestamp=stale), body)
    assert not verify(secret, {**good, "X-Handoff-Timestamp": str(int(now) + 1)}, body)
    assert not verify(secret, {**good, "X-Handoff-Signature": "v1=" + "0" * 64}, body)

    # and over HTTP, as a receiver sees it: a tampered request is refused
    response = httpx.post(receiver.url(), content=body + b" ", headers=good, timeout=5)
    assert response.status_code == 401
    assert [r.valid for r in receiver.requests()] == [False]


# --- retries ------------------------------------------------------------------------------------


def test_500s_are_retried_with_the_same_delivery_id_and_the_same_bytes(
    hooks: SlackHarness, receiver: WebhookReceiver
) -> None:
    receiver.then(Answer(500), Answer(500))
    created = create(hooks, callback_url=receiver.url("/callback"))

    [row] = settled(hooks, created["ref"], "sent")

    attempts = receiver.requests()
    assert len(attempts) == 3
    assert {a.delivery for a in attempts} == {row["delivery"]}
    assert len({a.body for a in attempts}) == 1
    assert all(a.valid for a in attempts)
    assert (row["attempts"], row["event"], row["last_error"]) == (3, "created", None)


def test_a_timeout_is_retried_and_then_delivered(hasty_hooks: SlackHarness, receiver: WebhookReceiver) -> None:
    hooks = hasty_hooks
    receiver.then(Answer(200, sleep=2 * TIMEOUT))
    created = create(hooks, callback_url=receiver.url("/callback"))

    [row] = settled(hooks, created["ref"], "sent")

    attempts = receiver.requests()
    assert len(attempts) == 2 and {a.delivery for a in attempts} == {row["delivery"]}
    assert attempts[1].at - attempts[0].at >= TIMEOUT
    assert row["attempts"] == 2


def test_an_answer_dribbled_byte_by_byte_times_out_at_the_timeout_and_is_retried(
    hasty_hooks: SlackHarness, receiver: WebhookReceiver
) -> None:
    """Each byte comes well inside the timeout, the whole answer (82 bytes, 8 s) far past it: the timeout bounds
    the attempt, not each read, so a slow or hostile receiver holds a sending slot no longer than that (and never
    past the lease, when another attempt of the same delivery could start)."""
    hooks = hasty_hooks
    receiver.then(Answer(200, headers={"X-Pad": "x" * 35}, byte_every=0.1))
    created = create(hooks, callback_url=receiver.url("/callback"))

    [row] = settled(hooks, created["ref"], "sent")

    attempts = receiver.requests()
    assert len(attempts) == 2, "the dribbled 200 was taken as sent"
    held = attempts[1].at - attempts[0].at  # the first attempt, then a back-off of at most 0.2 s
    assert 0.9 * TIMEOUT <= held < 3 * TIMEOUT, f"the first attempt held its slot {held:.1f}s"
    assert row["attempts"] == 2 and {a.delivery for a in attempts} == {row["delivery"]}


def test_a_retry_after_that_is_no_number_of_seconds_nor_a_date_is_ignored() -> None:
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    assert _retry_after_seconds("7", now) == 7.0
    assert _retry_after_seconds("Sat, 21 Nov 2026 12:00:30 GMT", now) == 30.0
    for bad in ("²", "soon", "", None):
        assert _retry_after_seconds(bad, now) is None, bad


def test_retry_after_on_a_429_is_honoured(hooks: SlackHarness, receiver: WebhookReceiver) -> None:
    receiver.then(Answer(429, headers={"Retry-After": "1"}))
    created = create(hooks, callback_url=receiver.url("/callback"))

    settled(hooks, created["ref"], "sent")

    first, second = receiver.requests()
    assert second.at - first.at >= 0.9  # not the 0.05 s back-off of these tests


def test_a_retry_after_of_zero_or_of_a_past_date_still_backs_off(
    hooks: SlackHarness, receiver: WebhookReceiver
) -> None:
    hooks.bot.senders.webhooks.backoff = Backoff(first=0.5, cap=0.5)  # 0.25 to 0.5 s
    receiver.then(Answer(429, headers={"Retry-After": "0"}),
                  Answer(503, headers={"Retry-After": "Mon, 01 Jan 2001 00:00:00 GMT"}))
    created = create(hooks, callback_url=receiver.url("/callback"))

    settled(hooks, created["ref"], "sent")

    first, second, third = receiver.requests()
    assert second.at - first.at >= 0.24 and third.at - second.at >= 0.24  # not at once, over and over


def test_410_gone_fails_the_delivery_at_once(hooks: SlackHarness, receiver: WebhookReceiver) -> None:
    receiver.always(Answer(410))
    created = create(hooks, callback_url=receiver.url("/callback"))

    [row] = settled(hooks, created["ref"], "failed")

    assert row["attempts"] == 1 and row["last_error"].startswith("HTTP 410 Gone")
    time.sleep(0.3)
    assert len(receiver.requests()) == 1


def test_a_dead_endpoint_ends_failed_without_holding_up_another(
    hasty_hooks: SlackHarness, receiver: WebhookReceiver
) -> None:
    hooks = hasty_hooks
    hooks.bot.senders.webhooks.give_up_after = timedelta(seconds=2)
    with WebhookReceiver(WEBHOOK_SECRET.encode()) as dead:
        dead.always(Answer(500, sleep=2 * TIMEOUT))  # too slow for the timeout, and an error anyway
        doomed = [create(hooks, callback_url=dead.url(f"/callback/{n}")) for n in range(6)]
        for pause in (0.0, 1.0):  # while the dead endpoint's retries go on
            time.sleep(pause)
            started = time.monotonic()
            fine = create(hooks, callback_url=receiver.url("/callback"))["id"]
            [arrived] = wait_until(partial(arrivals_for, receiver, fine), what="the healthy endpoint's delivery")
            assert arrived.at - started < 1.0, "the healthy endpoint waited for the dead one"

        for handoff in doomed:
            [row] = settled(hooks, handoff["ref"], "failed")
            assert row["last_error"].startswith("gave up after ") and "timed out" in row["last_error"]
            assert row["attempts"] >= 1 and row["done_at"]
        # never more than two requests at once to one host: each lasts the timeout, so any three started
        # within less than that would have overlapped
        starts = sorted(r.at for r in dead.requests())
        assert all(later - earlier >= 0.9 * TIMEOUT for earlier, later in zip(starts, starts[2:], strict=False))

    stats = httpx.get(f"{hooks.server.url}/api/stats", headers=AUTH, timeout=5).json()
    assert stats["webhooks"] == {"sent": 2, "failed": 6, "pending": 0}


SLOW = 1.5  # seconds the slow host takes to answer


@pytest.mark.parametrize("short_looks", [False, True], ids=["one-look", "short-looks"])
def test_a_slow_hosts_backlog_does_not_hold_up_another_host(
    runtime: Runtime, receiver: WebhookReceiver, short_looks: bool
) -> None:
    """An automation with a resume URL per handoff on one slow host, more of them due than a look at the outbox
    reads: the delivery to another host, written last, still goes at once (short looks go on where the last
    one stopped)."""
    with WebhookReceiver(WEBHOOK_SECRET.encode()) as slow:
        slow.always(Answer(200, sleep=SLOW))
        for n in range(100):
            runtime.service.submit(HandoffIn(title=f"Lead {n}", next_action="Resume the flow",
                                             callback_url=slow.url(f"/resume/{n}")), actor=API_TOKEN_NAME)
        runtime.service.submit(HandoffIn(title="Call ACME back", next_action="Phone Jane",
                                         callback_url=receiver.url("/callback")), actor=API_TOKEN_NAME)
        sender = WebhookSender(OutboxStore(runtime.db), {DEFAULT_SECRET_ENV: WEBHOOK_SECRET}, runtime.clock,
                               poll_seconds=0.05)
        if short_looks:  # pages of 10 rows, 20 rows a look: the other host's row is five looks on
            sender.page_rows, sender.scan_rows = 10, 20
        started = time.monotonic()
        sender.start()
        try:
            [arrived] = wait_until(receiver.requests, timeout=SLOW + 1, what="the other host's delivery")
            assert arrived.at - started < SLOW - 0.5, "the other host waited for the slow one"
            assert len(slow.requests()) <= 2  # and the slow host still had two requests at a time
        finally:
            sender.stop()


# --- refused without a secret -------------------------------------------------------------------


def test_a_callback_url_without_a_webhook_secret_is_a_field_error_and_stores_nothing(
    database_url: str, handoff_config: HandoffConfig
) -> None:
    runtime = build_runtime(make_settings(database_url, webhook_secret=None), config=handoff_config)
    try:
        from bot.server import create_asgi_app

        with LiveServer(create_asgi_app(runtime)) as server:
            body = {"title": "Call ACME", "next_action": "Phone Jane", "callback_url": "https://hooks.test/h"}
            response = httpx.post(f"{server.url}/api/handoffs", json=body, headers=AUTH, timeout=5)
            assert response.status_code == 422
            [error] = response.json()["detail"]
            assert error["loc"] == ["body", "callback_url"] and "HANDOFF_WEBHOOK_SECRET" in error["msg"]
            assert runtime.repo.page().items == []
            del body["callback_url"]
            assert httpx.post(f"{server.url}/api/handoffs", json=body, headers=AUTH, timeout=5).status_code == 201
    finally:
        runtime.close()
