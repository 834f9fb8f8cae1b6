"""The App Home board's reads: a person's lists and figures, in one read transaction.

Every list is an index range with a LIMIT (ordered the way the home shows it), and every count is
capped (`COUNT_CAP`), so building a board costs the same with 1,000 handoffs or 1,000,000:

- assigned to me: `ix_handoffs_owner_status`;
- awaiting my approval: the `handoff_approvers` side table (`ix_handoff_approvers_user_pending`),
  kept in step by the repository, because the `approvers` JSON list cannot be searched portably;
- unclaimed in my queues: `ix_handoffs_queue_status`;
- stalled (managers): `ix_handoffs_stall_at`, most overdue first; mine: `ix_handoffs_owner_stall`;
- closed by me in the last 7 days: `ix_events_actor_at` on the event log (action and statuses are
  checked on the rows of that range).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, Table, func, select, true
from sqlalchemy.orm import Session

from handoffs.config import HandoffConfig
from handoffs.lifecycle import PAST_TENSE, Action, Actor, is_manager
from handoffs.model import TERMINAL, Handoff, Status
from storage.approvers import APPROVERS
from storage.db import Database
from storage.repository import Repository, to_domain
from storage.tables import EventRow, HandoffRow

LIST_LIMIT = 10  # lines per list on the home tab (its 100-block budget allows about that many with buttons)
COUNT_CAP = 999  # counts stop here: a count above it is shown as "999+" and costs no more than 1,000 rows
CLOSED_WINDOW = timedelta(days=7)

_HANDOFFS: Table = HandoffRow.__table__  # type: ignore[attr-defined]
_EVENTS: Table = EventRow.__table__  # type: ignore[attr-defined]
_NOT_TERMINAL = [status.value for status in Status if status not in TERMINAL]
_AWAITING_STATUSES = [Status.open.value, Status.claimed.value]
# A transition into closed: a close, or the approval of a close_on_approve kind. A refused click is logged
# with to_status equal to the status it left alone, so on a closed card it reads "closed" too.
_INTO_CLOSED = (
    _EVENTS.c.action.in_([PAST_TENSE[Action.close], PAST_TENSE[Action.approve]]),
    _EVENTS.c.from_status != Status.closed.value,
    _EVENTS.c.to_status == Status.closed.value,
)


@dataclass(frozen=True)
class BoardList:
    """The first lines of a list and how many it holds in all (at most COUNT_CAP + 1: "999+")."""

    items: list[Handoff]
    total: int
    offset: int = 0  # how many lines of the list come before `items`

    @property
    def more(self) -> int:
        """How many are not shown after `items` (0 when the list ends with them)."""
        return max(0, self.total - self.offset - len(self.items))

    @property
    def capped(self) -> bool:
        return self.total > COUNT_CAP


@dataclass(frozen=True)
class Figures:
    """The viewer's own numbers (each capped at COUNT_CAP + 1)."""

    open_assigned: int
    awaiting_approval: int
    stalled_mine: int
    closed_last_7_days: int


@dataclass(frozen=True)
class Board:
    """Everything the App Home shows one person."""

    user: str
    is_manager: bool
    queues: tuple[str, ...]
    assigned: BoardList
    awaiting: BoardList
    unclaimed: BoardList
    stalled: BoardList | None  # None: only managers see the stalled list
    figures: Figures


def configured_usergroups(config: HandoffConfig) -> frozenset[str]:
    """The user groups that some route uses as its queue: the only ones whose members matter here."""
    return frozenset(route.queue for route in config.routes if route.queue)


def queues_for(user: str, config: HandoffConfig, groups: Collection[str] = ()) -> tuple[str, ...]:
    """Where `user` picks up unclaimed work, kept simple and read from the configuration only:

    - the channel of every route that names them as owner, round-robin owner, approver or claimer
      (a route without a channel of its own posts in the fallback route's channel);
    - the review channel, when they are one of the review approvers;
    - the user groups among `groups` (those they belong to, from `usergroups.users.list`, which the
      caller resolves and caches) that a route uses as its queue.

    Channel membership is not consulted: a catch-all channel everyone is in would fill every home.
    """
    fallback = config.fallback()
    queues: set[str] = set()
    for route in config.routes:
        pool = route.owners.round_robin if route.owners else []
        involved = user == route.owner or user in pool or user in route.approvers or user in (route.claimers or [])
        channel = route.channel or (fallback.channel if fallback else None)
        if involved and channel:
            queues.add(channel)
        if route.queue and route.queue in groups:
            queues.add(route.queue)
    if config.review.channel and user in config.review.approvers:
        queues.add(config.review.channel)
    return tuple(sorted(queues))


