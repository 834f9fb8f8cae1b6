"""The transition table of SPEC §3 and its permission rules, decided without a database."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from handoffs.config import HandoffConfig, parse_config
from handoffs.lifecycle import (
    ALLOWED_FROM,
    Action,
    Actor,
    Change,
    Refused,
    Request,
    check_allowed,
    closing_outcomes,
    decide,
)
from handoffs.model import Handoff, HandoffEdit, Status, Urgency
from tests.conftest import DEFAULT_CONFIG
from tests.factories import NOW, make_handoff

OWNER = Actor("UOWNER")
APPROVER = Actor("UAPPROVER")
MANAGER = Actor("UMANAGER")
STRANGER = Actor("USTRANGER")
SYSTEM = Actor.system("producer")
ROLES = {"owner": OWNER, "approver": APPROVER, "manager": MANAGER, "stranger": STRANGER, "system": SYSTEM}


@pytest.fixture
def config() -> HandoffConfig:
    return parse_config({
        **DEFAULT_CONFIG,
        "routes": [
            {"name": "restricted", "when": {"kind": "support"}, "channel": "CSUPPORT", "claimers": ["UCLAIMER"]},
            *DEFAULT_CONFIG["routes"],
        ],
    })


def handoff_in_status(status: Status, **fields: Any) -> Handoff:
    values: dict[str, Any] = {"status": status, "owner": None if status is Status.open else "UOWNER"}
    if status is Status.open:
        values["queue"] = "CHANDOFFS"
    if status is Status.closed:
        values.update(outcome="done", closed_at=NOW)
    if status is Status.rejected:
        values.update(outcome="rejected", outcome_note="wrong customer", closed_at=NOW)
    values.update(fields)
    return make_handoff(**values)


def request_for(action: Action, **overrides: Any) -> Request:
    arguments: dict[Action, dict[str, Any]] = {
        Action.reassign: {"new_owner": "UNEW"},
        Action.edit: {"edit": HandoffEdit(title="Send the revised quote")},
        Action.reject: {"reason": "wrong customer"},
        Action.close: {"outcome": "done"},
        Action.snooze: {"until": NOW + timedelta(hours=2)},
    }
    return Request(action, **{**arguments.get(action, {}), **overrides})


# An actor who may take each action in every status it is allowed from (the permission tests are below).
ACTOR_FOR = {
    Action.claim: STRANGER,
    Action.release: OWNER,
    Action.reassign: MANAGER,
    Action.approve: APPROVER,
    Action.edit: APPROVER,
    Action.reject: APPROVER,
    Action.close: MANAGER,
    Action.reopen: MANAGER,
    Action.snooze: MANAGER,
}

EXPECTED_TO = {
    (Action.claim, Status.open): Status.claimed,
    (Action.release, Status.claimed): Status.open,
    (Action.reassign, Status.open): Status.claimed,
    (Action.reassign, Status.claimed): Status.claimed,
    (Action.reassign, Status.approved): Status.approved,
    (Action.approve, Status.open): Status.approved,
    (Action.approve, Status.claimed): Status.approved,
    (Action.edit, Status.open): Status.open,
    (Action.edit, Status.claimed): Status.claimed,
    (Action.reject, Status.open): Status.rejected,
    (Action.reject, Status.claimed): Status.rejected,
    (Action.close, Status.claimed): Status.closed,
    (Action.close, Status.approved): Status.closed,
    (Action.reopen, Status.closed): Status.open,
    (Action.reopen, Status.rejected): Status.open,
    (Action.snooze, Status.open): Status.open,
    (Action.snooze, Status.claimed): Status.claimed,
}

PAST = {
    Action.claim: "claimed", Action.release: "released", Action.reassign: "reassigned", Action.approve: "approved",
    Action.edit: "edited", Action.reject: "rejected", Action.close: "closed", Action.reopen: "reopened",
    Action.snooze: "snoozed",
}


def test_the_table_in_the_code_is_the_table_in_the_spec() -> None:
    allowed = {(action, status) for action, statuses in ALLOWED_FROM.items() for status in statuses}
    assert allowed == set(EXPECTED_TO)


@pytest.mark.parametrize(("action", "status"), sorted(EXPECTED_TO, key=str))
def test_each_allowed_transition_leads_where_the_spec_says(
    config: HandoffConfig, action: Action, status: Status
) -> None:
    change = decide(handoff_in_status(status), request_for(action), ACTOR_FOR[action], config, NOW)
    assert change.to_status is EXPECTED_TO[(action, status)]
    assert change.event == PAST[action]


@pytest.mark.parametrize(
    ("action", "status"),
    [(action, status) for action in Action for status in Status if (action, status) not in EXPECTED_TO],
)
def test_each_other_transition_is_refused_for_its_status(config: HandoffConfig, action: Action, status: Status) -> None:
    with pytest.raises(Refused) as caught:
        decide(handoff_in_status(status), request_for(action), MANAGER, config, NOW)
    refused = caught.value
    if action is Action.claim and status is Status.claimed:
        assert refused.code == "already_claimed"
        assert "<@UOWNER>" in refused.reason
    elif status in (Status.closed, Status.rejected):
        assert refused.code == "terminal"
    else:
        assert refused.code == "wrong_status"
    assert "H-42" in refused.reason


# (action, status the handoff is in, role, allowed?)
PERMISSIONS = [
    *[(Action.claim, Status.open, role, True) for role in ROLES],
    *[(Action.release, Status.claimed, role, role == "owner") for role in ROLES],
    *[(Action.reassign, Status.claimed, role, role != "stranger") for role in ROLES],
    *[(Action.approve, Status.claimed, role, role in ("approver", "system")) for role in ROLES],
    *[(Action.edit, Status.claimed, role, role in ("owner", "approver", "system")) for role in ROLES],
    *[(Action.reject, Status.claimed, role, role in ("owner", "approver", "system")) for role in ROLES],
    *[(Action.close, Status.claimed, role, role != "stranger") for role in ROLES],
    *[(Action.reopen, Status.closed, role, role in ("manager", "system")) for role in ROLES],
    *[(Action.snooze, Status.claimed, role, role != "stranger") for role in ROLES],
    *[(Action.snooze, Status.open, role, True) for role in ROLES],  # the queue's: anyone who may claim it
]


@pytest.mark.parametrize(("action", "status", "role", "allowed"), PERMISSIONS)
def test_who_may_do_what(config: HandoffConfig, action: Action, status: Status, role: str, allowed: bool) -> None:
    handoff = handoff_in_status(status)
    if allowed:
        assert isinstance(decide(handoff, request_for(action), ROLES[role], config, NOW), Change)
    else:
        with pytest.raises(Refused) as caught:
            decide(handoff, request_for(action), ROLES[role], config, NOW)
        assert caught.value.code == "not_allowed"
        assert caught.value.reason.startswith("Only ")


def test_where_no_approvers_are_set_the_owner_approves(config: HandoffConfig) -> None:
    handoff = handoff_in_status(Status.claimed, approvers=[])
    assert decide(handoff, request_for(Action.approve), OWNER, config, NOW).to_status is Status.approved
    with pytest.raises(Refused, match=r"the owner \(<@UOWNER>\)"):
        decide(handoff, request_for(Action.approve), STRANGER, config, NOW)


def test_a_route_may_restrict_who_claims(config: HandoffConfig) -> None:
    handoff = handoff_in_status(Status.open, kind="support", route="restricted")
    assert decide(handoff, request_for(Action.claim), Actor("UCLAIMER"), config, NOW).updates["owner"] == "UCLAIMER"
    assert decide(handoff, request_for(Action.claim), MANAGER, config, NOW).to_status is Status.claimed
    with pytest.raises(Refused) as caught:
        decide(handoff, request_for(Action.claim), STRANGER, config, NOW)
    assert caught.value.code == "not_allowed"


def test_claim_records_the_new_owner(config: HandoffConfig) -> None:
    change = decide(handoff_in_status(Status.open), request_for(Action.claim), STRANGER, config, NOW)
    assert change.updates["owner"] == "USTRANGER"
    assert change.updates["claimed_at"] == NOW
    assert change.data == {"owner": "USTRANGER"}


def test_release_puts_the_handoff_back_in_a_queue(config: HandoffConfig) -> None:
    # claimed straight from routing (round robin): it never had a queue of its own
    handoff = handoff_in_status(Status.claimed, queue=None, channel="CSALES")
    change = decide(handoff, request_for(Action.release), OWNER, config, NOW)
    assert change.to_status is Status.open
    assert change.updates["owner"] is None
    assert change.updates["queue"] == "CSALES"  # nobody owns it, so it must wait somewhere
    assert change.data == {"previous_owner": "UOWNER"}


def test_a_released_handoff_gets_a_claim_deadline_of_its_own(config: HandoffConfig) -> None:
    """Its first claim deadline passed long ago: kept, the queue would be reminded of it at once."""
    handoff = handoff_in_status(Status.claimed, claim_by=NOW - timedelta(days=2), nudge_count=1)
    change = decide(handoff, request_for(Action.release), OWNER, config, NOW)
    assert change.updates["claim_by"] == NOW + timedelta(hours=4)  # the normal urgency's claim SLA
    assert change.updates["nudge_count"] == 0


@pytest.mark.parametrize(("due_in", "kept"), [(timedelta(days=-10), False), (timedelta(days=5), True)])
def test_a_reopened_handoff_past_its_due_time_gets_a_new_one(
    config: HandoffConfig, due_in: timedelta, kept: bool,
) -> None:
    handoff = handoff_in_status(Status.closed, due_at=NOW + due_in)
    change = decide(handoff, request_for(Action.reopen), MANAGER, config, NOW)
    if kept:
        assert "due_at" not in change.updates
    else:
        assert change.updates["due_at"] == NOW + timedelta(days=3)  # the normal urgency's resolve SLA


def test_close_on_approve_closes_with_outcome_approved(config: HandoffConfig) -> None:
    handoff = handoff_in_status(Status.claimed, kind="reply", requires_approval=True)
    change = decide(handoff, request_for(Action.approve, note="ship it"), APPROVER, config, NOW)
    assert change.to_status is Status.closed
    assert change.event == "approved"
    assert change.updates["outcome"] == "approved"
    assert change.updates["outcome_note"] == "ship it"
    assert change.updates["approved_at"] == change.updates["closed_at"] == NOW


def test_a_plain_approve_leaves_it_approved_for_closing(config: HandoffConfig) -> None:
    change = decide(handoff_in_status(Status.claimed), request_for(Action.approve), APPROVER, config, NOW)
    assert change.to_status is Status.approved
    assert "outcome" not in change.updates
    assert change.updates["approved_at"] == NOW


def test_closing_outcomes_are_what_close_accepts_now(config: HandoffConfig) -> None:
    awaiting = handoff_in_status(Status.claimed, requires_approval=True)
    assert closing_outcomes(awaiting, config) == ["no_action", "duplicate"]
    assert closing_outcomes(handoff_in_status(Status.approved, requires_approval=True), config) == [
        "done", "no_action", "duplicate"]
    lead = handoff_in_status(Status.claimed, kind="lead")
    assert closing_outcomes(lead, config) == ["won", "lost", "nurture", "disqualified"]
    for outcome in closing_outcomes(awaiting, config):
        change = decide(awaiting, request_for(Action.close, outcome=outcome), OWNER, config, NOW)
        assert change.to_status is Status.closed


def test_a_handoff_no_outcome_may_close_yet_refuses_close_before_any_form(config: HandoffConfig) -> None:
    """A lead awaiting a required approval: every lead outcome completes it, so it can only be approved first."""
    lead = handoff_in_status(Status.claimed, kind="lead", requires_approval=True)
    assert closing_outcomes(lead, config) == []
    with pytest.raises(Refused) as caught:
        check_allowed(lead, Action.close, OWNER, config)
    assert caught.value.code == "needs_approval" and lead.ref in caught.value.reason
    approved = handoff_in_status(Status.approved, kind="lead", requires_approval=True)
    check_allowed(approved, Action.close, OWNER, config)
    # a close with an outcome (the API, the command) is told what is wrong with that outcome
    for outcome, code in (("bogus", "bad_outcome"), ("won", "needs_approval")):
        with pytest.raises(Refused) as told:
            decide(lead, request_for(Action.close, outcome=outcome), OWNER, config, NOW)
        assert told.value.code == code


def test_needs_approval_before_closing_as_done_but_not_as_no_action(config: HandoffConfig) -> None:
    handoff = handoff_in_status(Status.claimed, requires_approval=True)
    with pytest.raises(Refused) as caught:
        decide(handoff, request_for(Action.close, outcome="done"), OWNER, config, NOW)
    assert caught.value.code == "needs_approval"
    change = decide(handoff, request_for(Action.close, outcome="no_action", note="customer cancelled"), OWNER,
                    config, NOW)
    assert change.to_status is Status.closed
    assert change.updates["outcome"] == "no_action"
    assert change.data == {"outcome": "no_action", "note": "customer cancelled"}
    approved = handoff_in_status(Status.approved, requires_approval=True)
    assert decide(approved, request_for(Action.close, outcome="done"), OWNER, config, NOW).updates["outcome"] == "done"


@pytest.mark.parametrize(("outcome", "code"), [(None, "missing_argument"), ("  ", "missing_argument"),
                                               ("done", "bad_outcome"), ("won", None)])
def test_close_takes_one_of_the_kinds_outcomes(config: HandoffConfig, outcome: str | None, code: str | None) -> None:
    handoff = handoff_in_status(Status.claimed, kind="lead")
    request = request_for(Action.close, outcome=outcome)
    if code is None:
        assert decide(handoff, request, OWNER, config, NOW).updates["outcome"] == outcome
    else:
        with pytest.raises(Refused) as caught:
            decide(handoff, request, OWNER, config, NOW)
        assert caught.value.code == code
        assert caught.value.details["field"] == "outcome"
        assert "won" in caught.value.reason


def test_edit_keeps_old_and_new_values(config: HandoffConfig) -> None:
    handoff = handoff_in_status(Status.claimed, summary="old summary")
    new_due = NOW + timedelta(days=1)
    edit = HandoffEdit(title="Send the revised quote", summary="new summary", urgency=Urgency.high, due_at=new_due)
    change = decide(handoff, request_for(Action.edit, edit=edit), OWNER, config, NOW)
    assert change.to_status is Status.claimed
    new_claim_by = NOW + timedelta(hours=1)  # high's claim SLA, before the stored one (NOW + 3h)
    assert change.updates == {"title": "Send the revised quote", "summary": "new summary", "urgency": Urgency.high,
                              "due_at": new_due, "claim_by": new_claim_by,
                              "nudge_count": 0, "escalated_at": None, "last_nudged_at": None}
    assert change.data == {"changes": {
        "title": {"old": "Send the quote", "new": "Send the revised quote"},
        "summary": {"old": "old summary", "new": "new summary"},
        "urgency": {"old": "normal", "new": "high"},
        "due_at": {"old": handoff.due_at.isoformat(), "new": new_due.isoformat()},  # type: ignore[union-attr]
        "claim_by": {"old": handoff.claim_by.isoformat(), "new": new_claim_by.isoformat()},  # type: ignore[union-attr]
    }}


def test_an_edit_of_the_text_alone_keeps_the_reminder_count(config: HandoffConfig) -> None:
    handoff = handoff_in_status(Status.claimed, nudge_count=2, last_nudged_at=NOW - timedelta(minutes=5))
    change = decide(handoff, request_for(Action.edit, edit=HandoffEdit(summary="left a voicemail")), OWNER, config,
                    NOW)
    assert change.updates == {"summary": "left a voicemail"}


def test_a_new_due_time_starts_reminders_and_escalation_again(config: HandoffConfig) -> None:
    """Else a handoff escalated for its old due time is never reminded of the new one."""
    handoff = handoff_in_status(Status.claimed, nudge_count=3, escalated_at=NOW - timedelta(hours=1),
                                last_nudged_at=NOW - timedelta(hours=2))
    new_due = NOW + timedelta(days=2)
    change = decide(handoff, request_for(Action.edit, edit=HandoffEdit(due_at=new_due)), OWNER, config, NOW)
    assert change.updates == {"due_at": new_due, "nudge_count": 0, "escalated_at": None, "last_nudged_at": None}


@pytest.mark.parametrize("status", [Status.open, Status.claimed])
def test_a_new_due_time_keeps_the_count_of_a_handoff_late_for_its_claim_deadline(
    config: HandoffConfig, status: Status,
) -> None:
    """Open, or claimed and waiting for approval, it is late for `claim_by`, which a later due time does not move:
    starting again would remind and escalate it a second time for the same lateness (SPEC §7: once)."""
    handoff = handoff_in_status(status, requires_approval=True, claim_by=NOW - timedelta(hours=3), nudge_count=2,
                                escalated_at=NOW - timedelta(hours=1), last_nudged_at=NOW - timedelta(hours=2))
    new_due = NOW + timedelta(days=5)
    change = decide(handoff, request_for(Action.edit, edit=HandoffEdit(due_at=new_due)), APPROVER, config, NOW)
    assert change.updates == {"due_at": new_due}


def test_a_due_time_brought_before_the_claim_deadline_starts_the_count_again(config: HandoffConfig) -> None:
    """An open handoff's claim deadline comes along (never after the due time): the deadline it waits for moved."""
    handoff = handoff_in_status(Status.open, claim_by=NOW + timedelta(hours=3), nudge_count=1,
                                last_nudged_at=NOW - timedelta(hours=1))
    new_due = NOW + timedelta(hours=1)
    change = decide(handoff, request_for(Action.edit, edit=HandoffEdit(due_at=new_due)), APPROVER, config, NOW)
    assert change.updates == {"due_at": new_due, "claim_by": new_due,
                              "nudge_count": 0, "escalated_at": None, "last_nudged_at": None}


