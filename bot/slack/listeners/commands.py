"""Placeholder: filled in by the commands work."""

from __future__ import annotations

from slack_bolt import App

from bot.runtime import Runtime


def register(app: App, runtime: Runtime) -> None:
    """Registers the commands listeners."""
