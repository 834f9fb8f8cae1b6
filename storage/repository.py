"""The repository: every write is one transaction; every transition is a compare-and-set."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Row, Table, Update, bindparam, func, insert, or_, text
from sqlalchemy.engine import Dialect
from sqlalchemy.engine.interfaces import DBAPICursor
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from handoffs.effects import UPDATE_CARD
from handoffs.intake import IntakePlan
from handoffs.lifecycle import Actor, Change, Refused
from handoffs.model import TERMINAL, Event, Handoff, Status, Urgency
from handoffs.ports import Created, CreateResult, Effect, IdempotencyConflict
from handoffs.webhooks import MAX_DUPLICATE_CALLBACKS, same_url
from storage.approvers import APPROVER_COLUMNS, APPROVERS, approver_rows, sync_approvers
from storage.db import Database
from storage.group_commit import GroupCommit
from storage.lean import Bound, Prepared
from storage.schedule import INSERT_SCHEDULE, LOOK_COLUMNS, SET_LOOK, drop_settled, first_look_rows, look_moves
from storage.tables import EventRow, HandoffRow, IdempotencyKeyRow, OutboxRow, RouteCursor, SlackEventRow

_DOMAIN_FIELDS = {f.name for f in fields(Handoff)}
_OPEN_STATUSES = [s.value for s in Status if s not in TERMINAL]
_HANDOFFS: Table = HandoffRow.__table__  # type: ignore[attr-defined]
_EVENTS: Table = EventRow.__table__  # type: ignore[attr-defined]
_OUTBOX: Table = OutboxRow.__table__  # type: ignore[attr-defined]
_SLACK_EVENTS: Table = SlackEventRow.__table__  # type: ignore[attr-defined]
_KEYS: Table = IdempotencyKeyRow.__table__  # type: ignore[attr-defined]
_COLUMN_NAMES = tuple(_HANDOFFS.c.keys())
_ROW_POSITIONS = [(name, index) for index, name in enumerate(_COLUMN_NAMES) if name in _DOMAIN_FIELDS]

# Intake's statements, built once (building and cache-keying them per request cost as much as running them).
_KEY_LOOKUP = select(_KEYS.c.handoff_id, _KEYS.c.payload_hash).where(
    _KEYS.c.source_system == bindparam("source_system"), _KEYS.c.external_id == bindparam("external_id")
)
_INSERT_KEY = insert(_KEYS)
_OPEN_DUPLICATE = (
    select(_HANDOFFS.c.id)
    .where(
        _HANDOFFS.c.fingerprint == bindparam("fingerprint"),
        _HANDOFFS.c.status.in_(_OPEN_STATUSES),
        _HANDOFFS.c.created_at >= bindparam("since"),
    )
    .order_by(_HANDOFFS.c.id)
    .limit(1)
)
_INSERT_HANDOFF = insert(_HANDOFFS).returning(_HANDOFFS.c.id)
_INSERT_EVENT = insert(_EVENTS)
_BY_ID = _HANDOFFS.select().where(_HANDOFFS.c.id == bindparam("id"))
_INSERT_OUTBOX = insert(_OUTBOX)
_INSERT_APPROVERS = insert(APPROVERS)
# In the order given (an unnest is read in array order): callers pass the keys sorted, so that two transactions
# never wait for each other's keys.
_ADVISORY_XACT_LOCKS = text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) AS k")


def _idempotency_key(plan: IntakePlan) -> dict[str, str] | None:
    payload = plan.payload
    if payload.external_id is None:
        return None
    system = payload.source.system if payload.source and payload.source.system else ""
    return {"source_system": system, "external_id": payload.external_id}


def to_domain(row: HandoffRow | Row[Any]) -> Handoff:
    if isinstance(row, Row) and row._fields == _COLUMN_NAMES:  # a plain row of every column: cheapest by position
        return _from_columns(row)
    return _domain({name: getattr(row, name) for name in _DOMAIN_FIELDS if hasattr(row, name)})


def _from_columns(columns: Sequence[Any]) -> Handoff:
    """The handoff of a row of every column of `handoffs`, in table order."""
    return _domain({name: columns[index] for name, index in _ROW_POSITIONS})


def _domain(values: dict[str, Any]) -> Handoff:
    values["status"] = Status(values["status"])
    values["urgency"] = Urgency(values["urgency"])
    values["facts"] = dict(values["facts"] or {})
    return Handoff(**values)


def event_to_domain(row: EventRow) -> Event:
    assert row.id is not None
    return Event(row.id, row.handoff_id, row.action, row.actor, row.at, row.from_status, row.to_status,
                 dict(row.data or {}))


_OUTBOX_COLUMNS = ("handoff_id", "kind", "target", "payload", "state", "attempts", "next_attempt_at", "created_at")
_EVENT_COLUMNS = ("handoff_id", "action", "actor", "at", "from_status", "to_status", "data")


def _outbox_rows(handoff_id: int | None, effects: list[Effect], now: datetime) -> list[dict[str, Any]]:
    return [dict(handoff_id=handoff_id, kind=effect.kind, target=effect.target, payload=effect.payload,
                 state="pending", attempts=0, next_attempt_at=now, created_at=now) for effect in effects]


@dataclass
class _SideRows:
    """The rows a batch of writes adds beside the handoffs themselves (schedule and approvers of new handoffs,
    changed handoffs' next looks, events, outbox rows), gathered over the batch and written with one statement
    per table: a statement each per write cost more than the inserts did, and on SQLite every statement made
    the batch, holding the write turn, wait for the GIL again.

    Rows are kept bound (`Prepared.parameters`): a change binds its rows before its batch takes the write turn.
    `cursor` is the batch's, in its transaction: its prepared statements (compare-and-sets, these rows) run on it.
    """

    statements: _SideStatements
    cursor: DBAPICursor
    schedule: list[Bound] = field(default_factory=list)
    approvers: list[Bound] = field(default_factory=list)
    looks: dict[int, datetime | None] = field(default_factory=dict)
    events: list[Bound] = field(default_factory=list)
    outbox: list[Bound] = field(default_factory=list)

    def write(self, session: Session) -> None:
        statements = self.statements
        for statement, rows in ((statements.schedule, self.schedule), (statements.approvers, self.approvers),
                                (statements.events, self.events), (statements.outbox, self.outbox)):
            if rows:
                statement.run_many(self.cursor, rows)
                rows.clear()
        moves = look_moves(self.looks)
        if moves:
            statements.set_look.execute_many(self.cursor, moves)
        if self.looks:
            drop_settled(session, self.looks)
            self.looks.clear()


@dataclass(frozen=True)
class _SideStatements:
    """The inserts of `_SideRows`, prepared for one dialect (storage/lean.py): with several rows of each in every
    batch, their execution through the Core cost more than SQLite's work."""

    schedule: Prepared
    approvers: Prepared
    events: Prepared
    outbox: Prepared
    set_look: Prepared

    @classmethod
    def for_dialect(cls, dialect: Dialect) -> _SideStatements:
        return cls(
            schedule=Prepared(INSERT_SCHEDULE, dialect, column_keys=LOOK_COLUMNS),
            approvers=Prepared(_INSERT_APPROVERS, dialect, column_keys=APPROVER_COLUMNS),
            events=Prepared(_INSERT_EVENT, dialect, column_keys=_EVENT_COLUMNS),
            outbox=Prepared(_INSERT_OUTBOX, dialect, column_keys=_OUTBOX_COLUMNS),
            set_look=Prepared(SET_LOOK[dialect.name], dialect, column_keys=LOOK_COLUMNS),
        )

    def event(self, handoff_id: int, action: str, *, actor: str, at: datetime, from_status: str | None,
              to_status: str, data: dict[str, Any]) -> Bound:
        return self.events.parameters(dict(handoff_id=handoff_id, action=action, actor=actor, at=at,
                                           from_status=from_status, to_status=to_status, data=data))

    def outbox_rows(self, handoff_id: int | None, effects: list[Effect], now: datetime) -> list[Bound]:
        return [self.outbox.parameters(row) for row in _outbox_rows(handoff_id, effects, now)]


NextLook = Callable[[Handoff], datetime | None]


@dataclass(frozen=True)
class _Write:
    """One write of the repository, queued for its batch: `run(session, beside)` in the batch's transaction.

    A batch writes existing handoffs in the order of their ids (`handoff_id`; new ones first, as they come), so
    that two batches on PostgreSQL take row locks in one order; `fingerprint` is a new handoff's content, locked
    for the batch (see `_lock_fingerprints`).
    """

    run: Callable[[Session, _SideRows], Any]
    handoff_id: int = 0
    fingerprint: str | None = None


@dataclass(frozen=True)
class Page:
    items: list[Handoff]
    next_cursor: int | None


class Repository:
    """Implements `handoffs.ports.HandoffStore` plus the read queries of the bot and the API."""

    def __init__(self, db: Database, *, next_look: NextLook = Handoff.stall_deadline) -> None:
        self.db = db
        # When the SLA sweep should next look at a handoff (handoffs.nudges.earliest_look with the config);
        # kept in `nudge_schedule` by every write, so that the sweep reads an index range, never the table.
        self.next_look = next_look
        self._writes: GroupCommit[_Write, Any] = GroupCommit(self._write_batch)
        self._side_statements = _SideStatements.for_dialect(db.writer.dialect)
        self._cas: dict[tuple[str, ...], Prepared] = {}  # a compare-and-set per set of columns written
        self._by_id = Prepared(_BY_ID, db.reader.dialect, result_types=[column.type for column in _HANDOFFS.c])

    # --- writes -------------------------------------------------------------------------------

    def create(
        self, plan: IntakePlan, *, effects: list[Effect], dedupe_since: datetime,
        derived_effects: Callable[[Handoff], list[Effect]] | None = None,
    ) -> CreateResult:
        def create_in(session: Session, beside: _SideRows) -> CreateResult | IdempotencyConflict:
            try:
                return self._create_in(session, plan, effects, dedupe_since, derived_effects, beside)
            except IdempotencyConflict as conflict:  # raised before anything of this intake was written
                return conflict  # raised in the caller's thread; the rest of the batch goes on

        return cast(CreateResult, self._writes.run(_Write(create_in, fingerprint=plan.fingerprint)))

    # Every write below goes through `_writes`: concurrent writes (intake, clicks) share one transaction, one
    # write turn and one commit (storage/group_commit.py). Under load that waiting for the write turn, not the
    # writing, was most of a request's time.

    def _write_batch(self, writes: Sequence[_Write]) -> list[Any]:
        """Several concurrent writes in one transaction, each as it would be alone (a later one sees what an
        earlier one wrote). If the batch fails as a whole, GroupCommit writes each again on its own."""
        return self._write_together(writes) if len(writes) > 1 else [self._write_alone(writes[0])]

    def _write_alone(self, write: _Write) -> Any:
        for _ in range(3):
            try:
                return self._write_together([write])[0]
            except IntegrityError:
                continue  # a concurrent insert took an idempotency key: read it on the next pass
        raise RuntimeError("could not store the handoff after repeated key conflicts")

    def _write_together(self, writes: Sequence[_Write]) -> list[Any]:
        answers: list[Any] = [None] * len(writes)
        with self.db.write() as session:
            self._lock_fingerprints(session, [write.fingerprint for write in writes if write.fingerprint])
            cursor = session.connection().connection.cursor()  # one for the batch, in its transaction
            try:
                beside = _SideRows(self._side_statements, cursor)
                for index in sorted(range(len(writes)), key=lambda index: writes[index].handoff_id):
                    answers[index] = writes[index].run(session, beside)
                beside.write(session)
            finally:
                cursor.close()
        return answers

    def _create_in(
        self, session: Session, plan: IntakePlan, effects: list[Effect], dedupe_since: datetime,
        derived_effects: Callable[[Handoff], list[Effect]] | None, beside: _SideRows,
    ) -> CreateResult:
        key = _idempotency_key(plan)
        if key is not None and (known := self._known_key(session, key, plan)) is not None:
            return known
        duplicate_id = session.execute(
            _OPEN_DUPLICATE, {"fingerprint": plan.fingerprint, "since": dedupe_since}
        ).scalar()
        if duplicate_id is not None:
            beside.write(session)  # the batch's rows so far first: a sighting's event and card update follow them
            duplicate = session.get(HandoffRow, duplicate_id)
            assert duplicate is not None
            self._keep_key(session, key, duplicate_id, plan)
            return CreateResult(self._seen_again(session, duplicate, plan), Created.duplicate)
        # Core INSERT … RETURNING id, and the handoff built from the values written: the hot path of intake,
        # where building ORM rows, or reading back and converting every column, cost more than the database.
        values, handoff = self._new_row(session, plan)
        handoff.id = session.execute(_INSERT_HANDOFF, values).scalar_one()
        self._keep_key(session, key, handoff.id, plan)
        statements = beside.statements
        first_look = first_look_rows(handoff.id, self.next_look(handoff))
        beside.schedule.extend(map(statements.schedule.parameters, first_look))
        beside.approvers.extend(map(statements.approvers.parameters, approver_rows(handoff)))
        beside.events.append(statements.event(
            handoff.id, "created", actor=plan.actor, at=plan.created_at, from_status=None,
            to_status=handoff.status.value,
            data={"route": plan.route, "channel": plan.channel, "owner": handoff.owner, "queue": plan.queue,
                  "review_reasons": plan.review_reasons, "created_by": plan.payload.created_by},
        ))
        derived = derived_effects(handoff) if derived_effects else []
        beside.outbox.extend(statements.outbox_rows(handoff.id, [*effects, *derived], plan.created_at))
        return CreateResult(handoff, Created.created)

    def _lock_fingerprints(self, session: Session, fingerprints: list[str]) -> None:
        """Serialise concurrent intake of the same content (SQLite already holds the write lock). Taken before
        the idempotency lookups: a repeat that waited here must find the row the first one stored, not
        mistake it for a duplicate."""
        if fingerprints and not self.db.is_sqlite:
            keys = sorted({int(fingerprint[:15], 16) for fingerprint in fingerprints})
            session.execute(_ADVISORY_XACT_LOCKS, {"keys": keys})

    def _known_key(self, session: Session, key: dict[str, str], plan: IntakePlan) -> CreateResult | None:
        """A repeat of a key already stored: its handoff, whatever became of it since (a repeat creates nothing,
        and counts no sighting twice); a conflict if the content differs from the key's first submission."""
        known = session.execute(_KEY_LOOKUP, key).first()
        if known is None:
            return None
        if known.payload_hash != plan.payload_hash:
            raise IdempotencyConflict(known.handoff_id)
        row = session.execute(_BY_ID, {"id": known.handoff_id}).one()
        its_own = (row.source_system or "", row.external_id) == (key["source_system"], key["external_id"])
        return CreateResult(to_domain(row), Created.idempotent if its_own else Created.duplicate)

    @staticmethod
    def _keep_key(session: Session, key: dict[str, str] | None, handoff_id: int, plan: IntakePlan) -> None:
        """Written at once, not with the batch's side rows: a later write of the batch must find it. Another
        process's write of the same key makes this one fail, and the write is tried again (`_write_alone`)."""
        if key is not None:
            session.execute(_INSERT_KEY, {**key, "handoff_id": handoff_id, "payload_hash": plan.payload_hash})

    def _seen_again(self, session: Session, row: HandoffRow, plan: IntakePlan) -> Handoff:
        assert row.id is not None
        payload = plan.payload
        key = {"external_id": payload.external_id, "source_system": payload.source.system if payload.source else None}
        row.seen_count += 1
        data: dict[str, Any] = {"count": row.seen_count, **key, "payload_hash": plan.payload_hash}
        if payload.callback_url:
            data["callback_kept"] = _keep_duplicate_callback(row, payload.callback_url)
        session.add(row)
        session.add(EventRow(
            handoff_id=row.id, action="seen_again", actor=plan.actor, at=plan.created_at,
            from_status=row.status, to_status=row.status, data=data,
        ))
        if row.channel:  # the card shows "seen again ×N"
            self._add_effects(session, row.id, [Effect(UPDATE_CARD, row.channel)], plan.created_at)
        session.flush()  # now, in the batch's order: rows of later writes of the batch are written after these
        return to_domain(row)

    def _next_round_robin(self, session: Session, route: str, pool: list[str]) -> str:
        cursor = session.get(RouteCursor, route, with_for_update=True)
        if cursor is None:
            cursor = RouteCursor(route=route, position=0)
        owner = pool[cursor.position % len(pool)]
        cursor.position += 1
        session.add(cursor)
        return owner

    def _new_row(self, session: Session, plan: IntakePlan) -> tuple[dict[str, Any], Handoff]:
        """The new handoff's column values (columns left out take their defaults from the table), and the
        handoff they store, as a read would return it (datetimes in UTC); its id is the insert's."""
        payload = plan.payload
        owner = plan.owner
        if owner is None and plan.owner_pool:
            owner = self._next_round_robin(session, plan.route or "", plan.owner_pool)
        source = payload.source
        values: dict[str, Any] = dict(
            status=plan.status.value, kind=payload.kind, urgency=payload.urgency.value, title=payload.title,
            next_action=payload.next_action, summary=payload.summary, facts=payload.facts, draft=payload.draft,
            intent=payload.intent, confidence=payload.confidence, missing_info=payload.missing_info,
            risk_flags=payload.risk_flags, already_done=payload.already_done, constraints=payload.constraints,
            decisions=payload.decisions, definition_of_done=payload.definition_of_done, owner=owner,
            approvers=plan.approvers, requires_approval=plan.requires_approval,
            review_reasons=plan.review_reasons, route=plan.route, queue=plan.queue, channel=plan.channel,
            claim_by=plan.claim_by, due_at=plan.due_at,
            source_system=source.system if source else None, source_url=source.url if source else None,
            source_label=source.label if source else None, source_channel=plan.source_channel,
            source_ts=plan.source_ts, created_by=payload.created_by, submitted_by=plan.actor,
            external_id=payload.external_id, callback_url=payload.callback_url, duplicate_callback_urls=[],
            fingerprint=plan.fingerprint,
            payload_hash=plan.payload_hash, created_at=plan.created_at, updated_at=plan.created_at,
            claimed_at=plan.created_at if owner else None,
        )
        draft = {name: _as_read(value) for name, value in values.items() if name in _DOMAIN_FIELDS}
        draft.update(id=0, version=1, status=plan.status, urgency=payload.urgency, facts=dict(payload.facts))
        new = Handoff(**draft)
        values["stall_at"] = new.stall_deadline()
        return values, new

    def apply(
        self, handoff: Handoff, change: Change, *, actor: Actor, effects: list[Effect], now: datetime
    ) -> Handoff | None:
        after = _with_updates(handoff, change)
        values = {name: getattr(after, name) for name in change.updates}
        values.update(status=after.status.value, version=handoff.version + 1, updated_at=now,
                      stall_at=after.stall_deadline())
        if "urgency" in values:
            values["urgency"] = after.urgency.value
        # Everything bound here, in the caller's thread: the batch runs these while holding the write turn.
        compare_and_set = self._compare_and_set_for(handoff, values)
        statements = self._side_statements
        events = [statements.event(handoff.id, change.event, actor=actor.id, at=now,
                                   from_status=handoff.status.value, to_status=after.status.value, data=change.data)]
        events += [statements.event(handoff.id, action, actor=actor.id, at=now, from_status=after.status.value,
                                    to_status=after.status.value, data=data) for action, data in change.also]
        outbox = statements.outbox_rows(handoff.id, effects, now)
        look = self.next_look(after)

        def apply_in(session: Session, beside: _SideRows) -> Handoff | None:
            if not compare_and_set(beside.cursor):
                return None
            beside.looks[handoff.id] = look
            beside.events.extend(events)
            sync_approvers(session, handoff, after)
            beside.outbox.extend(outbox)
            return after

        if self._writes.run(_Write(apply_in, handoff_id=handoff.id)) is None:
            return None
        after.version = handoff.version + 1
        after.updated_at = now
        return after

    def _compare_and_set_for(self, before: Handoff, values: dict[str, Any]) -> Callable[[DBAPICursor], bool]:
        """The write of `values` to the handoff if it is still as `before` was read, bound now; run on the
        batch's cursor, it says whether the handoff was."""
        columns = tuple(values)
        statement = self._cas.get(columns)
        if statement is None:
            statement = self._cas[columns] = Prepared(_cas_statement(columns), self.db.writer.dialect)
        bound = statement.parameters({
            **{f"new_{name}": value for name, value in values.items()},
            "id_": before.id, "version_": before.version, "status_": before.status.value,
        })

        return lambda cursor: bool(statement.run(cursor, bound).rowcount == 1)

    def log_refusal(
        self, handoff: Handoff, refused: Refused, *, action: str, actor: Actor, now: datetime,
        effects: list[Effect] | None = None,
    ) -> None:
        data = {"attempted": action, "code": refused.code, "reason": refused.reason}
        self.record(handoff, "refused", actor=actor, now=now, data=data, effects=effects)

    def record(
        self, handoff: Handoff, action: str, *, actor: Actor, now: datetime, data: dict[str, Any],
        effects: list[Effect] | None = None,
    ) -> None:
        """An event that changes no state (a refusal, a nudge), with its side effects, in one transaction."""
        self._record(handoff, action, actor=actor, now=now, data=data, effects=effects, compare_and_set=None)

    def record_unless_changed(
        self, handoff: Handoff, action: str, *, actor: Actor, now: datetime, data: dict[str, Any],
        effects: list[Effect] | None = None,
    ) -> bool:
        """`record`, only if the handoff is still at `handoff.version`, which it bumps: False, and nothing written,
        when something (another copy of the same answer, say) was written since it was read."""
        compare_and_set = self._compare_and_set_for(handoff, {"version": handoff.version + 1})
        return self._record(handoff, action, actor=actor, now=now, data=data, effects=effects,
                            compare_and_set=compare_and_set)

    def _record(
        self, handoff: Handoff, action: str, *, actor: Actor, now: datetime, data: dict[str, Any],
        effects: list[Effect] | None, compare_and_set: Callable[[DBAPICursor], bool] | None,
    ) -> bool:
        statements = self._side_statements
        event = statements.event(handoff.id, action, actor=actor.id, at=now, from_status=handoff.status.value,
                                 to_status=handoff.status.value, data=data)
        outbox = statements.outbox_rows(handoff.id, effects or [], now)

        def record_in(_session: Session, beside: _SideRows) -> bool:
            if compare_and_set is not None and not compare_and_set(beside.cursor):
                return False
            beside.events.append(event)
            beside.outbox.extend(outbox)
            return True

        return bool(self._writes.run(_Write(record_in, handoff_id=handoff.id)))

    def enqueue(self, effects: list[Effect], *, handoff_id: int | None = None) -> None:
        """Write side effects that belong to no change (e.g. a private notice about a stale button)."""
        outbox = self._side_statements.outbox_rows(handoff_id, effects, datetime.now(UTC))
        self._writes.run(_Write(lambda _session, beside: beside.outbox.extend(outbox), handoff_id=handoff_id or 0))

    def slack_event_seen(self, *, event_id: str, channel: str, ts: str) -> bool:
        """Whether this Slack event, or another delivery of the same message, was handled already."""
        with self.db.read() as session:
            return session.exec(
                select(SlackEventRow.event_id).where(
                    or_(col(SlackEventRow.event_id) == event_id,
                        (col(SlackEventRow.channel) == channel) & (col(SlackEventRow.ts) == ts))
                ).limit(1)
            ).first() is not None

    def record_slack_event(
        self, *, event_id: str, channel: str, ts: str, outcome: str, now: datetime,
        handoff_id: int | None = None, effects: list[Effect] | None = None,
    ) -> bool:
        """Mark a Slack event (and its message) handled and write its effects, in one transaction.

        False, and nothing written, when it was handled already: a retry never sends a second reply.
        """
        try:
            with self.db.write() as session:
                session.execute(insert(_SLACK_EVENTS), dict(
                    event_id=event_id, channel=channel, ts=ts, outcome=outcome, handoff_id=handoff_id,
                    received_at=now,
                ))
                self._add_effects(session, handoff_id, effects or [], now)
        except IntegrityError:
            return False
        return True

    def _add_effects(self, session: Session, handoff_id: int | None, effects: list[Effect], now: datetime) -> None:
        if effects:  # one Core executemany: cheaper than an ORM object and a flush per row
            session.execute(_INSERT_OUTBOX, _outbox_rows(handoff_id, effects, now))

    # --- reads --------------------------------------------------------------------------------

    def get(self, handoff_id: int) -> Handoff | None:
        with self.db.read_cursor() as cursor:
            columns = self._by_id.first(cursor, {"id": handoff_id})
        return _from_columns(columns) if columns else None

    def events(self, handoff_id: int, *, limit: int | None = None) -> list[Event]:
        with self.db.read() as session:
            query = select(EventRow).where(EventRow.handoff_id == handoff_id).order_by(col(EventRow.id))
            if limit is not None:
                query = query.order_by(None).order_by(col(EventRow.id).desc()).limit(limit)
            rows = list(session.exec(query))
        rows.sort(key=lambda row: row.id or 0)
        return [event_to_domain(row) for row in rows]

    def id_by_card(self, channel: str, card_ts: str) -> int | None:
        with self.db.read() as session:
            return session.exec(
                select(HandoffRow.id).where(HandoffRow.channel == channel, HandoffRow.card_ts == card_ts)
            ).first()

    def outbox_for(self, handoff_id: int) -> list[OutboxRow]:
        with self.db.read() as session:
            return list(session.exec(
                select(OutboxRow).where(OutboxRow.handoff_id == handoff_id).order_by(col(OutboxRow.id))
            ))

    def page(
        self,
        *,
        status: Status | None = None,
        owner: str | None = None,
        stalled_at: datetime | None = None,
        limit: int = 50,
        cursor: int | None = None,
    ) -> Page:
        """Newest first; `cursor` is the last id of the previous page."""
        query = select(HandoffRow)
        if status is not None:
            query = query.where(HandoffRow.status == status.value)
        if owner is not None:
            query = query.where(HandoffRow.owner == owner)
        if stalled_at is not None:
            query = query.where(col(HandoffRow.stall_at) < stalled_at)
        if cursor is not None:
            query = query.where(col(HandoffRow.id) < cursor)
        query = query.order_by(col(HandoffRow.id).desc()).limit(limit + 1)
        with self.db.read() as session:
            rows = _plain_rows(session, query)
        items = [to_domain(row) for row in rows[:limit]]
        return Page(items, items[-1].id if len(rows) > limit else None)

    def stalled(self, *, now: datetime, limit: int = 100, offset: int = 0, owner: str | None = None,
                channel: str | None = None, kind: str | None = None) -> list[Handoff]:
        """Stalled handoffs (SPEC §5), most overdue first."""
        query = select(HandoffRow).where(col(HandoffRow.stall_at) < now)
        if owner is not None:
            query = query.where(HandoffRow.owner == owner)
        if channel is not None:
            query = query.where(or_(col(HandoffRow.channel) == channel, col(HandoffRow.queue) == channel))
        if kind is not None:
            query = query.where(HandoffRow.kind == kind)
        query = query.order_by(col(HandoffRow.stall_at), col(HandoffRow.id)).offset(offset).limit(limit)
        with self.db.read() as session:
            return [to_domain(row) for row in _plain_rows(session, query)]

    def count_stalled(self, *, now: datetime) -> int:
        with self.db.read() as session:
            return int(session.exec(
                select(func.count()).select_from(HandoffRow).where(col(HandoffRow.stall_at) < now)
            ).one())

    def owned_by(self, user: str, *, limit: int = 100) -> list[Handoff]:
        """What `user` owns and has not finished, newest first."""
        query = (
            select(HandoffRow)
            .where(HandoffRow.owner == user, col(HandoffRow.status).in_(_OPEN_STATUSES))
            .order_by(col(HandoffRow.id).desc())
            .limit(limit)
        )
        with self.db.read() as session:
            return [to_domain(row) for row in _plain_rows(session, query)]


def _plain_rows(session: Session, query: SelectOfScalar[HandoffRow]) -> list[Row[Any]]:
    """Run a `select(HandoffRow)` for plain rows (to_domain reads both): for a page of 50, building the
    SQLModel objects cost several times what the query did."""
    return list(session.execute(query.with_only_columns(*_HANDOFFS.c)))


def _cas_statement(columns: tuple[str, ...]) -> Update:
    """`UPDATE handoffs SET <columns> WHERE id, version and status are as read`."""
    return (
        _HANDOFFS.update()
        .where(_HANDOFFS.c.id == bindparam("id_"), _HANDOFFS.c.version == bindparam("version_"),
               _HANDOFFS.c.status == bindparam("status_"))
        .values({name: bindparam(f"new_{name}") for name in columns})
    )


def _keep_duplicate_callback(row: HandoffRow, url: str) -> bool:
    """Whether a duplicate's `callback_url` will hear `row`'s events: kept beside the handoff's own, up to
    MAX_DUPLICATE_CALLBACKS of them (one URL, however written, once)."""
    known = {same_url(kept) for kept in [row.callback_url or "", *row.duplicate_callback_urls]}
    if same_url(url) in known:
        return True
    if len(row.duplicate_callback_urls) >= MAX_DUPLICATE_CALLBACKS:
        return False
    row.duplicate_callback_urls = [*row.duplicate_callback_urls, url]  # a new list: the JSON column sees the change
    return True


def _as_read(value: Any) -> Any:
    """A value as the database gives it back: datetimes in UTC (a producer's `due_at` may carry any offset)."""
    return value.astimezone(UTC) if isinstance(value, datetime) else value


def _with_updates(handoff: Handoff, change: Change) -> Handoff:
    return replace(handoff, status=change.to_status, **change.updates)
