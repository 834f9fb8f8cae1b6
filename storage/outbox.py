"""The durable outbox: rows written with the change that caused them, leased and finished by senders.

A sender leases a row by moving its `next_attempt_at` into the future with a compare-and-set;
a sender that dies leaves the lease to expire, and the row is due again. Several processes on one
PostgreSQL database therefore never send the same row at once.

The sender's own writes are many and small (a lease and a finish for every private notice). On SQLite they
queue for the one write turn with every click's write, so a dispatch leases its rows in one write, and
finishes from the sending threads share writes (storage/group_commit.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from sqlalchemy import ColumnElement, Table, bindparam, func, update
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from storage.db import Database
from storage.group_commit import GroupCommit
from storage.tables import HandoffRow, OutboxRow

_OUTBOX: Table = OutboxRow.__table__  # type: ignore[attr-defined]
_Update = Callable[[Session], object]

PENDING = "pending"
SENT = "sent"
FAILED = "failed"
COALESCED = "coalesced"


@dataclass(frozen=True)
class OutboxHealth:
    pending: int
    failed: int
    last_failure: str | None


class OutboxStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._updates: GroupCommit[_Update, None] = GroupCommit(self._write_updates)

    def _write_updates(self, updates: Sequence[_Update]) -> list[None]:
        """Several threads' finishes and retries in one transaction (if it fails, GroupCommit writes each alone)."""
        with self.db.write() as session:
            for run in updates:
                run(session)
        return [None] * len(updates)

    def due(
        self, now: datetime, *, limit: int = 100, skip_targets: frozenset[str] = frozenset(),
        after_id: int | None = None, kinds: frozenset[str] | None = None, exclude_kinds: frozenset[str] = frozenset(),
        first_per_target: bool = False,
    ) -> list[OutboxRow]:
        """Pending rows whose time has come, oldest first (so each handoff's rows keep their order).

        With `after_id`, only rows written since: a primary-key range, cheap however long the backlog.
        `kinds` keeps only rows of those kinds, `exclude_kinds` leaves those out (each sender takes its own).
        `first_per_target` loads only each target's oldest due row: a channel sends one row at a time, so
        the rest of a long backlog would be loaded only to be left (it was 200 rows a scan).
        """
        statement = _due_statement(after_id is not None, kinds is not None, bool(exclude_kinds), bool(skip_targets),
                                   first_per_target)
        parameters = {"now": now, "limit": limit, "after_id": after_id, "kinds": sorted(kinds or ()),
                      "exclude_kinds": sorted(exclude_kinds), "skip_targets": sorted(skip_targets)}
        with self.db.read() as session:
            return list(session.exec(statement, params=parameters))

    def newest_id(self) -> int:
        with self.db.read() as session:
            return int(session.execute(_NEWEST_ID).scalar() or 0)

    def next_due_at(self) -> datetime | None:
        with self.db.read() as session:
            return session.exec(
                select(func.min(OutboxRow.next_attempt_at)).where(OutboxRow.state == PENDING)
            ).one()

    def lease_many(self, rows: Sequence[OutboxRow], *, now: datetime, until: datetime) -> set[int]:
        """Take those of `rows` still pending and due at `now` until `until`, in one write; their ids.

        A row another sender leased meanwhile is due only at its lease's end, past `now`: it is left out.
        """
        ids = [row.id for row in rows]
        if not ids:
            return set()
        with self.db.write() as session:
            leased = session.execute(_LEASE, {"ids": ids, "now": now, "until": until})
            return {int(row_id) for row_id in leased.scalars()}

    def finish(self, row_id: int, *, state: str, now: datetime, error: str | None = None) -> None:
        parameters = {"row_id": row_id, "new_state": state, "done_at": now, "error": error}
        self._updates.run(lambda session: session.execute(_FINISH, parameters))

    def retry(self, row_id: int, *, at: datetime, error: str | None, refund_attempt: bool = False) -> None:
        """Release the lease; the row is due again at `at`."""
        values: dict[str, object] = {"next_attempt_at": at, "last_error": error}
        if refund_attempt:
            values["attempts"] = _OUTBOX.c.attempts - 1
        statement = update(_OUTBOX).where(_OUTBOX.c.id == row_id).values(**values)
        self._updates.run(lambda session: session.execute(statement))

    def record_card(self, row_id: int, handoff_id: int, *, ts: str, now: datetime) -> None:
        """Store the posted card's ts and finish its row in one transaction, before anything can retry."""

        def record(session: Session) -> None:
            session.execute(
                update(HandoffRow)
                .where(col(HandoffRow.id) == handoff_id, col(HandoffRow.card_ts).is_(None))
                .values(card_ts=ts)
            )
            session.execute(
                update(_OUTBOX).where(_OUTBOX.c.id == row_id).values(state=SENT, done_at=now, last_error=None)
            )

        self._updates.run(record)

    def coalesce_updates(self, handoff_id: int, *, up_to_id: int, now: datetime) -> int:
        """Card updates rendered by a later send are done too: mark them, return how many."""
        with self.db.write() as session:
            result = session.execute(
                update(OutboxRow)
                .where(
                    col(OutboxRow.handoff_id) == handoff_id,
                    col(OutboxRow.kind) == "slack.update_card",
                    col(OutboxRow.state) == PENDING,
                    col(OutboxRow.id) <= up_to_id,
                )
                .values(state=COALESCED, done_at=now)
            )
            return int(result.rowcount)  # type: ignore[attr-defined]

    def latest_pending_id(self, handoff_id: int, kind: str) -> int | None:
        with self.db.read() as session:
            return session.exec(
                select(func.max(OutboxRow.id)).where(
                    OutboxRow.handoff_id == handoff_id, OutboxRow.kind == kind, OutboxRow.state == PENDING
                )
            ).one()

    def card_state(self, handoff_id: int) -> str | None:
        """The state of the handoff's card post: pending, sent, failed, or None when there is none."""
        with self.db.read() as session:
            states = list(session.exec(
                select(OutboxRow.state).where(OutboxRow.handoff_id == handoff_id, OutboxRow.kind == "slack.post_card")
            ))
        if SENT in states:
            return SENT
        if PENDING in states:
            return PENDING
        return FAILED if states else None

    def latest_pending_for(self, kind: str, target: str) -> int | None:
        """The newest pending row of `kind` to `target` (e.g. App Home publishes for one person)."""
        with self.db.read() as session:
            return session.exec(
                select(func.max(OutboxRow.id)).where(
                    OutboxRow.state == PENDING, OutboxRow.kind == kind, OutboxRow.target == target
                )
            ).one()

    def coalesce_target(self, kind: str, target: str, *, up_to_id: int, now: datetime) -> int:
        """Pending rows of `kind` to `target` up to `up_to_id` that a send rendered at send time covered."""
        with self.db.write() as session:
            result = session.execute(
                update(OutboxRow)
                .where(
                    col(OutboxRow.state) == PENDING,
                    col(OutboxRow.kind) == kind,
                    col(OutboxRow.target) == target,
                    col(OutboxRow.id) <= up_to_id,
                )
                .values(state=COALESCED, done_at=now)
            )
            return int(result.rowcount)  # type: ignore[attr-defined]

    def health(self) -> OutboxHealth:
        with self.db.read() as session:
            counts = dict(session.execute(
                select(OutboxRow.state, func.count()).where(col(OutboxRow.state).in_([PENDING, FAILED]))
                .group_by(OutboxRow.state)
            ).all())
            last = session.exec(
                select(OutboxRow.last_error)
                .where(OutboxRow.state == FAILED)
                .order_by(col(OutboxRow.id).desc())
                .limit(1)
            ).first()
        return OutboxHealth(int(counts.get(PENDING, 0)), int(counts.get(FAILED, 0)), last)


