"""The transition table of SPEC §3 with its permission rules, as one pure function.

`decide` looks at a handoff as it is now and either returns the `Change` to
apply or raises `Refused` with a reason meant for the person who tried.
Storage applies the change with a compare-and-set on (status, version), so a
stale decision can never be written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from handoffs.config import NON_COMPLETING_OUTCOMES, HandoffConfig
from handoffs.model import EDITABLE_FIELDS, Handoff, HandoffEdit, Status
from handoffs.sla import claim_deadline, resolve_deadline

MAX_SNOOZE = timedelta(days=30)
# A snooze to within this of the one in force is the same snooze again (a double click, "1h" pressed twice).
SAME_SNOOZE = timedelta(minutes=1)
MAX_NOTE = 2000


class Action(StrEnum):
    claim = "claim"
    release = "release"
    reassign = "reassign"
    approve = "approve"
    edit = "edit"
    reject = "reject"
    close = "close"
    reopen = "reopen"
    snooze = "snooze"


PAST_TENSE = {
    Action.claim: "claimed",
    Action.release: "released",
    Action.reassign: "reassigned",
    Action.approve: "approved",
    Action.edit: "edited",
    Action.reject: "rejected",
    Action.close: "closed",
    Action.reopen: "reopened",
    Action.snooze: "snoozed",
}

ALLOWED_FROM: dict[Action, frozenset[Status]] = {
    Action.claim: frozenset({Status.open}),
    Action.release: frozenset({Status.claimed}),
    Action.reassign: frozenset({Status.open, Status.claimed, Status.approved}),
    Action.approve: frozenset({Status.open, Status.claimed}),
    Action.edit: frozenset({Status.open, Status.claimed}),
    Action.reject: frozenset({Status.open, Status.claimed}),
    Action.close: frozenset({Status.claimed, Status.approved}),
    Action.reopen: frozenset({Status.closed, Status.rejected}),
    Action.snooze: frozenset({Status.open, Status.claimed}),
}


@dataclass(frozen=True)
class Actor:
    """Who acts: a Slack user (`U…`), or a system such as an API token's name."""

    id: str
    is_system: bool = False

    @classmethod
    def system(cls, name: str) -> Actor:
        return cls(id=name, is_system=True)


@dataclass(frozen=True)
class Request:
    """An action with its arguments, as parsed from a button, a modal, a command or the API."""

    action: Action
    new_owner: str | None = None
    # Why the new owner cannot own a handoff (an app, a deactivated account), as the caller's directory says.
    new_owner_unfit: str | None = None
    outcome: str | None = None
    note: str | None = None
    reason: str | None = None
    until: datetime | None = None
    edit: HandoffEdit | None = None
    # The Slack form (view id) it was sent from: the same form sent again is done already, not refused.
    form: str | None = None


@dataclass
class Change:
    """What to write: new status, updated columns, and the event's data."""

    action: Action
    to_status: Status
    updates: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    # Further events (action, data) written in the same transaction, after the change's own.
    also: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def event(self) -> str:
        return PAST_TENSE[self.action]


class Refused(Exception):
    """The action is not allowed now or not by this person; `reason` is said to them privately."""

    def __init__(self, code: str, reason: str, **details: Any) -> None:
        self.code = code
        self.reason = reason
        self.details = details
        super().__init__(reason)


def mention(user_id: str | None) -> str:
    return f"<@{user_id}>" if user_id else "nobody"


def is_manager(actor: Actor, config: HandoffConfig) -> bool:
    return actor.is_system or actor.id in config.managers


def is_owner(actor: Actor, handoff: Handoff) -> bool:
    return handoff.owner is not None and actor.id == handoff.owner


def is_approver(actor: Actor, handoff: Handoff) -> bool:
    """Approvers decide; where none are set, the owner does."""
    if actor.is_system:
        return True
    return actor.id in handoff.approvers if handoff.approvers else is_owner(actor, handoff)


def _status_refusal(handoff: Handoff, action: Action) -> Refused:
    if action is Action.claim and handoff.status is Status.claimed:
        return Refused("already_claimed", f"{handoff.ref} is already claimed by {mention(handoff.owner)}",
                       owner=handoff.owner)
    if handoff.is_terminal:
        return Refused("terminal", f"{handoff.ref} is already {handoff.status.value}; nothing more can be done")
    return Refused("wrong_status", f"{handoff.ref} is {handoff.status.value}: it cannot be {PAST_TENSE[action]} now")


