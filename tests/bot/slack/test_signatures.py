"""Forged and stale Slack signatures are refused with 401, and nothing changes; a fresh one within 5 minutes works."""

from __future__ import annotations

import time

import httpx
import pytest

from bot import ids
from tests.bot.slack.conftest import SIGNING_SECRET, SlackHarness
from tests.bot.slack.e2e import create, snapshot
from tests.factories import counts
from tests.fakes.slack_signing import FORM, JSON, block_action_body, post_signed, sign


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

    # a signature made for another body (the same request with another user in it)
    resigned = sign(SIGNING_SECRET, body.replace(b"UMALLORY", b"UALICEX"))
    forgeries = {**FORGERIES, "signed for another body": lambda _: resigned}
    for name, forge in forgeries.items():
        response = httpx.post(harness.events_url, content=body, headers={"Content-Type": FORM, **forge(body)},
                              timeout=5)
        assert response.status_code == 401, name

    assert snapshot(harness, created["id"]) == before
    assert counts(harness.runtime) == rows  # no event, no outbox row (not even a refusal)
    assert harness.slack.calls("chat.postEphemeral") == [] and harness.slack.updates() == []

    # while the same request, properly signed 4 minutes ago, is accepted
    response = post_signed(harness.events_url, body, FORM, SIGNING_SECRET, timestamp=int(time.time()) - 4 * 60)
    assert response.status_code == 200
    assert snapshot(harness, created["id"])[::2] == ("claimed", "UMALLORY")


UNREADABLE_BODIES = [
    pytest.param(b"{not json", JSON, id="broken-json"),
    pytest.param(b"[1, 2, 3]", JSON, id="json-array"),
    pytest.param(b'{"team": 5, "user": []}', JSON, id="json-object-of-wrong-shapes"),
    pytest.param(b"payload=not-json", FORM, id="payload-not-json"),
    pytest.param(b"payload=%5B1%5D", FORM, id="payload-array"),
    pytest.param(b"payload=", FORM, id="payload-empty"),
]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("body", "content_type"), UNREADABLE_BODIES)
def test_a_body_that_is_no_json_object_is_401_unsigned_and_400_signed_never_a_500(
    harness: SlackHarness, body: bytes, content_type: str
) -> None:
    created = create(harness)
    before, rows = snapshot(harness, created["id"]), counts(harness.runtime)

    unsigned = httpx.post(harness.events_url, content=body, headers={"Content-Type": content_type}, timeout=5)
    forged = httpx.post(harness.events_url, content=body,
                        headers={"Content-Type": content_type, **sign("not-the-secret", body)}, timeout=5)
    signed = post_signed(harness.events_url, body, content_type, SIGNING_SECRET)

    assert (unsigned.status_code, forged.status_code, signed.status_code) == (401, 401, 400), signed.text
    assert snapshot(harness, created["id"]) == before
    assert counts(harness.runtime) == rows


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_timestamp_that_is_not_a_number_is_401_not_a_500(harness: SlackHarness) -> None:
    created = create(harness)
    body = _claim_body(harness, created["id"])
    headers = {"Content-Type": FORM, "X-Slack-Request-Timestamp": "soon",
               "X-Slack-Signature": sign(SIGNING_SECRET, body)["X-Slack-Signature"]}
    assert httpx.post(harness.events_url, content=body, headers=headers, timeout=5).status_code == 401
