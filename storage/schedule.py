"""The `nudge_schedule` side table: when the SLA sweep should next look at each handoff.

One row per handoff the nudge policy still has something to do about, holding the earliest moment it may act
(handoffs.nudges.earliest_look); no row once there is nothing more to do. The repository writes it in the same
transaction as every write of a handoff, and the sweep reads "what is due" as one index range of it. It lives
apart from `handoffs` so that a reminder changes no indexed column of `handoffs` (see migration 0009).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Insert, Table, bindparam, delete, insert, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from storage.db import is_postgres
from storage.tables import NudgeScheduleRow

SCHEDULE: Table = NudgeScheduleRow.__table__  # type: ignore[attr-defined]

INSERT_SCHEDULE = insert(SCHEDULE)
_MOVE = update(SCHEDULE).where(SCHEDULE.c.handoff_id == bindparam("id")).values(next_nudge_at=bindparam("look"))
_DROP = delete(SCHEDULE).where(SCHEDULE.c.handoff_id.in_(bindparam("ids", expanding=True)))
# PostgreSQL: many moves as one statement over two arrays (an executemany costs a statement per row)
_MOVE_ARRAYS = text(
    "UPDATE nudge_schedule AS s SET next_nudge_at = v.look "
    "FROM unnest(CAST(:ids AS bigint[]), CAST(:looks AS timestamptz[])) AS v(id, look) WHERE s.handoff_id = v.id"
)


def first_look_rows(handoff_id: int, look: datetime | None) -> list[dict[str, Any]]:
    """The row of a handoff that has none yet (a new one), if the policy will ever look at it; for `INSERT_SCHEDULE`."""
    return [] if look is None else [{"handoff_id": handoff_id, "next_nudge_at": look}]


def _upsert(dialect_insert: Callable[[Table], Any]) -> Insert:
    statement = dialect_insert(SCHEDULE)
    return statement.on_conflict_do_update(
        index_elements=[SCHEDULE.c.handoff_id], set_={"next_nudge_at": statement.excluded.next_nudge_at}
    )


# After changes of handoffs (whose rows the caller has locked by writing them): each one's next look is moved,
# or added when it had none (e.g. a closed handoff reopened). For an executemany of `look_moves` rows.
SET_LOOK = {"sqlite": _upsert(sqlite.insert), "postgresql": _upsert(postgresql.insert)}
LOOK_COLUMNS = ("handoff_id", "next_nudge_at")


def look_moves(looks: Mapping[int, datetime | None]) -> list[dict[str, Any]]:
    """The `SET_LOOK` rows of the handoffs that still have a next look."""
    return [row for handoff_id, look in looks.items() for row in first_look_rows(handoff_id, look)]


def drop_settled(session: Session, looks: Mapping[int, datetime | None]) -> None:
    """Drop the rows of the handoffs with nothing more to look at, in one statement."""
    settled = [handoff_id for handoff_id, look in looks.items() if look is None]
    if settled:
        session.execute(_DROP, {"ids": settled})


def reschedule_many(session: Session, looks: Sequence[tuple[int, datetime | None]]) -> None:
    """The sweep's decisions, for handoffs that each have a row (the sweep found them through it)."""
    moves = [(handoff_id, look) for handoff_id, look in looks if look is not None]
    if moves and is_postgres(session):
        session.execute(_MOVE_ARRAYS, {"ids": [move[0] for move in moves], "looks": [move[1] for move in moves]})
    elif moves:
        session.execute(_MOVE, [{"id": handoff_id, "look": look} for handoff_id, look in moves])
    settled = [handoff_id for handoff_id, look in looks if look is None]
    if settled:
        session.execute(_DROP, {"ids": settled})
