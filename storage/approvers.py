"""The `handoff_approvers` side table: one indexed row per (handoff, approver).

An approver here is whoever may approve (SPEC §3): the handoff's approvers, or, where none are set, the owner of
a handoff that requires approval (a row that follows the owner as it changes hands).

`handoffs.approvers` is a JSON list, and a "contains this user" query on JSON is neither portable
between SQLite and PostgreSQL nor indexable on both. The repository keeps this table in step in the
same transaction as every write of a handoff (create, and each change), so "awaiting my approval"
is one index range: `pending` mirrors "requires approval, open or claimed, not approved yet".
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, delete, insert, text, update
from sqlmodel import Session

from handoffs.model import Handoff
from storage.db import Database
from storage.tables import HandoffApproverRow

APPROVERS: Table = HandoffApproverRow.__table__  # type: ignore[attr-defined]


APPROVER_COLUMNS = ("handoff_id", "user_id", "pending")  # of `approver_rows`


def approval_pending(handoff: Handoff) -> bool:
    """The handoff waits for one of its approvers to approve (or reject) it."""
    return handoff.awaiting_approval and handoff.approved_at is None


def deciders(handoff: Handoff) -> list[str]:
    """Who may approve it: its approvers; where none are set, the owner of one that requires approval."""
    if handoff.approvers:
        return list(dict.fromkeys(handoff.approvers))
    return [handoff.owner] if handoff.requires_approval and handoff.owner else []


def approver_rows(handoff: Handoff) -> list[dict[str, Any]]:
    """The rows of a handoff that has none yet: one per approver."""
    pending = approval_pending(handoff)
    return [{"handoff_id": handoff.id, "user_id": user, "pending": pending} for user in deciders(handoff)]


def write_approvers(session: Session, handoff: Handoff) -> None:
    rows = approver_rows(handoff)
    if rows:
        session.execute(insert(APPROVERS), rows)


def sync_approvers(session: Session, before: Handoff, after: Handoff) -> None:
    """After a change: the rows follow the approvers and the pending flag (most changes touch neither)."""
    if deciders(before) != deciders(after):
        session.execute(delete(APPROVERS).where(APPROVERS.c.handoff_id == after.id))
        write_approvers(session, after)
    elif deciders(after) and approval_pending(before) != approval_pending(after):
        session.execute(
            update(APPROVERS).where(APPROVERS.c.handoff_id == after.id).values(pending=approval_pending(after))
        )


_PENDING_SQL = "(h.requires_approval AND h.status IN ('open', 'claimed') AND h.approved_at IS NULL)"
# The owners who approve because no approvers are set (migration 0014's backfill).
_OWNERS_WHO_APPROVE_SQL = {
    "postgresql": "INSERT INTO handoff_approvers (handoff_id, user_id, pending) "
                  f"SELECT h.id, h.owner, {_PENDING_SQL} FROM handoffs AS h "
                  "WHERE h.requires_approval AND h.owner IS NOT NULL AND json_array_length(h.approvers::json) = 0",
    "sqlite": "INSERT INTO handoff_approvers (handoff_id, user_id, pending) "
              f"SELECT h.id, h.owner, {_PENDING_SQL} FROM handoffs AS h "
              "WHERE h.requires_approval AND h.owner IS NOT NULL AND json_array_length(h.approvers) = 0",
}
_REBUILD_SQL = {
    "postgresql": "INSERT INTO handoff_approvers (handoff_id, user_id, pending) "
                  f"SELECT DISTINCT h.id, a.value, {_PENDING_SQL} "
                  "FROM handoffs AS h CROSS JOIN LATERAL json_array_elements_text(h.approvers::json) AS a(value)",
    "sqlite": "INSERT INTO handoff_approvers (handoff_id, user_id, pending) "
              f"SELECT DISTINCT h.id, a.value, {_PENDING_SQL} "
              "FROM handoffs AS h, json_each(h.approvers) AS a WHERE json_valid(h.approvers)",
}


def rebuild_approvers(db: Database) -> int:
    """Refill the table from `handoffs.approvers` and owners, for bulk loads that bypass the repository
    (bench/scale.py).

    The same statements as the backfills of migrations 0004 and 0014; returns how many rows they wrote.
    """
    dialect = "sqlite" if db.is_sqlite else "postgresql"
    with db.write() as session:
        session.execute(delete(APPROVERS))
        written = 0
        for statement in (_REBUILD_SQL[dialect], _OWNERS_WHO_APPROVE_SQL[dialect]):
            written += int(session.execute(text(statement)).rowcount)  # type: ignore[attr-defined]
        return written
