"""One module per Slack surface, each with `register(app, runtime)`."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import App, BoltResponse

from bot.runtime import Runtime
from bot.slack.listeners import actions, commands, events, home, shortcuts, views
from bot.slack.payloads import acting_user

log = logging.getLogger("handoff_bot.slack")

# The Events API's envelopes: they report what happened, nobody acts through them (a message's sender, an App
# Home's viewer are read, and checked, by their listeners). Every other request acts as the person who sent it.
_EVENTS_API = frozenset({"event_callback", "app_rate_limited", "url_verification"})


def register_listeners(app: App, runtime: Runtime) -> None:
    app.middleware(only_as_a_person)
    for surface in (actions, views, commands, shortcuts, events, home):
        surface.register(app, runtime)


def only_as_a_person(body: dict[str, Any], next: Callable[[], BoltResponse | None]) -> BoltResponse | None:
    """A click, form, shortcut or command that names no user (or something that is no user id) is acked and
    dropped here, for every listener: else the empty user would claim, close or be told things."""
    if body.get("type") in _EVENTS_API or acting_user(body) is not None:
        return next()
    log.warning("a Slack %s request that names no user, ignored", body.get("type") or body.get("command") or "")
    return BoltResponse(status=200, body="")