# The sender's statements, built once: building and cache-keying them on every call was a quarter of the
# sending process's time under a stream of clicks. A due query has one shape per set of filters given.
_NEWEST_ID = select(func.max(_OUTBOX.c.id))
_LEASE = (
    update(_OUTBOX)
    .where(_OUTBOX.c.id.in_(bindparam("ids", expanding=True)), _OUTBOX.c.state == PENDING,
           _OUTBOX.c.next_attempt_at <= bindparam("now"))
    .values(next_attempt_at=bindparam("until"), attempts=_OUTBOX.c.attempts + 1)
    .returning(_OUTBOX.c.id)
)
_FINISH = (
    update(_OUTBOX).where(_OUTBOX.c.id == bindparam("row_id"))
    .values(state=bindparam("new_state"), done_at=bindparam("done_at"), last_error=bindparam("error"))
)


@lru_cache(maxsize=32)
def _due_statement(
    after_id: bool, kinds: bool, exclude_kinds: bool, skip_targets: bool, first_per_target: bool
) -> SelectOfScalar[OutboxRow]:
    conditions: list[ColumnElement[bool]] = [col(OutboxRow.state) == PENDING,
                                             col(OutboxRow.next_attempt_at) <= bindparam("now")]
    if after_id:
        conditions.append(col(OutboxRow.id) > bindparam("after_id"))
    if kinds:
        conditions.append(col(OutboxRow.kind).in_(bindparam("kinds", expanding=True)))
    if exclude_kinds:
        conditions.append(col(OutboxRow.kind).not_in(bindparam("exclude_kinds", expanding=True)))
    if skip_targets:  # channels paced or busy right now
        conditions.append(col(OutboxRow.target).not_in(bindparam("skip_targets", expanding=True)))
    if first_per_target:
        firsts = select(func.min(OutboxRow.id)).where(*conditions).group_by(col(OutboxRow.target))
        conditions = [col(OutboxRow.id).in_(firsts)]
    return select(OutboxRow).where(*conditions).order_by(col(OutboxRow.id)).limit(bindparam("limit"))
