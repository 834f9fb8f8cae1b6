"""The SLA sweep's storage: what is due (an index range of `nudge_schedule`), taken and settled atomically.

One write transaction per batch reads the due handoffs, lets the caller decide each one, and writes the
decisions back with their events and outbox rows. The due rows are read with the policy's columns only:
the texts, facts and lists cost more to read and map than the whole decision, and only an escalation's
webhook needs them, so the caller loads whole handoffs for just those (in the same transaction).

On PostgreSQL the rows are read `FOR UPDATE SKIP LOCKED`, so several processes (or lanes of one, see
bot/sweep.py) sweeping one database take disjoint handoffs and send each nudge once; on SQLite the transaction
holds the database's write lock. A nudge or escalation bumps the handoff's version, so that a transition
decided on the state before it fails its compare-and-set and is decided again (and reschedules from the new
nudge count). A handoff the sweep only looks at again later keeps its `handoffs` row untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, insert, select, text
from sqlalchemy.orm import Session

from handoffs.model import Handoff, Status, Urgency
from handoffs.ports import Effect
from storage.db import Database, is_postgres
from storage.outbox import PENDING
from storage.repository import to_domain
from storage.schedule import SCHEDULE, reschedule_many
from storage.tables import EventRow, HandoffRow, OutboxRow

SWEEP_ACTOR = "sla"  # the actor of the sweep's events

_HANDOFFS: Table = HandoffRow.__table__  # type: ignore[attr-defined]
_EVENTS: Table = EventRow.__table__  # type: ignore[attr-defined]
_OUTBOX: Table = OutboxRow.__table__  # type: ignore[attr-defined]

# executemany over the handoffs acted on; the SET clause comes from the parameters' keys (nudge_count,
# escalated_at, last_nudged_at, version), none of them indexed: on PostgreSQL the update is HOT when the page has
# room
_SETTLE = _HANDOFFS.update().where(_HANDOFFS.c.id == bindparam("handoff_id"))
# PostgreSQL: the same as one statement over arrays
_SETTLE_ARRAYS = text(
    "UPDATE handoffs AS h SET nudge_count = v.nudge_count, escalated_at = v.escalated_at, "
    "last_nudged_at = v.last_nudged_at, version = v.version "
    "FROM unnest(CAST(:ids AS bigint[]), CAST(:nudge_counts AS integer[]), CAST(:escalated_ats AS timestamptz[]), "
    "CAST(:last_nudged_ats AS timestamptz[]), CAST(:versions AS integer[])) "
    "AS v(id, nudge_count, escalated_at, last_nudged_at, version) WHERE h.id = v.id"
)
_INSERT_EVENT = insert(_EVENTS)
_INSERT_OUTBOX = insert(_OUTBOX)
# PostgreSQL's types of the columns the sweep copies in (a `json` column takes the dict itself)
_EVENT_TYPES = {"handoff_id": "int8", "action": "text", "actor": "text", "at": "timestamptz", "from_status": "text",
                "to_status": "text", "data": "json"}
_OUTBOX_TYPES = {"handoff_id": "int8", "kind": "text", "target": "text", "payload": "json",
                 "next_attempt_at": "timestamptz", "created_at": "timestamptz", "state": "text", "attempts": "int4"}

# What handoffs/nudges.py and bot/sweep.py read of a due handoff (plus the fields a Handoff cannot go without)
_POLICY_COLUMNS = [_HANDOFFS.c[name] for name in (
    "id", "version", "status", "kind", "urgency", "title", "next_action", "created_at", "updated_at", "owner",
    "approvers", "requires_approval", "route", "queue", "channel", "claim_by", "due_at", "snoozed_until",
    "nudge_count", "escalated_at", "last_nudged_at",
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
            .join_from(SCHEDULE, _HANDOFFS, _HANDOFFS.c.id == SCHEDULE.c.handoff_id)
            .where(SCHEDULE.c.next_nudge_at <= now)
            .order_by(SCHEDULE.c.next_nudge_at, SCHEDULE.c.handoff_id)
            .limit(limit)
        )
        # Both tables' rows are locked: a sweep that meets a row another one has just settled then re-reads
        # its schedule row and sees it no longer due (locking the handoffs alone would act on it twice).
        return query if self.db.is_sqlite else query.with_for_update(skip_locked=True)

    def due_owners(self, now: datetime, *, limit: int = 1000) -> set[str]:
        """The owners of what is due (a read, outside the sweep's transaction), e.g. to learn their time zones."""
        query = (
            select(_HANDOFFS.c.owner)
            .join_from(SCHEDULE, _HANDOFFS, _HANDOFFS.c.id == SCHEDULE.c.handoff_id)
            .where(SCHEDULE.c.next_nudge_at <= now, _HANDOFFS.c.owner.is_not(None))
            .order_by(SCHEDULE.c.next_nudge_at)
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
    reschedule_many(session, [(item.handoff.id, item.next_nudge_at) for item in settled])
    acted = [item for item in settled if item.acted]
    handoffs = [_settle_values(item, now) for item in acted]
    events = [_event_values(item, now) for item in acted]
    outbox = [
        dict(handoff_id=item.handoff.id, kind=effect.kind, target=effect.target, payload=effect.payload,
             next_attempt_at=now, created_at=now, state=PENDING, attempts=0)
        for item in settled for effect in item.effects
    ]
    if is_postgres(session):
        _write_postgres(session, handoffs, events, outbox)
        return
    for statement, rows in ((_SETTLE, handoffs), (_INSERT_EVENT, events), (_INSERT_OUTBOX, outbox)):
        if rows:
            session.execute(statement, rows)


def _write_postgres(session: Session, handoffs: list[dict[str, Any]], events: list[dict[str, Any]],
                    outbox: list[dict[str, Any]]) -> None:
    """One statement per table instead of one per row (measured: half the tick at a million handoffs)."""
    if handoffs:
        session.execute(_SETTLE_ARRAYS, {
            "ids": [row["handoff_id"] for row in handoffs],
            "nudge_counts": [row["nudge_count"] for row in handoffs],
            "escalated_ats": [row["escalated_at"] for row in handoffs],
            "last_nudged_ats": [row["last_nudged_at"] for row in handoffs],
            "versions": [row["version"] for row in handoffs],
        })
    if events:
        _copy(session, _EVENTS, events, _EVENT_TYPES)
    if outbox:
        _copy(session, _OUTBOX, outbox, _OUTBOX_TYPES)


def _copy(session: Session, table: Table, rows: list[dict[str, Any]], types: dict[str, str]) -> None:
    """PostgreSQL's binary COPY into `table`, in the session's transaction: an executemany of INSERTs costs the
    server a statement per row and the client a round of SQLAlchemy's parameter processing per row."""
    columns = list(types)
    cursor = session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(list(types.values()))
        for row in rows:
            copy.write_row([row[column] for column in columns])


def _settle_values(item: Settled, now: datetime) -> dict[str, Any]:
    handoff = item.handoff
    return dict(
        handoff_id=handoff.id,
        nudge_count=handoff.nudge_count if item.nudge_count is None else item.nudge_count,
        escalated_at=item.escalated_at or handoff.escalated_at,
        last_nudged_at=now if item.nudge_count is not None else handoff.last_nudged_at,
        version=handoff.version + 1,
    )


def _event_values(item: Settled, now: datetime) -> dict[str, Any]:
    status = item.handoff.status.value
    return dict(handoff_id=item.handoff.id, action=item.event, actor=SWEEP_ACTOR, at=now, from_status=status,
                to_status=status, data=item.data)
