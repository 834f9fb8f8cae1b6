"""A handoff from the API becomes one card; each button works end to end over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot import ids
from handoffs.lifecycle import Action, Actor, Request
from handoffs.model import Handoff, HandoffEdit
from handoffs.nudges import snooze_until_tomorrow
from tests.bot.slack.conftest import SIGNING_SECRET, SlackHarness, _wait
from tests.bot.slack.e2e import (
    block_types,
    card_text,
    click_overflow,
    create,
    fast_pacing,
    form_values,
    input_values,
    opened_view,
    pick_user,
    snapshot,
    submit_view,
    wait_outbox_idle,
    wait_replies,
    wait_update,
)
from tests.fakes.slack_api import Call
from tests.fakes.slack_signing import FORM, post_signed, select_value, text_value, view_submission_body


def _buttons(call: Call) -> set[str]:
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
    reply = harness.slack.wait_for(lambda c: c.method == "chat.postMessage" and bool(c.params.get("thread_ts")))[0]
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


def test_the_close_form_offers_only_the_outcomes_that_can_close_it_now(harness: SlackHarness) -> None:
    """A task awaiting its required approval may be closed as no_action or duplicate, not as done: the form
    offers those two, so nobody picks an outcome that would be refused."""
    created = harness.create(requires_approval=True)
    harness.card_of(created["id"])
    harness.click(ids.CLAIM, created["id"], "UALICE")
    assert harness.click(ids.CLOSE, created["id"], "UALICE").status_code == 200
    opened = harness.slack.wait_for("views.open")[0]
    [outcome] = [b for b in opened.params["view"]["blocks"] if b.get("block_id") == ids.CLOSE_OUTCOME]
    assert [option["value"] for option in outcome["element"]["options"]] == ["no_action", "duplicate"]


# ---------------------------------------------------------------------------------------------------------------
# Every button end to end: one card, updated in place, each change also a reply in the card's thread.

def _is_open(call: Call) -> bool:
    return ids.CLAIM in _buttons(call)


def _step(harness: SlackHarness, card_ts: str, replies: int, reply_has: str, card_has: Callable[[Call], bool],
          what: str) -> Call:
    """After one action: the card was updated in place to show it, and the thread got exactly one more reply."""
    update = wait_update(harness, card_ts, card_has, what)
    assert update.params["channel"] == "CHANDOFFS"
    thread = wait_replies(harness, "CHANDOFFS", card_ts, replies)
    assert len(thread) == replies, [r.params["text"] for r in thread]
    assert reply_has in thread[-1].params["text"], thread[-1].params["text"]
    return update


def test_every_card_action_works_end_to_end_on_one_card(harness: SlackHarness) -> None:
    fast_pacing(harness)
    created = create(harness)
    hid = created["id"]
    card = harness.card_of(hid)
    ts = card.response["ts"]
    assert card.params["channel"] == "CHANDOFFS" and _is_open(card)

    # claim
    assert harness.click(ids.CLAIM, hid, "UALICE").status_code == 200
    _step(harness, ts, 1, "Claimed by <@UALICE>", lambda c: "<@UALICE>" in card_text(c) and not _is_open(c), "claim")

    # overflow: release (back to the queue)
    assert click_overflow(harness, ids.MORE_RELEASE, hid, "UALICE").status_code == 200
    _step(harness, ts, 2, "Released by <@UALICE>", _is_open, "release")
    assert harness.runtime.repo.get(hid).owner is None  # type: ignore[union-attr]

    # claim again, then overflow: snooze one hour
    harness.click(ids.CLAIM, hid, "UBOB")
    _step(harness, ts, 3, "Claimed by <@UBOB>", lambda c: "<@UBOB>" in card_text(c) and not _is_open(c), "claim 2")
    assert click_overflow(harness, ids.MORE_SNOOZE_HOUR, hid, "UBOB").status_code == 200
    _step(harness, ts, 4, "Snoozed by <@UBOB>", lambda c: "snoozed until" in card_text(c), "snooze")
    assert harness.runtime.repo.get(hid).snoozed_until is not None  # type: ignore[union-attr]

    # reassign with the user picker
    assert pick_user(harness, hid, "UBOB", "UCAROL").status_code == 200
    _step(harness, ts, 5, "Reassigned from <@UBOB> to <@UCAROL>", lambda c: "<@UCAROL>" in card_text(c), "reassign")

    # edit through the modal the bot opens
    assert harness.click(ids.EDIT, hid, "UCAROL").status_code == 200
    edit = opened_view(harness, ids.EDIT_MODAL)
    prefilled = {b["block_id"]: b["element"].get("initial_value") for b in edit.params["view"]["blocks"]}
    assert prefilled[ids.EDIT_TITLE] == created_title(harness, hid)
    submitted = submit_view(harness, edit, input_values(**{
        ids.EDIT_TITLE: text_value("Call ACME back before Friday"),
        ids.EDIT_NEXT_ACTION: text_value("Phone Jane about the quote"),
        ids.EDIT_URGENCY: select_value("high"),
    }), "UCAROL")
    assert submitted.status_code == 200 and not submitted.content, submitted.text
    _step(harness, ts, 6, "Edited by <@UCAROL>", lambda c: "Call ACME back before Friday" in card_text(c), "edit")

    # close through the modal: outcome shown, no buttons left
    assert harness.click(ids.CLOSE, hid, "UCAROL").status_code == 200
    close = opened_view(harness, ids.CLOSE_MODAL)
    submitted = submit_view(harness, close, input_values(**{
        ids.CLOSE_OUTCOME: select_value("done"), ids.CLOSE_NOTE: text_value("Jane signed"),
    }), "UCAROL")
    assert submitted.status_code == 200 and not submitted.content, submitted.text
    final = _step(harness, ts, 7, "Closed by <@UCAROL> as *done*", lambda c: "actions" not in block_types(c), "close")
    assert "Closed" in card_text(final) and "done" in card_text(final) and "Jane signed" in card_text(final)
    assert harness.slack.updates(ts)[-1] is final  # nothing came after the terminal card

    # one card, every update on its ts, every reply in its thread
    assert len(harness.slack.posted_cards()) == 1
    assert {c.params["ts"] for c in harness.slack.updates()} == {ts}
    assert all(r.params["thread_ts"] == ts for r in harness.slack.thread_replies())
    assert harness.events(hid) == ["created", "claimed", "released", "claimed", "snoozed", "reassigned", "edited",
                                   "closed"]


def created_title(harness: SlackHarness, handoff_id: int) -> str:
    return harness.runtime.repo.get(handoff_id).title  # type: ignore[union-attr]


def test_the_reassign_picker_works_on_a_private_copy_of_the_card_and_on_cards_posted_before_block_ids(
    harness: SlackHarness,
) -> None:
    """`/handoff show` answers with the card's blocks in a private message of its own ts: the picker's block id
    names the handoff. A card posted before block ids carried it is still found by its ts."""
    fast_pacing(harness)
    created = create(harness)
    hid = created["id"]
    card = harness.card_of(hid)
    [actions] = [b for b in card.params["blocks"] if b["type"] == "actions"]
    assert actions["block_id"] == f"{ids.CARD_ACTIONS_BLOCK}:{hid}"

    assert pick_user(harness, hid, "UMANAGER", "UCAROL", message_ts="1700009999.000100").status_code == 200
    assert snapshot(harness, hid)[2] == "UCAROL"
    assert pick_user(harness, hid, "UCAROL", "UDAVE", legacy_block=True).status_code == 200
    assert snapshot(harness, hid)[2] == "UDAVE"
    assert harness.events(hid)[-2:] == ["reassigned", "reassigned"]
    wait_outbox_idle(harness)  # a private notice would have been sent by now
    assert not harness.slack.ephemerals(), "no click was told its button points at nothing"


def test_the_reassign_picker_refuses_an_app_a_deactivated_account_and_slackbot(harness: SlackHarness) -> None:
    """The picker lists apps and deactivated people too: a handoff handed to one had nobody who could act on it.
    Each is refused privately, logged, and changes nothing; a person picked next is the owner."""
    fast_pacing(harness)
    harness.slack.users.update({"UPOLLBOT": {"is_bot": True}, "UGONE": {"deleted": True}})
    hid = create(harness, owner="UANNA")["id"]
    harness.card_of(hid)
    before = snapshot(harness, hid)
    for picked, reason in (("UPOLLBOT", "<@UPOLLBOT> is an app, not a person"),
                           ("UGONE", "<@UGONE> is deactivated"), ("USLACKBOT", "Slackbot cannot own a handoff")):
        assert pick_user(harness, hid, "UANNA", picked).status_code == 200
        assert snapshot(harness, hid) == before
        told = _wait(lambda reason=reason: [c for c in harness.slack.ephemerals("UANNA") if reason in c.params["text"]])
        assert len(told) == 1
    refusals = [(e.actor, e.data["code"]) for e in harness.runtime.repo.events(hid) if e.action == "refused"]
    assert refusals == [("UANNA", "not_a_person")] * 3
    assert pick_user(harness, hid, "UANNA", "UCAROL").status_code == 200
    assert snapshot(harness, hid)[2] == "UCAROL"


def test_snooze_until_tomorrow_is_the_clickers_own_morning_even_before_anyone_looked_them_up(
    harness: SlackHarness,
) -> None:
    """The clicker's zone came only from what the SLA sweep had looked up (due owners, with business hours):
    anyone else's "tomorrow" was the team's. Now the click looks them up itself."""
    harness.slack.users["UANNA"] = {"tz": "Pacific/Auckland"}
    hid = create(harness, owner="UANNA")["id"]
    harness.card_of(hid)
    assert click_overflow(harness, ids.MORE_SNOOZE_TOMORROW, hid, "UANNA").status_code == 200
    snoozed = harness.runtime.repo.get(hid).snoozed_until  # type: ignore[union-attr]
    expected = snooze_until_tomorrow(harness.runtime.clock(), harness.runtime.config, ZoneInfo("Pacific/Auckland"))
    assert snoozed == expected
    assert expected != snooze_until_tomorrow(harness.runtime.clock(), harness.runtime.config,
                                             harness.runtime.config.zone)


def test_approve_then_reject_paths_update_the_card_and_the_thread(harness: SlackHarness) -> None:
    fast_pacing(harness)
    approved = create(harness, owner="UALICE", approvers=["ULEAD"])
    rejected = create(harness, owner="UALICE", approvers=["ULEAD"])
    ts_a = harness.card_of(approved["id"]).response["ts"]
    ts_r = harness.card_of(rejected["id"]).response["ts"]
    assert ids.APPROVE in _buttons(harness.card_of(approved["id"]))

    assert harness.click(ids.APPROVE, approved["id"], "ULEAD").status_code == 200
    update = wait_update(harness, ts_a, lambda c: ids.APPROVE not in _buttons(c), "approve")
    assert "Approved" in card_text(update) and ids.CLOSE in _buttons(update)
    assert "Approved by <@ULEAD>" in wait_replies(harness, "CHANDOFFS", ts_a, 1)[0].params["text"]
    assert harness.runtime.repo.get(approved["id"]).status.value == "approved"  # type: ignore[union-attr]

    assert harness.click(ids.REJECT, rejected["id"], "ULEAD").status_code == 200
    modal = opened_view(harness, ids.REJECT_MODAL)
    response = submit_view(harness, modal, input_values(**{ids.REJECT_REASON: text_value("Wrong customer")}), "ULEAD")
    assert response.status_code == 200 and not response.content, response.text
    final = wait_update(harness, ts_r, lambda c: "actions" not in block_types(c), "rejected card")
    assert "Rejected" in card_text(final) and "Wrong customer" in card_text(final)
    assert "Rejected by <@ULEAD>: Wrong customer" in wait_replies(harness, "CHANDOFFS", ts_r, 1)[0].params["text"]
    assert harness.events(rejected["id"]) == ["created", "rejected"]
    assert len(harness.slack.posted_cards()) == 2


def test_edit_keeps_old_and_new_values_in_the_event_log(harness: SlackHarness) -> None:
    created = create(harness, owner="UALICE", summary="Old summary")
    ts = harness.card_of(created["id"]).response["ts"]
    old_title = created_title(harness, created["id"])
    harness.click(ids.EDIT, created["id"], "UALICE")
    modal = opened_view(harness, ids.EDIT_MODAL)
    response = submit_view(harness, modal, input_values(**{
        ids.EDIT_TITLE: text_value("A better title"), ids.EDIT_SUMMARY: text_value("New summary"),
        ids.EDIT_NEXT_ACTION: text_value("Phone Jane about the quote"),
    }), "UALICE")
    assert response.status_code == 200 and not response.content, response.text
    [edited] = [e for e in harness.runtime.repo.events(created["id"]) if e.action == "edited"]
    assert edited.actor == "UALICE"
    assert edited.data["changes"] == {
        "title": {"old": old_title, "new": "A better title"},
        "summary": {"old": "Old summary", "new": "New summary"},
    }
    wait_update(harness, ts, lambda c: "A better title" in card_text(c), "edited card")


def test_an_edit_form_left_open_never_undoes_a_change_saved_meanwhile(harness: SlackHarness) -> None:
    created = create(harness, owner="UALICE", summary="Old summary")
    first_title = created_title(harness, created["id"])
    harness.card_of(created["id"])
    harness.click(ids.EDIT, created["id"], "UALICE")
    stale = opened_view(harness, ids.EDIT_MODAL)
    harness.click(ids.EDIT, created["id"], "UALICE")  # a second form (another tab, or a manager's)
    fresh = opened_view(harness, ids.EDIT_MODAL, count=2)
    response = submit_view(harness, fresh, form_values(fresh, **{ids.EDIT_TITLE: text_value("Renewal: call Jane")}),
                           "UALICE")
    assert response.status_code == 200 and not response.content, response.text

    response = submit_view(harness, stale, form_values(stale, **{ids.EDIT_SUMMARY: text_value("New summary")}),
                           "UALICE")
    assert response.status_code == 200 and not response.content, response.text
    handoff = harness.runtime.repo.get(created["id"])
    assert handoff is not None
    assert (handoff.title, handoff.summary) == ("Renewal: call Jane", "New summary")

    before = snapshot(harness, created["id"])
    response = submit_view(harness, stale, form_values(stale, **{ids.EDIT_TITLE: text_value("Call Jane")}), "UALICE")
    body = response.json()
    assert body["response_action"] == "errors" and set(body["errors"]) == {ids.EDIT_TITLE}, body
    assert "changed this since you opened the form" in body["errors"][ids.EDIT_TITLE]
    assert snapshot(harness, created["id"]) == before
    assert [e.data["changes"] for e in harness.runtime.repo.events(created["id"]) if e.action == "edited"] == [
        {"title": {"old": first_title, "new": "Renewal: call Jane"}},
        {"summary": {"old": "Old summary", "new": "New summary"}},
    ]


def test_an_edit_saved_while_a_form_is_being_checked_is_not_overwritten(
    harness: SlackHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The form used to be checked against a read made before the compare-and-set: an edit saved between that read
    and the write was overwritten by the form's value, with no conflict told."""
    hid = create(harness, owner="UALICE", approvers=["ULEAD"])["id"]
    harness.card_of(hid)
    harness.click(ids.EDIT, hid, "UALICE")
    form = opened_view(harness, ids.EDIT_MODAL)
    service, real_get = harness.runtime.service, harness.runtime.service.get
    reads = 0

    def read_then_the_lead_saves(handoff_id: int) -> Handoff:
        nonlocal reads
        reads += 1
        found = real_get(handoff_id)
        if reads == 1:  # the form's first read: the lead's own edit lands in that instant
            service.act(handoff_id, Request(Action.edit, edit=HandoffEdit(title="Title by the lead")), Actor("ULEAD"))
        return found

    monkeypatch.setattr(service, "get", read_then_the_lead_saves)
    response = submit_view(harness, form, form_values(form, **{ids.EDIT_TITLE: text_value("Title by Alice")}),
                           "UALICE")

    body = response.json()
    assert body["response_action"] == "errors" and set(body["errors"]) == {ids.EDIT_TITLE}, body
    handoff = harness.runtime.repo.get(hid)
    assert handoff is not None and handoff.title == "Title by the lead"


