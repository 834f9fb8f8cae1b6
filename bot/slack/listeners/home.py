"""The App Home: opening the tab publishes the viewer's board (SPEC §6 "App Home").

The listener only writes an outbox row; the sender reads the board and calls `views.publish` when it
sends, so the ack never waits on the database's lists or on Slack, and a burst of opens (or of
clicks on the home, see actions.py) collapses into one publish per person.
"""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App

from bot.runtime import Runtime
from handoffs.effects import publish_home


def register(app: App, runtime: Runtime) -> None:
    """Registers the home listeners."""

    @app.event("app_home_opened")
    def home_opened(ack: Ack, event: dict[str, Any]) -> None:
        ack()
        user = event.get("user")
        if event.get("tab", "home") != "home" or not isinstance(user, str) or not user:
            return  # the Messages tab, or no viewer to publish for
        runtime.repo.enqueue([publish_home(user)])
        runtime.notify()