@pytest.mark.parametrize(("requires_approval", "new_phase"), [(False, False), (True, True)])
def test_a_raised_urgency_starts_the_count_again_only_where_its_claim_deadline_counts(
    config: HandoffConfig, requires_approval: bool, new_phase: bool,
) -> None:
    """Claimed, a handoff is late for its due time: an earlier claim deadline changes nothing, unless it is still
    waiting for approval (late for whichever comes first)."""
    handoff = handoff_in_status(Status.claimed, requires_approval=requires_approval, claim_by=NOW + timedelta(days=1),
                                due_at=NOW + timedelta(hours=2), nudge_count=1, last_nudged_at=NOW)
    change = decide(handoff, request_for(Action.edit, edit=HandoffEdit(urgency=Urgency.high)), OWNER, config, NOW)
    assert change.updates["claim_by"] == NOW + timedelta(hours=1) and "due_at" not in change.updates
    assert ("nudge_count" in change.updates) is new_phase


def test_a_raised_urgency_brings_its_deadlines_a_lowered_one_keeps_them(config: HandoffConfig) -> None:
    low = handoff_in_status(Status.claimed, urgency=Urgency.low, claim_by=NOW + timedelta(days=1),
                            due_at=NOW + timedelta(days=7))
    raised = decide(low, request_for(Action.edit, edit=HandoffEdit(urgency=Urgency.urgent)), OWNER, config, NOW)
    assert raised.updates["claim_by"] == NOW + timedelta(minutes=15)
    assert raised.updates["due_at"] == NOW + timedelta(hours=4)
    urgent = handoff_in_status(Status.claimed, urgency=Urgency.urgent, claim_by=NOW + timedelta(minutes=15),
                               due_at=NOW + timedelta(hours=4))
    lowered = decide(urgent, request_for(Action.edit, edit=HandoffEdit(urgency=Urgency.low)), OWNER, config, NOW)
    assert lowered.updates == {"urgency": Urgency.low}


