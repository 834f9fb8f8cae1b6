"""The SLA sweep's storage: what is due (an index range on `next_nudge_at`), taken and settled atomically.

One write transaction per batch reads the due handoffs, lets the caller decide each one, and writes the
decisions back with their events and outbox rows. The due rows are read with the policy's columns only:
the texts, facts and lists cost more to read and map than the whole decision, and only an escalation's
webhook needs them, so the caller loads whole handoffs for just those (in the same transaction).

On PostgreSQL the rows are read `FOR UPDATE SKIP LOCKED`, so several processes sweeping one database take
disjoint handoffs and send each nudge once; on SQLite the transaction holds the database's write lock. A
nudge or escalation bumps the handoff's version, so that a transition decided on the state before it fails
its compare-and-set and is decided again (and reschedules from the new nudge count).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, insert, select
from sqlalchemy.orm import Session

from handoffs.model import Handoff, Status, Urgency
from handoffs.ports import Effect
from storage.db import Database
from storage.repository import to_domain
from storage.tables import EventRow, HandoffRow, OutboxRow

_HANDOFFS: Table = HandoffRow.__table__  # type: ignore[attr-defined]
_EVENTS: Table = EventRow.__table__  # type: ignore[attr-defined]
_OUTBOX: Table = OutboxRow.__table__  # type: ignore[attr-defined]

# executemany: the SET clause comes from the parameters' keys (next_nudge_at, nudge_count, escalated_at, version)
_SETTLE = _HANDOFFS.update().where(_HANDOFFS.c.id == bindparam("handoff_id"))
_INSERT_EVENT = insert(_EVENTS)
_INSERT_OUTBOX = insert(_OUTBOX)

# What handoffs/nudges.py and bot/sweep.py read of a due handoff (plus the fields a Handoff cannot go without)
_POLICY_COLUMNS = [_HANDOFFS.c[name] for name in (
    "id", "version", "status", "kind", "urgency", "title", "next_action", "created_at", "updated_at", "owner",
    "approvers", "requires_approval", "route", "queue", "channel", "claim_by", "due_at", "snoozed_until",
    "nudge_count", "escalated_at",
)]
_POLICY_NAMES = tuple(column.name for column in _POLICY_COLUMNS)


@dataclass(frozen=True)
class Settled:
    """What the sweep decided about one handoff: its next look, and the event and effects to write, if any."""

    handoff: Handoff
    next_nudge_at: datetime | None
    event: str | None = None  # "nudged" / "escalated"; None when it only waits
    data: dict[str, Any] = field(default_factory=dict)
    effects: Sequence[Effect] = ()
    nudge_count: int | None = None  # new value, when it changes
    escalated_at: datetime | None = None  # new value, when it escalates

    @property
    def acted(self) -> bool:
        return self.event is not None


LoadWhole = Callable[[Sequence[int]], dict[int, Handoff]]
"""Whole handoffs by id, read in the sweep's transaction (so at the version that was decided on)."""

Settle = Callable[[list[Handoff], LoadWhole], list[Settled]]
"""Decides a batch of due handoffs, each given with the policy's columns only (see the module's doc)."""


def policy_view(row: Any) -> Handoff:
    """A due handoff with the policy's columns; its texts, facts and lists are left empty."""
    values = dict(zip(_POLICY_NAMES, row, strict=True))
    values["status"] = Status(values["status"])
    values["urgency"] = Urgency(values["urgency"])
    values["approvers"] = list(values["approvers"] or ())
    return Handoff(**values)


class SweepStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def _due_query(self, now: datetime, limit: int) -> Any:
        query = (
            select(*_POLICY_COLUMNS)
            .where(_HANDOFFS.c.next_nudge_at <= now)
            .order_by(_HANDOFFS.c.next_nudge_at, _HANDOFFS.c.id)
            .limit(limit)
        )
        return query if self.db.is_sqlite else query.with_for_update(skip_locked=True)

    def due_owners(self, now: datetime, *, limit: int = 1000) -> set[str]:
        """The owners of what is due (a read, outside the sweep's transaction), e.g. to learn their time zones."""
        query = (
            select(_HANDOFFS.c.owner)
            .where(_HANDOFFS.c.next_nudge_at <= now, _HANDOFFS.c.owner.is_not(None))
            .order_by(_HANDOFFS.c.next_nudge_at)
            .limit(limit)
        )
        with self.db.read() as session:
            return {owner for (owner,) in session.execute(query)}

    def sweep(self, now: datetime, settle: Settle, *, limit: int = 500) -> list[Settled]:
        """Take up to `limit` due handoffs, decide them, and write the decisions, in one transaction."""
        with self.db.write() as session:
            due = [policy_view(row) for row in session.execute(self._due_query(now, limit))]
            if not due:
                return []
            settled = settle(due, lambda ids: _whole(session, ids))
            _write(session, settled, now)
        return settled


def _whole(session: Session, ids: Sequence[int]) -> dict[int, Handoff]:
    if not ids:
        return {}
    rows = session.execute(select(*_HANDOFFS.c).where(_HANDOFFS.c.id.in_(ids)))
    return {handoff.id: handoff for handoff in map(to_domain, rows)}


def _write(session: Session, settled: list[Settled], now: datetime) -> None:
    session.execute(_SETTLE, [_settle_values(item) for item in settled])
    events = [_event_values(item, now) for item in settled if item.acted]
    if events:
        session.execute(_INSERT_EVENT, events)
    outbox = [
        dict(handoff_id=item.handoff.id, kind=effect.kind, target=effect.target, payload=effect.payload,
             next_attempt_at=now, created_at=now)
        for item in settled for effect in item.effects
    ]
    if outbox:
        session.execute(_INSERT_OUTBOX, outbox)


def _settle_values(item: Settled) -> dict[str, Any]:
    handoff = item.handoff
    return dict(
        handoff_id=handoff.id,
        next_nudge_at=item.next_nudge_at,
        nudge_count=handoff.nudge_count if item.nudge_count is None else item.nudge_count,
        escalated_at=item.escalated_at or handoff.escalated_at,
        version=handoff.version + 1 if item.acted else handoff.version,
    )


def _event_values(item: Settled, now: datetime) -> dict[str, Any]:
    status = item.handoff.status.value
    return dict(handoff_id=item.handoff.id, action=item.event, actor="sla", at=now, from_status=status,
                to_status=status, data=item.data)
