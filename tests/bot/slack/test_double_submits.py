"""Double clicks and forms sent twice (SPEC §8: "Slack retries and double clicks never create duplicates"): the New
handoff form, the Close, Reject and Edit forms, a snooze, a manager's nudge and a "wrong owner" answer, one after the
other and at the same instant, change things once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from bot import ids
from handoffs.lifecycle import Action, Actor, Request
from handoffs.nudges import StallReason
from tests.bot.slack.conftest import SIGNING_SECRET, SlackHarness
from tests.bot.slack.e2e import create, fast_pacing, form_values, input_values, opened_view, wait_outbox_idle
from tests.fakes.slack_signing import (
    FORM,
    block_action_body,
    post_signed,
    select_value,
    shortcut_body,
    text_value,
    view_submission_body,
)


def _together(n: int, send: Callable[[int], httpx.Response]) -> list[httpx.Response]:
    """`n` requests released at the same instant (a double click, a re-sent form)."""
    barrier = threading.Barrier(n)

    def one(i: int) -> httpx.Response:
        barrier.wait()
        return send(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def _twice(harness: SlackHarness, body: bytes, *, concurrent: bool) -> list[httpx.Response]:
    """The same signed request sent twice: one after the other, or both at the same instant."""
    def send(_: int = 0) -> httpx.Response:
        return post_signed(harness.events_url, body, FORM, SIGNING_SECRET)

    return _together(2, send) if concurrent else [send(), send()]


@pytest.fixture(autouse=True)
def _fast(harness: SlackHarness) -> None:
    fast_pacing(harness)


def _new_values(title: str) -> dict[str, Any]:
    return {
        ids.NEW_TITLE: {ids.NEW_TITLE: text_value(title)},
        ids.NEW_NEXT_ACTION: {ids.NEW_NEXT_ACTION: text_value("Phone Jane about the renewal")},
        ids.NEW_KIND: {ids.NEW_KIND: select_value("task")},
        ids.NEW_URGENCY: {ids.NEW_URGENCY: select_value("normal")},
    }


def _card_click(harness: SlackHarness, action_id: str, handoff_id: int, user: str) -> bytes:
    handoff = harness.runtime.repo.get(handoff_id)
    assert handoff is not None and handoff.channel and handoff.card_ts
    return block_action_body(action_id, str(handoff_id), user, channel=handoff.channel, message_ts=handoff.card_ts)


def _overflow(harness: SlackHarness, verb: str, handoff_id: int, user: str) -> bytes:
    handoff = harness.runtime.repo.get(handoff_id)
    assert handoff is not None and handoff.channel and handoff.card_ts
    action = {"action_id": ids.MORE, "block_id": f"{ids.CARD_ACTIONS_BLOCK}:{handoff_id}", "type": "overflow",
              "selected_option": {"text": {"type": "plain_text", "text": verb}, "value": f"{verb}:{handoff_id}"},
              "action_ts": f"{time.time():.6f}"}
    return block_action_body(ids.MORE, "", user, channel=handoff.channel, message_ts=handoff.card_ts,
                             actions=[action])


def _reminder_click(action_id: str, handoff_id: int, user: str) -> bytes:
    """A button of the SLA reminder, pressed in the owner's DM with the app."""
    return block_action_body(action_id, str(handoff_id), user, channel=f"D{user[1:]}", message_ts="1700000000.000900")


# ---------------------------------------------------------------- the New handoff form sent twice


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize("concurrent", [False, True], ids=["one-after-the-other", "at-once"])
def test_a_new_handoff_form_submitted_twice_is_one_handoff_with_no_sighting(
    harness: SlackHarness, concurrent: bool
) -> None:
    """The same view (same view id, same values) submitted twice — Slack shows "trouble connecting" when the
    first answer is slow, and the person presses Create again — is one submission. It used to be taken for a
    duplicate from elsewhere: a `seen_again` event, "seen again ×1" on the card, and "This is already tracked as
    H-1" about the handoff the person had just created."""
    post_signed(harness.events_url, shortcut_body(ids.GLOBAL_SHORTCUT, "UBOB"), FORM, SIGNING_SECRET)
    view = opened_view(harness, ids.NEW_MODAL).params["view"]
    body = view_submission_body(ids.NEW_MODAL, _new_values("Renew the TLS certificate"), "UBOB",
                                private_metadata=view["private_metadata"], view_id="V0DOUBLE01")

    answers = _twice(harness, body, concurrent=concurrent)

    assert [a.status_code for a in answers] == [200, 200]
    [handoff] = harness.runtime.repo.page().items
    wait_outbox_idle(harness)
    assert harness.events(handoff.id) == ["created"]
    stored = harness.runtime.repo.get(handoff.id)
    assert stored is not None and stored.seen_count == 1  # the card shows no "seen again ×1"
    assert not [a.text for a in answers if "already tracked" in a.text]
    assert [a.json()["response_action"] for a in answers] == ["update", "update"]  # both: the "created" view
    assert all(handoff.ref in a.text for a in answers)


