"""The SLA sweep at scale: one tick over 1,000 due handoffs, in tables of 100,000 and 1,000,000 (issue 5).

    .venv/bin/python bench/sweep.py [--rows 100000 1000000] [--backend sqlite|postgres|both] [--keep] [--repeat 5]

The tables are loaded by bench/scale.py's bulk loader (~1 year of handoffs through the real migrations, with
`nudge_schedule` as the repository keeps it). The scene: the tick's clock is fixed 30 days ahead, where every
handoff still in flight is past its deadline. First every handoff with a next look before that clock is
parked (its `next_nudge_at` a year after the clock), then each run un-parks 1,000 random ones, writing back
their true next look (handoffs.nudges.earliest_look): exactly 1,000 are due. `bot.sweep.Sweeper.tick()` is
timed: it reads the due rows through ix_nudge_schedule_next_nudge_at, decides each, and writes their next
looks, the handoffs acted on, their events and their outbox rows, in batches of 500 (one transaction each;
on PostgreSQL two batches at a time, bot/sweep.py's lanes). Sending the outbox rows is the outbox
sender's job and is not part of the tick. Every run is checked against an oracle written from SPEC §7:
each chosen handoff acted on once, one `nudged` / `escalated` event each, and the outbox rows by kind.

The configuration allows two reminders, so that the handoffs the generator left with two reminders and no
escalation escalate: the due sets mix first and second reminders with escalations (and their webhooks).
Per backend every size is loaded first, and the runs alternate between the sizes (run 1 of each, then run 2 of
each, ...), so that a change in the machine's load meets every size alike. Also timed: a tick with nothing due
(what every `check_every` costs), and the plan of the due query. Beside the wall time, the CPU a tick costs: the
sweeping process (Python in all its threads, and SQLite itself) and the PostgreSQL backends (when the server runs
on this machine); the wall time grows with the machine's load more than the CPU does.

With --keep the databases stay (SQLite sweep_<rows>.db under --db-dir, PostgreSQL bench_sweep_<rows>) and are
reused by the next run with --keep; each run re-parks what earlier runs left due.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from harness import machine_line, process_cpu_seconds, verdict
from scale import LoadReport, add_loader_arguments, check_derived_columns, loaded_database
from sqlalchemy import Table, bindparam, func, select, text, update

from bot.runtime import Runtime, build_runtime
from bot.settings import Settings
from bot.sweep import BATCH, Sweeper
from handoffs.config import parse_config
from handoffs.effects import ESCALATION, NUDGE, THREAD_REPLY, UPDATE_CARD
from handoffs.model import Handoff
from handoffs.nudges import Step, decide, earliest_look
from handoffs.webhooks import WEBHOOK
from storage.db import Database
from storage.repository import to_domain
from storage.schedule import SCHEDULE
from storage.sweep import SweepStore
from storage.tables import EventRow, HandoffRow, OutboxRow

TARGET_MS = 200.0
FLAT_RATIO = 1.5  # tick(largest table) / tick(smallest table) at the same due count; a table scan would be ~10x
DUE = 1_000
IDLE_TICKS = 20
CLOCK_AHEAD = timedelta(days=30)  # past every deadline the generator gives a handoff in flight
PARKED_AHEAD = timedelta(days=365)
INDEX = "ix_nudge_schedule_next_nudge_at"

WEBHOOK_URL = "https://hooks.example.com/handoff-events"
SWEEP_CONFIG = parse_config({
    "managers": ["U000000X"],
    "routes": [{"name": "default", "channel": "C0BENCH01"}],
    "nudges": {"repeat_every": "1h", "max_nudges": 2, "escalate_to": "C0ESCAL01"},
    "webhooks": [{"url": WEBHOOK_URL, "events": ["escalated"]}],
})

_HANDOFFS: Table = HandoffRow.__table__  # type: ignore[attr-defined]
_EVENTS: Table = EventRow.__table__  # type: ignore[attr-defined]
_OUTBOX: Table = OutboxRow.__table__  # type: ignore[attr-defined]
_UNPARK = update(SCHEDULE).where(SCHEDULE.c.handoff_id == bindparam("id")).values(next_nudge_at=bindparam("look"))


# --------------------------------------------------------------------------------------------------------------
# The oracle


@dataclass
class Expected:
    """What a set of due handoffs should get from one tick: events and outbox rows, by kind."""

    events: Counter[str] = field(default_factory=Counter)
    outbox: Counter[str] = field(default_factory=Counter)

    def add(self, handoff: Handoff, now: datetime) -> None:
        """SPEC §7: a nudge DMs the owner (and the approvers while it waits for them), or the queue in the
        card's thread; an escalation goes to escalate_to, marks the card, replies in its thread, and sends the
        `escalated` webhook to the callback URL and each endpoint listening for it."""
        decision = decide(handoff, SWEEP_CONFIG, now, SWEEP_CONFIG.zone)
        card = 1 if handoff.channel else 0
        if decision.step is Step.nudge:
            self.events["nudged"] += 1
            self.outbox[NUDGE] += len(decision.recipients) or card
        elif decision.step is Step.escalate:
            self.events["escalated"] += 1
            self.outbox[ESCALATION] += len(decision.escalate_to)
            self.outbox[UPDATE_CARD] += card
            self.outbox[THREAD_REPLY] += card
            self.outbox[WEBHOOK] += len({url for url in (handoff.callback_url, WEBHOOK_URL) if url})
        else:
            raise SystemExit(f"bench/sweep.py: {handoff.ref} is not due at the tick's clock ({decision.step}); "
                             "the scene is wrong")


# --------------------------------------------------------------------------------------------------------------
# The scene


class Scene:
    """The database arranged so that exactly the chosen handoffs are due at `now`."""

    def __init__(self, db: Database, now: datetime) -> None:
        self.db = db
        self.now = now

    def park(self) -> int:
        """Every handoff due at `now` (and any left due by an earlier run) gets its next look a year later."""
        with self.db.write() as session:
            result = session.execute(
                update(SCHEDULE).where(SCHEDULE.c.next_nudge_at <= self.now)
                .values(next_nudge_at=self.now + PARKED_AHEAD)
            )
            parked = int(result.rowcount)  # type: ignore[attr-defined]
        if not self.db.is_sqlite:  # what autovacuum does after many updates (also those of earlier runs, --keep)
            with self.db.writer.connect() as connection:
                autocommit = connection.execution_options(isolation_level="AUTOCOMMIT")
                for table in ("handoffs", "nudge_schedule"):
                    autocommit.execute(text(f"VACUUM ANALYZE {table}"))
        return parked

    def candidates(self) -> list[int]:
        """The handoffs the policy still has something to do about, all of them later than `now` once parked."""
        with self.db.read() as session:
            return list(session.scalars(select(SCHEDULE.c.handoff_id).where(SCHEDULE.c.next_nudge_at > self.now)))

    def make_due(self, ids: Sequence[int]) -> Expected:
        """Un-park `ids` (their real next look, before `now`); what the tick should then write."""
        with self.db.read() as session:
            handoffs = [to_domain(row) for row in session.execute(select(*_HANDOFFS.c)
                                                                  .where(_HANDOFFS.c.id.in_(ids)))]
        expected = Expected()
        looks = []
        for handoff in handoffs:
            look = earliest_look(handoff, SWEEP_CONFIG)
            if look is None or look > self.now:
                raise SystemExit(f"bench/sweep.py: {handoff.ref} has no next look before the tick's clock ({look})")
            looks.append({"id": handoff.id, "look": look})
            expected.add(handoff, self.now)
        with self.db.write() as session:
            session.execute(_UNPARK, looks)
        return expected

    def due_count(self) -> int:
        with self.db.read() as session:
            return int(session.scalar(select(func.count()).where(SCHEDULE.c.next_nudge_at <= self.now)) or 0)

    def marks(self) -> tuple[int, int]:
        """The newest event id and outbox id."""
        with self.db.read() as session:
            return (int(session.scalar(select(func.max(_EVENTS.c.id))) or 0),
                    int(session.scalar(select(func.max(_OUTBOX.c.id))) or 0))

    def written_since(self, marks: tuple[int, int]) -> tuple[list[tuple[int, str]], Counter[str]]:
        """(handoff id, action) of the events after `marks`, and the outbox rows after it by kind."""
        with self.db.read() as session:
            events = [(int(handoff_id), str(action)) for handoff_id, action in session.execute(
                select(_EVENTS.c.handoff_id, _EVENTS.c.action).where(_EVENTS.c.id > marks[0]))]
            outbox = Counter({str(kind): int(count) for kind, count in session.execute(
                select(_OUTBOX.c.kind, func.count()).where(_OUTBOX.c.id > marks[1]).group_by(_OUTBOX.c.kind))})
        return events, outbox

    def server_processes(self) -> list[int]:
        """The PostgreSQL backends serving this database, if they are processes of this machine (none on SQLite,
        none for a server elsewhere)."""
        if self.db.is_sqlite:
            return []
        with self.db.reader.connect() as connection:
            pids = list(connection.execute(text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND backend_type = 'client backend'"
            )).scalars())
        return [pid for pid in pids if _is_local_postgres(pid)]

    def due_query_plan(self) -> list[str]:
        """EXPLAIN (QUERY PLAN) of the sweep's own due query, as storage/sweep.py builds it."""
        query = SweepStore(self.db)._due_query(self.now, BATCH)  # the very statement, not a copy of it
        with self.db.reader.connect() as connection:
            sql = str(query.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True}))
            if self.db.is_sqlite:
                return [str(row[3]) for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")]
            return [str(row[0]) for row in connection.exec_driver_sql(f"EXPLAIN {sql}")]


def _is_local_postgres(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "postgres"
    except OSError:
        return False


# --------------------------------------------------------------------------------------------------------------
# Timing


@dataclass
class Run:
    ms: float
    cpu_ms: float  # this process: the sweep's Python in every lane, and SQLite itself
    server_cpu_ms: float | None  # the PostgreSQL backends, when they run on this machine
    nudged: int
    escalated: int
    events: int
    outbox: int
    outbox_by_kind: Counter[str]


@dataclass
class SizeResult:
    backend: str
    rows: int
    load: LoadReport
    parked: int
    candidates: int
    runs: list[Run]
    idle_ms: list[float]
    plan: list[str]

    @property
    def median(self) -> float:
        return statistics.median(run.ms for run in self.runs)

    @property
    def index_used(self) -> bool:
        return any(INDEX in line for line in self.plan)


def timed_tick(sweeper: Sweeper, scene: Scene, ids: Sequence[int], expected: Expected) -> Run:
    """Time one tick with exactly `ids` due, and check that it wrote what the oracle expects."""
    due = scene.due_count()
    if due != len(ids):
        raise SystemExit(f"bench/sweep.py: {due} handoffs are due, {len(ids)} were made due")
    marks = scene.marks()
    server = scene.server_processes()
    server_cpu = _cpu_seconds(server)
    cpu = time.process_time()
    started = time.perf_counter()
    result = sweeper.tick()
    ms = (time.perf_counter() - started) * 1000
    cpu_ms = (time.process_time() - cpu) * 1000
    server_ms = (_cpu_seconds(server) - server_cpu) * 1000 if server else None
    events, outbox = scene.written_since(marks)
    problems = []
    if (result.nudged, result.escalated, result.rescheduled) != (expected.events["nudged"],
                                                                 expected.events["escalated"], 0):
        problems.append(f"tick says {result}, expected {dict(expected.events)}")
    if Counter(action for _, action in events) != expected.events:
        problems.append(f"events {Counter(action for _, action in events)}, expected {dict(expected.events)}")
    if sorted(handoff_id for handoff_id, _ in events) != sorted(ids):
        problems.append("the events are not one per chosen handoff")
    if outbox != expected.outbox:
        problems.append(f"outbox rows {dict(outbox)}, expected {dict(+expected.outbox)}")
    if scene.due_count():
        problems.append(f"{scene.due_count()} handoffs are still due after the tick")
    if problems:
        raise SystemExit("bench/sweep.py: the tick did not do its work: " + "; ".join(problems))
    return Run(ms, cpu_ms, server_ms, result.nudged, result.escalated, len(events), sum(outbox.values()), outbox)


def _cpu_seconds(pids: Sequence[int]) -> float:
    """user + system CPU of processes (10 ms resolution, from /proc); a process gone meanwhile counts 0."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += process_cpu_seconds(pid)
    return total


def idle_ticks(sweeper: Sweeper, count: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        result = sweeper.tick()
        samples.append((time.perf_counter() - started) * 1000)
        if result.acted or result.rescheduled:
            raise SystemExit(f"bench/sweep.py: an idle tick did something: {result}")
    return samples


@dataclass
class LoadedSize:
    """One table size of a backend, loaded and set up for its runs."""

    backend: str
    load: LoadReport
    runtime: Runtime
    scene: Scene
    sweeper: Sweeper
    parked: int
    candidates: int
    chosen: list[int]
    runs: list[Run] = field(default_factory=list)
    plan: list[str] = field(default_factory=list)

    def run(self, index: int, *, last: bool) -> None:
        ids = self.chosen[index * DUE:(index + 1) * DUE]
        expected = self.scene.make_due(ids)
        if last:  # the plan as the last tick meets it, with its rows due
            self.plan = self.scene.due_query_plan()
        run = timed_tick(self.sweeper, self.scene, ids, expected)
        if index:  # the first one warms caches and is not counted
            self.runs.append(run)

    def result(self) -> SizeResult:
        idle = idle_ticks(self.sweeper, IDLE_TICKS)
        return SizeResult(self.backend, self.load.rows, self.load, self.parked, self.candidates, self.runs, idle,
                          self.plan)


def set_up(backend: str, url: str, load: LoadReport, args: argparse.Namespace, now: datetime) -> LoadedSize:
    runtime = build_runtime(Settings(database_url=url, default_channel="C0BENCH01"), config=SWEEP_CONFIG,
                            run_migrations=False, clock=lambda: now)
    scene = Scene(runtime.db, now)
    parked = scene.park()
    candidates = scene.candidates()
    needed = (args.repeat + 1) * DUE
    if len(candidates) < needed:
        runtime.close()
        raise SystemExit(f"bench/sweep.py: only {len(candidates):,} handoffs in flight, {needed:,} needed; "
                         "use more --rows or fewer --repeat")
    chosen = random.Random(args.seed).sample(candidates, needed)
    # one Sweeper per runtime, as the scheduler keeps one
    return LoadedSize(backend, load, runtime, scene, Sweeper(runtime), parked, len(candidates), chosen)


def measure(sizes: list[LoadedSize], repeat: int) -> list[SizeResult]:
    """The runs of every table size in turn (run 1 of each, then run 2 of each, ...), so that a change in the
    machine's load meets all sizes alike and their ratio stays fair."""
    # The server freezes its start-up heap (bot/server.py), so that a full collection scans only what requests
    # and ticks leave; the same here, or a collection of the loader's and SQLAlchemy's objects lands in a tick.
    gc.collect()
    gc.freeze()
    try:
        for index in range(repeat + 1):
            for size in sizes:
                size.run(index, last=index == repeat)
        return [size.result() for size in sizes]
    finally:
        gc.unfreeze()


# --------------------------------------------------------------------------------------------------------------
# Report


def print_size(result: SizeResult) -> None:
    load = result.load
    how = ("reused (--keep)" if load.reused else
           f"loaded in {load.seconds:.1f} s (rows {load.insert_seconds:.1f} s, indexes {load.index_seconds:.1f} s)")
    print(f"  {result.rows:,} handoffs, {how}; {result.parked:,} parked after the tick's clock, "
          f"{result.candidates:,} in flight to choose from")
    for number, run in enumerate(result.runs, 1):
        kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(run.outbox_by_kind.items()))
        print(f"    run {number}: tick {run.ms:6.1f} ms · {run.nudged} nudged + {run.escalated} escalated · "
              f"{run.events:,} events · {run.outbox:,} outbox rows ({kinds}) · as expected")
    samples = [run.ms for run in result.runs]
    print(f"  tick, {DUE:,} due: median {result.median:.1f} ms, max {max(samples):.1f} ms "
          f"({len(samples)} runs, a fresh due set each)")
    cpu = f"  CPU per tick (median): sweeping process {statistics.median(run.cpu_ms for run in result.runs):.0f} ms"
    server = [run.server_cpu_ms for run in result.runs if run.server_cpu_ms is not None]
    if server:
        cpu += f", PostgreSQL backends {statistics.median(server):.0f} ms"
    print(cpu)
    print(f"  tick, 0 due:     median {statistics.median(result.idle_ms):.2f} ms, max {max(result.idle_ms):.2f} ms "
          f"({len(result.idle_ms)} ticks)")
    print(f"  due query plan ({'uses ' + INDEX if result.index_used else 'does NOT use ' + INDEX}):")
    for line in result.plan:
        print(f"    {line}")


def backend_verdict(backend: str, results: list[SizeResult]) -> bool:
    largest, smallest = max(results, key=lambda r: r.rows), min(results, key=lambda r: r.rows)
    fast = largest.median <= TARGET_MS
    indexed = all(r.index_used for r in results)
    line = (f"[{backend}] tick({largest.rows:,} rows, {DUE:,} due) median {largest.median:.1f} ms "
            f"≤ {TARGET_MS:.0f} ms: {verdict(fast)}")
    flat = True
    if largest is not smallest:
        ratio = largest.median / smallest.median
        flat = ratio <= FLAT_RATIO
        line += (f" · {smallest.rows:,} → {largest.rows:,} rows: {smallest.median:.1f} → {largest.median:.1f} ms "
                 f"(×{ratio:.2f}, ≤ ×{FLAT_RATIO}): {verdict(flat)}")
    line += f" · index used: {verdict(indexed)}"
    print(line)
    return fast and flat and indexed


def run_backend(backend: str, sizes: list[int], args: argparse.Namespace, load_now: float,
                now: datetime) -> list[SizeResult]:
    """Load every table size of `backend` (kept open side by side), then time them interleaved."""
    with contextlib.ExitStack() as stack:
        loaded = []
        for rows in sizes:
            print(f"  loading {rows:,} handoffs ...", flush=True)
            keep_as = f"sweep_{rows}" if args.keep else None
            url, load = stack.enter_context(loaded_database(
                backend, rows, keep_as=keep_as, now=load_now, seed=args.seed, workers=args.workers,
                db_dir=args.db_dir, pg_url=args.pg_url,
            ))
            if sys.stderr.isatty():
                print("\r" + " " * 70 + "\r", end="", file=sys.stderr)
            size = set_up(backend, url, load, args, now)
            stack.callback(size.runtime.close)
            loaded.append(size)
        return measure(loaded, args.repeat)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000],
                        help="table sizes to load and sweep (default: 100000 1000000)")
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--keep", action="store_true", help="keep the loaded databases and reuse them next time")
    parser.add_argument("--repeat", type=int, default=5, help="timed ticks per size, each on a fresh due set")
    add_loader_arguments(parser)
    args = parser.parse_args(argv)
    if args.repeat < 1 or any(rows < 1 for rows in args.rows):
        parser.error("--repeat and --rows must be positive")

    load_now = time.time()
    check_derived_columns(load_now, args.seed)
    now = datetime.fromtimestamp(load_now, UTC) + CLOCK_AHEAD
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    sizes = sorted(set(args.rows))
    print(f"sweep benchmark: {', '.join(f'{rows:,}' for rows in sizes)} handoffs, {DUE:,} due per tick, "
          f"{args.repeat} timed ticks per size · {machine_line()}")
    results: dict[str, list[SizeResult]] = {}
    for backend in backends:
        print(f"\n[{backend}]", flush=True)
        results[backend] = run_backend(backend, sizes, args, load_now, now)
        for result in results[backend]:
            print(f"\n[{backend} · {result.rows:,} handoffs]")
            print_size(result)
    print()
    ok = all([backend_verdict(backend, each) for backend, each in results.items()])
    print(f"targets (tick with {DUE:,} due ≤ {TARGET_MS:.0f} ms at the largest table, ≤ ×{FLAT_RATIO} from the "
          f"smallest, due query on {INDEX}): {verdict(ok)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