def test_the_due_time_cannot_be_emptied_in_the_edit_form(harness: SlackHarness) -> None:
    """An emptied Due used to be taken for "unchanged": saved with another change, the form closed as if all was
    saved; alone, it was told "Nothing was changed." on the Title. The input is required once there is a due time,
    and an emptied one (a form opened before) is refused on the Due field."""
    hid = create(harness, owner="UALICE", due_at="2099-01-01T10:00:00+00:00")["id"]
    harness.card_of(hid)
    harness.click(ids.EDIT, hid, "UALICE")
    form = opened_view(harness, ids.EDIT_MODAL)
    [due] = [b for b in form.params["view"]["blocks"] if b["block_id"] == ids.EDIT_DUE_AT]
    assert due["element"]["initial_date_time"] and not due.get("optional")
    before = snapshot(harness, hid)

    emptied = {"type": "datetimepicker", "selected_date_time": None}
    response = submit_view(harness, form, form_values(form, **{ids.EDIT_DUE_AT: emptied,
                                                               ids.EDIT_TITLE: text_value("Renewal call")}), "UALICE")

    body = response.json()
    assert body["response_action"] == "errors" and set(body["errors"]) == {ids.EDIT_DUE_AT}, body
    assert snapshot(harness, hid) == before


def test_reject_without_a_reason_is_refused_inline_and_changes_nothing(harness: SlackHarness) -> None:
    created = create(harness, owner="UALICE")
    harness.card_of(created["id"])
    harness.click(ids.REJECT, created["id"], "UALICE")
    modal = opened_view(harness, ids.REJECT_MODAL)
    before = snapshot(harness, created["id"])
    for reason in (None, "", "   ", "\n\t "):
        response = submit_view(harness, modal, input_values(**{ids.REJECT_REASON: text_value(reason)}), "UALICE")
        assert response.status_code == 200
        body = response.json()
        assert body["response_action"] == "errors", reason
        assert set(body["errors"]) == {ids.REJECT_REASON}
        assert snapshot(harness, created["id"]) == before
    response = submit_view(harness, modal, {}, "UALICE")  # the reason block missing altogether
    assert response.json()["response_action"] == "errors"
    assert snapshot(harness, created["id"]) == before
    assert "rejected" not in harness.events(created["id"])


