"""Webhooks and their receivers, end to end (a real bot, real receivers on loopback): a duplicate's callback hears
every change, no receiver is sent another's URL, and no URL's password reaches the log."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from bot import ids
from handoffs.config import parse_config
from tests.bot.slack.conftest import SlackHarness
from tests.bot.slack.e2e import create, wait_until
from tests.bot.test_webhooks import AUTH, PATIENT_TIMEOUT, running_bot, settled
from tests.conftest import DEFAULT_CONFIG, WEBHOOK_SECRET
from tests.fakes.slack_api import FakeSlack
from tests.fakes.webhook_receiver import Answer, WebhookReceiver

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

OTHER_SECRET = "other-endpoint-secret-0123456789"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(WEBHOOK_SECRET.encode()) as hooks:
        yield hooks


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack() as slack:
        yield slack


@pytest.fixture
def plain_bot(database_url: str, fake_slack: FakeSlack) -> Iterator[SlackHarness]:
    """The bot with the test configuration and no configured webhook endpoints."""
    with running_bot(database_url, fake_slack, parse_config(DEFAULT_CONFIG),
                     webhook_timeout_seconds=PATIENT_TIMEOUT) as bot:
        yield bot


def _post(harness: SlackHarness, body: dict) -> httpx.Response:
    return httpx.post(f"{harness.server.url}/api/handoffs", json=body, headers=AUTH, timeout=5)


# --- a duplicate's callback_url, also when the handoff has none of its own ----------------------------------


def test_a_duplicates_callback_hears_the_claim_when_the_original_had_no_callback(
    plain_bot: SlackHarness, receiver: WebhookReceiver
) -> None:
    """README: the `callback_url` of each later submission answered as a duplicate gets "every event from then on".
    The original was sent without a callback_url (a Slack-side producer, say), no endpoints are configured."""
    body = {"title": "Refund order 2042", "next_action": "Check the refund", "source": {"system": "triage"}}
    first = create(plain_bot, **body, external_id="orig")
    dup = _post(plain_bot, {**body, "external_id": "dup-1", "callback_url": receiver.url("/dup")})
    assert dup.status_code == 200 and dup.json()["duplicate_of"] == first["ref"], dup.text
    hid = first["id"]
    plain_bot.card_of(hid)
    assert plain_bot.click(ids.CLAIM, hid, "UBOB").status_code == 200
    wait_until(lambda: (now := plain_bot.runtime.repo.get(hid)) is not None and now.status == "claimed",
               what="the claim")
    [seen_again] = [e.data for e in plain_bot.runtime.repo.events(hid) if e.action == "seen_again"]
    assert seen_again["callback_kept"] is True  # the bot says this URL will hear the events

    wait_until(lambda: receiver.requests(event="claimed"), timeout=5,
               what="the claimed webhook at the duplicate's callback_url")


# --- what a webhook body names ----------------------------------------------------------------------------------


def test_a_webhook_body_does_not_hand_one_receivers_callback_url_to_another(
    plain_bot: SlackHarness, receiver: WebhookReceiver
) -> None:
    """Producer A's callback URL (often its only secret: an n8n resume URL, a Zapier catch hook — bot/webhooks.py
    `host_of` says so itself) must not be sent to producer B, whose submission was answered as A's duplicate."""
    body = {"title": "Refund order 3042", "next_action": "Check the refund", "source": {"system": "triage"}}
    secret_a = receiver.url("/resume/a-secret-token-123")
    first = create(plain_bot, **body, external_id="a", callback_url=secret_a)
    dup = _post(plain_bot, {**body, "external_id": "b", "callback_url": receiver.url("/b")})
    assert dup.status_code == 200 and dup.json()["duplicate_of"] == first["ref"], dup.text
    hid = first["id"]
    plain_bot.card_of(hid)
    assert plain_bot.click(ids.CLAIM, hid, "UBOB").status_code == 200

    [to_b] = wait_until(lambda: receiver.requests(path="/b"), timeout=5, what="B's claimed webhook")
    assert "a-secret-token-123" not in to_b.body.decode(), to_b.json()["handoff"].get("callback_url")


def test_a_configured_endpoint_is_not_sent_the_producers_callback_url(
    database_url: str, fake_slack: FakeSlack, receiver: WebhookReceiver
) -> None:
    with WebhookReceiver(OTHER_SECRET.encode()) as endpoint:
        config = parse_config({**DEFAULT_CONFIG, "webhooks": [
            {"url": endpoint.url("/audit"), "events": ["created"], "secret_env": "AUDIT_SECRET"}]})
        with running_bot(database_url, fake_slack, config, environment={"AUDIT_SECRET": OTHER_SECRET},
                         webhook_timeout_seconds=PATIENT_TIMEOUT) as bot:
            create(bot, callback_url=receiver.url("/resume/producer-secret-token-456"))
            [arrived] = wait_until(endpoint.requests, timeout=5, what="the endpoint's created webhook")
            assert arrived.valid
            assert "producer-secret-token-456" not in arrived.body.decode(), arrived.json()["handoff"]["callback_url"]


# --- what the log says -----------------------------------------------------------------------------------------


def test_a_failed_attempt_does_not_write_the_callback_urls_password_to_the_log(
    plain_bot: SlackHarness, receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    """bot/webhooks.py `host_of` is "what the log names", as a hook URL's secrets must stay out of it; but it keeps
    the URL's userinfo, so `https://user:password@host/…` (basic auth, as many receivers take it) is logged
    (lowercased: `webhook 2 to hook:s3cretpassw0rd@127.0.0.1:… failed (attempt 1)`)."""
    receiver.then(Answer(500))
    port = receiver.server.server_address[1]
    created = create(plain_bot, callback_url=f"http://hook:s3cretPassw0rd@127.0.0.1:{port}/cb")
    settled(plain_bot, created["ref"], "sent")
    failures = [r.getMessage() for r in caplog.records if r.name == "handoff_bot.webhooks"]
    assert failures, "the failed attempt was not logged at all"
    assert not [m for m in failures if "s3cretpassw0rd" in m.lower()], failures