# ---------------------------------------------------------------- snooze clicked twice


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize("concurrent", [False, True], ids=["one-after-the-other", "at-once"])
@pytest.mark.parametrize("button", ["card: snooze until tomorrow", "reminder: snooze 1h", "reminder: until tomorrow"])
def test_a_double_clicked_snooze_is_logged_and_told_in_the_thread_once(
    harness: SlackHarness, button: str, concurrent: bool
) -> None:
    created = create(harness, owner="UALICE")
    card = harness.card_of(created["id"])
    wait_outbox_idle(harness)
    body = {
        "card: snooze until tomorrow": lambda: _overflow(harness, ids.MORE_SNOOZE_TOMORROW, created["id"], "UALICE"),
        "reminder: snooze 1h": lambda: _reminder_click(ids.NUDGE_SNOOZE_HOUR, created["id"], "UALICE"),
        "reminder: until tomorrow": lambda: _reminder_click(ids.NUDGE_SNOOZE_TOMORROW, created["id"], "UALICE"),
    }[button]()

    answers = _twice(harness, body, concurrent=concurrent)

    assert [a.status_code for a in answers] == [200, 200]
    wait_outbox_idle(harness)
    assert harness.events(created["id"]).count("snoozed") == 1
    told = [c.params["text"] for c in harness.slack.thread_replies("CHANDOFFS", card.response["ts"])
            if "Snoozed" in c.params["text"]]
    assert len(told) == 1, told
    assert [c.params["text"] for c in harness.slack.ephemerals("UALICE") if "Already snoozed" in c.params["text"]]


# ---------------------------------------------------------------- a manager's Nudge clicked twice


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize("concurrent", [False, True], ids=["one-after-the-other", "at-once"])
def test_a_double_clicked_nudge_reminds_the_owner_once(harness: SlackHarness, concurrent: bool) -> None:
    created = create(harness, owner="UALICE")
    harness.card_of(created["id"])
    wait_outbox_idle(harness)
    body = block_action_body(ids.NUDGE, str(created["id"]), "UMANAGER", channel="CGENERAL")

    answers = _twice(harness, body, concurrent=concurrent)

    assert [a.status_code for a in answers] == [200, 200]
    wait_outbox_idle(harness)
    dms = [c for c in harness.slack.calls("chat.postMessage", ok=True, channel="UALICE")
           if "nudged" in c.params["text"]]
    assert len(dms) == 1, [c.summary() for c in dms]
    assert harness.events(created["id"]).count("nudged") == 1
    assert [c.params["text"] for c in harness.slack.ephemerals("UMANAGER") if "Already nudged" in c.params["text"]]



# ---------------------------------------------------------------- the Close, Reject and Edit forms sent twice


