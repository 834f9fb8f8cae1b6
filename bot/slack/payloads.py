"""Slack payloads parsed into typed values in one place; listeners never dig through raw dicts."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from handoffs.model import parse_ref


class Click(BaseModel):
    """A button, overflow or user-picker press on a handoff card (or a board built from cards)."""

    handoff_id: int | None
    user_id: str
    channel_id: str | None = None
    message_ts: str | None = None
    trigger_id: str | None = None
    verb: str | None = None  # overflow option verb, e.g. "release"
    selected_user: str | None = None


def _handoff_id(value: str | None) -> int | None:
    return parse_ref(value) if value else None


def parse_click(body: dict[str, Any]) -> Click:
    action = (body.get("actions") or [{}])[0]
    container = body.get("container") or {}
    channel = (body.get("channel") or {}).get("id") or container.get("channel_id")
    verb = None
    raw_value = action.get("value")
    option = (action.get("selected_option") or {}).get("value")
    if option:
        verb, _, raw_value = str(option).partition(":")
    selected_user = action.get("selected_user")
    if selected_user and not raw_value:
        raw_value = (action.get("block_id") or "").rpartition(":")[2] or None
    return Click(
        handoff_id=_handoff_id(raw_value),
        user_id=(body.get("user") or {}).get("id", ""),
        channel_id=channel,
        message_ts=container.get("message_ts") or (body.get("message") or {}).get("ts"),
        trigger_id=body.get("trigger_id"),
        verb=verb,
        selected_user=selected_user,
    )
