"""The tables. Handoff rows carry the domain fields plus what the queries need (stall_at, fingerprint)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from storage.types import Id, UTCDateTime


def _when(*, nullable: bool = True, index: bool = False) -> Any:
    return Field(default=None, sa_type=UTCDateTime, nullable=nullable, index=index)


def _json(default: Any) -> Any:
    return Field(default_factory=default, sa_type=JSON, nullable=False)


class HandoffRow(SQLModel, table=True):
    __tablename__ = "handoffs"
    __table_args__ = (
        UniqueConstraint("source_system", "external_id", name="uq_handoffs_source_external_id"),
        Index("ix_handoffs_stall_at", "stall_at"),
        Index("ix_handoffs_owner_status", "owner", "status"),
        Index("ix_handoffs_owner_id", "owner", "id"),  # one owner's page, newest first (migration 0005)
        Index("ix_handoffs_owner_stall", "owner", "stall_at"),  # one owner's stalled ones (migration 0006)
        Index("ix_handoffs_queue_status", "queue", "status"),
        Index("ix_handoffs_status_id", "status", "id"),
        Index("ix_handoffs_channel_card", "channel", "card_ts"),
        Index("ix_handoffs_fingerprint", "fingerprint"),
        Index("ix_handoffs_source_message", "source_channel", "source_ts"),
        Index("ix_handoffs_created_at", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=Id)
    version: int = Field(default=1, nullable=False)
    status: str = Field(max_length=16, nullable=False)
    kind: str = Field(max_length=50, nullable=False)
    urgency: str = Field(max_length=16, nullable=False)
    title: str = Field(max_length=150, nullable=False)
    next_action: str = Field(max_length=500, nullable=False)
    summary: str | None = Field(default=None, sa_type=Text)
    facts: dict[str, str] = _json(dict)
    draft: str | None = Field(default=None, sa_type=Text)
    intent: str | None = Field(default=None, max_length=100)
    confidence: float | None = None
    missing_info: list[str] = _json(list)
    risk_flags: list[str] = _json(list)
    already_done: list[str] = _json(list)
    constraints: list[str] = _json(list)
    decisions: list[str] = _json(list)
    definition_of_done: str | None = Field(default=None, max_length=500)
    owner: str | None = Field(default=None, max_length=32)
    approvers: list[str] = _json(list)
    requires_approval: bool = Field(default=False, nullable=False)
    review_reasons: list[str] = _json(list)
    route: str | None = Field(default=None, max_length=80)
    queue: str | None = Field(default=None, max_length=32)
    channel: str | None = Field(default=None, max_length=32)
    card_ts: str | None = Field(default=None, max_length=32)
    claim_by: datetime | None = _when()
    due_at: datetime | None = _when()
    stall_at: datetime | None = _when()
    source_system: str | None = Field(default=None, max_length=80)
    source_url: str | None = Field(default=None, sa_type=Text)
    source_label: str | None = Field(default=None, max_length=150)
    source_channel: str | None = Field(default=None, max_length=32)
    source_ts: str | None = Field(default=None, max_length=32)
    created_by: str | None = Field(default=None, max_length=80)
    submitted_by: str = Field(max_length=80, nullable=False)
    external_id: str | None = Field(default=None, max_length=200)
    callback_url: str | None = Field(default=None, sa_type=Text)
    duplicate_callback_urls: list[str] = _json(list)  # migration 0013
    outcome: str | None = Field(default=None, max_length=80)
    outcome_note: str | None = Field(default=None, sa_type=Text)
    fingerprint: str = Field(max_length=64, nullable=False)
    payload_hash: str = Field(max_length=64, nullable=False)
    seen_count: int = Field(default=1, nullable=False)
    snoozed_until: datetime | None = _when()
    nudge_count: int = Field(default=0, nullable=False)
    escalated_at: datetime | None = _when()
    created_at: datetime = _when(nullable=False)
    updated_at: datetime = _when(nullable=False)
    claimed_at: datetime | None = _when()
    approved_at: datetime | None = _when()
    decided_at: datetime | None = _when()
    closed_at: datetime | None = _when()
    last_nudged_at: datetime | None = _when()


class IdempotencyKeyRow(SQLModel, table=True):
    """A producer's key (`source.system`, `external_id`) and the handoff its first submission was stored as, or
    counted on as a duplicate; with that submission's content hash, so that other content under it is a conflict.

    Its own table, so that every key is unique: in `handoffs` a key without a system has a NULL in the unique
    constraint (never equal to another), and a duplicate's key was kept only in an event.
    """

    __tablename__ = "idempotency_keys"

    source_system: str = Field(primary_key=True, max_length=80)  # "" for none: a given system is never empty
    external_id: str = Field(primary_key=True, max_length=200)
    handoff_id: int = Field(foreign_key="handoffs.id", nullable=False, sa_type=Id)
    payload_hash: str = Field(max_length=64, nullable=False)


class NudgeScheduleRow(SQLModel, table=True):
    """When the SLA sweep should next look at a handoff: the earliest moment the nudge policy may act on it.

    A row per handoff the policy still has something to do about (none once it is settled). Kept apart from
    `handoffs`, so that a reminder's write of the handoff changes no indexed column there (on PostgreSQL an
    update that leaves every index alone is HOT: it writes no index entry; see migration 0009).
    """

    __tablename__ = "nudge_schedule"
    __table_args__ = (Index("ix_nudge_schedule_next_nudge_at", "next_nudge_at"),)

    handoff_id: int = Field(foreign_key="handoffs.id", primary_key=True, sa_type=Id)
    next_nudge_at: datetime = _when(nullable=False)


class EventRow(SQLModel, table=True):
    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_handoff", "handoff_id", "id"),
        Index("ix_events_action_at", "action", "at"),
        Index("ix_events_actor_at", "actor", "at"),  # the App Home's "closed by me in the last 7 days"
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=Id)
    handoff_id: int = Field(foreign_key="handoffs.id", nullable=False, sa_type=Id)
    action: str = Field(max_length=32, nullable=False)
    actor: str = Field(max_length=80, nullable=False)
    at: datetime = _when(nullable=False)
    from_status: str | None = Field(default=None, max_length=16)
    to_status: str | None = Field(default=None, max_length=16)
    data: dict[str, Any] = _json(dict)


class HandoffApproverRow(SQLModel, table=True):
    """One row per (handoff, approver): `handoffs.approvers` is JSON, which no portable index can search.

    Kept in step by the repository (storage/approvers.py); `pending` is "awaiting this approval now".
    """

    __tablename__ = "handoff_approvers"
    __table_args__ = (Index("ix_handoff_approvers_user_pending", "user_id", "pending", "handoff_id"),)

    handoff_id: int = Field(foreign_key="handoffs.id", primary_key=True, sa_type=Id)
    user_id: str = Field(primary_key=True, max_length=32)
    pending: bool = Field(default=False, nullable=False)


class OutboxRow(SQLModel, table=True):
    """A side effect (Slack write, webhook) written in the same transaction as the change that caused it."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "state", "next_attempt_at"),
        Index("ix_outbox_kind_due", "kind", "state", "next_attempt_at"),  # one sender's own rows (migration 0008)
        Index("ix_outbox_handoff", "handoff_id"),
        Index("ix_outbox_target", "state", "target", "id"),  # each channel's first due row (migration 0010)
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=Id)
    handoff_id: int | None = Field(default=None, foreign_key="handoffs.id", sa_type=Id)
    kind: str = Field(max_length=32, nullable=False)
    target: str | None = Field(default=None, max_length=2000)
    payload: dict[str, Any] = _json(dict)
    state: str = Field(default="pending", max_length=16, nullable=False)
    attempts: int = Field(default=0, nullable=False)
    next_attempt_at: datetime = _when(nullable=False)
    last_error: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = _when(nullable=False)
    done_at: datetime | None = _when()


class RouteCursor(SQLModel, table=True):
    """Round-robin position per route."""

    __tablename__ = "route_cursors"

    route: str = Field(primary_key=True, max_length=80)
    position: int = Field(default=0, nullable=False)




class DigestRunRow(SQLModel, table=True):
    """One row per day a digest went out: the first process of a group to insert it sends that day's."""

    __tablename__ = "digest_runs"

    day: str = Field(primary_key=True, max_length=10)
    sent_at: datetime = _when(nullable=False)


class SlackEventRow(SQLModel, table=True):
    """A Slack event the bot has handled (intake channels), so that a retry or a repeat changes nothing.

    Keyed by the event id, and unique per message as well: whichever delivery records it first wins.
    """

    __tablename__ = "slack_events"
    __table_args__ = (UniqueConstraint("channel", "ts", name="uq_slack_events_message"),)

    event_id: str = Field(primary_key=True, max_length=100)
    channel: str = Field(max_length=32, nullable=False)
    ts: str = Field(max_length=32, nullable=False)
    outcome: str = Field(max_length=16, nullable=False)
    handoff_id: int | None = Field(default=None, foreign_key="handoffs.id", sa_type=Id)
    received_at: datetime = _when(nullable=False)
