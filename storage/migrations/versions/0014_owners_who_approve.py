"""handoff_approvers: the owner of a handoff that requires approval and names no approvers

SPEC §3: approve is for the approvers, or, where none are set, the owner. The side table held only named
approvers, so such a handoff never showed as "awaiting your approval" to the one person who could approve it.
New writes keep the owner's row; this adds the rows of handoffs stored before.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-22 11:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As written here, not imported: a migration keeps meaning what it meant when it was written.
_NO_APPROVERS = {
    "postgresql": "json_array_length(h.approvers::json) = 0",
    "sqlite": "json_array_length(h.approvers) = 0",
}
_PENDING = "(h.requires_approval AND h.status IN ('open', 'claimed') AND h.approved_at IS NULL)"


def upgrade() -> None:
    no_approvers = _NO_APPROVERS.get(op.get_bind().dialect.name)
    if no_approvers is not None:
        op.execute("INSERT INTO handoff_approvers (handoff_id, user_id, pending) "
                   f"SELECT h.id, h.owner, {_PENDING} FROM handoffs AS h "
                   f"WHERE h.requires_approval AND h.owner IS NOT NULL AND {no_approvers}")


def downgrade() -> None:
    no_approvers = _NO_APPROVERS.get(op.get_bind().dialect.name)
    if no_approvers is not None:
        op.execute("DELETE FROM handoff_approvers WHERE EXISTS (SELECT 1 FROM handoffs AS h "
                   f"WHERE h.id = handoff_approvers.handoff_id AND {no_approvers})")
