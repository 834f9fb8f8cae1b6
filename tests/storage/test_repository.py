"""The repository and the lifecycle through it, on SQLite and PostgreSQL (the `runtime` fixture is parametrised)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, insert, text
from sqlmodel import SQLModel, select

from bot.runtime import Runtime
from handoffs.effects import POST_CARD, THREAD_REPLY, UPDATE_CARD, direct_message
from handoffs.lifecycle import Action, Actor, Refused, Request
from handoffs.model import HandoffEdit, HandoffIn, Status, Urgency
from handoffs.ports import Created, CreateResult, Effect, IdempotencyConflict
from handoffs.public import handoff_json
from handoffs.service import HandoffService, NotFound
from storage import migrate
from storage.lean import Prepared
from storage.repository import Repository
from storage.tables import EventRow, HandoffRow
from tests.factories import counts, lead, payload


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime.now(UTC).replace(microsecond=123456))


@pytest.fixture
def service(runtime: Runtime, clock: Clock) -> HandoffService:
    return HandoffService(runtime.repo, runtime.config, clock)


def submit(service: HandoffService, **fields: Any) -> CreateResult:
    return service.submit(HandoffIn.model_validate(payload(**fields)), actor="producer")


# --- schema -----------------------------------------------------------------------------------


def test_the_migrations_create_exactly_the_tables_the_code_uses(runtime: Runtime) -> None:
    with runtime.db.writer.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert differences == []


def test_migrating_again_changes_nothing(runtime: Runtime, service: HandoffService) -> None:
    created = submit(service).handoff
    migrate.upgrade(runtime.settings.database_url)
    assert runtime.repo.get(created.id) == created


# --- intake -----------------------------------------------------------------------------------


def test_a_new_handoff_is_stored_with_its_event_and_its_card_in_the_outbox(
    runtime: Runtime, service: HandoffService, clock: Clock
) -> None:
    due = datetime(2031, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    result = submit(service, summary="Jane wants a quote", facts={"customer": "ACME"}, confidence=0.9,
                    already_done=["called once"], due_at=due.isoformat(), created_by="call-summariser",
                    source={"system": "gong", "url": "https://gong.test/call/1", "label": "Call"},
                    external_id="call-1", callback_url="https://hooks.test/h")
    assert result.result is Created.created and result.is_new
    stored = runtime.repo.get(result.handoff.id)
    assert stored == result.handoff
    assert stored is not None
    assert (stored.status, stored.owner, stored.queue, stored.channel) == (Status.open, None, "CHANDOFFS", "CHANDOFFS")
    assert stored.facts == {"customer": "ACME"} and stored.already_done == ["called once"]
    assert stored.due_at == due and stored.due_at.tzinfo is not None
    assert stored.created_at == clock.now
    assert stored.claim_by == clock.now + timedelta(hours=4)
    assert (stored.source_system, stored.source_url, stored.external_id) == ("gong", "https://gong.test/call/1",
                                                                            "call-1")
    assert stored.version == 1 and stored.seen_count == 1

    [event] = runtime.repo.events(stored.id)
    assert (event.action, event.actor, event.from_status, event.to_status) == ("created", "producer", None, "open")
    assert event.data["route"] == "default" and event.data["created_by"] == "call-summariser"
    assert [(row.kind, row.target, row.state) for row in runtime.repo.outbox_for(stored.id)] == [
        (POST_CARD, "CHANDOFFS", "pending"), ("webhook", "https://hooks.test/h", "pending")  # its `created` webhook
    ]


@pytest.mark.parametrize("fields", [
    pytest.param({}, id="minimal"),
    pytest.param({"due_at": "2031-01-02T10:04:05.678901+02:00", "owner": "UOWNER", "approvers": ["UBOSS", "UBOSS"],
                  "confidence": 0.41, "missing_info": ["budget"], "source": {"system": "crm"}},
                 id="owned-and-reviewed"),
    pytest.param(lead(urgency="high"), id="round-robin-lead"),
])
def test_the_handoff_a_create_answers_is_the_one_stored(service: HandoffService, fields: dict[str, Any]) -> None:
    """The answer is built from what was written, not read back: it must be exactly what a read returns."""
    created = service.submit(HandoffIn.model_validate(payload(**fields)), actor="producer").handoff
    stored = service.get(created.id)
    assert handoff_json(created) == handoff_json(stored)
    assert dataclasses.asdict(created) == dataclasses.asdict(stored)


def test_a_read_by_id_gives_what_a_core_query_gives_after_a_compare_and_set(
    runtime: Runtime, service: HandoffService, clock: Clock
) -> None:
    """`get` and the compare-and-set run prepared statements on the driver's cursor (storage/lean.py): the
    values they write and read must be exactly those of SQLAlchemy's own execution, on either backend."""
    fields = {"due_at": "2031-01-02T10:04:05.678901+02:00", "owner": "UOWNER", "approvers": ["UBOSS"],
              "confidence": 0.41, "missing_info": ["budget"], "facts": {"plan": "Pro"}}
    handoff = submit(service, **fields).handoff
    clock.now += timedelta(minutes=3)
    edit = HandoffEdit(draft="Hello Jane, …", urgency=Urgency.high,
                       due_at=datetime(2032, 5, 6, 7, 8, 9, 10, tzinfo=UTC))
    edited = service.act(handoff.id, Request(Action.edit, edit=edit), Actor("UOWNER")).handoff
    [listed] = runtime.repo.page(limit=1).items  # a Core query, through SQLAlchemy's result processing
    read = runtime.repo.get(handoff.id)
    assert dataclasses.asdict(read) == dataclasses.asdict(listed) == dataclasses.asdict(edited)  # type: ignore[arg-type]
    assert read is not None and read.due_at is not None and read.due_at == edit.due_at
    assert read.due_at.tzinfo is not None
    assert (read.version, read.draft, read.confidence, read.facts) == (2, "Hello Jane, …", 0.41, {"plan": "Pro"})
    with runtime.db.read() as session:  # stored as SQLAlchemy stores them: a Core comparison finds the row
        found = session.exec(select(func.count()).select_from(HandoffRow).where(
            HandoffRow.id == handoff.id, HandoffRow.updated_at == clock.now, HandoffRow.due_at == edit.due_at,
            HandoffRow.urgency == "high")).one()
    assert found == 1


