"""The handoff as producers submit it (SPEC §2) and as it is stored."""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

USER_ID_PATTERN = r"^[UW][A-Z0-9]{2,20}$"
CHANNEL_ID_PATTERN = r"^[CGD][A-Z0-9]{2,20}$"
USERGROUP_ID_PATTERN = r"^S[A-Z0-9]{2,20}$"

UserId = Annotated[str, StringConstraints(pattern=USER_ID_PATTERN)]
ChannelId = Annotated[str, StringConstraints(pattern=CHANNEL_ID_PATTERN)]
UsergroupId = Annotated[str, StringConstraints(pattern=USERGROUP_ID_PATTERN)]
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})  # controls, zero-width and format marks, spaces


def _visible(value: str) -> str:
    """Refuse text a person cannot see (only zero-width characters, a BOM): as blank as blank."""
    if value and all(unicodedata.category(ch) in _INVISIBLE_CATEGORIES for ch in value):
        raise ValueError("must not be blank (it holds only invisible characters)")
    return value


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):  # a float field would take true as 1.0
        raise ValueError("must be a number, not true or false")
    return value


def _bool_or_none(value: Any) -> Any:
    if value is not None and not isinstance(value, bool):  # a bool field would take "no", "off" or 0
        raise ValueError("must be true or false")
    return value


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _no_number(value: Any) -> Any:
    # pydantic reads a number, or a string of one ("1893456000"), as a Unix time: SPEC §2 asks for ISO-8601
    if isinstance(value, int | float) or (isinstance(value, str) and _NUMBER.fullmatch(value.strip())):
        raise ValueError("must be an ISO-8601 date and time with its offset, such as 2030-01-31T17:00:00+01:00")
    return value


VisibleText = Annotated[str, AfterValidator(_visible)]
ListItem = Annotated[str, StringConstraints(min_length=1, max_length=1000), AfterValidator(_visible)]
FactKey = Annotated[str, StringConstraints(min_length=1, max_length=100)]
FactValue = Annotated[str, StringConstraints(max_length=2000)]


class Urgency(StrEnum):
    low = "low"
    normal = "normal"
    high = "high"
    urgent = "urgent"


URGENCY_RANK = {Urgency.urgent: 0, Urgency.high: 1, Urgency.normal: 2, Urgency.low: 3}


class Status(StrEnum):
    open = "open"
    claimed = "claimed"
    approved = "approved"
    rejected = "rejected"
    closed = "closed"


TERMINAL = frozenset({Status.rejected, Status.closed})


def _is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_url_characters(url: str) -> None:
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise ValueError("must not contain spaces or control characters")


def check_callback_url(url: str) -> str:
    """https anywhere; plain http only to a loopback address (local development and tests).

    Only a URL the webhook sender can call passes: a bad port, host or character would otherwise be accepted
    here and then retried for a day.
    """
    _check_url_characters(url)
    parts = urlsplit(url)
    if not parts.hostname or parts.scheme not in ("https", "http"):
        raise ValueError("must be an absolute https URL")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:  # also a port that is not a number, or out of range
        raise ValueError("must have a port between 1 and 65535 (or none)")
    if parts.scheme == "http" and not _is_loopback_host(parts.hostname):
        raise ValueError("must use https (http is allowed only for localhost)")
    if not _is_callable_host(parts.hostname):
        raise ValueError(f"has a host that cannot be called: {parts.hostname!r}")
    return url


def _is_callable_host(host: str) -> bool:
    """An IP address that parses, or a name IDNA can encode (`999.1.1.1` is neither: it looks like an address)."""
    if host.replace(".", "").isdigit() or ":" in host:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return False
        return True
    try:
        host.encode("idna")
    except UnicodeError:
        return False
    return True


def check_link_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("must be an absolute http(s) URL")
    _check_url_characters(url)
    if any(ch in url for ch in "<>|\\"):  # a browser reads \ as /: it could hide the real host from the card
        raise ValueError("must not contain spaces or any of < > | \\")
    return url


EARLIEST_DUE = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_DUE = datetime(2999, 12, 31, 23, 59, 59, tzinfo=UTC)


def _check_due_at(value: datetime) -> datetime:
    """A due time is stored in UTC: refuse one that cannot be (year 1 or 9999 with an offset) or makes no sense."""
    try:
        in_utc = value.astimezone(UTC)
    except OverflowError:
        in_utc = None
    if in_utc is None or not EARLIEST_DUE <= in_utc <= LATEST_DUE:
        raise ValueError("must be between 2000-01-01 and 2999-12-31 (UTC)")
    return value


DueAt = Annotated[AwareDatetime, BeforeValidator(_no_number), AfterValidator(_check_due_at)]


def refuse_nul(value: Any) -> Any:
    """Raise ValueError when a string in `value` (at any depth: list items, dict keys and values) holds NUL.

    PostgreSQL text cannot store it and SQLite can: refusing it in validation gives one answer on both.
    """
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("must not contain the NUL character (\\u0000)")
    elif isinstance(value, dict):
        for key, item in value.items():
            refuse_nul(key)
            refuse_nul(item)
    elif isinstance(value, list | tuple):
        for item in value:
            refuse_nul(item)
    return value


class InputModel(BaseModel):
    """The base of every model read from outside (API, Slack): no string in any field may hold NUL."""

    @field_validator("*")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        return refuse_nul(value)


