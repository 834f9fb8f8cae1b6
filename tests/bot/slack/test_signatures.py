"""Forged and stale Slack signatures are refused with 401, and nothing changes."""

from __future__ import annotations

import time

import httpx

from bot import ids
from tests.bot.slack.conftest import SIGNING_SECRET, SlackHarness
from tests.bot.slack.e2e import create, snapshot
from tests.factories import counts
from tests.fakes.slack_signing import FORM, block_action_body, post_signed, sign


def _claim_body(harness: SlackHarness, handoff_id: int) -> bytes:
    handoff = harness.runtime.repo.get(handoff_id)
    assert handoff is not None
    return block_action_body(ids.CLAIM, str(handoff_id), "UMALLORY", channel=handoff.channel or "C0",
                             message_ts=handoff.card_ts or "1.1")


FORGERIES = {
    "wrong secret": lambda body: sign("not-the-secret", body),
    "tampered signature": lambda body: {**sign(SIGNING_SECRET, body), "X-Slack-Signature": "v0=" + "0" * 64},
    "stale by 6 minutes": lambda body: sign(SIGNING_SECRET, body, int(time.time()) - 6 * 60),
    "stale by a day": lambda body: sign(SIGNING_SECRET, body, int(time.time()) - 86400),
    "from the future": lambda body: sign(SIGNING_SECRET, body, int(time.time()) + 6 * 60),
    "no signature": lambda body: {"X-Slack-Request-Timestamp": str(int(time.time()))},
    "no timestamp": lambda body: {"X-Slack-Signature": sign(SIGNING_SECRET, body)["X-Slack-Signature"]},
}


def test_forged_or_stale_requests_are_refused_and_change_nothing(harness: SlackHarness) -> None:
    created = create(harness)
    harness.card_of(created["id"])
    before, rows = snapshot(harness, created["id"]), counts(harness.runtime)
    body = _claim_body(harness, created["id"])

    for name, forge in FORGERIES.items():
        response = httpx.post(harness.events_url, content=body, headers={"Content-Type": FORM, **forge(body)},
                              timeout=5)
        assert response.status_code == 401, name

    assert snapshot(harness, created["id"]) == before
    assert counts(harness.runtime) == rows  # no event, no outbox row (not even a refusal)
    assert harness.slack.calls("chat.postEphemeral") == [] and harness.slack.updates() == []


def test_a_body_signed_for_another_body_is_refused(harness: SlackHarness) -> None:
    created = create(harness)
    harness.card_of(created["id"])
    before = snapshot(harness, created["id"])
    body = _claim_body(harness, created["id"])
    headers = sign(SIGNING_SECRET, body.replace(b"UMALLORY", b"UALICEX"))
    response = httpx.post(harness.events_url, content=body, headers={"Content-Type": FORM, **headers}, timeout=5)
    assert response.status_code == 401
    assert snapshot(harness, created["id"]) == before


def test_a_signature_within_five_minutes_is_accepted(harness: SlackHarness) -> None:
    created = create(harness)
    harness.card_of(created["id"])
    body = _claim_body(harness, created["id"])
    response = post_signed(harness.events_url, body, FORM, SIGNING_SECRET, timestamp=int(time.time()) - 4 * 60)
    assert response.status_code == 200
    assert snapshot(harness, created["id"])[:3:2] == ("claimed", "UMALLORY")