def test_many_rows_at_once_are_stored_in_order_as_given(runtime: Runtime, service: HandoffService) -> None:
    """A batch's side rows go in as multi-row VALUES on SQLite, a hundred a statement (storage/lean.py)."""
    handoff = submit(service).handoff
    columns = ("handoff_id", "action", "actor", "at", "from_status", "to_status", "data")
    statement = Prepared(insert(EventRow.__table__), runtime.db.writer.dialect,  # type: ignore[attr-defined]
                         column_keys=columns)
    start = datetime(2031, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    rows = [dict(handoff_id=handoff.id, action="nudged", actor=f"U{n:03d}", at=start + timedelta(seconds=n),
                 from_status="open", to_status="open", data={"n": n, "text": "é <b>"}) for n in range(150)]
    with runtime.db.write() as session:
        cursor = session.connection().connection.cursor()
        statement.run_many(cursor, [statement.parameters(row) for row in rows])
        cursor.close()
    stored = [event for event in runtime.repo.events(handoff.id) if event.action == "nudged"]
    assert [(event.actor, event.at, event.data) for event in stored] == [
        (row["actor"], row["at"], row["data"]) for row in rows
    ]


def test_an_idempotent_repeat_returns_the_stored_handoff_and_stores_nothing(
    runtime: Runtime, service: HandoffService
) -> None:
    body = payload(external_id="lead-7", source={"system": "hubspot"})
    first = service.submit(HandoffIn.model_validate(body), actor="producer")
    before = counts(runtime)
    again = service.submit(HandoffIn.model_validate(body), actor="producer")
    assert again.result is Created.idempotent
    assert again.handoff == first.handoff
    assert counts(runtime) == before


def test_the_same_key_with_other_content_is_a_conflict(runtime: Runtime, service: HandoffService) -> None:
    body = payload(external_id="lead-7", source={"system": "hubspot"})
    first = service.submit(HandoffIn.model_validate(body), actor="producer")
    before = counts(runtime)
    with pytest.raises(IdempotencyConflict) as caught:
        service.submit(HandoffIn.model_validate({**body, "urgency": "high"}), actor="producer")
    assert caught.value.existing_id == first.handoff.id
    assert counts(runtime) == before


def test_the_idempotency_key_is_per_source_system(runtime: Runtime, service: HandoffService) -> None:
    one = submit(service, external_id="42", source={"system": "zapier"})
    two = submit(service, external_id="42", source={"system": "n8n"})
    three = submit(service, external_id="42")
    assert len({one.handoff.id, two.handoff.id, three.handoff.id}) == 3
    repeat = service.submit(HandoffIn.model_validate({
        "title": three.handoff.title, "next_action": three.handoff.next_action, "external_id": "42",
    }), actor="producer")
    assert repeat.result is Created.idempotent and repeat.handoff.id == three.handoff.id


def test_a_duplicate_within_the_window_is_counted_on_the_original(
    runtime: Runtime, service: HandoffService, clock: Clock
) -> None:
    body = {"title": "Refund for order 17", "next_action": "Refund it", "summary": "Customer asked twice"}
    original = service.submit(HandoffIn.model_validate(body), actor="producer").handoff
    before = counts(runtime)
    clock.now += timedelta(hours=23)
    again = service.submit(HandoffIn.model_validate({**body, "title": "REFUND for order 17!", "urgency": "high"}),
                           actor="other-bot")
    assert again.result is Created.duplicate
    assert again.handoff.id == original.id and again.handoff.seen_count == 2
    after = counts(runtime)
    assert after["handoffs"] == before["handoffs"]
    assert after["outbox"] == before["outbox"] + 1  # a card update showing "seen again ×1", not a new card
    assert runtime.repo.outbox_for(original.id)[-1].kind == "slack.update_card"
    assert after["events"] == before["events"] + 1
    assert runtime.repo.get(original.id).seen_count == 2  # type: ignore[union-attr]
    seen = runtime.repo.events(original.id)[-1]
    assert (seen.action, seen.actor, seen.data["count"]) == ("seen_again", "other-bot", 2)
    third = service.submit(HandoffIn.model_validate(body), actor="producer")
    assert third.handoff.seen_count == 3


def test_after_the_dedupe_window_the_same_content_is_a_new_handoff(
    runtime: Runtime, service: HandoffService, clock: Clock
) -> None:
    body = {"title": "Refund for order 18", "next_action": "Refund it"}
    original = service.submit(HandoffIn.model_validate(body), actor="producer").handoff
    clock.now += timedelta(hours=24, seconds=1)
    later = service.submit(HandoffIn.model_validate(body), actor="producer")
    assert later.result is Created.created and later.handoff.id != original.id


def test_a_finished_handoff_is_not_a_duplicate_target(runtime: Runtime, service: HandoffService) -> None:
    body = {"title": "Refund for order 19", "next_action": "Refund it", "owner": "UOWNER"}
    original = service.submit(HandoffIn.model_validate(body), actor="producer").handoff
    service.act(original.id, Request(Action.close, outcome="done"), Actor("UOWNER"))
    again = service.submit(HandoffIn.model_validate(body), actor="producer")
    assert again.result is Created.created and again.handoff.id != original.id


def test_round_robin_alternates_and_survives_a_restart(runtime: Runtime, service: HandoffService) -> None:
    owners = [service.submit(HandoffIn.model_validate(lead(urgency="high")), actor="p").handoff.owner
              for _ in range(3)]
    restarted = HandoffService(Repository(runtime.db), runtime.config)
    owners.append(restarted.submit(HandoffIn.model_validate(lead(urgency="urgent")), actor="p").handoff.owner)
    assert owners == ["UANNA", "UBEN", "UANNA", "UBEN"]
    first = runtime.repo.page(limit=10).items[-1]
    assert (first.status, first.queue, first.channel, first.claimed_at) == (Status.claimed, None, "CSALES",
                                                                            first.created_at)


def test_a_review_handoff_goes_to_the_review_channel(runtime: Runtime, service: HandoffService) -> None:
    handoff = submit(service, missing_info=["budget"]).handoff
    assert (handoff.channel, handoff.queue, handoff.approvers, handoff.requires_approval) == (
        "CREVIEW", "CREVIEW", ["ULEAD"], True)
    assert handoff.review_reasons == ["1 missing item(s)"]
    assert [row.target for row in runtime.repo.outbox_for(handoff.id)] == ["CREVIEW"]


# --- actions ----------------------------------------------------------------------------------


def test_an_action_is_written_with_its_event_and_effects(runtime: Runtime, service: HandoffService,
                                                         clock: Clock) -> None:
    handoff = submit(service).handoff
    clock.now += timedelta(minutes=5)
    acted = service.act(handoff.id, Request(Action.claim), Actor("UANNA"))
    stored = runtime.repo.get(handoff.id)
    assert stored == acted.handoff
    assert stored is not None
    assert (stored.status, stored.owner, stored.version) == (Status.claimed, "UANNA", 2)
    assert stored.claimed_at == stored.updated_at == clock.now
    event = runtime.repo.events(handoff.id)[-1]
    assert (event.action, event.actor, event.from_status, event.to_status, event.data) == (
        "claimed", "UANNA", "open", "claimed", {"owner": "UANNA"})
    assert event.at == clock.now
    kinds = [(row.kind, row.target) for row in runtime.repo.outbox_for(handoff.id)]
    assert kinds == [(POST_CARD, "CHANDOFFS"), (UPDATE_CARD, "CHANDOFFS"), (THREAD_REPLY, "CHANDOFFS")]


def test_a_stale_version_writes_nothing(runtime: Runtime, service: HandoffService, clock: Clock) -> None:
    handoff = submit(service).handoff
    service.act(handoff.id, Request(Action.claim), Actor("UANNA"))
    before = counts(runtime)
    from handoffs.lifecycle import decide

    stale_change = decide(handoff, Request(Action.claim), Actor("UBEN"), runtime.config, clock.now)
    assert runtime.repo.apply(handoff, stale_change, actor=Actor("UBEN"), effects=[], now=clock.now) is None
    assert counts(runtime) == before
    assert runtime.repo.get(handoff.id).owner == "UANNA"  # type: ignore[union-attr]


def test_a_refusal_is_logged_and_changes_nothing_else(runtime: Runtime, service: HandoffService) -> None:
    handoff = submit(service, owner="UOWNER").handoff
    before = counts(runtime)
    with pytest.raises(Refused) as caught:
        service.act(handoff.id, Request(Action.close, outcome="done"), Actor("USTRANGER"))
    assert caught.value.code == "not_allowed"
    assert runtime.repo.get(handoff.id) == handoff
    after = counts(runtime)
    assert (after["handoffs"], after["outbox"], after["events"]) == (before["handoffs"], before["outbox"],
                                                                     before["events"] + 1)
    refused = runtime.repo.events(handoff.id)[-1]
    assert (refused.action, refused.actor, refused.from_status, refused.to_status) == (
        "refused", "USTRANGER", "claimed", "claimed")
    assert refused.data == {"attempted": "close", "code": "not_allowed", "reason": caught.value.reason}


def test_acting_on_a_missing_handoff_is_not_found(runtime: Runtime, service: HandoffService) -> None:
    before = counts(runtime)
    with pytest.raises(NotFound):
        service.act(9999, Request(Action.claim), Actor("UANNA"))
    assert counts(runtime) == before


def test_a_whole_life_reads_as_a_history(runtime: Runtime, service: HandoffService, clock: Clock) -> None:
    handoff = submit(service, kind="reply", draft="Hi Jane, …", approvers=["ULEAD"]).handoff
    assert handoff.requires_approval and handoff.status is Status.open
    steps = [
        (Request(Action.claim), Actor("UANNA")),
        (Request(Action.edit, edit=HandoffEdit(draft="Hello Jane, …")), Actor("UANNA")),
        (Request(Action.snooze, until=clock.now + timedelta(hours=1)), Actor("UANNA")),
        (Request(Action.release), Actor("UANNA")),
        (Request(Action.reassign, new_owner="UBEN"), Actor("UMANAGER")),
        (Request(Action.approve, note="good"), Actor("ULEAD")),
        (Request(Action.reopen, reason="customer replied"), Actor("UMANAGER")),
        (Request(Action.claim), Actor("UBEN")),
        (Request(Action.reject, reason="not needed any more"), Actor("UBEN")),
    ]
    for request, actor in steps:
        clock.now += timedelta(minutes=1)
        service.act(handoff.id, request, actor)
    final = runtime.repo.get(handoff.id)
    assert final is not None
    assert (final.status, final.outcome, final.outcome_note, final.version) == (
        Status.rejected, "rejected", "not needed any more", 1 + len(steps))
    assert final.draft == "Hello Jane, …"
    events = runtime.repo.events(handoff.id)
    assert [(e.action, e.from_status, e.to_status) for e in events] == [
        ("created", None, "open"),
        ("claimed", "open", "claimed"),
        ("edited", "claimed", "claimed"),
        ("snoozed", "claimed", "claimed"),
        ("released", "claimed", "open"),
        ("reassigned", "open", "claimed"),
        ("approved", "claimed", "closed"),  # a reply closes on approval
        ("reopened", "closed", "open"),
        ("claimed", "open", "claimed"),
        ("rejected", "claimed", "rejected"),
    ]
    assert events[2].data == {"changes": {"draft": {"old": "Hi Jane, …", "new": "Hello Jane, …"}}}
    assert events[6].data["outcome"] == "approved"
    assert [e.at for e in events] == sorted(e.at for e in events)


def test_a_released_handoff_waits_in_its_channel_again(runtime: Runtime, service: HandoffService) -> None:
    handoff = service.submit(HandoffIn.model_validate(lead(urgency="high")), actor="p").handoff
    assert handoff.queue is None
    released = service.act(handoff.id, Request(Action.release), Actor(handoff.owner or "")).handoff
    assert (released.status, released.owner, released.queue) == (Status.open, None, "CSALES")
    assert runtime.repo.get(handoff.id) == released


# --- reads ------------------------------------------------------------------------------------


def test_pages_are_newest_first_and_do_not_overlap(runtime: Runtime, service: HandoffService) -> None:
    ids = [submit(service).handoff.id for _ in range(7)]
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        page = runtime.repo.page(limit=3, cursor=cursor)
        seen.extend(h.id for h in page.items)
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == sorted(ids, reverse=True)
    assert pages == 3


def test_page_filters_and_stalled(runtime: Runtime, service: HandoffService, clock: Clock) -> None:
    open_one = submit(service).handoff
    anna = submit(service, owner="UANNA").handoff
    submit(service, owner="UBEN")
    assert [h.id for h in runtime.repo.page(status=Status.open).items] == [open_one.id]
    assert [h.id for h in runtime.repo.page(owner="UANNA").items] == [anna.id]
    assert runtime.repo.page(stalled_at=clock.now).items == []
    # open past claim_by (4h) is stalled; claimed is not stalled until due_at (3d)
    later = clock.now + timedelta(hours=4, minutes=1)
    assert [h.id for h in runtime.repo.page(stalled_at=later).items] == [open_one.id]
    assert [h.id for h in runtime.repo.stalled(now=later)] == [open_one.id]
    assert runtime.repo.count_stalled(now=clock.now + timedelta(days=4)) == 3
    service.act(open_one.id, Request(Action.claim), Actor("UCARL"))
    assert runtime.repo.stalled(now=later) == []


def test_refused_transitions_change_nothing_but_the_log(runtime: Runtime, service: HandoffService) -> None:
    claimed = submit(service, owner="UOWNER", approvers=["UAPPROVER"]).handoff
    open_one = submit(service).handoff
    closed = submit(service, owner="UOWNER").handoff
    closed = service.act(closed.id, Request(Action.close, outcome="done"), Actor("UOWNER")).handoff
    cases = [
        (claimed, Request(Action.claim), Actor("UOTHER"), "already_claimed"),
        (claimed, Request(Action.reopen), Actor("UMANAGER"), "wrong_status"),
        (claimed, Request(Action.release), Actor("UAPPROVER"), "not_allowed"),
        (claimed, Request(Action.approve), Actor("UOWNER"), "not_allowed"),
        (claimed, Request(Action.reassign, new_owner="UX"), Actor("USTRANGER"), "not_allowed"),
        (claimed, Request(Action.reject), Actor("UAPPROVER"), "missing_argument"),
        (claimed, Request(Action.close, outcome="won"), Actor("UOWNER"), "bad_outcome"),
        (open_one, Request(Action.close, outcome="done"), Actor("UMANAGER"), "wrong_status"),
        (open_one, Request(Action.release), Actor("UMANAGER"), "wrong_status"),
        (closed, Request(Action.claim), Actor("UOTHER"), "terminal"),
        (closed, Request(Action.reopen), Actor("UOWNER"), "not_allowed"),
    ]
    for handoff, request, actor, code in cases:
        before, rows, history = runtime.repo.get(handoff.id), counts(runtime), runtime.repo.events(handoff.id)
        with pytest.raises(Refused) as caught:
            service.act(handoff.id, request, actor)
        assert caught.value.code == code, (request, actor)
        assert runtime.repo.get(handoff.id) == before, (request, actor)
        after = counts(runtime)
        assert (after["handoffs"], after["outbox"], after["events"]) == (
            rows["handoffs"], rows["outbox"], rows["events"] + 1), (request, actor)
        events = runtime.repo.events(handoff.id)
        assert events[:-1] == history
        assert (events[-1].action, events[-1].actor, events[-1].data["code"]) == ("refused", actor.id, code)
        assert events[-1].data["attempted"] == request.action.value


def test_a_retried_duplicate_counts_once_and_a_changed_retry_conflicts(
    runtime: Runtime, service: HandoffService
) -> None:
    body = {"title": "Refund for order 20", "next_action": "Refund it"}
    original = service.submit(HandoffIn.model_validate({**body, "external_id": "a"}), actor="p").handoff
    duplicate = {**body, "external_id": "b", "source": {"system": "mail"}}
    assert service.submit(HandoffIn.model_validate(duplicate), actor="p").result is Created.duplicate
    rows = counts(runtime)
    retried = service.submit(HandoffIn.model_validate(duplicate), actor="p")
    assert retried.result is Created.duplicate and retried.handoff.id == original.id
    assert retried.handoff.seen_count == 2
    assert counts(runtime) == rows
    with pytest.raises(IdempotencyConflict):
        service.submit(HandoffIn.model_validate({**duplicate, "urgency": "urgent"}), actor="p")
    # the same external_id from another system is another submission
    other = service.submit(HandoffIn.model_validate({**duplicate, "source": {"system": "chat"}}), actor="p")
    assert other.handoff.seen_count == 3


def test_a_key_first_seen_as_a_duplicate_keeps_answering_after_the_original_is_closed(
    runtime: Runtime, service: HandoffService
) -> None:
    body = {"title": "Refund for order 21", "next_action": "Refund it", "owner": "UOWNER"}
    original = service.submit(HandoffIn.model_validate(body), actor="p").handoff
    duplicate = {**body, "external_id": "mail-9", "source": {"system": "mail"}}
    assert service.submit(HandoffIn.model_validate(duplicate), actor="p").result is Created.duplicate
    service.act(original.id, Request(Action.close, outcome="done"), Actor("UOWNER"))
    rows = counts(runtime)
    retried = service.submit(HandoffIn.model_validate(duplicate), actor="p")
    assert (retried.result, retried.handoff.id) == (Created.duplicate, original.id)
    assert retried.handoff.status is Status.closed
    assert counts(runtime) == rows  # no new handoff, card or event
    changed = {**duplicate, "title": "Refund for order 22"}  # other content: no longer a duplicate of anything
    with pytest.raises(IdempotencyConflict) as caught:
        service.submit(HandoffIn.model_validate(changed), actor="p")
    assert caught.value.existing_id == original.id
    assert counts(runtime) == rows


def test_the_migration_keeps_each_stored_key_with_its_first_holder(runtime: Runtime, service: HandoffService) -> None:
    body = {"title": "Refund for order 23", "next_action": "Refund it"}
    original = service.submit(HandoffIn.model_validate({**body, "external_id": "a", "source": {"system": "mail"}}),
                              actor="p").handoff
    sighted = {**body, "external_id": "b", "source": {"system": "mail"}}
    service.submit(HandoffIn.model_validate(sighted), actor="p")
    first = submit(service, external_id="c").handoff
    second = submit(service, external_id="c-twin").handoff
    url = runtime.settings.database_url
    command.downgrade(migrate.alembic_config(url), "0011")
    with runtime.db.write() as session:  # what two processes could store before: one key without a system, twice
        session.execute(text("UPDATE handoffs SET external_id = 'c' WHERE id = :id"), {"id": second.id})
    migrate.upgrade(url)
    with runtime.db.read() as session:
        keys = session.execute(text("SELECT source_system, external_id, handoff_id FROM idempotency_keys")).all()
    assert sorted(map(tuple, keys)) == [("", "c", first.id), ("mail", "a", original.id), ("mail", "b", original.id)]
    retried = service.submit(HandoffIn.model_validate(sighted), actor="p")
    assert (retried.result, retried.handoff.id, retried.handoff.seen_count) == (Created.duplicate, original.id, 2)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_managers_nudge_within_five_minutes_of_the_last_is_a_repeat(
    runtime: Runtime, service: HandoffService, clock: Clock,
) -> None:
    """A double click, or two managers at once, remind the owner once; a nudge later on goes again."""
    handoff = submit(service, owner="UANNA").handoff
    manager = Actor("UMANAGER")

    def message(_: Any) -> list[Effect]:
        return [direct_message("UANNA", "nudge")]

    service.nudge(handoff.id, manager, message=message)
    clock.now += timedelta(minutes=4)
    with pytest.raises(Refused) as caught:
        service.nudge(handoff.id, manager, message=message)
    assert caught.value.code == "already_noted"
    clock.now += timedelta(minutes=1, seconds=1)
    service.nudge(handoff.id, manager, message=message)
    nudges = [e for e in runtime.repo.events(handoff.id) if e.action == "nudged"]
    assert len(nudges) == 2
    assert [e.data["code"] for e in runtime.repo.events(handoff.id) if e.action == "refused"] == ["already_noted"]
