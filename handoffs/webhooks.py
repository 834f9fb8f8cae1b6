"""Which webhooks a change causes, and what each one says (SPEC §7). Pure: bot/webhooks.py sends them.

A webhook is an outbox effect of kind `WEBHOOK` to one URL. Its body is serialised here, when the change is
written, so every retry sends the very same bytes under the same delivery id; only the timestamp and the
signature are made at each attempt. The payload names the environment variable whose secret signs it
(`secret_env`, None for HANDOFF_WEBHOOK_SECRET) and never holds a secret.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from handoffs.config import WEBHOOK_EVENTS, HandoffConfig
from handoffs.lifecycle import Action, Actor, Change
from handoffs.model import USER_ID_PATTERN, Handoff, Status
from handoffs.ports import Effect
from handoffs.public import handoff_json

WEBHOOK = "webhook"
_DEFAULT_PORTS = {"https": 443, "http": 80}
DEFAULT_SECRET_ENV = "HANDOFF_WEBHOOK_SECRET"
MAX_DUPLICATE_CALLBACKS = 20  # duplicates' callback URLs kept on one handoff; more are answered, not called


def submitter(name: str) -> Actor:
    """Who submitted a handoff: a Slack user (`U…`/`W…`), or a system (an API token's name, a bot `B…`)."""
    return Actor(name) if re.fullmatch(USER_ID_PATTERN, name) else Actor.system(name)


def webhook_effects(
    handoff: Handoff, event: str, actor: Actor, config: HandoffConfig, *, at: datetime
) -> list[Effect]:
    """One delivery of `event` per destination: the handoff's `callback_url` and those of its duplicates (every
    event), and each configured endpoint whose `events` include it. `handoff` is the state after the change.

    A URL gets one delivery per event, however its scheme and host are cased or its default port written; a
    URL that is a configured endpoint is always signed with that endpoint's `secret_env`, also for a callback
    event the endpoint does not list (its receiver checks that one secret).
    """
    if event not in WEBHOOK_EVENTS:
        return []
    destinations: dict[str, tuple[str, str | None]] = {}  # same_url key -> (the URL to call, its secret)
    for callback_url in filter(None, [handoff.callback_url, *handoff.duplicate_callback_urls]):
        key = same_url(callback_url)
        configured = next((e for e in config.webhooks if same_url(e.url) == key), None)
        destinations[key] = (configured.url, configured.secret_env) if configured else (callback_url, None)
    for endpoint in config.webhooks:
        if event in endpoint.events:
            destinations[same_url(endpoint.url)] = (endpoint.url, endpoint.secret_env)
    return [_delivery(handoff, event, actor, at, url, secret_env) for url, secret_env in destinations.values()]


@lru_cache(maxsize=4096)
def same_url(url: str) -> str:
    """`url` with its case-blind parts (scheme, host) lowered and a default port left out: one receiver, one key."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # not a URL the sender could call anyway: only itself is the same
        return url
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if ":" in host:
        host = f"[{host}]"
    userinfo = parts.netloc.rpartition("@")[0]
    shown_port = f":{port}" if port not in (None, _DEFAULT_PORTS.get(scheme)) else ""
    netloc = (f"{userinfo}@" if userinfo else "") + host + shown_port
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


def webhook_effects_for_change(
    handoff: Handoff, change: Change, actor: Actor, config: HandoffConfig, *, at: datetime
) -> list[Effect]:
    """The webhooks of `change` to `handoff` (as it was before), describing the handoff after it.

    An approval that also closes the handoff (`close_on_approve`) sends `approved`, then `closed`, so an
    endpoint that listens only for `closed` still learns that it finished. Likewise reassigning a handoff that
    nobody owned sends `claimed` (there is no `reassigned` webhook): it is owned now, though nobody clicked Claim.
    """
    if not handoff.callback_url and not handoff.duplicate_callback_urls and not config.webhooks:
        return []  # nobody to tell: skip building the handoff after the change (a tenth of a click's domain work)
    after = replace(handoff, status=change.to_status, **change.updates, version=handoff.version + 1, updated_at=at)
    effects = webhook_effects(after, change.event, actor, config, at=at)
    if change.action is Action.approve and change.to_status is Status.closed:
        effects += webhook_effects(after, "closed", actor, config, at=at)
    if change.action is Action.reassign and handoff.status is Status.open:
        effects += webhook_effects(after, "claimed", actor, config, at=at)
    return effects


def _delivery(
    handoff: Handoff, event: str, actor: Actor, at: datetime, url: str, secret_env: str | None
) -> Effect:
    delivery = uuid.uuid4().hex
    body: dict[str, Any] = {
        "event": event,
        "delivery": delivery,
        "occurred_at": at.isoformat(),
        "handoff": handoff_json(handoff, callback_url=False),  # one receiver's URL is never sent to another
        "actor": {"id": actor.id, "type": "system" if actor.is_system else "user"},
    }
    text = json.dumps(body, separators=(",", ":"), sort_keys=False)
    return Effect(WEBHOOK, url, {"delivery": delivery, "event": event, "body": text, "secret_env": secret_env})


@dataclass(frozen=True)
class DeliveryCounts:
    """Webhook deliveries of a period by where they stand: sent, failed for good, still being tried."""

    sent: int = 0
    failed: int = 0
    pending: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"sent": self.sent, "failed": self.failed, "pending": self.pending}
