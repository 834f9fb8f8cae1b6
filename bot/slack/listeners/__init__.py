"""One module per Slack surface, each with `register(app, runtime)`."""

from __future__ import annotations

from slack_bolt import App

from bot.runtime import Runtime
from bot.slack.listeners import actions, commands, events, home, shortcuts, views


def register_listeners(app: App, runtime: Runtime) -> None:
    for surface in (actions, views, commands, shortcuts, events, home):
        surface.register(app, runtime)
