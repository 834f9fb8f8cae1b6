"""The reads behind the figures: a period's cohort of handoffs with their events, the stalled count, and the
period's webhook deliveries by state.

Implements `handoffs.metrics.MetricsSource`. Two queries in one read transaction: the handoffs created in
[since, until) (by `ix_handoffs_created_at`), then their events (by `ix_events_handoff`), joined on the same
filter instead of a long `IN (…)` list.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, func
from sqlalchemy import select as core_select
from sqlmodel import col, select

from handoffs.metrics import HandoffFacts
from handoffs.model import Event
from handoffs.webhooks import WEBHOOK, DeliveryCounts
from storage.db import Database
from storage.outbox import FAILED, PENDING, SENT
from storage.tables import EventRow, HandoffRow, OutboxRow

_EVENTS: Table = EventRow.__table__  # type: ignore[attr-defined]
_HANDOFFS: Table = HandoffRow.__table__  # type: ignore[attr-defined]
_EVENT_FIELDS = tuple(field.name for field in dataclasses.fields(Event))  # the columns, in Event's order


def _created_between(since: datetime, until: datetime) -> ColumnElement[bool]:
    return and_(col(HandoffRow.created_at) >= since, col(HandoffRow.created_at) < until)


class MetricsQueries:
    def __init__(self, db: Database) -> None:
        self.db = db

    def cohort(self, *, since: datetime, until: datetime) -> tuple[list[HandoffFacts], list[Event]]:
        """Handoffs created in [since, until) and their events at or before `until`, each in id order."""
        handoff_query = (
            core_select(col(HandoffRow.id), col(HandoffRow.kind), col(HandoffRow.route), col(HandoffRow.owner),
                        col(HandoffRow.created_by), col(HandoffRow.submitted_by), col(HandoffRow.created_at))
            .where(_created_between(since, until))
            .order_by(col(HandoffRow.id))
        )
        # Plain rows, not ORM objects: a busy quarter has hundreds of thousands of events, and building an
        # EventRow for each took twice as long as reading them (131,072 handoffs, 163,840 events: 4.5 s -> 1.9 s).
        event_query = (
            core_select(*(_EVENTS.c[name] for name in _EVENT_FIELDS))
            .join_from(_EVENTS, _HANDOFFS, _HANDOFFS.c.id == _EVENTS.c.handoff_id)
            .where(_created_between(since, until), _EVENTS.c.at <= until)
            .order_by(_EVENTS.c.handoff_id, _EVENTS.c.id)
        )
        with self.db.read() as session:
            handoffs = [_facts(row) for row in session.execute(handoff_query)]
            events = [_event(row) for row in session.execute(event_query)]
        return handoffs, events

    def webhook_deliveries(self, *, since: datetime, until: datetime) -> DeliveryCounts:
        """Webhook deliveries enqueued in [since, until), by state (sent, failed, still pending)."""
        query = (
            select(OutboxRow.state, func.count())
            .where(OutboxRow.kind == WEBHOOK, col(OutboxRow.created_at) >= since, col(OutboxRow.created_at) < until)
            .group_by(OutboxRow.state)
        )
        with self.db.read() as session:
            counts = {str(state): int(count) for state, count in session.execute(query)}
        return DeliveryCounts(sent=counts.get(SENT, 0), failed=counts.get(FAILED, 0), pending=counts.get(PENDING, 0))

    def count_stalled(self, *, now: datetime) -> int:
        """Handoffs stalled at `now` (SPEC §5): storage keeps each one's deadline in `stall_at`."""
        query = select(func.count()).select_from(HandoffRow).where(col(HandoffRow.stall_at) < now)
        with self.db.read() as session:
            return int(session.exec(query).one())


def _facts(row: Any) -> HandoffFacts:
    return HandoffFacts(id=row.id, kind=row.kind, created_at=row.created_at, route=row.route, owner=row.owner,
                        created_by=row.created_by, submitted_by=row.submitted_by)


def _event(row: Any) -> Event:
    event_id, handoff_id, action, actor, at, from_status, to_status, data = row
    return Event(event_id, handoff_id, action, actor, at, from_status, to_status, dict(data or {}))
