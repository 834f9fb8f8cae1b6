"""index handoffs (owner, id): one owner's handoffs newest first without sorting them all

`GET /api/handoffs?owner=U…` pages newest first by id. With only (owner, status) the database read and
sorted every handoff of the owner before taking a page: 40 ms for an owner of 29,000 handoffs in a
table of 1,000,000 on SQLite; with (owner, id) it reads the page alone (under 1 ms).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21 00:26:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        batch_op.create_index("ix_handoffs_owner_id", ["owner", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        batch_op.drop_index("ix_handoffs_owner_id")
