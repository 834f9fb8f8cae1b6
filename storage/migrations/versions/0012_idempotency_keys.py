"""idempotency_keys: every producer key (`source.system`, `external_id`) once, with the handoff it is answered by

The key lived on the handoff row, where a key without a system holds a NULL, and NULLs never collide in a unique
constraint: two processes on PostgreSQL could each store a handoff under one key. A key first submitted as a
duplicate was kept only in the original's "seen_again" event, which intake stopped reading once the original
closed: a retry then became a new handoff (201), and other content under that key was not a conflict. Now each
key is one row, keyed by the system ("" for none) and the id.

Filled from the stored handoffs (the first holder of a key, by id, keeps it) and from the recorded sightings
that carry the submission's content hash.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-21 22:00:00.000000
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_HELD_KEYS = """
INSERT INTO idempotency_keys (source_system, external_id, handoff_id, payload_hash)
SELECT COALESCE(h.source_system, ''), h.external_id, h.id, h.payload_hash FROM handoffs AS h
WHERE h.external_id IS NOT NULL AND NOT EXISTS (
    SELECT 1 FROM handoffs AS o WHERE o.external_id = h.external_id AND o.id < h.id
    AND (o.source_system = h.source_system OR (o.source_system IS NULL AND h.source_system IS NULL)))
"""
_keys = sa.table(
    "idempotency_keys", sa.column("source_system", sa.String()), sa.column("external_id", sa.String()),
    sa.column("handoff_id", sa.BigInteger()), sa.column("payload_hash", sa.String()),
)
_events = sa.table(
    "events", sa.column("id", sa.BigInteger()), sa.column("handoff_id", sa.BigInteger()),
    sa.column("action", sa.String()), sa.column("data", sa.JSON()),
)


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("source_system", sa.String(length=80), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=False),
        sa.Column("handoff_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("payload_hash", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["handoff_id"], ["handoffs.id"]),
        sa.PrimaryKeyConstraint("source_system", "external_id"),
    )
    op.execute(_HELD_KEYS)
    bind = op.get_bind()
    sighted = list(_sighted_keys(bind))
    held = _held_among(bind, sorted({row["external_id"] for row in sighted}))
    if missing := [row for row in sighted if (row["source_system"], row["external_id"]) not in held]:
        bind.execute(_keys.insert(), missing)


def _held_among(bind: sa.Connection, external_ids: list[str]) -> set[tuple[str, str]]:
    held: set[tuple[str, str]] = set()
    for start in range(0, len(external_ids), 500):
        chunk = external_ids[start:start + 500]
        query = sa.select(_keys.c.source_system, _keys.c.external_id).where(_keys.c.external_id.in_(chunk))
        held.update((system, external_id) for system, external_id in bind.execute(query))
    return held


def _sighted_keys(bind: sa.Connection) -> Iterator[dict[str, Any]]:
    """The keys of duplicates, as their sightings recorded them (the first sighting of a key keeps it); those
    from before sightings kept the content hash are left out: nothing to tell a repeat from other content."""
    rows = bind.execute(
        sa.select(_events.c.handoff_id, _events.c.data).where(_events.c.action == "seen_again").order_by(_events.c.id)
    )
    seen: set[tuple[str, str]] = set()
    for row in rows:
        data = row.data if isinstance(row.data, dict) else {}
        key = (data.get("source_system") or "", data.get("external_id"))
        if not key[1] or not data.get("payload_hash") or key in seen:
            continue
        seen.add(key)
        yield {"source_system": key[0], "external_id": key[1], "handoff_id": row.handoff_id,
               "payload_hash": data["payload_hash"]}


def downgrade() -> None:
    op.drop_table("idempotency_keys")