def test_an_edit_that_changes_nothing_is_refused(config: HandoffConfig) -> None:
    handoff = handoff_in_status(Status.claimed)
    with pytest.raises(Refused) as caught:
        decide(handoff, request_for(Action.edit, edit=HandoffEdit(title="Send the quote")), OWNER, config, NOW)
    assert caught.value.code == "no_change"
    with pytest.raises(Refused) as caught:
        decide(handoff, Request(Action.edit), OWNER, config, NOW)
    assert caught.value.code == "missing_argument"


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_reject_needs_a_reason(config: HandoffConfig, reason: str | None) -> None:
    with pytest.raises(Refused) as caught:
        decide(handoff_in_status(Status.claimed), request_for(Action.reject, reason=reason), APPROVER, config, NOW)
    assert caught.value.code == "missing_argument"
    assert caught.value.details["field"] == "reason"


def test_reject_keeps_the_reason(config: HandoffConfig) -> None:
    change = decide(handoff_in_status(Status.open), request_for(Action.reject, reason=" wrong customer "), APPROVER,
                    config, NOW)
    assert change.updates["outcome_note"] == "wrong customer"
    assert change.data == {"reason": "wrong customer"}


def test_reassign_needs_someone_new(config: HandoffConfig) -> None:
    handoff = handoff_in_status(Status.claimed)
    with pytest.raises(Refused) as caught:
        decide(handoff, request_for(Action.reassign, new_owner=None), MANAGER, config, NOW)
    assert caught.value.code == "missing_argument"
    with pytest.raises(Refused) as caught:
        decide(handoff, request_for(Action.reassign, new_owner="UOWNER"), MANAGER, config, NOW)
    assert caught.value.code == "no_change"
    change = decide(handoff, request_for(Action.reassign), OWNER, config, NOW)
    assert change.updates["owner"] == "UNEW"
    assert change.data == {"from": "UOWNER", "to": "UNEW"}


