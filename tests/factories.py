"""Small builders shared by the test tiers: payloads as producers send them, handoffs as the domain sees them."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from bot.runtime import Runtime
from handoffs.model import Handoff, HandoffIn, Status, Urgency
from storage.tables import EventRow, HandoffRow, OutboxRow

NOW = datetime(2025, 3, 12, 10, 0, tzinfo=UTC)  # a Wednesday, 11:00 in Berlin
_numbers = itertools.count(1)


def payload(**overrides: Any) -> dict[str, Any]:
    """A valid JSON body for POST /api/handoffs; each call has a distinct title (so no dedupe)."""
    body: dict[str, Any] = {"title": f"Call ACME back #{next(_numbers)}", "next_action": "Phone Jane about the quote"}
    body.update(overrides)
    return body


def lead(**overrides: Any) -> dict[str, Any]:
    facts = {"company": "ACME", "contact": "jane@acme.test"}
    values: dict[str, Any] = {"kind": "lead", "intent": "demo", "facts": facts}
    values.update(overrides)
    return payload(**values)


def handoff_in(**overrides: Any) -> HandoffIn:
    return HandoffIn.model_validate(payload(**overrides))


def make_handoff(**fields: Any) -> Handoff:
    """A stored handoff for pure lifecycle tests: claimed by UOWNER, approver UAPPROVER, route default."""
    values: dict[str, Any] = {
        "id": 42,
        "title": "Send the quote",
        "next_action": "Email it",
        "kind": "task",
        "status": Status.claimed,
        "urgency": Urgency.normal,
        "version": 3,
        "created_at": NOW - timedelta(hours=1),
        "updated_at": NOW - timedelta(hours=1),
        "owner": "UOWNER",
        "approvers": ["UAPPROVER"],
        "route": "default",
        "queue": None,
        "channel": "CHANDOFFS",
        "claim_by": NOW + timedelta(hours=3),
        "due_at": NOW + timedelta(days=3),
    }
    values.update(fields)
    return Handoff(**values)


def counts(runtime: Runtime) -> dict[str, int]:
    """Rows in each table that a write may touch: the before/after of 'nothing was stored'."""
    with runtime.db.read() as session:
        return {
            table.__tablename__: int(session.execute(select(func.count()).select_from(table)).scalar_one())
            for table in (HandoffRow, EventRow, OutboxRow)
        }