class Source(InputModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    system: str | None = Field(default=None, min_length=1, max_length=80)
    url: str | None = Field(default=None, max_length=2000)
    label: str | None = Field(default=None, max_length=150)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_link_url(value)


class HandoffIn(InputModel):
    """What a producer submits. Unknown fields are refused so that typos surface."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: VisibleText = Field(min_length=1, max_length=150)
    next_action: VisibleText = Field(min_length=1, max_length=500)
    kind: str = Field(default="task", min_length=1, max_length=50)
    summary: str | None = Field(default=None, max_length=5000)
    facts: dict[FactKey, FactValue] = Field(default_factory=dict, max_length=30)
    draft: str | None = Field(default=None, max_length=10000)
    intent: str | None = Field(default=None, min_length=1, max_length=100)
    urgency: Urgency = Urgency.normal
    confidence: Annotated[float | None, BeforeValidator(_no_bool)] = Field(
        default=None, ge=0.0, le=1.0, allow_inf_nan=False)
    missing_info: list[ListItem] = Field(default_factory=list, max_length=20)
    risk_flags: list[ListItem] = Field(default_factory=list, max_length=20)
    already_done: list[ListItem] = Field(default_factory=list, max_length=20)
    constraints: list[ListItem] = Field(default_factory=list, max_length=20)
    decisions: list[ListItem] = Field(default_factory=list, max_length=20)
    definition_of_done: str | None = Field(default=None, max_length=500)
    owner: UserId | None = None
    approvers: list[UserId] | None = Field(default=None, max_length=20)
    requires_approval: Annotated[bool | None, BeforeValidator(_bool_or_none)] = None
    due_at: DueAt | None = None
    source: Source | None = None
    created_by: str | None = Field(default=None, max_length=80)
    external_id: str | None = Field(default=None, min_length=1, max_length=200)
    callback_url: str | None = Field(default=None, max_length=2000)

    @field_validator("callback_url")
    @classmethod
    def _callback(cls, value: str | None) -> str | None:
        return None if value is None else check_callback_url(value)


EDITABLE_FIELDS = ("title", "next_action", "summary", "draft", "definition_of_done", "urgency", "due_at")


class HandoffEdit(InputModel):
    """The fields a person may change with Edit; absent fields stay as they are."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: VisibleText | None = Field(default=None, min_length=1, max_length=150)
    next_action: VisibleText | None = Field(default=None, min_length=1, max_length=500)
    summary: str | None = Field(default=None, max_length=5000)
    draft: str | None = Field(default=None, max_length=10000)
    definition_of_done: str | None = Field(default=None, max_length=500)
    urgency: Urgency | None = None
    due_at: DueAt | None = None


@dataclass
class Handoff:
    """A stored handoff as the domain sees it (storage maps its rows to and from this)."""

    id: int
    title: str
    next_action: str
    kind: str
    status: Status
    urgency: Urgency
    version: int
    created_at: datetime
    updated_at: datetime
    summary: str | None = None
    facts: dict[str, str] = field(default_factory=dict)
    draft: str | None = None
    intent: str | None = None
    confidence: float | None = None
    missing_info: list[str] = field(default_factory=list)
    risk_flags: list[str] = field(default_factory=list)
    already_done: list[str] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)
    definition_of_done: str | None = None
    owner: str | None = None
    approvers: list[str] = field(default_factory=list)
    requires_approval: bool = False
    review_reasons: list[str] = field(default_factory=list)
    route: str | None = None
    queue: str | None = None
    channel: str | None = None
    card_ts: str | None = None
    claim_by: datetime | None = None
    due_at: datetime | None = None
    source_system: str | None = None
    source_url: str | None = None
    source_label: str | None = None
    source_channel: str | None = None
    source_ts: str | None = None
    created_by: str | None = None
    external_id: str | None = None
    callback_url: str | None = None
    # Callback URLs of later submissions counted as duplicates of this one: their producers hear its events too.
    duplicate_callback_urls: list[str] = field(default_factory=list)
    outcome: str | None = None
    outcome_note: str | None = None
    seen_count: int = 1
    snoozed_until: datetime | None = None
    nudge_count: int = 0
    escalated_at: datetime | None = None
    last_nudged_at: datetime | None = None  # this phase's last reminder: the next is at least `repeat_every` later
    claimed_at: datetime | None = None
    approved_at: datetime | None = None
    decided_at: datetime | None = None
    closed_at: datetime | None = None

    @property
    def ref(self) -> str:
        return ref_of(self.id)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def awaiting_approval(self) -> bool:
        return self.requires_approval and self.status in (Status.open, Status.claimed)

    def stall_deadline(self) -> datetime | None:
        """When this handoff counts as stalled in its current state (SPEC §5); None once terminal.

        Open: past `claim_by`. Claimed or approved: past `due_at`. A claimed one still waiting for
        approval is stalled at whichever comes first, the claim deadline or its due time.
        """
        if self.status is Status.open:
            return self.claim_by
        if self.status in (Status.claimed, Status.approved):
            deadlines = [d for d in (self.due_at, self.claim_by if self.awaiting_approval else None) if d]
            return min(deadlines) if deadlines else None
        return None


@dataclass(frozen=True)
class Event:
    id: int
    handoff_id: int
    action: str
    actor: str
    at: datetime
    from_status: str | None
    to_status: str | None
    data: dict[str, Any]


def ref_of(handoff_id: int) -> str:
    return f"H-{handoff_id}"


def parse_ref(text: str) -> int | None:
    """`H-42`, `h-42` or `42` -> 42; anything else -> None."""
    value = text.strip()
    if value[:2].upper() == "H-":
        value = value[2:]
    if not (value.isascii() and value.isdigit()) or len(value) > 18:  # "²" is a digit to isdigit, not to int
        return None
    number = int(value)
    return number if number > 0 else None
