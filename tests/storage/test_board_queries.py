"""The App Home board's queries, and the approvers side table the repository keeps, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from sqlalchemy import delete, select

from bot.runtime import Runtime
from handoffs.config import parse_config
from handoffs.lifecycle import Action, Actor, Refused, Request
from handoffs.model import Handoff, HandoffIn, Status
from handoffs.service import HandoffService
from storage import board_queries, migrate
from storage.approvers import APPROVERS, rebuild_approvers
from storage.board_queries import build_board, queues_for
from tests.conftest import DEFAULT_CONFIG
from tests.factories import lead, payload


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2025, 3, 12, 10, 0, tzinfo=UTC))


@pytest.fixture
def service(runtime: Runtime, clock: Clock) -> HandoffService:
    return HandoffService(runtime.repo, runtime.config, clock)


def submit(service: HandoffService, **fields: Any) -> Handoff:
    return service.submit(HandoffIn.model_validate(payload(**fields)), actor="producer").handoff


def ids_of(handoffs: list[Handoff]) -> list[int]:
    return [h.id for h in handoffs]


def approver_rows(runtime: Runtime, handoff_id: int) -> dict[str, bool]:
    with runtime.db.read() as session:
        rows = session.execute(select(APPROVERS).where(APPROVERS.c.handoff_id == handoff_id)).all()
    return {row.user_id: bool(row.pending) for row in rows}


def test_assigned_to_me_is_what_i_own_and_have_not_finished_newest_first(
    runtime: Runtime, service: HandoffService, clock: Clock
) -> None:
    first, second = submit(service, owner="UANNA"), submit(service, owner="UANNA")
    done = submit(service, owner="UANNA")
    service.act(done.id, Request(Action.close, outcome="done"), Actor("UANNA"))
    submit(service, owner="UBEN")
    board = build_board(runtime.repo, "UANNA", now=clock.now, config=runtime.config)
    assert ids_of(board.assigned.items) == [second.id, first.id]
    assert board.assigned.total == board.figures.open_assigned == 2
    assert board.figures.closed_last_7_days == 1
    assert not board.is_manager and board.stalled is None


def test_closed_by_me_counts_real_closes_not_refused_clicks_on_a_closed_card(
    runtime: Runtime, service: HandoffService, clock: Clock
) -> None:
    done = submit(service, owner="UANNA")
    service.act(done.id, Request(Action.close, outcome="done"), Actor("UANNA"))
    reply = submit(service, kind="reply", owner="UANNA")  # approving a reply closes it
    service.act(reply.id, Request(Action.approve), Actor("UANNA"))
    for handoff_id, action in [(done.id, Action.close)] * 4 + [(reply.id, Action.approve)]:
        with pytest.raises(Refused):  # already closed: logged as "refused", to_status "closed"
            service.act(handoff_id, Request(action, outcome="done"), Actor("UANNA"))
    board = build_board(runtime.repo, "UANNA", now=clock.now, config=runtime.config)
    assert board.figures.closed_last_7_days == 2


def test_awaiting_my_approval_follows_the_handoff_through_its_lifecycle(
    runtime: Runtime, service: HandoffService, clock: Clock
) -> None:
    waiting = submit(service, owner="UANNA", approvers=["ULEAD", "UXAVIER"], requires_approval=True)
    not_required = submit(service, owner="UANNA", approvers=["ULEAD"])
    assert approver_rows(runtime, waiting.id) == {"ULEAD": True, "UXAVIER": True}
    assert approver_rows(runtime, not_required.id) == {"ULEAD": False}

    def awaiting(user: str) -> list[int]:
        board = build_board(runtime.db, user, now=clock.now, config=runtime.config)  # a Database works too
        assert board.figures.awaiting_approval == board.awaiting.total
        return ids_of(board.awaiting.items)

    assert awaiting("ULEAD") == [waiting.id] and awaiting("UXAVIER") == [waiting.id] and awaiting("UANNA") == []
    service.act(waiting.id, Request(Action.approve), Actor("ULEAD"))
    assert awaiting("ULEAD") == [] and approver_rows(runtime, waiting.id) == {"ULEAD": False, "UXAVIER": False}
    service.act(waiting.id, Request(Action.close, outcome="done"), Actor("UANNA"))
    service.act(waiting.id, Request(Action.reopen), Actor("UMANAGER"))  # open again, approval pending again
    assert awaiting("ULEAD") == [waiting.id]


def test_unclaimed_in_my_queues(runtime: Runtime, service: HandoffService, clock: Clock) -> None:
    hot = service.submit(HandoffIn.model_validate(lead(urgency="urgent")), actor="producer").handoff
    assert hot.owner in ("UANNA", "UBEN")
    service.act(hot.id, Request(Action.release), Actor(hot.owner or ""))
    review = submit(service, confidence=0.2)  # to the review channel CREVIEW, approver ULEAD
    submit(service)  # CHANDOFFS: the default route names nobody
    for user in ("UANNA", "UBEN", "UMANAGER"):  # owners and approver of the hot-leads route (CSALES)
        board = build_board(runtime.repo, user, now=clock.now, config=runtime.config)
        assert board.queues == ("CSALES",) and ids_of(board.unclaimed.items) == [hot.id], user
    lead_board = build_board(runtime.repo, "ULEAD", now=clock.now, config=runtime.config)
    assert lead_board.queues == ("CREVIEW",) and ids_of(lead_board.unclaimed.items) == [review.id]
    assert ids_of(lead_board.awaiting.items) == [review.id]
    nobody = build_board(runtime.repo, "UNEW", now=clock.now, config=runtime.config)
    assert nobody.queues == () and nobody.unclaimed.total == 0


def test_a_users_queues_include_the_user_groups_they_are_in() -> None:
    config = parse_config({**DEFAULT_CONFIG, "routes": [
        {"name": "support", "when": {"kind": "support"}, "queue": "S0SUPPORT", "channel": "CSUPPORT"},
        {"name": "vip", "when": {"kind": "lead"}, "owner": "UVIP", "claimers": ["UCLAIMER"]},
        {"name": "default", "channel": "CHANDOFFS"},
    ]})
    assert queues_for("UAGENT", config, {"S0SUPPORT"}) == ("S0SUPPORT",)
    assert queues_for("UAGENT", config) == ()
    assert queues_for("UVIP", config) == ("CHANDOFFS",)  # a route without a channel posts in the fallback's
    assert queues_for("UCLAIMER", config) == ("CHANDOFFS",)
    assert queues_for("ULEAD", config) == ("CREVIEW",)
    assert board_queries.configured_usergroups(config) == frozenset({"S0SUPPORT"})


def test_managers_see_stalled_most_overdue_first_and_everyone_their_own_stalled_count(
    runtime: Runtime, service: HandoffService, clock: Clock
) -> None:
    later = submit(service, owner="UANNA", due_at=(clock.now + timedelta(hours=2)).isoformat())
    sooner = submit(service, owner="UBEN", due_at=(clock.now + timedelta(hours=1)).isoformat())
    submit(service, owner="UANNA", due_at=(clock.now + timedelta(days=9)).isoformat())
    clock.now += timedelta(hours=3)
    manager = build_board(runtime.repo, "UMANAGER", now=clock.now, config=runtime.config)
    assert manager.is_manager and manager.stalled is not None
    assert ids_of(manager.stalled.items)[:2] == [sooner.id, later.id]
    anna = build_board(runtime.repo, "UANNA", now=clock.now, config=runtime.config)
    assert anna.stalled is None and anna.figures.stalled_mine == 1


def test_lists_are_limited_and_counts_capped(
    runtime: Runtime, service: HandoffService, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = [submit(service, owner="UANNA") for _ in range(5)]
    board = build_board(runtime.repo, "UANNA", now=clock.now, config=runtime.config, limit=2)
    assert ids_of(board.assigned.items) == [made[4].id, made[3].id]
    assert board.assigned.total == 5 and board.assigned.more == 3 and not board.assigned.capped
    monkeypatch.setattr(board_queries, "COUNT_CAP", 3)
    capped = build_board(runtime.repo, "UANNA", now=clock.now, config=runtime.config, limit=2)
    assert capped.assigned.total == 4 and capped.figures.open_assigned == 4  # "3+": counting stopped at 4


def test_the_migration_fills_the_side_table_for_handoffs_stored_before_it(
    runtime: Runtime, service: HandoffService
) -> None:
    waiting = submit(service, owner="UANNA", approvers=["ULEAD", "UXAVIER"], requires_approval=True)
    plain = submit(service, owner="UANNA", approvers=["ULEAD"])
    with runtime.db.write() as session:
        session.execute(delete(APPROVERS))
    command.downgrade(migrate.alembic_config(runtime.settings.database_url), "0003")
    migrate.upgrade(runtime.settings.database_url)
    assert approver_rows(runtime, waiting.id) == {"ULEAD": True, "UXAVIER": True}
    assert approver_rows(runtime, plain.id) == {"ULEAD": False}
    assert runtime.repo.get(waiting.id) is not None and waiting.status is Status.claimed


def test_migration_0014_adds_the_owners_who_approve_and_its_downgrade_takes_them_away(
    runtime: Runtime, service: HandoffService
) -> None:
    owner_approves = submit(service, owner="UANNA", requires_approval=True)
    named = submit(service, owner="UANNA", approvers=["UANNA"], requires_approval=True)
    url = runtime.settings.database_url
    command.downgrade(migrate.alembic_config(url), "0013")
    assert approver_rows(runtime, owner_approves.id) == {}
    assert approver_rows(runtime, named.id) == {"UANNA": True}  # a named approver's row stays
    migrate.upgrade(url)
    assert approver_rows(runtime, owner_approves.id) == {"UANNA": True}
    assert approver_rows(runtime, named.id) == {"UANNA": True}


def test_an_owner_who_approves_because_none_are_named_waits_for_their_own_approval(
    runtime: Runtime, service: HandoffService, clock: Clock
) -> None:
    """SPEC §3: approve is for the approvers, where none are set the owner. Such a handoff was never "awaiting
    your approval" for its owner (the side table held named approvers only), although only they could approve."""
    waiting = submit(service, owner="UANNA", requires_approval=True)
    submit(service, owner="UANNA")  # no approval needed: not waiting for anyone
    unowned = submit(service, requires_approval=True)
    assert ids_of(board_queries.awaiting_approval_of(runtime.repo, "UANNA")) == [waiting.id]
    board = build_board(runtime.repo, "UANNA", now=clock.now, config=runtime.config)
    assert ids_of(board.awaiting.items) == [waiting.id] and board.figures.awaiting_approval == 1

    service.act(waiting.id, Request(Action.reassign, new_owner="UBEN"), Actor("UMANAGER"))
    service.act(unowned.id, Request(Action.claim), Actor("UANNA"))
    assert ids_of(board_queries.awaiting_approval_of(runtime.repo, "UANNA")) == [unowned.id]  # it follows the owner
    assert ids_of(board_queries.awaiting_approval_of(runtime.repo, "UBEN")) == [waiting.id]
    service.act(waiting.id, Request(Action.approve), Actor("UBEN"))
    assert board_queries.awaiting_approval_of(runtime.repo, "UBEN") == []
    assert approver_rows(runtime, waiting.id) == {"UBEN": False}


def test_awaiting_approval_of_lists_newest_first(runtime: Runtime, service: HandoffService) -> None:
    first = submit(service, owner="UANNA", approvers=["ULEAD"], requires_approval=True)
    second = submit(service, approvers=["ULEAD"], requires_approval=True)
    assert ids_of(board_queries.awaiting_approval_of(runtime.repo, "ULEAD")) == [second.id, first.id]
    assert ids_of(board_queries.awaiting_approval_of(runtime.db, "ULEAD", limit=1)) == [second.id]


def test_rebuild_approvers_refills_the_side_table_after_a_bulk_load(runtime: Runtime, service: HandoffService) -> None:
    waiting = submit(service, owner="UANNA", approvers=["ULEAD", "UXAVIER"], requires_approval=True)
    owner_approves = submit(service, owner="UANNA", requires_approval=True)
    with runtime.db.write() as session:
        session.execute(delete(APPROVERS))
    assert rebuild_approvers(runtime.db) == 3
    assert approver_rows(runtime, waiting.id) == {"ULEAD": True, "UXAVIER": True}
    assert approver_rows(runtime, owner_approves.id) == {"UANNA": True}