def test_reopen_puts_it_back_in_the_queue_with_a_fresh_claim_deadline(config: HandoffConfig) -> None:
    handoff = handoff_in_status(Status.closed, queue=None, channel="CSALES", route="hot-leads")
    change = decide(handoff, request_for(Action.reopen, reason="customer wrote again"), MANAGER, config, NOW)
    assert change.to_status is Status.open
    assert change.updates["owner"] is None and change.updates["outcome"] is None
    assert change.updates["queue"] == "CSALES"
    assert change.updates["claim_by"] == NOW + timedelta(hours=4)  # normal urgency: claim within 4h
    assert change.data == {"previous_outcome": "done", "reason": "customer wrote again"}


@pytest.mark.parametrize(("until", "ok"), [(NOW - timedelta(minutes=1), False), (NOW, False),
                                           (NOW + timedelta(days=30), True), (NOW + timedelta(days=31), False),
                                           (None, False)])
def test_snooze_needs_a_time_within_thirty_days(config: HandoffConfig, until: Any, ok: bool) -> None:
    handoff = handoff_in_status(Status.claimed)
    if ok:
        change = decide(handoff, request_for(Action.snooze, until=until), OWNER, config, NOW)
        assert change.updates == {"snoozed_until": until}
    else:
        with pytest.raises(Refused) as caught:
            decide(handoff, request_for(Action.snooze, until=until), OWNER, config, NOW)
        assert caught.value.code == "bad_argument"


