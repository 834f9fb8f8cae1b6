"""index outbox (state, target, id): the sender finds each channel's first due row without reading backlogs

The sender's regular scan took each target's oldest due row with a GROUP BY over every due row: under a paced
backlog of one busy channel (card updates and thread replies at about one a second) that walked all of them:
on SQLite 9.7–19 ms at 21,000 pending rows, up to ten times a second. With this index it hops from target to
target and reads only the first due row of each channel that may send now (0.8–0.9 ms).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-21 16:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_target", ["state", "target", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_target")