def _forged_submission(callback_id: str, values: dict[str, Any], handoff_id: int) -> bytes:
    return view_submission_body(callback_id, values, "UANNA", private_metadata=json.dumps({"handoff_id": handoff_id}))


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # refused before any database work
@pytest.mark.parametrize("case", ["new-form-due-in-year-33658", "edit-form-due-in-year-33658", "handoff-id-10**30"])
def test_a_submission_with_values_out_of_range_is_answered_inline_not_500(harness: SlackHarness, case: str) -> None:
    """A datetimepicker value past year 9999 (datetime.fromtimestamp raised) and a form naming a handoff id beyond
    a 64-bit integer (the database driver raised) were answered 500 with a traceback in the log."""
    handoff_id = create(harness, owner="UANNA")["id"]
    before = harness.events(handoff_id)
    far = {"type": "datetimepicker", "selected_date_time": 10**12}
    new_form = {ids.NEW_TITLE: text_value("Demo"), ids.NEW_NEXT_ACTION: text_value("Book it"), ids.NEW_DUE_AT: far}
    body, field = {
        "new-form-due-in-year-33658": (view_submission_body(ids.NEW_MODAL, input_values(**new_form), "UANNA"),
                                       ids.NEW_DUE_AT),
        "edit-form-due-in-year-33658": (_forged_submission(ids.EDIT_MODAL, input_values(**{ids.EDIT_DUE_AT: far}),
                                                           handoff_id), ids.EDIT_DUE_AT),
        "handoff-id-10**30": (_forged_submission(ids.CLOSE_MODAL, input_values(**{
            ids.CLOSE_OUTCOME: select_value("done")}), 10**30), ids.CLOSE_OUTCOME),
    }[case]
    response = post_signed(harness.events_url, body, FORM, SIGNING_SECRET)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["response_action"] == "errors" and field in answer["errors"], answer
    assert harness.events(handoff_id) == before and len(harness.runtime.repo.page().items) == 1