@pytest.mark.parametrize(("until", "repeat"), [
    (NOW + timedelta(hours=1), True), (NOW + timedelta(hours=1, seconds=40), True),  # "1h" pressed twice
    (NOW + timedelta(hours=1, minutes=5), False), (NOW + timedelta(minutes=10), False),  # a later, an earlier end
])
def test_a_snooze_to_the_end_already_in_force_is_a_repeat(config: HandoffConfig, until: Any, repeat: bool) -> None:
    handoff = handoff_in_status(Status.claimed, snoozed_until=NOW + timedelta(hours=1))
    if not repeat:
        assert decide(handoff, request_for(Action.snooze, until=until), OWNER, config, NOW).updates == {
            "snoozed_until": until}
        return
    with pytest.raises(Refused) as caught:
        decide(handoff, request_for(Action.snooze, until=until), OWNER, config, NOW)
    assert caught.value.code == "already_noted"
    assert f"{handoff.ref} waits until" in caught.value.reason


def test_a_snooze_that_has_ended_does_not_make_the_next_a_repeat(config: HandoffConfig) -> None:
    handoff = handoff_in_status(Status.claimed, snoozed_until=NOW - timedelta(seconds=30))
    until = NOW + timedelta(seconds=20)
    assert decide(handoff, request_for(Action.snooze, until=until), OWNER, config, NOW).updates == {
        "snoozed_until": until}


