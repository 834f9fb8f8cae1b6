"""The use cases: submit a handoff, act on one. Decisions are pure; the store makes them atomic."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from handoffs.config import HandoffConfig
from handoffs.effects import effects_for_change, effects_for_created, private_notice, source_reply
from handoffs.intake import FieldError, IntakeRejected, plan_intake
from handoffs.lifecycle import (
    Action,
    Actor,
    Change,
    Refused,
    Request,
    check_allowed,
    decide,
    is_manager,
    is_owner,
    may_answer_nudge,
)
from handoffs.model import Handoff, HandoffIn, Status, ref_of
from handoffs.nudges import StallReason
from handoffs.ports import CreateResult, Effect, HandoffStore
from handoffs.webhooks import submitter, webhook_effects, webhook_effects_for_change

MAX_CAS_ATTEMPTS = 8
RECENT_EVENTS = 50  # how far back a repeated answer to a reminder is looked for
ANSWER_AFRESH_AFTER = frozenset({"nudged", "claimed", "released", "reassigned", "reopened"})  # a reminder, new hands
MANUAL_NUDGE_INTERVAL = timedelta(minutes=5)  # a manager's nudge within this of the last one is a repeat
CALLBACKS_OFF = "callbacks are not enabled on this server (it has no HANDOFF_WEBHOOK_SECRET to sign them with)"


class FormAlreadySent(Exception):
    """The same Slack form came again after its change was made: done, nothing to refuse."""

    def __init__(self, handoff: Handoff) -> None:
        self.handoff = handoff
        super().__init__(f"{handoff.ref}: this form was sent already")


class NotFound(Exception):
    def __init__(self, handoff_id: int) -> None:
        self.handoff_id = handoff_id
        super().__init__(f"{ref_of(handoff_id)} does not exist")


RequestFor = Callable[[Handoff], Request]  # a request made from the handoff as read


@dataclass(frozen=True)
class Acted:
    handoff: Handoff
    change: Change


def utc_now() -> datetime:
    return datetime.now(UTC)


class HandoffService:
    def __init__(
        self, store: HandoffStore, config: HandoffConfig, clock: Callable[[], datetime] = utc_now, *,
        accept_callbacks: bool = True,
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        # False when callbacks could not be signed (no HANDOFF_WEBHOOK_SECRET): a callback_url is refused.
        self.accept_callbacks = accept_callbacks

    def submit(
        self, payload: HandoffIn, *, actor: str, source_message: tuple[str, str] | None = None,
        extra_effects: Sequence[Effect] = (),
    ) -> CreateResult:
        """Validate, route and store a new handoff (or return the one it repeats).

        A handoff made from a Slack message (`source_message` = (channel, ts)) also replies in that
        message's thread with a link to its card. The effects, `extra_effects` included, are written
        with the new handoff in one transaction, and only when it is new (never for a repeat); so is the
        `created` webhook to its callback URL and the configured endpoints.
        """
        if payload.callback_url and not self.accept_callbacks:
            raise IntakeRejected([FieldError(("callback_url",), CALLBACKS_OFF, "callbacks_disabled")])
        now = self.clock()
        plan = plan_intake(payload, self.config, actor=actor, now=now)
        effects = effects_for_created(plan.channel)
        if source_message:
            plan.source_channel, plan.source_ts = source_message
            effects.append(source_reply(*source_message))
        effects.extend(extra_effects)
        return self.store.create(
            plan, effects=effects, dedupe_since=now - self.config.dedupe.window,
            derived_effects=lambda handoff: webhook_effects(handoff, "created", submitter(actor), self.config, at=now),
        )

    def get(self, handoff_id: int) -> Handoff:
        handoff = self.store.get(handoff_id)
        if handoff is None:
            raise NotFound(handoff_id)
        return handoff

    def act(
        self, handoff_id: int, request: Request | RequestFor, actor: Actor, *, notify_in: str | None = None
    ) -> Acted:
        """Apply one action atomically; raise Refused (logged) when it is not allowed.

        `request` may be made from the handoff as read for each attempt (a form checked against what it showed):
        then what it was made from is what the compare-and-set holds to. With `notify_in` (a channel), a refusal
        also sends the actor a private notice there. A request from a form this actor already sent raises
        FormAlreadySent, logging nothing.
        """
        action: Action | str = "act"
        for _ in range(MAX_CAS_ATTEMPTS):
            handoff = self.get(handoff_id)
            asked = request if isinstance(request, Request) else request(handoff)
            action = asked.action
            now = self.clock()
            try:
                change = decide(handoff, asked, actor, self.config, now)
            except Refused as refused:
                if asked.form and self._sent_before(handoff, asked.form, actor):
                    raise FormAlreadySent(handoff) from None
                self.refuse(handoff, refused, asked.action, actor, notify_in=notify_in)
                raise
            if asked.form:
                change.data["form"] = asked.form
            updated = self._apply(handoff, change, actor, now)
            if updated is not None:
                return Acted(updated, change)
        raise self._busy(handoff_id, action, actor, notify_in=notify_in)

    def _apply(
        self, handoff: Handoff, change: Change, actor: Actor, now: datetime, *, also_send: Sequence[Effect] = ()
    ) -> Handoff | None:
        effects = effects_for_change(handoff, change, actor)
        effects += webhook_effects_for_change(handoff, change, actor, self.config, at=now)
        effects += also_send
        return self.store.apply(handoff, change, actor=actor, effects=effects, now=now)

    def _sent_before(self, handoff: Handoff, form: str, actor: Actor) -> bool:
        """Whether `actor`'s change from this form is in the log (the form sent twice: Save pressed again)."""
        return any(event.actor == actor.id and event.data.get("form") == form
                   for event in self.store.events(handoff.id, limit=RECENT_EVENTS))

    def check(self, handoff_id: int, action: Action, actor: Actor, *, notify_in: str | None = None) -> Handoff:
        """The handoff, if `actor` may take `action` on it now; else Refused (logged, and noticed)."""
        handoff = self.get(handoff_id)
        try:
            check_allowed(handoff, action, actor, self.config)
        except Refused as refused:
            self.refuse(handoff, refused, action, actor, notify_in=notify_in)
            raise
        return handoff

    def _already_answered(self, handoff: Handoff, reason: StallReason, actor: Actor) -> bool:
        """`actor` gave this answer since the last reminder or change of hands (a double click, a second copy of
        one reminder): it is noted, and told, once."""
        for event in reversed(self.store.events(handoff.id, limit=RECENT_EVENTS)):
            if event.action in ANSWER_AFRESH_AFTER:
                return False
            if event.action == "stall_reason" and event.actor == actor.id and event.data.get("reason") == reason.value:
                return True
        return False

    def refuse(
        self, handoff: Handoff, refused: Refused, action: Action | str, actor: Actor, *, notify_in: str | None = None
    ) -> None:
        notices = [private_notice(notify_in, actor.id, refused.reason)] if notify_in and not actor.is_system else []
        attempted = action.value if isinstance(action, Action) else action
        self.store.log_refusal(handoff, refused, action=attempted, actor=actor, now=self.clock(), effects=notices)

    def _busy(self, handoff_id: int, action: Action | str, actor: Actor, *, notify_in: str | None) -> Refused:
        """Every compare-and-set lost: the refusal to raise, told and logged."""
        busy = Refused("busy", f"{ref_of(handoff_id)} is changing quickly right now; try again.")
        self.refuse(self.get(handoff_id), busy, action, actor, notify_in=notify_in)
        return busy

    def nudge(
        self, handoff_id: int, actor: Actor, *, message: Callable[[Handoff], list[Effect]],
        notify_in: str | None = None,
    ) -> Handoff:
        """A manager's nudge from `/handoff stalled`: logged as `nudged`, delivered as `message` says; once, however
        often it is clicked within MANUAL_NUDGE_INTERVAL (a double click, two managers at once)."""
        for _ in range(MAX_CAS_ATTEMPTS):
            handoff = self.get(handoff_id)
            refused, sent = self._why_not_nudge(handoff, actor, message)
            if refused is not None:
                self.refuse(handoff, refused, "nudge", actor, notify_in=notify_in)
                raise refused
            data = {"reason": "manager", "to": handoff.owner or handoff.queue or handoff.channel}
            # Bumping the version makes a copy of this click read before it was written find it on its next pass.
            if self.store.record_unless_changed(handoff, "nudged", actor=actor, now=self.clock(), data=data,
                                                effects=sent):
                return handoff
        raise self._busy(handoff_id, "nudge", actor, notify_in=notify_in)

    def _why_not_nudge(
        self, handoff: Handoff, actor: Actor, message: Callable[[Handoff], list[Effect]],
    ) -> tuple[Refused | None, list[Effect]]:
        """The refusal of a manager's nudge, or None and what the nudge sends."""
        if not is_manager(actor, self.config):
            return Refused("not_allowed", f"Only a manager can nudge about {handoff.ref}."), []
        if handoff.is_terminal:
            return Refused("terminal", f"{handoff.ref} is already {handoff.status.value}; nobody to nudge."), []
        if self._nudged_lately(handoff):
            minutes = int(MANUAL_NUDGE_INTERVAL.total_seconds() // 60)
            return Refused("already_noted", f"Already nudged: {handoff.ref} had a nudge in the last {minutes} "
                                            f"minutes."), []
        if not (sent := message(handoff)):
            return Refused("nobody_to_nudge", f"{handoff.ref} has no owner and no card to remind its queue in, "
                                              f"so a nudge would reach nobody: assign it with "
                                              f"`/handoff assign {handoff.ref} @someone`."), []
        return None, sent

    def _nudged_lately(self, handoff: Handoff) -> bool:
        since = self.clock() - MANUAL_NUDGE_INTERVAL
        return any(event.action == "nudged" and event.data.get("reason") == "manager" and event.at >= since
                   for event in self.store.events(handoff.id, limit=RECENT_EVENTS))

    def answer_nudge(
        self, handoff_id: int, reason: StallReason, actor: Actor, *, told: Callable[[Handoff], list[Effect]],
        notify_in: str | None = None,
    ) -> Handoff:
        """Someone says why a reminded handoff is stuck: logged as `stall_reason` (counted in the figures).

        "wrong owner" from its owner also puts it back in the queue. `told` says who hears of it and how.
        """
        for _ in range(MAX_CAS_ATTEMPTS):
            handoff = self.get(handoff_id)
            refused = self._why_not_answer(handoff, reason, actor)
            if refused is not None:
                self.refuse(handoff, refused, "stall_reason", actor, notify_in=notify_in)
                raise refused
            if reason is StallReason.wrong_owner and handoff.status is Status.claimed and is_owner(actor, handoff):
                if (released := self._release_as_wrong_owner(handoff, actor, told)) is not None:
                    return released
                continue
            # Bumping the version makes "already noted" hold for copies of this answer read before it was written.
            if self.store.record_unless_changed(handoff, "stall_reason", actor=actor, now=self.clock(),
                                                data={"reason": reason.value}, effects=told(handoff)):
                return handoff
        raise self._busy(handoff_id, "stall_reason", actor, notify_in=notify_in)

    def _release_as_wrong_owner(
        self, handoff: Handoff, actor: Actor, told: Callable[[Handoff], list[Effect]]
    ) -> Handoff | None:
        """The owner's "wrong owner": released and the answer logged in one compare-and-set, so another copy of it
        finds both or neither. None when something else was written first."""
        now = self.clock()
        change = decide(handoff, Request(Action.release), actor, self.config, now)
        change.also.append(("stall_reason", {"reason": StallReason.wrong_owner.value}))
        released = replace(handoff, status=change.to_status, **change.updates)
        return self._apply(handoff, change, actor, now, also_send=told(released))

    def _why_not_answer(self, handoff: Handoff, reason: StallReason, actor: Actor) -> Refused | None:
        if handoff.is_terminal:
            return Refused("terminal", f"{handoff.ref} is already {handoff.status.value}; nothing is stuck.")
        if self._already_answered(handoff, reason, actor):
            return Refused("already_noted", f"Already noted: you said {handoff.ref} is *{reason.value}*.")
        if not may_answer_nudge(handoff, actor, self.config):
            return Refused("not_allowed", f"Only whoever {handoff.ref} waits for can say why it is stuck.")
        return None
