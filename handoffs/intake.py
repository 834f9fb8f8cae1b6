"""The intake pipeline of SPEC §4, as far as it can be decided without the database.

`plan_intake` checks the kind rules, works out review reasons, the route, the
owner rule and the deadlines. Storage then applies idempotency and duplicate
detection and inserts, all in one transaction (see `storage.repository`).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime

from handoffs.config import HandoffConfig, Route
from handoffs.model import HandoffIn, Status
from handoffs.sla import claim_deadline, resolve_deadline


@dataclass(frozen=True)
class FieldError:
    loc: tuple[str | int, ...]
    msg: str
    type: str = "value_error"

    def as_dict(self) -> dict[str, object]:
        return {"loc": ["body", *self.loc], "msg": self.msg, "type": self.type}


class IntakeRejected(Exception):
    """The input is well formed but breaks a rule of its kind or of the configuration."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{'.'.join(map(str, e.loc))}: {e.msg}" for e in errors))


class NoRoute(Exception):
    """No route matched and there is no fallback: the configuration must be fixed."""


@dataclass
class IntakePlan:
    """Everything needed to store a new handoff; `owner_pool` is resolved by storage (round robin)."""

    payload: HandoffIn
    actor: str
    status: Status
    route: str | None
    channel: str
    queue: str | None
    owner: str | None
    owner_pool: list[str]
    approvers: list[str]
    requires_approval: bool
    review_reasons: list[str]
    claim_by: datetime
    due_at: datetime
    fingerprint: str
    payload_hash: str
    created_at: datetime
    source_channel: str | None = None
    source_ts: str | None = None
    extra_data: dict[str, object] = field(default_factory=dict)


def check_kind_rules(payload: HandoffIn, config: HandoffConfig) -> None:
    kind = config.kind(payload.kind)
    if kind is None:
        known = ", ".join(sorted(config.kinds))
        raise IntakeRejected([FieldError(("kind",), f"unknown kind {payload.kind!r} (known: {known})")])
    errors = [
        FieldError(("facts", name), f"required for kind {payload.kind!r}", "missing")
        for name in kind.required_facts
        if not payload.facts.get(name, "").strip()
    ]
    if kind.intents and payload.intent is None:
        errors.append(FieldError(("intent",), f"required for kind {payload.kind!r}: one of {kind.intents}", "missing"))
    elif kind.intents and payload.intent not in kind.intents:
        errors.append(FieldError(("intent",), f"must be one of {kind.intents} for kind {payload.kind!r}"))
    if errors:
        raise IntakeRejected(errors)


def review_reasons(payload: HandoffIn, config: HandoffConfig) -> list[str]:
    reasons = []
    threshold = config.review.confidence_below
    if threshold is not None and payload.confidence is not None and payload.confidence < threshold:
        reasons.append("confidence {} is below {}".format(*_told_apart(payload.confidence, threshold)))
    if payload.missing_info:
        reasons.append(f"{len(payload.missing_info)} missing item(s)")
    if payload.risk_flags:
        reasons.append(f"{len(payload.risk_flags)} risk flag(s)")
    return reasons


def _matches(route: Route, payload: HandoffIn) -> bool:
    when = route.when
    system = payload.source.system if payload.source else None
    return (
        (when.kind is None or payload.kind in when.kind)
        and (when.urgency is None or payload.urgency in when.urgency)
        and (when.intent is None or payload.intent in when.intent)
        and (when.source_system is None or system in when.source_system)
    )


def _has_reachable_owner(route: Route) -> bool:
    return bool(route.owner or route.owners or route.queue or route.channel)


def choose_route(payload: HandoffIn, config: HandoffConfig) -> tuple[Route, str]:
    """The first matching route, and the channel its card goes to; the fallback route when that route has nobody
    to own the handoff or nowhere to post it (SPEC §4).

    A route with an owner but no channel of its own posts in the fallback route's channel.
    """
    fallback = config.fallback()
    route = next((route for route in config.routes if _matches(route, payload)), None)
    if route is not None and _has_reachable_owner(route):
        channel = route.channel or (fallback.channel if fallback else None)
        if channel:
            return route, channel
    if fallback is None or fallback.channel is None:
        raise NoRoute("no route matches and there is no fallback route: add a catch-all route with a channel")
    return fallback, fallback.channel


def _told_apart(value: float, threshold: float) -> tuple[str, str]:
    """Both numbers with two decimals, or as many more as it takes not to read equal (0.6999 below 0.7)."""
    for places in range(2, 10):
        shown = f"{value:.{places}f}", f"{threshold:.{places}f}"
        if shown[0] != shown[1]:
            return shown
    return repr(value), repr(threshold)


def _claim_by(config: HandoffConfig, route: Route, payload: HandoffIn, now: datetime) -> datetime:
    """The SLA's claim deadline, never after the producer's own due time (it would stall nobody until then)."""
    deadline = claim_deadline(config, route, payload.urgency, now)
    return min(deadline, payload.due_at) if payload.due_at else deadline


def fingerprint(payload: HandoffIn) -> str:
    url = payload.source.url if payload.source and payload.source.url else ""
    parts = [_normalise(payload.title), _normalise(payload.summary or ""), url.strip().lower()]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]


# What a repost may change without being another handoff: spacing, sentence punctuation, quotes, brackets and
# markdown emphasis. Not symbols that carry meaning: "C++" is not "C#", "+500 EUR" not "-500 EUR", 🔥 not 💰.
_INCIDENTAL = re.compile(r"[\s.,!?;:…'\"“”‘’«»()\[\]{}*_`~]+")


def _normalise(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _INCIDENTAL.sub(" ", folded).strip()


def payload_hash(payload: HandoffIn) -> str:
    canonical = json.dumps(payload.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def plan_intake(payload: HandoffIn, config: HandoffConfig, *, actor: str, now: datetime) -> IntakePlan:
    check_kind_rules(payload, config)
    kind = config.kinds[payload.kind]
    reasons = review_reasons(payload, config)
    route, route_channel = choose_route(payload, config)
    needs_approval = bool(reasons) or (
        payload.requires_approval
        if payload.requires_approval is not None
        else bool(route.requires_approval if route.requires_approval is not None else kind.requires_approval)
    )
    channel = (config.review.channel if reasons and config.review.channel else None) or route_channel
    approvers = list(payload.approvers or route.approvers or [])
    if reasons and config.review.approvers and not payload.approvers:
        approvers = list(config.review.approvers)
    owner = payload.owner or route.owner
    pool = [] if owner else list(route.owners.round_robin if route.owners else [])
    queue = None if owner or pool else (route.queue or channel)
    return IntakePlan(
        payload=payload,
        actor=actor,
        status=Status.claimed if owner or pool else Status.open,
        route=route.name,
        channel=channel,
        queue=queue,
        owner=owner,
        owner_pool=pool,
        approvers=approvers,
        requires_approval=needs_approval,
        review_reasons=reasons,
        claim_by=_claim_by(config, route, payload, now),
        due_at=payload.due_at or resolve_deadline(config, route, payload.urgency, now),
        fingerprint=fingerprint(payload),
        payload_hash=payload_hash(payload),
        created_at=now,
    )