def test_notes_are_bounded(config: HandoffConfig) -> None:
    with pytest.raises(Refused) as caught:
        decide(handoff_in_status(Status.claimed), request_for(Action.close, note="x" * 2001), OWNER, config, NOW)
    assert caught.value.code == "bad_argument"


def test_a_claimed_handoff_awaiting_approval_stalls_at_its_earlier_deadline() -> None:
    from datetime import UTC, datetime, timedelta

    from handoffs.model import Status
    from tests.factories import make_handoff

    now = datetime(2026, 11, 20, 12, tzinfo=UTC)
    due_first = make_handoff(status=Status.claimed, owner="UANNA", requires_approval=True,
                             claim_by=now + timedelta(days=1), due_at=now + timedelta(hours=2))
    assert due_first.stall_deadline() == now + timedelta(hours=2)
    claim_first = make_handoff(status=Status.claimed, owner="UANNA", requires_approval=True,
                               claim_by=now + timedelta(hours=1), due_at=now + timedelta(days=3))
    assert claim_first.stall_deadline() == now + timedelta(hours=1)
    approved = make_handoff(status=Status.approved, owner="UANNA", requires_approval=True,
                            claim_by=now + timedelta(hours=1), due_at=now + timedelta(days=3))
    assert approved.stall_deadline() == now + timedelta(days=3)


@pytest.mark.parametrize(("status", "action", "actor"), [
    (Status.claimed, Action.reassign, MANAGER), (Status.claimed, Action.release, OWNER),
    (Status.open, Action.claim, Actor("UNEWCOMER")),
])
def test_a_snooze_ends_when_the_handoff_changes_hands(
    config: HandoffConfig, status: Status, action: Action, actor: Actor
) -> None:
    """A snooze is its owner's (or its queue's) "later": the next owner or the queue is reminded on their own
    schedule, not silenced until someone else's tomorrow."""
    handoff = handoff_in_status(status, snoozed_until=NOW + timedelta(days=2))
    change = decide(handoff, request_for(action, new_owner="UBEN"), actor, config, NOW)
    assert change.updates["snoozed_until"] is None


def test_an_edit_keeps_the_snooze(config: HandoffConfig) -> None:
    handoff = handoff_in_status(Status.claimed, snoozed_until=NOW + timedelta(days=2))
    change = decide(handoff, request_for(Action.edit, edit=HandoffEdit(due_at=NOW + timedelta(days=5))), OWNER,
                    config, NOW)
    assert "snoozed_until" not in change.updates