def build_board(
    repo_or_db: Repository | Database,
    user: str,
    *,
    now: datetime,
    config: HandoffConfig,
    groups: Collection[str] = (),
    limit: int = LIST_LIMIT,
) -> Board:
    """The App Home board of `user` at `now`: four lists and the figures, in one read transaction.

    `groups` are the user groups `user` belongs to (the Slack side resolves them; storage calls no API).
    """
    db = repo_or_db.db if isinstance(repo_or_db, Repository) else repo_or_db
    manager = is_manager(Actor(user), config)
    queues = queues_for(user, config, groups)
    h = _HANDOFFS
    with db.read() as session:
        assigned = _list(session, h.c.owner == user, h.c.status.in_(_NOT_TERMINAL),
                         order=h.c.id.desc(), limit=limit)
        awaiting = _awaiting(session, user, limit)
        unclaimed = (
            _list(session, h.c.queue.in_(queues), h.c.status == Status.open.value, order=h.c.id.desc(), limit=limit)
            if queues else BoardList([], 0)
        )
        stalled = _list(session, h.c.stall_at < now, order=h.c.stall_at, limit=limit) if manager else None
        # stall_at is NULL once finished: (owner, stall_at) alone answers, without the status
        stalled_mine = _count(session, select(h.c.id).where(h.c.owner == user, h.c.stall_at < now))
        closed = _count(session, select(_EVENTS.c.id).where(
            _EVENTS.c.actor == user, _EVENTS.c.at >= now - CLOSED_WINDOW, *_INTO_CLOSED
        ))
    figures = Figures(assigned.total, awaiting.total, stalled_mine, closed)
    return Board(user, manager, queues, assigned, awaiting, unclaimed, stalled, figures)


def awaiting_approval_of(repo_or_db: Repository | Database, user: str, *, limit: int = 100) -> list[Handoff]:
    """What waits for `user`'s approval, newest first."""
    db = repo_or_db.db if isinstance(repo_or_db, Repository) else repo_or_db
    with db.read() as session:
        return _awaiting(session, user, limit).items


def mine_page(repo_or_db: Repository | Database, user: str, *, offset: int, limit: int) -> tuple[BoardList, BoardList]:
    """`/handoff mine` from line `offset + 1`: what `user` owns and has not finished, and what waits for their
    approval, newest first, each with its total (capped as on the App Home)."""
    db = repo_or_db.db if isinstance(repo_or_db, Repository) else repo_or_db
    h = _HANDOFFS
    with db.read() as session:
        owned = _list(session, h.c.owner == user, h.c.status.in_(_NOT_TERMINAL), order=h.c.id.desc(), limit=limit,
                      offset=offset)
        return owned, _awaiting(session, user, limit, offset=offset)


def _count(session: Session, ids: Select[Any]) -> int:
    """How many rows `ids` selects, counting no further than COUNT_CAP + 1."""
    capped = ids.limit(COUNT_CAP + 1).subquery()
    return int(session.execute(select(func.count()).select_from(capped)).scalar_one())


def _list(session: Session, *where: Any, order: Any, limit: int, offset: int = 0) -> BoardList:
    rows = session.execute(select(_HANDOFFS).where(*where).order_by(order).offset(offset).limit(limit)).all()
    items = [to_domain(row) for row in rows]
    return BoardList(items, _total(session, items, limit, offset, select(_HANDOFFS.c.id).where(*where)), offset)


def _total(session: Session, items: list[Handoff], limit: int, offset: int, ids: Select[Any]) -> int:
    """A list's length: known from its last page when that page is not full, else counted (capped)."""
    if len(items) < limit and (items or not offset):
        return offset + len(items)
    return _count(session, ids)


def _awaiting(session: Session, user: str, limit: int, *, offset: int = 0) -> BoardList:
    """Handoffs that wait for `user`'s approval, newest first.

    The lines check the handoff's status again; the count reads the side table alone (an index-only
    range: joining every pending row to its handoff cost 40 ms for a busy approver at 1,000,000 rows).
    """
    a, h = APPROVERS, _HANDOFFS
    mine = (a.c.user_id == user, a.c.pending == true())
    rows = session.execute(
        select(h).select_from(a.join(h, h.c.id == a.c.handoff_id))
        .where(*mine, h.c.status.in_(_AWAITING_STATUSES)).order_by(a.c.handoff_id.desc()).offset(offset).limit(limit)
    ).all()
    items = [to_domain(row) for row in rows]
    return BoardList(items, _total(session, items, limit, offset, select(a.c.handoff_id).where(*mine)), offset)
