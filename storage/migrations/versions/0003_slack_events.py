"""slack_events: the Slack events already handled (intake channels), for idempotent retries

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 14:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import storage.types

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "slack_events",
        sa.Column("event_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("ts", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("handoff_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("received_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["handoff_id"], ["handoffs.id"]),
        sa.PrimaryKeyConstraint("event_id"),
        sa.UniqueConstraint("channel", "ts", name="uq_slack_events_message"),
    )


def downgrade() -> None:
    op.drop_table("slack_events")
