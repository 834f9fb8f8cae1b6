"""The SLA sweep: every `nudges.check_every`, nudge and escalate what is due (handoffs/nudges.py decides).

Each tick reads only the due handoffs (an index range on `next_nudge_at`), in batches that are each one
transaction, and writes every nudge and escalation with its event and its outbox rows; the outbox sends
them. With several processes on one PostgreSQL database, each takes disjoint rows (storage/sweep.py).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from bot.people import People
from bot.runtime import Runtime
from handoffs.effects import ESCALATION, NUDGE, THREAD_REPLY, UPDATE_CARD
from handoffs.lifecycle import Actor
from handoffs.model import Handoff
from handoffs.nudges import Decision, Step, decide
from handoffs.ports import Effect
from handoffs.webhooks import webhook_effects
from storage.sweep import SWEEP_ACTOR, LoadWhole, Settled, SweepStore

log = logging.getLogger("handoff_bot.sweep")

BATCH = 500
# Batches swept side by side on PostgreSQL (each takes its own rows, FOR UPDATE SKIP LOCKED): while one waits on
# the server, the other decides in Python. SQLite has one writer, so one lane.
POSTGRES_LANES = 2


@dataclass(frozen=True)
class TickResult:
    nudged: int = 0
    escalated: int = 0
    rescheduled: int = 0

    @property
    def acted(self) -> int:
        return self.nudged + self.escalated


class Sweeper:
    def __init__(self, runtime: Runtime, people: People | None = None, *, batch: int = BATCH) -> None:
        self.runtime = runtime
        self.config = runtime.config
        self.people = people
        self.store = SweepStore(runtime.db)
        self.batch = batch
        self.lanes = 1 if runtime.db.is_sqlite else POSTGRES_LANES

    def tick(self) -> TickResult:
        """One sweep at the runtime's clock: act on everything due, batch after batch."""
        now = self.runtime.clock()
        if self.people is not None and self.config.nudges.business_hours_only:
            self.people.warm(self.store.due_owners(now))
        settled = self._sweep_lanes(now)
        result = TickResult(
            nudged=sum(item.event == "nudged" for item in settled),
            escalated=sum(item.event == "escalated" for item in settled),
            rescheduled=sum(not item.acted for item in settled),
        )
        if result.acted:
            log.info("sweep: %d nudged, %d escalated", result.nudged, result.escalated)
            self.runtime.notify()
        return result

    def _sweep_lanes(self, now: datetime) -> list[Settled]:
        if self.lanes == 1:
            return self._sweep_lane(now)
        with ThreadPoolExecutor(self.lanes, thread_name_prefix="sweep") as pool:
            lanes = [pool.submit(self._sweep_lane, now) for _ in range(self.lanes)]
            return [item for lane in lanes for item in lane.result()]

    def _sweep_lane(self, now: datetime) -> list[Settled]:
        """Batch after batch until one comes back short: nothing more is due that another lane has not taken."""
        settled: list[Settled] = []
        while True:
            batch = self.store.sweep(now, lambda due, whole: self.settle(due, whole, now), limit=self.batch)
            settled.extend(batch)
            if len(batch) < self.batch:
                return settled

    def run_safely(self) -> None:
        """The scheduler's job: a failed tick (database away) is logged, and the next one tries again."""
        try:
            self.tick()
        except Exception:
            log.exception("SLA sweep failed; retrying at the next tick")

    def settle(self, due: list[Handoff], whole: LoadWhole, now: datetime) -> list[Settled]:
        """The decisions about a batch of due handoffs (given with the policy's columns; the escalating ones
        are loaded whole for their webhooks). One the policy cannot decide waits an hour, logged, rather
        than stopping every other one behind it."""
        decided = [(handoff, self._decide_safely(handoff, now)) for handoff in due]
        escalating = whole([handoff.id for handoff, decision in decided
                            if decision is not None and decision.step is Step.escalate])
        return [self._settle_safely(escalating.get(handoff.id, handoff), decision, now)
                for handoff, decision in decided]

    def _decide_safely(self, handoff: Handoff, now: datetime) -> Decision | None:
        try:
            return self._decide(handoff, now)
        except Exception:
            log.exception("SLA sweep could not decide about %s; looking again in an hour", handoff.ref)
            return None

    def _decide(self, handoff: Handoff, now: datetime) -> Decision:
        if self._zone_not_looked_up(handoff):  # warm() reaches them at the next tick, or the one after
            return Decision(Step.wait, now + self.config.nudges.check_every)
        zone = self.people.zone_of(handoff.owner) if self.people and handoff.owner else self.config.zone
        return decide(handoff, self.config, now, zone)

    def _zone_not_looked_up(self, handoff: Handoff) -> bool:
        """With business hours, an owner whose zone is not known yet (more new owners due than one tick looks
        up) is not judged in the team's zone, where their night may be business hours."""
        return (self.people is not None and self.config.nudges.business_hours_only and handoff.owner is not None
                and not self.people.knows(handoff.owner))

    def _settle_safely(self, handoff: Handoff, decision: Decision | None, now: datetime) -> Settled:
        try:
            if decision is not None:
                return self._settle(handoff, decision, now)
        except Exception:
            log.exception("SLA sweep could not act on %s; looking again in an hour", handoff.ref)
        return Settled(handoff, now + timedelta(hours=1))

    def _settle(self, handoff: Handoff, decision: Decision, now: datetime) -> Settled:
        if decision.step is Step.nudge:
            return self._nudge(handoff, decision)
        if decision.step is Step.escalate:
            return self._escalate(handoff, decision, now)
        return Settled(handoff, decision.look_again_at)

    def _nudge(self, handoff: Handoff, decision: Decision) -> Settled:
        payload = {"reason": _event_data(decision)["reason"], "number": decision.nudge_number,
                   "of": self.config.nudges.max_nudges}
        if decision.in_card_thread:
            targets: list[str] = [handoff.queue or handoff.channel or ""]
            effects = [Effect(NUDGE, handoff.channel, {**payload, "in_thread": True})] if handoff.channel else []
        else:
            targets = list(decision.recipients)
            effects = [Effect(NUDGE, user, payload) for user in decision.recipients]
        data = {**_event_data(decision), "to": targets, "number": decision.nudge_number}
        return Settled(handoff, decision.look_again_at, "nudged", data, effects,
                       nudge_count=decision.nudge_number)

    def _escalate(self, handoff: Handoff, decision: Decision, now: datetime) -> Settled:
        data = {**_event_data(decision), "to": list(decision.escalate_to), "nudges": handoff.nudge_count}
        effects = [Effect(ESCALATION, target, {"reason": data["reason"], "nudges": handoff.nudge_count})
                   for target in decision.escalate_to]
        if handoff.channel:
            reply = {"event": "escalated", "actor": SWEEP_ACTOR, "actor_is_system": True, "data": data}
            effects += [Effect(UPDATE_CARD, handoff.channel), Effect(THREAD_REPLY, handoff.channel, reply)]
        after = replace(handoff, escalated_at=now, version=handoff.version + 1)
        effects += webhook_effects(after, "escalated", Actor.system(SWEEP_ACTOR), self.config, at=now)
        return Settled(handoff, None, "escalated", data, effects, escalated_at=now)


def _event_data(decision: Decision) -> dict[str, Any]:
    return {"reason": decision.reason.value if decision.reason else None,
            "late_by_seconds": int(decision.late_by.total_seconds())}