def _may_claim(handoff: Handoff, actor: Actor, config: HandoffConfig) -> bool:
    route = config.route_named(handoff.route)
    return route is None or route.claimers is None or actor.id in route.claimers or is_manager(actor, config)


def _owner_approver_or_manager(handoff: Handoff, actor: Actor, config: HandoffConfig) -> bool:
    return is_owner(actor, handoff) or actor.id in handoff.approvers or is_manager(actor, config)


def _approver_who(handoff: Handoff) -> str:
    return "an approver" if handoff.approvers else f"the owner ({mention(handoff.owner)})"


Permission = tuple[Callable[[Handoff, Actor, HandoffConfig], bool], Callable[[Handoff], str]]

PERMISSIONS: dict[Action, Permission] = {
    Action.claim: (_may_claim, lambda h: "the route's listed claimers"),
    Action.release: (lambda h, a, c: is_owner(a, h), lambda h: f"the owner ({mention(h.owner)})"),
    Action.reassign: (_owner_approver_or_manager, lambda h: "the owner, an approver or a manager"),
    Action.approve: (lambda h, a, c: is_approver(a, h), _approver_who),
    Action.edit: (lambda h, a, c: is_owner(a, h) or a.id in h.approvers or a.is_system,
                  lambda h: "the owner or an approver"),
    Action.reject: (lambda h, a, c: is_approver(a, h) or is_owner(a, h), lambda h: "an approver or the owner"),
    Action.close: (_owner_approver_or_manager, lambda h: "the owner, an approver or a manager"),
    Action.reopen: (lambda h, a, c: is_manager(a, c), lambda h: "a manager"),
    Action.snooze: (lambda h, a, c: may_answer_nudge(h, a, c), lambda h: "the owner, an approver or a manager"),
}


def may_answer_nudge(handoff: Handoff, actor: Actor, config: HandoffConfig) -> bool:
    """Who may snooze a reminder or say why it is stuck: whoever it is waiting for (the queue, while open)."""
    if handoff.status is Status.open and _may_claim(handoff, actor, config):
        return True
    return _owner_approver_or_manager(handoff, actor, config)


def check_allowed(handoff: Handoff, action: Action, actor: Actor, config: HandoffConfig) -> None:
    """Raise Refused unless `actor` may take `action` on `handoff` in its current status.

    Surfaces call this before showing a button or opening a modal, so nobody fills in a form they may not
    submit: a handoff no outcome may close yet (a lead awaiting its required approval) is refused here.
    """
    _check_status_and_role(handoff, action, actor, config)
    if action is Action.close and not closing_outcomes(handoff, config):
        raise Refused("needs_approval", f"{handoff.ref} needs approval before it can be closed.")


def _check_status_and_role(handoff: Handoff, action: Action, actor: Actor, config: HandoffConfig) -> None:
    if handoff.status not in ALLOWED_FROM[action]:
        raise _status_refusal(handoff, action)
    allowed, who = PERMISSIONS[action]
    if not allowed(handoff, actor, config):
        raise Refused("not_allowed", f"Only {who(handoff)} can {action.value} {handoff.ref}.")


def closing_outcomes(handoff: Handoff, config: HandoffConfig) -> list[str]:
    """The outcomes `handoff` may be closed with now: its kind's, and while it awaits a required approval only
    those that do not complete it (`no_action`, `duplicate`)."""
    outcomes = config.outcomes_for(handoff.kind)
    if handoff.requires_approval and handoff.status is not Status.approved:
        return [outcome for outcome in outcomes if outcome in NON_COMPLETING_OUTCOMES]
    return outcomes


def decide(
    handoff: Handoff, request: Request, actor: Actor, config: HandoffConfig, now: datetime
) -> Change:
    _check_status_and_role(handoff, request.action, actor, config)  # then the decider checks the outcome given
    return _DECIDERS[request.action](handoff, request, actor, config, now)


# A new owner (or none), or a new deadline, starts the nudge count again: nudges and escalation are per phase
# (handoffs/nudges.py).
_NEW_PHASE = {"nudge_count": 0, "escalated_at": None, "last_nudged_at": None}
# A snooze is one owner's (or the queue's) "later": whoever has it next is reminded on their own schedule.
_NEW_HANDS = {**_NEW_PHASE, "snoozed_until": None}