def _form_body(harness: SlackHarness, handoff_id: int, button: str, user: str) -> bytes:
    """The form `button` opens on the card, filled in and ready to be sent (by `user`, with a fixed view id)."""
    harness.click(button, handoff_id, user)
    callback = {ids.CLOSE: ids.CLOSE_MODAL, ids.REJECT: ids.REJECT_MODAL, ids.EDIT: ids.EDIT_MODAL}[button]
    opened = opened_view(harness, callback)
    values = {
        ids.CLOSE: lambda: input_values(**{ids.CLOSE_OUTCOME: select_value("done"),
                                           ids.CLOSE_NOTE: text_value("Sent")}),
        ids.REJECT: lambda: input_values(**{ids.REJECT_REASON: text_value("Not ours to do")}),
        ids.EDIT: lambda: form_values(opened, **{ids.EDIT_TITLE: text_value("A better title")}),
    }[button]()
    view = opened.params["view"]
    return view_submission_body(callback, values, user, private_metadata=view["private_metadata"],
                                view_id="V0SAMEFORM1", blocks=view.get("blocks"))


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize("concurrent", [False, True], ids=["one-after-the-other", "at-once"])
@pytest.mark.parametrize("button", [ids.CLOSE, ids.REJECT, ids.EDIT], ids=["close", "reject", "edit"])
def test_a_form_sent_twice_is_done_once_and_the_repeat_closes_quietly(
    harness: SlackHarness, button: str, concurrent: bool
) -> None:
    """Save pressed again while Slack was slow: the repeat used to get an inline error that kept the form open
    ("H-1 is already closed; nothing more can be done", "Nothing was changed.") and a `refused` in the log."""
    hid = create(harness, owner="UALICE")["id"]
    harness.card_of(hid)
    body = _form_body(harness, hid, button, "UALICE")

    answers = _twice(harness, body, concurrent=concurrent)

    assert [(a.status_code, a.content) for a in answers] == [(200, b""), (200, b"")], [a.text for a in answers]
    done = {ids.CLOSE: "closed", ids.REJECT: "rejected", ids.EDIT: "edited"}[button]
    assert harness.events(hid) == ["created", done]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_form_someone_else_sent_is_still_refused_after_the_same_form_of_another(harness: SlackHarness) -> None:
    """Only the very form that did the change is taken as done: another person's Close after it is refused."""
    hid = create(harness, owner="UALICE", approvers=["ULEAD"])["id"]
    harness.card_of(hid)
    alices = _form_body(harness, hid, ids.CLOSE, "UALICE")
    assert post_signed(harness.events_url, alices, FORM, SIGNING_SECRET).content == b""
    leads = alices.replace(b"UALICE", b"ULEAD")  # the same view id, sent by someone else
    answer = post_signed(harness.events_url, leads, FORM, SIGNING_SECRET)
    assert answer.json()["response_action"] == "errors", answer.text
    assert harness.events(hid)[-1] == "refused"


# ---------------------------------------------------------------- "wrong owner" pressed on several devices at once


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_wrong_owner_pressed_at_once_many_times_is_counted_and_told_once(harness: SlackHarness) -> None:
    """"Wrong owner" was a release, then the answer written apart: a copy read in between found an open handoff
    with no answer yet and counted (and told the approvers) again; copies read before the release were refused
    "cannot be released now" instead of "Already noted"."""
    hid = create(harness, owner="UANNA", approvers=["ULEAD"])["id"]
    harness.card_of(hid)
    body = _reminder_click(ids.STALL_WRONG_OWNER, hid, "UANNA")

    answers = _together(8, lambda _: post_signed(harness.events_url, body, FORM, SIGNING_SECRET))

    assert [a.status_code for a in answers] == [200] * 8
    events = harness.runtime.repo.events(hid)
    assert [e.data.get("reason") for e in events if e.action == "stall_reason"] == ["wrong owner"]
    assert [e.action for e in events].count("released") == 1
    codes = {e.data["code"] for e in events if e.action == "refused"}
    assert codes <= {"already_noted"}, codes
    wait_outbox_idle(harness)
    assert len(harness.slack.calls("chat.postMessage", ok=True, channel="ULEAD")) == 1


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_same_answer_after_a_release_counts_afresh(harness: SlackHarness) -> None:
    """An answer is counted once until the next reminder or change of hands; a release is one (it was missing: the
    same "need info" said for the queue after releasing was refused as already noted)."""
    hid = create(harness, owner="UANNA")["id"]
    service = harness.runtime.service
    service.answer_nudge(hid, StallReason.need_info, Actor("UANNA"), told=lambda _: [])
    service.act(hid, Request(Action.release), Actor("UANNA"))
    service.answer_nudge(hid, StallReason.need_info, Actor("UANNA"), told=lambda _: [])
    events = harness.runtime.repo.events(hid)
    assert [e.data.get("reason") for e in events if e.action == "stall_reason"] == ["need info", "need info"]
