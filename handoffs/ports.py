"""What the domain needs from the outside world, as Protocols (storage implements them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from handoffs.intake import IntakePlan
from handoffs.lifecycle import Actor, Change, Refused
from handoffs.model import Event, Handoff


@dataclass(frozen=True)
class Effect:
    """A side effect to deliver through the outbox; storage fills in the handoff id."""

    kind: str
    target: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)


class Created(StrEnum):
    created = "created"
    idempotent = "idempotent"
    duplicate = "duplicate"


@dataclass(frozen=True)
class CreateResult:
    handoff: Handoff
    result: Created

    @property
    def is_new(self) -> bool:
        return self.result is Created.created


class IdempotencyConflict(Exception):
    """Same `source.system` + `external_id` as an existing handoff, but other content."""

    def __init__(self, existing_id: int) -> None:
        self.existing_id = existing_id
        super().__init__(f"external_id already used by H-{existing_id} with different content")


class HandoffStore(Protocol):
    def create(
        self, plan: IntakePlan, *, effects: list[Effect], dedupe_since: datetime,
        derived_effects: Callable[[Handoff], list[Effect]] | None = None,
    ) -> CreateResult:
        """Store a new handoff (or return the one it repeats) with its event and `effects`, in one transaction.

        `derived_effects`, when given, is called with the new handoff as stored (its id and owner known only
        then) inside that transaction, and its effects are written too; never for a repeat.
        """
        ...

    def get(self, handoff_id: int) -> Handoff | None: ...

    def apply(
        self, handoff: Handoff, change: Change, *, actor: Actor, effects: list[Effect], now: datetime
    ) -> Handoff | None:
        """Write `change` if the handoff is still at `handoff.version`; None when someone else won."""
        ...

    def log_refusal(
        self, handoff: Handoff, refused: Refused, *, action: str, actor: Actor, now: datetime,
        effects: list[Effect] | None = None,
    ) -> None: ...

    def record(
        self, handoff: Handoff, action: str, *, actor: Actor, now: datetime, data: dict[str, Any],
        effects: list[Effect] | None = None,
    ) -> None: ...

    def record_unless_changed(
        self, handoff: Handoff, action: str, *, actor: Actor, now: datetime, data: dict[str, Any],
        effects: list[Effect] | None = None,
    ) -> bool:
        """`record` if the handoff is still at `handoff.version` (and bump it); False when someone else wrote."""
        ...

    def events(self, handoff_id: int, *, limit: int | None = None) -> list[Event]:
        """The handoff's events, oldest first (the last `limit` of them when given)."""
        ...
