"""index outbox (kind, state, next_attempt_at): each sender finds its own due rows without walking the other's

The webhook sender asks for due rows of kind `webhook`; through (state, next_attempt_at) alone that walked
every due Slack row first (a backlog of thousands while Slack is slow or down), on every wake-up.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-21 03:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_kind_due", ["kind", "state", "next_attempt_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_kind_due")
