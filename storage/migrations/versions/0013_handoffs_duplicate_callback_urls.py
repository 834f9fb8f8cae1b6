"""handoffs.duplicate_callback_urls: the callback URLs of submissions counted as duplicates of a handoff

A producer whose submission was an open handoff's duplicate got `duplicate_of` and then never heard what the humans
decided: its `callback_url` was dropped. It is now kept on the handoff it duplicates, and called with its events.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-22 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("duplicate_callback_urls", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )


def downgrade() -> None:
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        batch_op.drop_column("duplicate_callback_urls")
