"""handoffs.next_nudge_at (indexed) for the SLA sweep; digest_runs for the once-a-day digest

The sweep asks "what is due now?" through an index range on next_nudge_at instead of scanning handoffs:
the column holds the earliest moment the nudge policy may act on a handoff (NULL: nothing more to do).
Existing rows start at their stall deadline, a safe lower bound that the first tick corrects.

digest_runs has one row per day a digest went out, so that one process of a group sends it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("next_nudge_at", storage.types.UTCDateTime(timezone=True), nullable=True))
    op.execute("UPDATE handoffs SET next_nudge_at = stall_at WHERE stall_at IS NOT NULL")
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        batch_op.create_index("ix_handoffs_next_nudge_at", ["next_nudge_at"], unique=False)
    op.create_table(
        "digest_runs",
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("sent_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("day"),
    )


def downgrade() -> None:
    op.drop_table("digest_runs")
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        batch_op.drop_index("ix_handoffs_next_nudge_at")
        batch_op.drop_column("next_nudge_at")
