"""Many people (or producers) at once, on SQLite and PostgreSQL: the compare-and-set decides, nothing is lost."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import pytest

from bot.runtime import Runtime, build_runtime
from handoffs.config import HandoffConfig
from handoffs.effects import EPHEMERAL
from handoffs.lifecycle import Action, Actor, Refused, Request
from handoffs.model import HandoffIn, Status
from handoffs.ports import Created, CreateResult, IdempotencyConflict
from handoffs.service import HandoffService
from tests.conftest import make_settings
from tests.factories import counts, lead, payload

CLAIMERS = 32


def all_at_once(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run `work(i)` in `count` threads released together by a barrier; return results or exceptions."""
    barrier = threading.Barrier(count)

    def run(index: int) -> Any:
        barrier.wait(timeout=30)
        try:
            return work(index)
        except Exception as error:  # collected and inspected by the test
            return error

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def test_thirty_two_simultaneous_claims_yield_one_owner(runtime: Runtime) -> None:
    handoff = runtime.service.submit(HandoffIn.model_validate(payload()), actor="producer").handoff
    assert handoff.status is Status.open

    results = all_at_once(
        CLAIMERS, lambda i: runtime.service.act(handoff.id, Request(Action.claim), Actor(f"UCLAIMER{i:02d}"))
    )

    winners = [r for r in results if not isinstance(r, Exception)]
    refusals = [r for r in results if isinstance(r, Refused)]
    assert len(winners) == 1, [r for r in results if not isinstance(r, Refused | type(winners[0]))]
    assert len(refusals) == CLAIMERS - 1
    winner = winners[0].handoff.owner
    assert all(r.code == "already_claimed" for r in refusals)
    assert all(f"<@{winner}>" in r.reason for r in refusals)

    stored = runtime.repo.get(handoff.id)
    assert stored is not None
    assert (stored.status, stored.owner, stored.version) == (Status.claimed, winner, handoff.version + 1)
    events = runtime.repo.events(handoff.id)
    actions = Counter(e.action for e in events)
    assert actions == {"created": 1, "claimed": 1, "refused": CLAIMERS - 1}
    claimed = next(e for e in events if e.action == "claimed")
    assert claimed.actor == winner
    refused_by = {e.actor for e in events if e.action == "refused"}
    assert refused_by == {f"UCLAIMER{i:02d}" for i in range(CLAIMERS)} - {winner}
    assert all(e.data["code"] == "already_claimed" for e in events if e.action == "refused")


def test_simultaneous_submissions_with_one_key_store_one_handoff(runtime: Runtime) -> None:
    body = HandoffIn.model_validate(payload(external_id="order-1", source={"system": "shop"}))
    results = all_at_once(16, lambda i: runtime.service.submit(body, actor="producer"))
    assert not [r for r in results if isinstance(r, Exception)]
    assert Counter(r.result for r in results) == {Created.created: 1, Created.idempotent: 15}
    assert len({r.handoff.id for r in results}) == 1
    assert counts(runtime)["handoffs"] == 1


def test_simultaneous_duplicates_make_one_card_seen_many_times(runtime: Runtime) -> None:
    results = all_at_once(
        12, lambda i: runtime.service.submit(
            HandoffIn.model_validate({"title": "Server down", "next_action": "Look", "external_id": f"alert-{i}"}),
            actor="monitor",
        ),
    )
    assert not [r for r in results if isinstance(r, Exception)]
    assert Counter(r.result for r in results) == {Created.created: 1, Created.duplicate: 11}
    [handoff] = runtime.repo.page().items
    assert handoff.seen_count == 12
    kinds = [row.kind for row in runtime.repo.outbox_for(handoff.id)]
    assert kinds.count("slack.post_card") == 1  # one card
    assert kinds.count("slack.update_card") == 11  # each sighting refreshes its "seen again ×N"


