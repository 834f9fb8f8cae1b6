"""handoffs.last_nudged_at: when this phase's last reminder went out

Two reminders are never closer than `repeat_every`. The sweep kept that gap only in the next look it stored, and
any write of the handoff (an edit, a snooze) put the look back on the deadline's calendar: the next reminder then
went out within a minute of the last. With the last reminder's time on the handoff, the nudge policy itself keeps
the gap, whatever writes come between.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-21 20:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_nudged_at", storage.types.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        batch_op.drop_column("last_nudged_at")
