"""nudge_schedule: the SLA sweep's next look at a handoff moves out of `handoffs` into a narrow table of its own

Every reminder rewrote handoffs.next_nudge_at, an indexed column, so on PostgreSQL no reminder's update could
be HOT: each wrote a new entry in all twelve indexes of `handoffs` (the bulk of a sweep's cost at a million
rows). Now a reminder updates the small, twice-indexed nudge_schedule and, in `handoffs`, only unindexed
columns (nudge_count, escalated_at, version); PostgreSQL keeps a fifth of each new page of `handoffs` free
(fillfactor 80), so that such an update fits beside the old row and stays HOT. Existing pages get that room
the next time the table is rewritten (VACUUM FULL or pg_repack); until then it works as before, only slower.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-21 06:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HANDOFFS_FILLFACTOR = 80


def upgrade() -> None:
    op.create_table(
        "nudge_schedule",
        sa.Column("handoff_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("next_nudge_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["handoff_id"], ["handoffs.id"]),
        sa.PrimaryKeyConstraint("handoff_id"),
    )
    op.execute("INSERT INTO nudge_schedule (handoff_id, next_nudge_at) "
               "SELECT id, next_nudge_at FROM handoffs WHERE next_nudge_at IS NOT NULL")
    op.create_index("ix_nudge_schedule_next_nudge_at", "nudge_schedule", ["next_nudge_at"], unique=False)
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        batch_op.drop_index("ix_handoffs_next_nudge_at")
        batch_op.drop_column("next_nudge_at")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE handoffs SET (fillfactor = {HANDOFFS_FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE handoffs RESET (fillfactor)")
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("next_nudge_at", storage.types.UTCDateTime(timezone=True), nullable=True))
    op.execute("UPDATE handoffs SET next_nudge_at = (SELECT s.next_nudge_at FROM nudge_schedule AS s "
               "WHERE s.handoff_id = handoffs.id)")
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        batch_op.create_index("ix_handoffs_next_nudge_at", ["next_nudge_at"], unique=False)
    op.drop_index("ix_nudge_schedule_next_nudge_at", table_name="nudge_schedule")
    op.drop_table("nudge_schedule")
