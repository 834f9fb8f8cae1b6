"""handoff_approvers (who may approve what, indexed) and events by actor, for the App Home board

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 16:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Rows for the handoffs stored before this revision, unpacked from their JSON approvers by the database.
_PENDING = "(h.requires_approval AND h.status IN ('open', 'claimed') AND h.approved_at IS NULL)"
_BACKFILL = {
    "postgresql": "INSERT INTO handoff_approvers (handoff_id, user_id, pending) "
                  f"SELECT DISTINCT h.id, a.value, {_PENDING} "
                  "FROM handoffs AS h CROSS JOIN LATERAL json_array_elements_text(h.approvers::json) AS a(value)",
    "sqlite": "INSERT INTO handoff_approvers (handoff_id, user_id, pending) "
              f"SELECT DISTINCT h.id, a.value, {_PENDING} "
              "FROM handoffs AS h, json_each(h.approvers) AS a WHERE json_valid(h.approvers)",
}


def upgrade() -> None:
    op.create_table(
        "handoff_approvers",
        sa.Column("handoff_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("user_id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("pending", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["handoff_id"], ["handoffs.id"]),
        sa.PrimaryKeyConstraint("handoff_id", "user_id"),
    )
    op.create_index(
        "ix_handoff_approvers_user_pending", "handoff_approvers", ["user_id", "pending", "handoff_id"], unique=False
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_actor_at", ["actor", "at"], unique=False)
    backfill = _BACKFILL.get(op.get_bind().dialect.name)
    if backfill is not None:
        op.execute(backfill)


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_actor_at")
    op.drop_index("ix_handoff_approvers_user_pending", table_name="handoff_approvers")
    op.drop_table("handoff_approvers")
