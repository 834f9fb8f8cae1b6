"""Twelve people press Claim at once; people without the right are refused privately and nothing changes."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest

from bot import ids
from tests.bot.slack.conftest import SIGNING_SECRET, SlackHarness
from tests.bot.slack.e2e import (
    block_types,
    create,
    input_values,
    opened_view,
    refusals,
    snapshot,
    submit_view,
    timed,
    wait_outbox_idle,
    wait_until,
)
from tests.factories import counts
from tests.fakes.slack_signing import (
    FORM,
    block_action_body,
    post_signed,
    select_value,
    shortcut_body,
    sign,
    slash_command_body,
    text_value,
    view_submission_body,
)

CLAIMERS = [f"UCLAIM{n:02d}" for n in range(12)]


def test_twelve_simultaneous_claims_make_one_owner_and_eleven_private_refusals(harness: SlackHarness) -> None:
    created = create(harness)
    hid = created["id"]
    harness.card_of(hid)
    handoff = harness.runtime.repo.get(hid)
    assert handoff is not None and handoff.card_ts
    # Everything but the request itself is prepared up front: an httpx client costs ~50 ms of CPU to build,
    # which would be measured as (GIL-bound) latency of the bot otherwise.
    bodies = {user: block_action_body(ids.CLAIM, str(hid), user, channel="CHANDOFFS", message_ts=handoff.card_ts)
              for user in CLAIMERS}
    clients = {user: httpx.Client(timeout=10) for user in CLAIMERS}
    barrier = threading.Barrier(len(CLAIMERS))

    def press(user: str) -> tuple[httpx.Response, float]:
        body = bodies[user]
        headers = {"Content-Type": FORM, **sign(SIGNING_SECRET, body)}
        barrier.wait(timeout=10)
        return timed(lambda: clients[user].post(harness.events_url, content=body, headers=headers))

    try:
        with ThreadPoolExecutor(len(CLAIMERS)) as pool:
            results = list(pool.map(press, CLAIMERS))
    finally:
        for client in clients.values():
            client.close()

    durations = [seconds for _, seconds in results]
    assert all(response.status_code == 200 for response, _ in results), [r.text for r, _ in results]
    assert max(durations) < 1.0, f"slowest acknowledgement {max(durations):.3f}s"
    print(f"\n12 concurrent claims: max ack {max(durations) * 1000:.0f} ms")

    handoff = harness.runtime.repo.get(hid)
    assert handoff is not None and handoff.status.value == "claimed"
    owner = handoff.owner
    assert owner in CLAIMERS
    assert harness.events(hid).count("claimed") == 1
    losers = set(CLAIMERS) - {owner}

    # each loser, and only the losers, is told privately who owns it
    harness.slack.wait_for("chat.postEphemeral", count=len(losers), ok=True, timeout=15)
    wait_outbox_idle(harness)
    notices = harness.slack.ephemerals()
    assert {n.params["user"] for n in notices} == losers
    assert len(notices) == len(losers)
    assert all(f"<@{owner}>" in n.params["text"] and "already claimed" in n.params["text"] for n in notices)
    assert all(n.params["channel"] == "CHANDOFFS" for n in notices)
    logged = refusals(harness, hid)
    assert {r["actor"] for r in logged} == losers and len(logged) == len(losers)
    assert all(r["attempted"] == "claim" for r in logged)

    # one card update and one thread reply for the single claim
    ts = handoff.card_ts
    replies = harness.slack.thread_replies("CHANDOFFS", ts)
    assert len(replies) == 1 and f"<@{owner}>" in replies[0].params["text"]
    assert harness.slack.updates(ts) and f"<@{owner}>" in str(harness.slack.updates(ts)[-1].params["blocks"])


def _assert_refused_privately(harness: SlackHarness, hid: int, user: str, action: str,
                              before: tuple[str, int, str | None]) -> None:
    notice = harness.slack.wait_for("chat.postEphemeral", ok=True, user=user, timeout=10)[-1]
    assert notice.params["channel"] == "CHANDOFFS"
    assert snapshot(harness, hid) == before
    assert any(r["actor"] == user and r["attempted"] == action for r in refusals(harness, hid))


def test_a_refusal_where_the_bot_is_not_a_member_is_told_in_the_apps_dm(harness: SlackHarness) -> None:
    """A click on the private copy of a card that `/handoff show` gave in a DM between two people: Slack refuses
    a private notice there (the bot is not in that conversation), so the refusal comes in the app's DM."""
    created = create(harness, owner="UALICE")
    harness.card_of(created["id"])
    before = snapshot(harness, created["id"])
    harness.slack.fail_channel("D0PEOPLE", "channel_not_found")
    body = block_action_body(ids.CLAIM, str(created["id"]), "UBOB", channel="D0PEOPLE",
                             message_ts="1700000000.000300")
    assert post_signed(harness.events_url, body, FORM, SIGNING_SECRET).status_code == 200
    [told] = harness.slack.wait_for(lambda c: c.method == "chat.postMessage" and c.params.get("channel") == "UBOB")
    assert "UALICE" in told.params["text"] and f"H-{created['id']}" in told.params["text"]
    assert snapshot(harness, created["id"]) == before
    wait_outbox_idle(harness)
    health = httpx.get(f"{harness.server.url}/healthz", timeout=5).json()
    assert health["outbox"]["failed"] == 0


