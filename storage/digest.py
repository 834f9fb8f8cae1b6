"""The daily digest's reads, and the claim that makes one process of a group send each day's digest.

The claim is a row in `digest_runs` keyed by the day: the first process to insert it sends that day's
digest, in the same transaction; every other process (or a restart) meets the primary key and skips.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Table, func, insert, select
from sqlalchemy.exc import IntegrityError

from handoffs.model import TERMINAL, Handoff, Status
from handoffs.ports import Effect
from storage.repository import Repository, to_domain
from storage.tables import DigestRunRow, HandoffRow

_HANDOFFS: Table = HandoffRow.__table__  # type: ignore[attr-defined]
_DIGEST_RUNS: Table = DigestRunRow.__table__  # type: ignore[attr-defined]
_NOT_TERMINAL = [status.value for status in Status if status not in TERMINAL]
_ESCALATED = (_HANDOFFS.c.escalated_at.is_not(None)) & _HANDOFFS.c.status.in_(_NOT_TERMINAL)


@dataclass(frozen=True)
class DigestContent:
    """The first lines of each list (most overdue first) and how many each holds in all."""

    stalled: list[Handoff]
    stalled_total: int
    escalated: list[Handoff]
    escalated_total: int

    @property
    def is_empty(self) -> bool:
        return self.stalled_total == 0 and self.escalated_total == 0


class DigestStore:
    def __init__(self, repo: Repository) -> None:
        self.repo = repo

    def content(self, *, now: datetime, limit: int) -> DigestContent:
        return DigestContent(
            stalled=self.repo.stalled(now=now, limit=limit),
            stalled_total=self.repo.count_stalled(now=now),
            escalated=self.escalated(limit=limit),
            escalated_total=self.count_escalated(),
        )

    def escalated(self, *, limit: int) -> list[Handoff]:
        """Escalated handoffs nobody has finished: most overdue first, those without a deadline last."""
        stall_at = _HANDOFFS.c.stall_at
        query = (
            _HANDOFFS.select().where(_ESCALATED)
            .order_by(stall_at.is_(None), stall_at, _HANDOFFS.c.escalated_at, _HANDOFFS.c.id)
            .limit(limit)
        )
        with self.repo.db.read() as session:
            return [to_domain(row) for row in session.execute(query)]

    def count_escalated(self) -> int:
        with self.repo.db.read() as session:
            return int(session.execute(select(func.count()).select_from(_HANDOFFS).where(_ESCALATED)).scalar_one())

    def claim_day(self, day: date, *, now: datetime, effects: list[Effect]) -> bool:
        """Record `day`'s digest as sent and write its `effects`, in one transaction.

        False, and nothing written, when a process (this one included) has claimed that day already.
        """
        try:
            with self.repo.db.write() as session:
                session.execute(insert(_DIGEST_RUNS).values(day=day.isoformat(), sent_at=now))
                self.repo._add_effects(session, None, effects, now)  # the outbox insert of every other write
        except IntegrityError:
            return False
        return True