def test_simultaneous_hot_leads_are_shared_evenly(runtime: Runtime) -> None:
    results = all_at_once(
        10, lambda i: runtime.service.submit(HandoffIn.model_validate(lead(urgency="high")), actor="producer")
    )
    assert not [r for r in results if isinstance(r, Exception)]
    assert Counter(r.handoff.owner for r in results) == {"UANNA": 5, "UBEN": 5}


def submit_each(pairs: list[tuple[HandoffService, HandoffIn]], index: int) -> CreateResult:
    service, body = pairs[index]
    return service.submit(body, actor="producer")


def test_two_processes_given_one_key_without_a_source_system_store_one_handoff(
    runtime: Runtime, database_url: str, handoff_config: HandoffConfig
) -> None:
    """Two servers on one database, each sent the same key (no `source.system`) with other content: one stores
    it, the other is a conflict. The handoffs table's unique key cannot say so (NULLs are all distinct there),
    and with other content the two never waited on one lock: both used to be stored, on PostgreSQL."""
    other = build_runtime(make_settings(database_url), config=handoff_config, run_migrations=False)
    try:
        services = [runtime.service, other.service]
        for attempt in range(8):
            bodies = [HandoffIn.model_validate(payload(external_id=f"ticket-{attempt}")) for _ in services]
            results = all_at_once(2, partial(submit_each, list(zip(services, bodies, strict=True))))
            assert sorted(type(r).__name__ for r in results) == ["CreateResult", "IdempotencyConflict"], results
        assert counts(runtime)["handoffs"] == 8
    finally:
        other.close()


def test_simultaneous_intakes_each_get_their_own_answer(runtime: Runtime) -> None:
    """Written in shared batches: a conflict, a repeat and a duplicate among them answer only for themselves."""
    runtime.service.submit(HandoffIn.model_validate(payload(external_id="taken", title="First")), actor="producer")

    def body(i: int) -> HandoffIn:
        if i % 4 == 1:  # the same key as the first, other content: a conflict each
            return HandoffIn.model_validate(payload(external_id="taken", title=f"Other {i}"))
        if i % 4 == 2:  # the same content again and again: one handoff, seen many times
            return HandoffIn.model_validate(payload(title="Same again", external_id=f"same-{i}"))
        return HandoffIn.model_validate(payload(title=f"New {i}"))

    results = all_at_once(24, lambda i: runtime.service.submit(body(i), actor="producer"))

    conflicts = [r for i, r in enumerate(results) if i % 4 == 1]
    assert all(isinstance(r, IdempotencyConflict) for r in conflicts), conflicts
    same = [r for i, r in enumerate(results) if i % 4 == 2]
    assert Counter(r.result for r in same) == {Created.created: 1, Created.duplicate: 5}
    assert len({r.handoff.id for r in same}) == 1
    new = [r for i, r in enumerate(results) if i % 4 in (0, 3)]
    assert all(r.result is Created.created for r in new) and len({r.handoff.id for r in new}) == 12
    assert counts(runtime)["handoffs"] == 1 + 1 + 12


def test_a_click_that_keeps_losing_the_race_is_refused_privately_and_logged(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every compare-and-set lost (the handoff changing under each try): the clicker is told, and the refusal is
    in the log like any other; it used to be neither."""
    handoff = runtime.service.submit(HandoffIn.model_validate(payload()), actor="producer").handoff
    monkeypatch.setattr(runtime.service.store, "apply", lambda *args, **kwargs: None)
    with pytest.raises(Refused) as refused:
        runtime.service.act(handoff.id, Request(Action.claim), Actor("UCAROL"), notify_in="CHANDOFFS")
    assert refused.value.code == "busy"
    [logged] = [e for e in runtime.repo.events(handoff.id) if e.action == "refused"]
    assert (logged.actor, logged.data["code"]) == ("UCAROL", "busy")
    [notice] = [row for row in runtime.repo.outbox_for(handoff.id) if row.kind == EPHEMERAL]
    assert notice.target == "CHANDOFFS" and notice.payload["user"] == "UCAROL"