def test_a_non_approver_cannot_approve(harness: SlackHarness) -> None:
    created = create(harness, owner="UALICE", approvers=["ULEAD"])
    hid = created["id"]
    harness.card_of(hid)
    before = snapshot(harness, hid)

    response, seconds = timed(lambda: harness.click(ids.APPROVE, hid, "UMALLORY"))
    assert response.status_code == 200 and seconds < 1.0
    _assert_refused_privately(harness, hid, "UMALLORY", "approve", before)
    notice = harness.slack.ephemerals("UMALLORY")[-1]
    assert "approve" in notice.params["text"] and "H-" in notice.params["text"]
    # the owner is no approver either when approvers are set
    harness.click(ids.APPROVE, hid, "UALICE")
    _assert_refused_privately(harness, hid, "UALICE", "approve", before)
    assert harness.slack.updates() == [] and harness.slack.thread_replies() == []


def test_a_stranger_pressing_close_gets_no_modal_and_a_private_refusal(harness: SlackHarness) -> None:
    created = create(harness, owner="UALICE")
    hid = created["id"]
    harness.card_of(hid)
    before = snapshot(harness, hid)

    response = harness.click(ids.CLOSE, hid, "UMALLORY")
    assert response.status_code == 200
    _assert_refused_privately(harness, hid, "UMALLORY", "close", before)
    assert "close" in harness.slack.ephemerals("UMALLORY")[-1].params["text"]

    # the owner's press does open the form (so the stranger's did not only because they are a stranger)
    harness.click(ids.CLOSE, hid, "UALICE")
    opened = opened_view(harness, ids.CLOSE_MODAL)
    assert len(harness.slack.calls("views.open")) == 1
    assert opened.params["view"]["callback_id"] == ids.CLOSE_MODAL
    # a forged submission of the close form by the stranger is refused too
    response = submit_view(harness, opened, {ids.CLOSE_OUTCOME: {ids.CLOSE_OUTCOME: {
        "type": "static_select", "selected_option": {"value": "done", "text": {"type": "plain_text", "text": "done"}},
    }}}, "UMALLORY")
    assert response.json()["response_action"] == "errors"
    assert snapshot(harness, hid) == before


