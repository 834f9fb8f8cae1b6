"""Reads at scale: 1,000,000 handoffs, then the list queries over HTTP and in-process, and the server's memory.

    .venv/bin/python bench/scale.py [--rows 1000000] [--backend sqlite|postgres|both] [--keep] [--repeat 20]

Loading is a bulk load into a schema made by the real migrations (storage.migrate.upgrade): rows are generated
in worker processes, the secondary indexes are dropped and rebuilt afterwards from their own DDL, SQLite gets
executemany in large transactions, PostgreSQL gets COPY. The derived columns are computed as the repository
computes them (stall_at from Handoff.stall_deadline, the nudge_schedule row from handoffs.nudges.earliest_look
with the default nudges, fingerprint and payload_hash from handoffs.intake).

The data: ~1 year of handoffs, ids in created_at order, volume growing over the year; 10 % open (in a queue,
no owner), the rest claimed / approved / closed / rejected; 2,000 owners with a long-tailed spread; 30
channels; SLA deadlines per urgency. Of the handoffs still in flight about a fifth are past their deadline
(stalled), the others have deadlines ahead (fresh, snoozed or extended). One `created` event per handoff plus
the event of its last transition.

With --keep the database stays (SQLite file scale_<rows>.db under --db-dir, PostgreSQL database
bench_scale_<rows>) and is reused by the next run with --keep instead of loading again. Other benches load
their data through `loaded_database` (bench/sweep.py).

Hooks: add a timing by appending an HttpProbe to HTTP_PROBES or a RepoProbe to REPO_PROBES.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import math
import multiprocessing
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple, cast

from harness import (
    Client,
    Server,
    drop_postgres_database,
    machine_line,
    percentile,
    pg_base_url,
    postgres_database,
    verdict,
)

from bot.blocks.home import home_view
from bot.runtime import Runtime
from bot.settings import Settings
from bot.slack.command_parser import Command, Mine, Stalled
from bot.slack.listeners.commands import Caller, respond
from handoffs.config import DEFAULT_SLA, HandoffConfig, parse_config
from handoffs.intake import fingerprint, payload_hash
from handoffs.model import TERMINAL, Handoff, HandoffIn, Source, Status, Urgency
from handoffs.nudges import earliest_look
from handoffs.service import HandoffService
from storage import migrate
from storage.approvers import approval_pending
from storage.board_queries import build_board
from storage.db import Database
from storage.repository import Repository

TARGET_MS = 50.0
TARGET_RSS_MB = 200.0
CHUNK = 20_000

# --------------------------------------------------------------------------------------------------------------
# Data

OWNERS = [f"U{index:06d}X" for index in range(2000)]
OWNER_WEIGHTS = list(itertools.accumulate(1 / (rank + 1) ** 0.7 for rank in range(len(OWNERS))))  # ~3 % top
APPROVERS = [f"W{index:05d}A" for index in range(40)]
CHANNELS = [f"C{index:05d}Q" for index in range(30)]
CHANNEL_WEIGHTS = list(itertools.accumulate(1 / (rank + 1) for rank in range(len(CHANNELS))))
KINDS = ["task", "lead", "support", "reply", "intake"]
KIND_WEIGHTS = list(itertools.accumulate([45, 20, 20, 10, 5]))
URGENCIES = [Urgency.low, Urgency.normal, Urgency.high, Urgency.urgent]
URGENCY_WEIGHTS = list(itertools.accumulate([15, 60, 20, 5]))
OUTCOMES = {"lead": ["won", "lost", "nurture", "disqualified"], "support": ["resolved", "no_action", "duplicate"]}
DEFAULT_OUTCOMES = ["done", "done", "done", "no_action", "duplicate"]
SYSTEMS = ["n8n", "zapier", "sales-agent", None]  # None: created from a Slack message
COMPANIES = ["ACME GmbH", "Globex", "Initech", "Umbrella Retail", "Stark Logistics", "Wayne Foods", "Hooli",
             "Vandelay Imports", "Soylent AG", "Tyrell Systems", "Cyberdyne", "Wonka Industries", "Oscorp",
             "Pied Piper", "Dunder Mifflin", "Massive Dynamic", "Aperture Labs", "Gringotts", "Nakatomi", "Monarch"]
TOPICS = ["renewal pricing", "onboarding call", "data export", "invoice dispute", "SSO rollout", "API limits",
          "security review", "contract redlines", "pilot extension", "churn risk", "refund request",
          "feature request", "outage follow-up", "reference call", "upsell opportunity"]

# (status, share of all rows)
STATUS_MIX = [(Status.open, 0.10), (Status.claimed, 0.12), (Status.approved, 0.05), (Status.closed, 0.63),
              (Status.rejected, 0.10)]
MISSING, RISKS = ["Budget owner"], ["Mentions a competitor"]
MISSING_JSON, RISKS_JSON = json.dumps(MISSING), json.dumps(RISKS)
STALLED_SHARE = 0.2  # of the handoffs still in flight
YEAR = 365 * 86400.0

# The columns the loader fills, in order. Any other column of the table must be nullable or have a server
# default (the loader checks, so a new NOT NULL column fails loudly here instead of in the middle of a load).
HANDOFF_COLUMNS = [
    "id", "version", "status", "kind", "urgency", "title", "next_action", "summary", "facts", "draft", "intent",
    "confidence", "missing_info", "risk_flags", "already_done", "constraints", "decisions", "definition_of_done",
    "owner", "approvers", "requires_approval", "review_reasons", "route", "queue", "channel", "card_ts",
    "claim_by", "due_at", "stall_at", "source_system", "source_url", "source_label", "source_channel",
    "source_ts", "created_by", "submitted_by", "external_id", "callback_url", "outcome", "outcome_note",
    "fingerprint", "payload_hash", "seen_count", "snoozed_until", "nudge_count", "escalated_at", "created_at",
    "updated_at", "claimed_at", "approved_at", "decided_at", "closed_at",
]
EVENT_COLUMNS = ["id", "handoff_id", "action", "actor", "at", "from_status", "to_status", "data"]
APPROVER_COLUMNS = ["handoff_id", "user_id", "pending"]
SCHEDULE_COLUMNS = ["handoff_id", "next_nudge_at"]
KEY_COLUMNS = ["source_system", "external_id", "handoff_id", "payload_hash"]
# table -> (columns, the Chunk field with its rows); a table the schema does not have (yet) is skipped
TABLES = {"handoffs": (HANDOFF_COLUMNS, "handoffs"), "events": (EVENT_COLUMNS, "events"),
          "handoff_approvers": (APPROVER_COLUMNS, "approvers"), "nudge_schedule": (SCHEDULE_COLUMNS, "schedule"),
          "idempotency_keys": (KEY_COLUMNS, "keys")}
DATETIME_COLUMNS = {"claim_by", "due_at", "stall_at", "snoozed_until", "escalated_at", "created_at", "updated_at",
                    "claimed_at", "approved_at", "decided_at", "closed_at"}
# nudge_schedule.next_nudge_at is handoffs.nudges.earliest_look under this configuration (the default nudges), as a
# repository built by bot.runtime keeps it.
NUDGE_CONFIG = HandoffConfig()

_PAYLOAD_DEFAULTS = HandoffIn(title="x", next_action="x").model_dump(mode="json")


class _StallShim:
    """Just enough of a Handoff for the real Handoff.stall_deadline and approval_pending (building 1M
    dataclasses is slow)."""

    __slots__ = ("approved_at", "claim_by", "due_at", "requires_approval", "status")
    approved_at: float | None
    claim_by: float
    due_at: float
    requires_approval: bool
    status: Status
    awaiting_approval = Handoff.awaiting_approval
    stall_deadline = Handoff.stall_deadline


class _NudgeShim:
    """Just enough of a Handoff, with (naive UTC) datetimes, for the real handoffs.nudges.earliest_look."""

    __slots__ = ("claim_by", "due_at", "escalated_at", "nudge_count", "requires_approval", "snoozed_until",
                 "status")
    claim_by: datetime | None
    due_at: datetime | None
    escalated_at: datetime | None
    nudge_count: int
    requires_approval: bool
    snoozed_until: datetime | None
    status: Status
    last_nudged_at: datetime | None = None  # the loaded rows were never nudged by this bot
    awaiting_approval = Handoff.awaiting_approval
    is_terminal = Handoff.is_terminal
    stall_deadline = Handoff.stall_deadline


def _naive(epoch: float | None) -> datetime | None:
    return None if epoch is None else _EPOCH + timedelta(seconds=epoch)


def _next_nudge_at(shim: _StallShim, nudge_count: int, escalated_at: float | None, snoozed_until: float | None,
                   tz_suffix: str) -> str | None:
    """`next_nudge_at` as the repository writes it: earliest_look(handoff, NUDGE_CONFIG)."""
    if shim.status in TERMINAL:  # earliest_look's first answer (None); spares most rows the datetimes
        return None
    handoff = _NudgeShim()
    handoff.status, handoff.requires_approval, handoff.nudge_count = shim.status, shim.requires_approval, nudge_count
    handoff.claim_by, handoff.due_at = _naive(shim.claim_by), _naive(shim.due_at)
    handoff.escalated_at, handoff.snoozed_until = _naive(escalated_at), _naive(snoozed_until)
    look = earliest_look(handoff, NUDGE_CONFIG)  # type: ignore[arg-type]
    return None if look is None else look.isoformat(" ", "microseconds") + tz_suffix


class _Source:
    __slots__ = ("url",)

    def __init__(self, url: str | None) -> None:
        self.url = url


class _FingerprintShim:
    """What handoffs.intake.fingerprint reads from a payload."""

    __slots__ = ("source", "summary", "title")

    def __init__(self, title: str, summary: str | None, url: str | None) -> None:
        self.title, self.summary, self.source = title, summary, _Source(url)


def _pools(rng: random.Random) -> dict[str, list[Any]]:
    summaries = []
    for _ in range(400):
        company, topic = rng.choice(COMPANIES), rng.choice(TOPICS)
        summaries.append(
            f"Call summary: {company} asked about {topic}. They compare two vendors and want an answer before "
            f"the end of the quarter. Budget is approved in principle; procurement needs the security "
            f"questionnaire first. Next call in {rng.randint(2, 20)} days."
        )
    drafts = [f"Hi,\n\nthanks for your message about {topic}. We can confirm the terms discussed and will send "
              f"the paperwork this week.\n\nBest regards" for topic in TOPICS]
    facts = [json.dumps({"customer": rng.choice(COMPANIES), "account": f"ACC-{rng.randint(1000, 9999)}",
                         "region": rng.choice(["EMEA", "NA", "APAC"]), "arr": f"{rng.randint(5, 400)}k EUR"})
             for _ in range(300)]
    lead_facts = [json.dumps({"company": c, "contact": rng.choice(["Jane Doe", "Max Muster", "Li Wei"])})
                  for c in COMPANIES]
    return {"summaries": summaries, "drafts": drafts, "facts": facts, "lead_facts": lead_facts}


def plan_rows(rows: int, now: float, seed: int) -> tuple[list[float], list[int]]:
    """created_at (epoch seconds, ascending = id order) and status index for every row."""
    rng = random.Random(seed)
    statuses = rng.choices(range(len(STATUS_MIX)), weights=[share for _, share in STATUS_MIX], k=rows)
    stamps = []
    for status in statuses:
        if STATUS_MIX[status][0] in (Status.closed, Status.rejected):
            age = YEAR * (1 - math.sqrt(rng.random()))  # volume grows over the year
            age = max(age, 3600.0 * rng.uniform(1, 48))
        elif rng.random() < 0.7:
            age = rng.uniform(60, 30 * 86400)  # in flight: mostly recent
        else:
            age = rng.uniform(30 * 86400, YEAR)  # an old backlog
        stamps.append(now - age)
    order = sorted(range(rows), key=stamps.__getitem__)
    return [round(stamps[i], 3) for i in order], [statuses[i] for i in order]


_EPOCH = datetime(1970, 1, 1)


def _json_str(value: str | None) -> str:
    """JSON for an id-like string (no quotes or escapes in it) or null."""
    return "null" if value is None else f'"{value}"'


def _iso(epoch: float | None, suffix: str) -> str | None:
    """`YYYY-MM-DD HH:MM:SS.ffffff` (UTC), the way SQLAlchemy stores datetimes on SQLite, plus `suffix`."""
    if epoch is None:
        return None
    return (_EPOCH + timedelta(seconds=epoch)).isoformat(" ", "microseconds") + suffix


class Chunk(NamedTuple):
    handoffs: list[tuple[Any, ...]]  # HANDOFF_COLUMNS order
    events: list[tuple[Any, ...]]  # EVENT_COLUMNS order
    approvers: list[tuple[Any, ...]]  # APPROVER_COLUMNS order: the repository's handoff_approvers side table
    schedule: list[tuple[Any, ...]]  # SCHEDULE_COLUMNS order: the nudge_schedule side table
    keys: list[tuple[Any, ...]]  # KEY_COLUMNS order: the idempotency_keys side table


def generate_chunk(task: tuple[int, list[float], list[int], float, int, str]) -> Chunk:
    """The rows of handoffs first_id.. of one chunk, their events and their approver rows.

    Datetimes are text: naive UTC for SQLite (as SQLAlchemy stores them there), with +00 for PostgreSQL.
    """
    first_id, stamps, status_codes, now, seed, tz_suffix = task
    rng = random.Random(seed * 1_000_003 + first_id)
    pools = _pools(random.Random(seed))
    facts_pool = [(text, json.loads(text)) for text in pools["lead_facts"] + pools["facts"]]
    handoffs: list[tuple[Any, ...]] = []
    events: list[tuple[Any, ...]] = []
    approver_rows: list[tuple[Any, ...]] = []
    schedule: list[tuple[Any, ...]] = []
    keys: list[tuple[Any, ...]] = []
    shim = _StallShim()
    event_id = 2 * first_id - 1
    for offset, (created, code) in enumerate(zip(stamps, status_codes, strict=True)):
        hid = first_id + offset
        status = STATUS_MIX[code][0]
        kind = rng.choices(KINDS, cum_weights=KIND_WEIGHTS)[0]
        urgency = rng.choices(URGENCIES, cum_weights=URGENCY_WEIGHTS)[0]
        sla = DEFAULT_SLA[urgency]
        company, topic = rng.choice(COMPANIES), rng.choice(TOPICS)
        title = f"{company}: follow up on {topic} ({hid})"
        next_action = f"Call the {company} contact about {topic} and update the CRM"
        summary = rng.choice(pools["summaries"]) if rng.random() < 0.9 else None
        draft = rng.choice(pools["drafts"]) if kind == "reply" else None
        facts_index = rng.randrange(len(COMPANIES)) if kind == "lead" else rng.randrange(300) + len(COMPANIES)
        facts, facts_parsed = facts_pool[facts_index]
        confidence = round(rng.uniform(0.5, 0.99), 2) if rng.random() < 0.8 else None
        low_confidence = confidence is not None and confidence < 0.7
        missing = MISSING if rng.random() < 0.08 else []
        risks = RISKS if rng.random() < 0.05 else []
        reasons = ([f"confidence {confidence:.2f} is below 0.70"] if low_confidence else []) + \
                  ([f"{len(missing)} missing item(s)"] if missing else []) + \
                  ([f"{len(risks)} risk flag(s)"] if risks else [])
        requires_approval = kind == "reply" or bool(reasons)
        approvers = rng.sample(APPROVERS, 2) if requires_approval else []
        channel = rng.choices(CHANNELS, cum_weights=CHANNEL_WEIGHTS)[0]
        system = rng.choice(SYSTEMS)
        url = f"https://crm.example.com/deals/{hid}" if system else f"https://example.slack.com/archives/{channel}/p{hid}"
        external_id = f"{system}-{hid}" if system and rng.random() < 0.6 else None
        source_channel, source_ts = (None, None) if system else (channel, f"{int(created)}.{hid % 1_000_000:06d}")
        callback_url = f"https://hooks.example.com/handoff/{hid}" if system and rng.random() < 0.1 else None
        created_by = rng.choice(["call-summariser", "lead-classifier", "reply-drafter", "triage-agent"])
        submitted_by = rng.choice(["n8n", "zapier", "agents"]) if system else rng.choice(OWNERS[:200])

        claim_by = created + sla.claim.total_seconds()
        due_at = created + sla.resolve.total_seconds()
        in_flight = status in (Status.open, Status.claimed, Status.approved)
        stalled = in_flight and rng.random() < STALLED_SHARE
        waits_on_claim = status is Status.open or (requires_approval and status is Status.claimed)
        if in_flight and not stalled:  # fresh, or the deadlines were snoozed / extended
            if claim_by <= now:
                claim_by = now + rng.uniform(3600, 7 * 86400)
            if due_at <= now:
                due_at = now + rng.uniform(3600, 14 * 86400)
            due_at = max(due_at, claim_by)
        elif stalled:  # past its deadline; one that is too fresh for that is simply not stalled yet
            if waits_on_claim:
                claim_by = min(claim_by, now - rng.uniform(60, 3 * 86400))
            else:
                due_at = min(due_at, now - rng.uniform(60, 5 * 86400))
            claim_by = max(claim_by, created + 60)
            due_at = max(due_at, claim_by)

        owner = None
        if status is not Status.open and not (status is Status.rejected and rng.random() < 0.5):
            owner = rng.choices(OWNERS, cum_weights=OWNER_WEIGHTS)[0]
        step = rng.uniform(300, 86400)
        claimed_at = min(created + step, now) if owner else None
        approved_at = decided_at = closed_at = None
        outcome = outcome_note = None
        if status is Status.approved or (status is Status.closed and requires_approval):
            approved_at = min((claimed_at or created) + rng.uniform(300, 86400), now)
        if status is Status.closed:
            closed_at = decided_at = min((approved_at or claimed_at or created) + rng.uniform(600, 5 * 86400), now)
            outcome = rng.choice(OUTCOMES.get(kind, DEFAULT_OUTCOMES))
            outcome_note = "Customer confirmed by email" if rng.random() < 0.3 else None
        if status is Status.rejected:
            decided_at = min(created + rng.uniform(300, 86400), now)
            outcome_note = rng.choice(["Not our customer", "Duplicate of an older request", "Spam"])
        if status is Status.approved:
            decided_at = approved_at
        nudges = rng.randint(1, 4) if stalled else 0
        escalated_at = min(created + 86400, now) if nudges >= 3 else None
        snoozed_until = now + rng.uniform(600, 86400) if in_flight and not stalled and rng.random() < 0.05 else None
        updated_at = max(t for t in (created, claimed_at, approved_at, decided_at, closed_at) if t is not None)

        created_at = _iso(created, tz_suffix)
        shim.status, shim.requires_approval = status, requires_approval
        shim.claim_by, shim.due_at, shim.approved_at = claim_by, due_at, approved_at
        stall_at = cast("float | None", Handoff.stall_deadline(cast(Handoff, shim)))  # epoch seconds in, out
        if approvers:
            pending = approval_pending(shim)  # type: ignore[arg-type]
            approver_rows.extend((hid, user, pending) for user in approvers)

        payload = dict(_PAYLOAD_DEFAULTS)
        payload.update(title=title, next_action=next_action, kind=kind, summary=summary, draft=draft,
                       facts=facts_parsed, urgency=urgency.value, confidence=confidence, missing_info=missing,
                       risk_flags=risks, source={"system": system, "url": url, "label": "CRM deal" if system else None},
                       created_by=created_by, external_id=external_id, callback_url=callback_url)
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        payload_hash = hashlib.sha256(canonical.encode()).hexdigest()
        if external_id is not None:
            keys.append((system, external_id, hid, payload_hash))
        queue = channel if status is Status.open else None
        handoffs.append((
            hid, 1 + (status is not Status.open) + (approved_at is not None) + (decided_at is not None),
            status.value, kind, urgency.value, title, next_action, summary, facts, draft, None, confidence,
            MISSING_JSON if missing else "[]", RISKS_JSON if risks else "[]", '["Sent the recap email"]', "[]", "[]",
            None, owner, f'["{approvers[0]}","{approvers[1]}"]' if approvers else "[]", requires_approval,
            json.dumps(reasons) if reasons else "[]", "default", queue, channel,
            f"{int(created) + 2}.{hid % 1_000_000:06d}",
            _iso(claim_by, tz_suffix), _iso(due_at, tz_suffix), _iso(stall_at, tz_suffix), system, url,
            "CRM deal" if system else None, source_channel, source_ts, created_by, submitted_by, external_id,
            callback_url, outcome, outcome_note,
            fingerprint(_FingerprintShim(title, summary, url)),  # type: ignore[arg-type]
            payload_hash, 1, _iso(snoozed_until, tz_suffix), nudges,
            _iso(escalated_at, tz_suffix), created_at, _iso(updated_at, tz_suffix),
            _iso(claimed_at, tz_suffix), _iso(approved_at, tz_suffix), _iso(decided_at, tz_suffix),
            _iso(closed_at, tz_suffix),
        ))
        look = _next_nudge_at(shim, nudges, escalated_at, snoozed_until, tz_suffix)
        if look is not None:
            schedule.append((hid, look))
        events.append((event_id, hid, "created", submitted_by, created_at, None,
                       "claimed" if owner and status is not Status.rejected else "open",
                       f'{{"route":"default","channel":"{channel}","owner":{_json_str(owner)},'
                       f'"queue":{_json_str(queue)}}}'))
        last = {Status.claimed: ("claimed", claimed_at), Status.approved: ("approved", approved_at),
                Status.closed: ("closed", closed_at), Status.rejected: ("rejected", decided_at)}.get(status)
        if last is not None:
            events.append((event_id + 1, hid, last[0], owner or APPROVERS[0], _iso(last[1], tz_suffix),
                           "claimed" if last[0] != "claimed" else "open", status.value,
                           f'{{"outcome":"{outcome}"}}' if outcome else "{}"))
        event_id += 2
    return Chunk(handoffs, events, approver_rows, schedule, keys)


def check_derived_columns(now: float, seed: int) -> None:
    """The fast payload_hash / stall_at / next_nudge_at above must equal what the real intake and repository
    compute: compare a sample."""
    stamps, codes = plan_rows(1000, now, seed)
    chunk = generate_chunk((1, stamps, codes, now, seed, "+00:00"))
    rows, looks = chunk.handoffs, dict(chunk.schedule)
    index = {name: i for i, name in enumerate(HANDOFF_COLUMNS)}
    for row in rows:
        source = {"system": row[index["source_system"]], "url": row[index["source_url"]],
                  "label": row[index["source_label"]]}
        payload = HandoffIn(
            title=row[index["title"]], next_action=row[index["next_action"]], kind=row[index["kind"]],
            summary=row[index["summary"]], draft=row[index["draft"]], facts=json.loads(row[index["facts"]]),
            urgency=row[index["urgency"]], confidence=row[index["confidence"]],
            missing_info=json.loads(row[index["missing_info"]]), risk_flags=json.loads(row[index["risk_flags"]]),
            source=Source.model_validate(source), created_by=row[index["created_by"]],
            external_id=row[index["external_id"]],
            callback_url=row[index["callback_url"]],
        )
        assert row[index["payload_hash"]] == payload_hash(payload), "payload_hash differs from handoffs.intake"
        assert row[index["fingerprint"]] == fingerprint(payload), "fingerprint differs from handoffs.intake"
        when = {name: (datetime.fromisoformat(row[index[name]]) if row[index[name]] else None)
                for name in ("claim_by", "due_at", "stall_at", "escalated_at", "snoozed_until")}
        look = looks.get(row[0])
        handoff = Handoff(id=row[0], title="", next_action="", kind="task", status=Status(row[index["status"]]),
                          urgency=Urgency.normal, version=1, created_at=datetime.now(UTC),
                          updated_at=datetime.now(UTC), requires_approval=row[index["requires_approval"]],
                          claim_by=when["claim_by"], due_at=when["due_at"], nudge_count=row[index["nudge_count"]],
                          escalated_at=when["escalated_at"], snoozed_until=when["snoozed_until"])
        assert handoff.stall_deadline() == when["stall_at"], "stall_at differs from Handoff.stall_deadline()"
        assert earliest_look(handoff, NUDGE_CONFIG) == (datetime.fromisoformat(look) if look else None), \
            "nudge_schedule.next_nudge_at differs from handoffs.nudges.earliest_look()"


def chunks(rows: int, now: float, seed: int, tz_suffix: str) -> Iterator[tuple[int, list[float], list[int], float,
                                                                              int, str]]:
    stamps, codes = plan_rows(rows, now, seed)
    for start in range(0, rows, CHUNK):
        yield start + 1, stamps[start:start + CHUNK], codes[start:start + CHUNK], now, seed, tz_suffix


def generated(rows: int, now: float, seed: int, tz_suffix: str, workers: int) -> Iterator[Chunk]:
    """The chunks, generated by `workers` processes, in id order."""
    context = multiprocessing.get_context("fork")
    with context.Pool(workers) as pool:
        yield from pool.imap(generate_chunk, chunks(rows, now, seed, tz_suffix))


# --------------------------------------------------------------------------------------------------------------
# Loading


@dataclass
class LoadReport:
    rows: int
    seconds: float = 0.0
    insert_seconds: float = 0.0
    index_seconds: float = 0.0
    reused: bool = False
    size_mb: float = 0.0


def _progress(done: int, total: int, started: float) -> None:
    if sys.stderr.isatty():
        rate = done / max(time.perf_counter() - started, 1e-9)
        print(f"\r  loading {done:,}/{total:,} ({rate:,.0f} rows/s)", end="", file=sys.stderr, flush=True)


def _check_columns(actual: dict[str, bool]) -> None:
    """`actual`: column -> can be left out (nullable or server default)."""
    missing = [name for name, optional in actual.items() if name not in HANDOFF_COLUMNS and not optional]
    if missing:
        raise SystemExit(f"bench/scale.py: handoffs has NOT NULL column(s) {missing} the loader does not fill; "
                         "add them to HANDOFF_COLUMNS and generate_chunk")
    unknown = [name for name in HANDOFF_COLUMNS if name not in actual]
    if unknown:
        raise SystemExit(f"bench/scale.py: the loader fills column(s) {unknown} that handoffs no longer has")


def load_sqlite(path: Path, rows: int, now: float, seed: int, workers: int) -> LoadReport:
    report = LoadReport(rows)
    started = time.perf_counter()
    url = f"sqlite:///{path}"
    migrate.upgrade(url)
    connection = sqlite3.connect(path, isolation_level=None)
    columns = {r[1]: (not r[3]) or r[4] is not None for r in connection.execute("PRAGMA table_info(handoffs)")}
    _check_columns(columns)
    existing = {r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    tables = {name: spec for name, spec in TABLES.items() if name in existing}
    indexes = connection.execute(  # named indexes only: those of PRIMARY KEY / UNIQUE constraints stay
        f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
        f"AND tbl_name IN ({', '.join('?' * len(tables))})", list(tables)
    ).fetchall()
    for name, _ in indexes:
        connection.execute(f'DROP INDEX "{name}"')
    connection.execute("PRAGMA journal_mode=OFF")
    connection.execute("PRAGMA synchronous=OFF")
    connection.execute("PRAGMA cache_size=-262144")
    connection.execute("PRAGMA threads=2")  # index builds sort with a helper thread
    inserts = [(f"INSERT INTO {name} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", attr)
               for name, (cols, attr) in tables.items()]
    done = 0
    connection.execute("BEGIN")
    for chunk in generated(rows, now, seed, "", workers):
        for sql, attr in inserts:
            connection.executemany(sql, getattr(chunk, attr))
        done += len(chunk.handoffs)
        if done % 200_000 == 0:
            connection.execute("COMMIT")
            connection.execute("BEGIN")
        _progress(done, rows, started)
    connection.execute("COMMIT")
    report.insert_seconds = time.perf_counter() - started
    index_started = time.perf_counter()
    for _, sql in indexes:
        connection.execute(sql)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.close()
    report.index_seconds = time.perf_counter() - index_started
    report.seconds = time.perf_counter() - started
    return report


def load_postgres(url: str, rows: int, now: float, seed: int, workers: int) -> LoadReport:
    import psycopg

    report = LoadReport(rows)
    started = time.perf_counter()
    migrate.upgrade(url)
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1), autocommit=True) as connection:
        columns = {name: nullable == "YES" or default is not None for name, nullable, default in connection.execute(
            "SELECT column_name, is_nullable, column_default FROM information_schema.columns "
            "WHERE table_name = 'handoffs' AND table_schema = current_schema()"
        )}
        _check_columns(columns)
        existing = {r[0] for r in connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )}
        tables = {name: spec for name, spec in TABLES.items() if name in existing}
        indexes = connection.execute(  # those of PRIMARY KEY / UNIQUE constraints stay
            "SELECT i.relname, pg_get_indexdef(x.indexrelid) FROM pg_index x "
            "JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid "
            "WHERE t.relname = ANY(%s) AND t.relnamespace = current_schema()::regnamespace "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)",
            (list(tables),),
        ).fetchall()
        for name, _ in indexes:
            connection.execute(f'DROP INDEX "{name}"')
        # One connection and one COPY stream per table, side by side (a connection runs one COPY at a time).
        libpq = url.replace("postgresql+psycopg://", "postgresql://", 1)
        # `copies` closes first, so every COPY ends before its connection commits (on leaving without an error).
        with contextlib.ExitStack() as stack, contextlib.ExitStack() as copies:
            streams = []
            for name, (cols, attr) in tables.items():
                each = stack.enter_context(psycopg.connect(libpq))
                each.execute("SET session_replication_role = replica")  # no FK trigger per row
                each.execute("SET synchronous_commit = off")
                cursor = stack.enter_context(each.cursor())
                copy = copies.enter_context(cursor.copy(f"COPY {name} ({', '.join(cols)}) FROM STDIN"))
                streams.append((copy, attr))
            done = 0
            for chunk in generated(rows, now, seed, "+00", workers):
                for copy, attr in streams:
                    write = copy.write_row
                    for row in getattr(chunk, attr):
                        write(row)
                done += len(chunk.handoffs)
                _progress(done, rows, started)
        for table in ("handoffs", "events"):  # ids were given explicitly: move the sequences past them
            if table not in tables:
                continue
            connection.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            )
        connection.execute("SET session_replication_role = origin")
        report.insert_seconds = time.perf_counter() - started
        index_started = time.perf_counter()
        connection.execute("SET maintenance_work_mem = '256MB'")
        for _, sql in indexes:
            connection.execute(sql)
        # What autovacuum does on its own shortly after a bulk insert: statistics and the visibility map.
        for table in tables:
            connection.execute(f"VACUUM ANALYZE {table}")
        report.index_seconds = time.perf_counter() - index_started
    report.seconds = time.perf_counter() - started
    return report


# --------------------------------------------------------------------------------------------------------------
# Timings


@dataclass
class Facts:
    """What the probes may use: picked from the loaded data before timing."""

    rows: int
    max_id: int
    top_owner: str
    top_owner_rows: int
    median_owner: str
    median_owner_rows: int
    stalled: int
    deep_cursor: int
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HttpProbe:
    name: str
    path: Callable[[Facts], str]
    target_ms: float | None = TARGET_MS


@dataclass(frozen=True)
class RepoProbe:
    name: str
    call: Callable[[Repository, Facts], object]
    target_ms: float | None = TARGET_MS


HTTP_PROBES: list[HttpProbe] = [
    HttpProbe("GET stalled=true&limit=50", lambda f: "/api/handoffs?stalled=true&limit=50"),
    HttpProbe("GET owner=<top owner>&limit=50", lambda f: f"/api/handoffs?owner={f.top_owner}&limit=50"),
    HttpProbe("GET owner=<median owner>&limit=50", lambda f: f"/api/handoffs?owner={f.median_owner}&limit=50"),
    HttpProbe("GET limit=50 (first page)", lambda f: "/api/handoffs?limit=50"),
    HttpProbe("GET limit=50&cursor=<middle>", lambda f: f"/api/handoffs?limit=50&cursor={f.deep_cursor}"),
    HttpProbe("GET status=open&limit=50", lambda f: "/api/handoffs?status=open&limit=50"),
]

REPO_PROBES: list[RepoProbe] = [
    RepoProbe("Repository.stalled(limit=100)", lambda r, f: r.stalled(now=datetime.now(UTC), limit=100)),
    RepoProbe("Repository.owned_by(<top owner>)", lambda r, f: r.owned_by(f.top_owner)),
    RepoProbe("Repository.owned_by(<median owner>)", lambda r, f: r.owned_by(f.median_owner)),
    RepoProbe("Repository.page(limit=50)", lambda r, f: r.page(limit=50)),
    RepoProbe("Repository.page(cursor=<middle>)", lambda r, f: r.page(limit=50, cursor=f.deep_cursor)),
    RepoProbe("Repository.page(stalled_at=now)", lambda r, f: r.page(limit=50, stalled_at=datetime.now(UTC))),
    RepoProbe("Repository.count_stalled (info)", lambda r, f: r.count_stalled(now=datetime.now(UTC)), None),
]

# Issue 4: what the Slack listeners build server-side (no Slack call), at the same scale.
SLACK_TARGET_MS = 100.0
_MANAGER_CONFIG = parse_config({"managers": ["U000000X"], "routes": [{"name": "default", "channel": "C0BENCH01"}]})


def _slack_runtime(repo: Repository) -> Runtime:
    settings = Settings(database_url=repo.db.url, default_channel="C0BENCH01")
    service = HandoffService(repo, _MANAGER_CONFIG)
    return Runtime(settings, _MANAGER_CONFIG, repo.db, repo, service, service.clock)


def _command(repo: Repository, command: Command, user: str) -> object:
    return respond(_slack_runtime(repo), command, Caller(user, "C0BENCH01", "example")).blocks


def _home(repo: Repository, user: str) -> object:
    now = datetime.now(UTC)
    board = build_board(repo, user, now=now, config=_MANAGER_CONFIG)
    return home_view(board, _MANAGER_CONFIG, now=now, is_manager=user in _MANAGER_CONFIG.managers)["blocks"]


REPO_PROBES += [
    RepoProbe("/handoff stalled (manager's answer)", lambda r, f: _command(r, Stalled(), "U000000X"), SLACK_TARGET_MS),
    RepoProbe("/handoff mine <top owner>", lambda r, f: _command(r, Mine(), f.top_owner), SLACK_TARGET_MS),
    RepoProbe("/handoff mine <median owner>", lambda r, f: _command(r, Mine(), f.median_owner), SLACK_TARGET_MS),
    RepoProbe("App Home build <top owner>", lambda r, f: _home(r, f.top_owner), SLACK_TARGET_MS),
    RepoProbe("App Home build <median owner>", lambda r, f: _home(r, f.median_owner), SLACK_TARGET_MS),
]


@dataclass
class Timing:
    name: str
    samples: list[float]
    target_ms: float | None
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p95(self) -> float:
        return percentile(self.samples, 0.95)

    @property
    def passed(self) -> bool:
        return self.target_ms is None or self.median <= self.target_ms


def gather_facts(db: Database, rows: int) -> Facts:
    from sqlalchemy import text

    with db.reader.connect() as connection:
        max_id = connection.execute(text("SELECT max(id) FROM handoffs")).scalar_one()
        owners = connection.execute(text(
            "SELECT owner, count(*) AS n FROM handoffs WHERE owner IS NOT NULL GROUP BY owner ORDER BY n DESC"
        )).all()
    repo = Repository(db)
    stalled = repo.count_stalled(now=datetime.now(UTC))
    top, median = owners[0], owners[len(owners) // 2]
    return Facts(rows=rows, max_id=max_id, top_owner=top[0], top_owner_rows=top[1], median_owner=median[0],
                 median_owner_rows=median[1], stalled=stalled, deep_cursor=max_id // 2)


def time_http(server: Server, facts: Facts, repeat: int) -> list[Timing]:
    client = Client(server.port)
    timings = []
    try:
        for probe in HTTP_PROBES:
            path = probe.path(facts)
            samples = []
            items = 0
            for attempt in range(repeat + 2):  # two warm-up calls
                status, body, seconds = client.get(path)
                if status != 200:
                    raise RuntimeError(f"{path} answered {status}: {body}")
                items = len(body["items"])
                if attempt >= 2:
                    samples.append(seconds * 1000)
            timings.append(Timing(probe.name, samples, probe.target_ms, f"{items} items"))
    finally:
        client.close()
    return timings


def time_repository(db: Database, facts: Facts, repeat: int) -> list[Timing]:
    repo = Repository(db)
    timings = []
    for probe in REPO_PROBES:
        samples = []
        result: object = None
        for attempt in range(repeat + 2):
            started = time.perf_counter()
            result = probe.call(repo, facts)
            if attempt >= 2:
                samples.append((time.perf_counter() - started) * 1000)
        note = f"{len(result.items)} items" if hasattr(result, "items") and isinstance(result.items, list) else (
            f"{len(result)} items" if isinstance(result, list) else f"= {result}")
        timings.append(Timing(probe.name, samples, probe.target_ms, note))
    return timings


@dataclass
class BackendResult:
    backend: str
    load: LoadReport
    facts: Facts
    timings: list[Timing]
    rss_kib: dict[str, int]

    @property
    def rss_ok(self) -> bool:
        return self.rss_kib.get("VmHWM", 0) / 1024 <= TARGET_RSS_MB

    @property
    def passed(self) -> bool:
        return all(t.passed for t in self.timings) and self.rss_ok


def database_size_mb(db: Database) -> float:
    from sqlalchemy import text

    if db.is_sqlite:
        path = Path(db.writer.url.database or "")
        return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists()) / 2**20
    with db.reader.connect() as connection:
        return float(connection.execute(text("SELECT pg_database_size(current_database())")).scalar_one()) / 2**20


def measure(backend: str, url: str, load: LoadReport, repeat: int) -> BackendResult:
    db = Database(url)
    try:
        facts = gather_facts(db, load.rows)
        load.size_mb = database_size_mb(db)
    finally:
        db.dispose()
    with Server(url) as server:
        http = time_http(server, facts, repeat)
        rss = server.memory()
    db = Database(url)
    try:
        repo = time_repository(db, facts, repeat)
    finally:
        db.dispose()
    return BackendResult(backend, load, facts, http + repo, rss)


def print_result(result: BackendResult) -> None:
    load, facts = result.load, result.facts
    how = ("reused (--keep)" if load.reused else
           f"loaded in {load.seconds:.1f} s: rows {load.insert_seconds:.1f} s, indexes {load.index_seconds:.1f} s")
    print(f"  {facts.rows:,} handoffs, {how}, database {load.size_mb:,.0f} MB")
    print(f"  {facts.stalled:,} stalled · top owner {facts.top_owner} has {facts.top_owner_rows:,} · median owner "
          f"{facts.median_owner} has {facts.median_owner_rows:,} · deep cursor {facts.deep_cursor:,}")
    width = max(len(t.name) for t in result.timings) + 2
    print(f"  {'query':<{width}}{'median ms':>10}{'p95 ms':>9}   {'target':<9}result")
    for timing in result.timings:
        target = f"≤ {timing.target_ms:.0f} ms" if timing.target_ms is not None else "info"
        outcome = verdict(timing.passed) if timing.target_ms is not None else ""
        print(f"  {timing.name:<{width}}{timing.median:>10.1f}{timing.p95:>9.1f}   {target:<9}{outcome:<5} "
              f"({timing.note})")
    rss, hwm = result.rss_kib.get("VmRSS", 0) / 1024, result.rss_kib.get("VmHWM", 0) / 1024
    print(f"  server memory after the queries: VmRSS {rss:.1f} MB, VmHWM {hwm:.1f} MB   "
          f"target ≤ {TARGET_RSS_MB:.0f} MB: {verdict(result.rss_ok)}")


def run_backend(backend: str, args: argparse.Namespace, now: float) -> BackendResult:
    keep_as = f"scale_{args.rows}" if args.keep else None
    with loaded_database(backend, args.rows, keep_as=keep_as, now=now, seed=args.seed, workers=args.workers,
                         db_dir=args.db_dir, pg_url=args.pg_url) as (url, load):
        return measure(backend, url, load, args.repeat)


@contextlib.contextmanager
def loaded_database(backend: str, rows: int, *, keep_as: str | None, now: float, seed: int, workers: int,
                    db_dir: str, pg_url: str | None) -> Iterator[tuple[str, LoadReport]]:
    """(SQLAlchemy URL, how it was loaded) of a database of `rows` generated handoffs: a throwaway one, or with
    `keep_as` the one kept under that name (SQLite <db_dir>/<keep_as>.db, PostgreSQL database bench_<keep_as>),
    loaded by the first run and reused by the next ones."""
    if backend == "sqlite":
        with _sqlite_database(rows, keep_as, now, seed, workers, db_dir) as loaded:
            yield loaded
    else:
        with _postgres_database(rows, keep_as, now, seed, workers, pg_base_url(pg_url)) as loaded:
            yield loaded


@contextlib.contextmanager
def _sqlite_database(rows: int, keep_as: str | None, now: float, seed: int, workers: int,
                     db_dir: str) -> Iterator[tuple[str, LoadReport]]:
    if keep_as is None:
        with tempfile.TemporaryDirectory(prefix="handoff-bench-", dir=db_dir) as directory:
            path = Path(directory) / "handoffs.db"
            yield f"sqlite:///{path}", load_sqlite(path, rows, now, seed, workers)
        return
    folder = Path(db_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{keep_as}.db"
    if path.exists():
        load = LoadReport(rows, reused=True)
    else:
        partial = folder / f"{keep_as}.db.partial"
        partial.unlink(missing_ok=True)
        load = load_sqlite(partial, rows, now, seed, workers)
        partial.rename(path)
    yield f"sqlite:///{path}", load


@contextlib.contextmanager
def _postgres_database(rows: int, keep_as: str | None, now: float, seed: int, workers: int,
                       base: str) -> Iterator[tuple[str, LoadReport]]:
    import psycopg

    if keep_as is None:
        with postgres_database(base) as url:
            yield url, load_postgres(url, rows, now, seed, workers)
        return
    name, partial = f"bench_{keep_as}", f"bench_{keep_as}_partial"
    maintenance = base.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(maintenance, autocommit=True) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    load = LoadReport(rows, reused=True)
    if not exists:
        drop_postgres_database(base, partial)
        with postgres_database(base, name=partial, keep=True) as url:
            load = load_postgres(url, rows, now, seed, workers)
        with psycopg.connect(maintenance, autocommit=True) as connection:
            connection.execute(f'ALTER DATABASE "{partial}" RENAME TO "{name}"')
    with postgres_database(base, name=name, keep=True) as url:
        yield url, load


def add_loader_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `loaded_database` that every bench loading handoffs takes."""
    parser.add_argument("--db-dir", default=os.environ.get("BENCH_DB_DIR", tempfile.gettempdir()),
                        help="where SQLite files go (default: the temp directory)")
    parser.add_argument("--pg-url", help="PostgreSQL maintenance URL (default: $TEST_DATABASE_URL or local test db)")
    parser.add_argument("--workers", type=int, default=max(1, min(2, os.cpu_count() or 1)),
                        help="row generator processes")
    parser.add_argument("--seed", type=int, default=20261121)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--keep", action="store_true", help="keep the loaded database and reuse it next time")
    parser.add_argument("--repeat", type=int, default=20, help="timed calls per query (after 2 warm-up calls)")
    add_loader_arguments(parser)
    args = parser.parse_args(argv)

    now = time.time()
    check_derived_columns(now, args.seed)
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    print(f"scale benchmark: {args.rows:,} handoffs, {args.repeat} timed calls per query · {machine_line()}")
    results = []
    for backend in backends:
        print(f"\n[{backend}]", flush=True)
        result = run_backend(backend, args, now)
        if sys.stderr.isatty():
            print("\r" + " " * 70 + "\r", end="", file=sys.stderr)
        print_result(result)
        results.append(result)
    ok = all(r.passed for r in results)
    print(f"\ntargets (each query median ≤ {TARGET_MS:.0f} ms, server RSS ≤ {TARGET_RSS_MB:.0f} MB): {verdict(ok)}"
          + ("" if ok else "  (" + ", ".join(f"{r.backend} {verdict(r.passed)}" for r in results) + ")"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
