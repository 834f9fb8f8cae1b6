"""The outbox's own writes: a dispatch leases its rows in one write; finishes from many threads share writes."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlmodel import select

from bot.runtime import Runtime
from handoffs.effects import UPDATE_CARD, private_notice
from handoffs.ports import Effect
from handoffs.service import utc_now
from storage.outbox import _FIRST_DUE_IDS, FAILED, PENDING, SENT, OutboxStore
from storage.tables import OutboxRow


def notices(runtime: Runtime, count: int) -> list[OutboxRow]:
    runtime.repo.enqueue([private_notice("CNOTICE", f"U{n:04d}", f"notice {n}") for n in range(count)])
    return OutboxStore(runtime.db).due(utc_now() + timedelta(seconds=1), limit=count + 10)


def test_a_row_is_leased_by_one_sender_only_and_not_before_it_is_due(runtime: Runtime) -> None:
    rows = notices(runtime, 5)
    store, other = OutboxStore(runtime.db), OutboxStore(runtime.db)  # two senders (as two processes would be)
    now = utc_now() + timedelta(seconds=1)
    assert store.lease_many(rows[:3], now=now, until=now + timedelta(seconds=30)) == {row.id for row in rows[:3]}
    # the other sender read the same rows before the lease: it gets only those nobody took
    assert other.lease_many(rows, now=now, until=now + timedelta(seconds=30)) == {row.id for row in rows[3:]}
    assert store.lease_many(rows, now=now, until=now + timedelta(seconds=30)) == set()
    assert store.due(now + timedelta(seconds=10)) == []  # all of them leased
    leased = {row.id: row.attempts for row in store.due(now + timedelta(seconds=31), limit=10)}
    assert leased == {row.id: 1 for row in rows}  # each attempt counted once; due again once its lease is over
    assert store.lease_many([], now=now, until=now) == set()


def test_a_scan_for_paced_rows_loads_only_each_channels_oldest_due_row(runtime: Runtime) -> None:
    targets = ["CA", "CB", "CA", "CC", "CB", "CA", "CC"]
    runtime.repo.enqueue([private_notice(channel, "U0001", f"notice {n}") for n, channel in enumerate(targets)])
    store = OutboxStore(runtime.db)
    soon = utc_now() + timedelta(seconds=1)
    rows = store.due(soon, limit=20)
    assert [row.target for row in rows] == targets
    store.retry(rows[0].id or 0, at=soon + timedelta(minutes=5), error="http_500")  # CA's oldest backs off
    firsts = store.first_due_per_target(soon, limit=20, skip_targets=frozenset({"CC"}))
    assert [(row.id, row.target) for row in firsts] == [(rows[1].id, "CB"), (rows[2].id, "CA")]
    assert [row.id for row in store.first_due_per_target(soon, limit=1)] == [rows[1].id]
    assert [row.target for row in store.first_due_per_target(soon, exclude_kinds=frozenset({rows[0].kind}))] == []
    runtime.repo.enqueue([Effect(UPDATE_CARD, None)])  # never written so; still found, so that its send fails it
    assert [row.target for row in store.first_due_per_target(soon)] == ["CB", "CA", "CC", None]


def test_the_scan_for_paced_rows_reads_no_channels_backlog(runtime: Runtime) -> None:
    """Each step of the scan is an index search: a paced channel's thousands of rows are never walked."""
    if not runtime.db.is_sqlite:
        pytest.skip("reads SQLite's query plan")
    with runtime.db.read() as session:
        compiled = _FIRST_DUE_IDS.compile(dialect=session.get_bind().dialect)
        sql = compiled.string.replace("__[POSTCOMPILE_exclude_kinds]", "?").replace("__[POSTCOMPILE_skip_targets]", "?")
        explained = session.connection().exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", (0,) * sql.count("?"))
        plan = [row[3] for row in explained]
    outbox_steps = [step for step in plan if " probe " in f"{step} "]
    assert outbox_steps and all(step.startswith("SEARCH probe USING") and "ix_outbox_target" in step
                                for step in outbox_steps), plan


def test_finishes_and_retries_from_many_threads_each_land(runtime: Runtime) -> None:
    rows = notices(runtime, 60)
    store = OutboxStore(runtime.db)
    now = utc_now()
    later = now + timedelta(minutes=5)

    def finish(row: OutboxRow) -> None:
        assert row.id is not None
        if row.id % 3 == 0:
            store.retry(row.id, at=later, error="http_500")
        elif row.id % 3 == 1:
            store.finish(row.id, state=SENT, now=now)
        else:
            store.finish(row.id, state=FAILED, now=now, error="channel_not_found")

    barrier = threading.Barrier(len(rows))
    def finish_together(row: OutboxRow) -> None:
        barrier.wait(5)
        finish(row)

    threads = [threading.Thread(target=finish_together, args=(row,)) for row in rows]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    stored = {row.id: row for row in _all_rows(runtime)}
    for row in rows:
        assert row.id is not None
        got = stored[row.id]
        expected = (PENDING, "http_500") if row.id % 3 == 0 else \
            (SENT, None) if row.id % 3 == 1 else (FAILED, "channel_not_found")
        assert (got.state, got.last_error) == expected, row.id
        if row.id % 3 == 0:
            assert got.next_attempt_at == later


def _all_rows(runtime: Runtime) -> list[OutboxRow]:
    with runtime.db.read() as session:
        return list(session.exec(select(OutboxRow)))