def _claim(handoff: Handoff, request: Request, actor: Actor, config: HandoffConfig, now: datetime) -> Change:
    return Change(
        Action.claim,
        Status.claimed,
        {"owner": actor.id, "claimed_at": handoff.claimed_at or now, **_NEW_HANDS},
        {"owner": actor.id},
    )


def _release(handoff: Handoff, request: Request, actor: Actor, config: HandoffConfig, now: datetime) -> Change:
    # Back in the queue with a claim deadline of its own: the first one passed long ago, and the queue would
    # be nudged for it at once.
    claim_by = claim_deadline(config, config.route_named(handoff.route), handoff.urgency, now)
    updates = {"owner": None, "queue": _queue_of(handoff), "claim_by": claim_by, **_NEW_HANDS}
    return Change(Action.release, Status.open, updates, {"previous_owner": handoff.owner})


def _reassign(handoff: Handoff, request: Request, actor: Actor, config: HandoffConfig, now: datetime) -> Change:
    if not request.new_owner:
        raise Refused("missing_argument", "Pick the person to hand it to.")
    if request.new_owner == handoff.owner:
        raise Refused("no_change", f"{handoff.ref} is already owned by {mention(handoff.owner)}.")
    if request.new_owner_unfit:
        raise Refused("not_a_person", request.new_owner_unfit)
    updates = {"owner": request.new_owner, "claimed_at": handoff.claimed_at or now, **_NEW_HANDS}
    to_status = Status.approved if handoff.status is Status.approved else Status.claimed
    return Change(Action.reassign, to_status, updates, {"from": handoff.owner, "to": request.new_owner})


def _approve(handoff: Handoff, request: Request, actor: Actor, config: HandoffConfig, now: datetime) -> Change:
    kind = config.kind(handoff.kind)
    note = _check_note(request.note)
    if kind and kind.close_on_approve:
        updates = {"approved_at": now, "decided_at": now, "closed_at": now, "outcome": "approved",
                   "outcome_note": note}
        return Change(Action.approve, Status.closed, updates, {"outcome": "approved", "note": note})
    return Change(Action.approve, Status.approved, {"approved_at": now, "decided_at": now, **_NEW_PHASE},
                  {"note": note})


def _edit(handoff: Handoff, request: Request, actor: Actor, config: HandoffConfig, now: datetime) -> Change:
    if request.edit is None:
        raise Refused("missing_argument", "Nothing to change.")
    changes = {}
    for name in EDITABLE_FIELDS:
        if name not in request.edit.model_fields_set:
            continue
        new = getattr(request.edit, name)
        old = getattr(handoff, name)
        if new != old:
            changes[name] = (old, new)
    if not changes:
        raise Refused("no_change", "Nothing was changed.")
    changes.update(_tightened_deadlines(handoff, changes, config, now))
    updates: dict[str, Any] = {name: new for name, (_, new) in changes.items()}
    # Reminders and escalation count from the deadline it is late for: a new due time for a handoff waiting to be
    # claimed (or approved) leaves that lateness as it was, already reminded and escalated.
    if replace(handoff, **updates).stall_deadline() != handoff.stall_deadline():
        updates.update(_NEW_PHASE)
    revision = {name: {"old": _jsonable(old), "new": _jsonable(new)} for name, (old, new) in changes.items()}
    return Change(Action.edit, handoff.status, updates, {"changes": revision})


def _tightened_deadlines(
    handoff: Handoff, changes: dict[str, tuple[Any, Any]], config: HandoffConfig, now: datetime,
) -> dict[str, tuple[Any, Any]]:
    """The deadlines an edit brings forward: a raised urgency's, and a claim deadline never after the due time
    (a due time moved earlier than it brings it along, as at intake)."""
    tightened = _raised_urgency_deadlines(handoff, changes, config, now)
    due_at = {**changes, **tightened}.get("due_at", (None, handoff.due_at))[1]
    claim_by = tightened.get("claim_by", (None, handoff.claim_by))[1]
    if due_at is not None and claim_by is not None and due_at < claim_by:
        tightened["claim_by"] = (handoff.claim_by, due_at)
    return tightened


