"""The `handoff_approvers` side table: one indexed row per (handoff, approver).

`handoffs.approvers` is a JSON list, and a "contains this user" query on JSON is neither portable
between SQLite and PostgreSQL nor indexable on both. The repository keeps this table in step in the
same transaction as every write of a handoff (create, and each change), so "awaiting my approval"
is one index range: `pending` mirrors "requires approval, open or claimed, not approved yet".
"""

from __future__ import annotations

from sqlalchemy import Table, delete, insert, update
from sqlmodel import Session

from handoffs.model import Handoff
from storage.tables import HandoffApproverRow

APPROVERS: Table = HandoffApproverRow.__table__  # type: ignore[attr-defined]


def approval_pending(handoff: Handoff) -> bool:
    """The handoff waits for one of its approvers to approve (or reject) it."""
    return handoff.awaiting_approval and handoff.approved_at is None


def write_approvers(session: Session, handoff: Handoff) -> None:
    """One row per approver of a handoff that has none yet (a new handoff)."""
    users = list(dict.fromkeys(handoff.approvers))
    if users:
        pending = approval_pending(handoff)
        session.execute(insert(APPROVERS), [
            {"handoff_id": handoff.id, "user_id": user, "pending": pending} for user in users
        ])


def sync_approvers(session: Session, before: Handoff, after: Handoff) -> None:
    """After a change: the rows follow the approvers and the pending flag (most changes touch neither)."""
    if list(before.approvers) != list(after.approvers):
        session.execute(delete(APPROVERS).where(APPROVERS.c.handoff_id == after.id))
        write_approvers(session, after)
    elif after.approvers and approval_pending(before) != approval_pending(after):
        session.execute(
            update(APPROVERS).where(APPROVERS.c.handoff_id == after.id).values(pending=approval_pending(after))
        )
