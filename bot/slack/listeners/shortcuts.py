"""Placeholder: filled in by the shortcuts work."""

from __future__ import annotations

from slack_bolt import App

from bot.runtime import Runtime


def register(app: App, runtime: Runtime) -> None:
    """Registers the shortcuts listeners."""