def _raised_urgency_deadlines(
    handoff: Handoff, changes: dict[str, tuple[Any, Any]], config: HandoffConfig, now: datetime,
) -> dict[str, tuple[Any, Any]]:
    """A raised urgency brings its own SLA's deadlines, counted from now, where they come before the stored
    ones (SPEC §2: urgency drives SLA). A lowered one keeps them: a due time is never pushed out unasked, and
    the same form can move it."""
    if "urgency" not in changes:
        return {}
    urgency, route = changes["urgency"][1], config.route_named(handoff.route)
    tightened: dict[str, tuple[Any, Any]] = {}
    claim_by = claim_deadline(config, route, urgency, now)
    if handoff.claim_by is None or claim_by < handoff.claim_by:
        tightened["claim_by"] = (handoff.claim_by, claim_by)
    due_at = resolve_deadline(config, route, urgency, now)
    if "due_at" not in changes and (handoff.due_at is None or due_at < handoff.due_at):
        tightened["due_at"] = (handoff.due_at, due_at)
    return tightened


def _reject(handoff: Handoff, request: Request, actor: Actor, config: HandoffConfig, now: datetime) -> Change:
    reason = (request.reason or "").strip()
    if not reason:
        raise Refused("missing_argument", "A reason is required to reject.", field="reason")
    kept = _check_note(reason)
    updates = {"decided_at": now, "outcome": "rejected", "outcome_note": kept, "closed_at": now}
    return Change(Action.reject, Status.rejected, updates, {"reason": kept})


def _close(handoff: Handoff, request: Request, actor: Actor, config: HandoffConfig, now: datetime) -> Change:
    allowed = config.outcomes_for(handoff.kind)
    outcome = (request.outcome or "").strip()
    if not outcome:
        raise Refused("missing_argument", f"Choose an outcome: {', '.join(allowed)}.", field="outcome")
    if outcome not in allowed:
        raise Refused("bad_outcome", f"{outcome!r} is not an outcome of {handoff.kind!r}: use one of "
                      f"{', '.join(allowed)}.", field="outcome")
    if outcome not in closing_outcomes(handoff, config):
        raise Refused("needs_approval", f"{handoff.ref} needs approval before it can be closed as {outcome!r}.")
    note = _check_note(request.note)
    updates = {"outcome": outcome, "outcome_note": note, "closed_at": now}
    return Change(Action.close, Status.closed, updates, {"outcome": outcome, "note": note})


def _reopen(handoff: Handoff, request: Request, actor: Actor, config: HandoffConfig, now: datetime) -> Change:
    route = config.route_named(handoff.route)
    updates = {
        "owner": None, "queue": _queue_of(handoff), "outcome": None, "outcome_note": None, "closed_at": None,
        "decided_at": None, "approved_at": None, **_NEW_HANDS,
        "claim_by": claim_deadline(config, route, handoff.urgency, now),
    }
    if handoff.due_at is None or handoff.due_at <= now:  # a due time still ahead (a producer's) is kept
        updates["due_at"] = resolve_deadline(config, route, handoff.urgency, now)
    return Change(Action.reopen, Status.open, updates, {"previous_outcome": handoff.outcome,
                                                        "reason": _check_note(request.reason)})


def _snooze(handoff: Handoff, request: Request, actor: Actor, config: HandoffConfig, now: datetime) -> Change:
    if request.until is None or request.until <= now:
        raise Refused("bad_argument", "Snooze needs a time in the future.", field="until")
    if request.until - now > MAX_SNOOZE:
        raise Refused("bad_argument", "Snooze for at most 30 days.", field="until")
    in_force = handoff.snoozed_until if handoff.snoozed_until and handoff.snoozed_until > now else None
    if in_force is not None and abs(request.until - in_force) <= SAME_SNOOZE:
        raise Refused("already_noted", f"Already snoozed: {handoff.ref} waits until "
                                       f"{in_force:%Y-%m-%d %H:%M} UTC.")
    return Change(Action.snooze, handoff.status, {"snoozed_until": request.until}, {"until": request.until.isoformat()})


def _queue_of(handoff: Handoff) -> str | None:
    """Where an unowned handoff waits: its queue, or the channel of its card when routing gave it to a person."""
    return handoff.queue or handoff.channel


def _check_note(note: str | None) -> str | None:
    if note is None or not note.strip():
        return None
    if len(note) > MAX_NOTE:
        raise Refused("bad_argument", f"The note is too long: keep it under {MAX_NOTE:,} characters.", field="note")
    return note.strip()


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value.value if isinstance(value, StrEnum) else value


_DECIDERS = {
    Action.claim: _claim,
    Action.release: _release,
    Action.reassign: _reassign,
    Action.approve: _approve,
    Action.edit: _edit,
    Action.reject: _reject,
    Action.close: _close,
    Action.reopen: _reopen,
    Action.snooze: _snooze,
}