def test_a_second_reject_is_refused_and_changes_nothing(harness: SlackHarness) -> None:
    created = create(harness, owner="UALICE", approvers=["ULEAD"])
    hid = created["id"]
    harness.card_of(hid)
    # both open the Reject form while the handoff is still claimed
    harness.click(ids.REJECT, hid, "ULEAD")
    first = opened_view(harness, ids.REJECT_MODAL, 1)
    harness.click(ids.REJECT, hid, "UALICE")
    second = opened_view(harness, ids.REJECT_MODAL, 2)

    ok = submit_view(harness, first, input_values(**{ids.REJECT_REASON: text_value("Wrong customer")}), "ULEAD")
    assert ok.status_code == 200 and not ok.content
    before = snapshot(harness, hid)
    assert before[0] == "rejected"
    wait_until(lambda: [c for c in harness.slack.updates() if "actions" not in block_types(c)],
               what="the rejected card")

    # the late form: inline refusal, nothing changed, logged
    late = submit_view(harness, second, input_values(**{ids.REJECT_REASON: text_value("Spam")}), "UALICE")
    assert late.json()["response_action"] == "errors"
    assert ids.REJECT_REASON in late.json()["errors"]
    assert snapshot(harness, hid) == before
    assert any(r["actor"] == "UALICE" and r["attempted"] == "reject" for r in refusals(harness, hid))

    # a stale Reject button on an old copy of the card: private refusal, no modal, nothing changed
    opened_before = len(harness.slack.calls("views.open"))
    harness.click(ids.REJECT, hid, "ULEAD")
    _assert_refused_privately(harness, hid, "ULEAD", "reject", before)
    assert "already rejected" in harness.slack.ephemerals("ULEAD")[-1].params["text"]
    assert len(harness.slack.calls("views.open")) == opened_before
    assert harness.events(hid).count("rejected") == 1
    assert harness.runtime.repo.get(hid).outcome_note == "Wrong customer"  # type: ignore[union-attr]
    replies = wait_until(harness.slack.thread_replies, what="the reject's thread reply")
    assert len(replies) == 1 and "Wrong customer" in replies[0].params["text"]


NOBODY = object()  # the field left out


def _naming(body: bytes, user: object, field: str = "user") -> bytes:
    """A form-encoded request whose acting person is `user` instead: in the JSON `payload` of an interaction, or
    a slash command's own field (`user_id`); NOBODY leaves it out."""
    fields = dict(parse_qsl(body.decode()))
    target: dict[str, Any] = json.loads(fields["payload"]) if "payload" in fields else fields
    target.pop(field, None)
    if user is not NOBODY:
        target[field] = user
    if "payload" in fields:
        fields["payload"] = json.dumps(target)
    return urlencode(fields).encode()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("user", "user_id"), [
    pytest.param(NOBODY, NOBODY, id="no-user"),
    pytest.param({"id": ""}, "", id="empty-id"),
    pytest.param({"id": "C0CHANNEL"}, "C0CHANNEL", id="not-a-user-id"),
    pytest.param("UANNA", "uanna", id="not-an-object-or-lowercase"),
])
def test_a_signed_request_that_names_no_user_is_acked_and_changes_nothing(
    harness: SlackHarness, user: object, user_id: object
) -> None:
    """Every request that acts as a person needs one: without it a Claim made the empty user the owner."""
    created = create(harness)
    hid = created["id"]
    harness.card_of(hid)
    wait_outbox_idle(harness)
    before, rows = snapshot(harness, hid), counts(harness.runtime)
    handoff = harness.runtime.repo.get(hid)
    assert handoff is not None
    close_form = view_submission_body(ids.CLOSE_MODAL, input_values(**{ids.CLOSE_OUTCOME: select_value("done")}),
                                      "UANNA", private_metadata=json.dumps({"handoff_id": hid}))
    requests = [
        block_action_body(ids.CLAIM, str(hid), "UANNA", channel="CHANDOFFS", message_ts=handoff.card_ts or "1.1"),
        close_form,
        shortcut_body(ids.GLOBAL_SHORTCUT, "UANNA"),
        shortcut_body(ids.MESSAGE_SHORTCUT, "UANNA", type="message_action", channel_id="CHANDOFFS"),
    ]
    answers = [post_signed(harness.events_url, _naming(body, user), FORM, SIGNING_SECRET) for body in requests]
    command = _naming(slash_command_body(f"claim H-{hid}", "UANNA"), user_id, field="user_id")
    answers.append(post_signed(harness.events_url, command, FORM, SIGNING_SECRET))

    assert [(answer.status_code, answer.text) for answer in answers] == [(200, "")] * len(answers)
    # the same shortcut from a person does open its form: the one form opened is that one
    post_signed(harness.events_url, shortcut_body(ids.GLOBAL_SHORTCUT, "UANNA"), FORM, SIGNING_SECRET)
    harness.slack.wait_for("views.open", timeout=10)
    wait_outbox_idle(harness)
    assert len(harness.slack.calls("views.open")) == 1
    assert (snapshot(harness, hid), counts(harness.runtime)) == (before, rows)
    assert harness.slack.ephemerals() == [] and harness.slack.thread_replies() == []
