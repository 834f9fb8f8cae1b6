"""Signed Slack requests, as Slack sends them to ``POST /slack/events``.

Body builders return ``bytes`` ready to sign and send; interactive payloads and slash commands are
form-encoded (:data:`FORM`), events are JSON (:data:`JSON`). :func:`post_signed` signs and sends one.

    body = block_action_body("handoff_claim", "42", "UANNA", channel="CSALES", message_ts=card_ts)
    response = post_signed(f"{server.url}/slack/events", body, FORM, "test-signing-secret")
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import httpx

__all__ = [
    "FORM",
    "JSON",
    "block_action_body",
    "event_body",
    "message_event",
    "post_signed",
    "retry_headers",
    "select_value",
    "shortcut_body",
    "sign",
    "slash_command_body",
    "text_value",
    "url_verification_body",
    "user_value",
    "view_submission_body",
]

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"

TEAM_ID = "T1"
TEAM_DOMAIN = "example"
APP_ID = "AAPP"
VERIFICATION_TOKEN = "verification-token"
RESPONSE_URL_BASE = "https://hooks.slack.com"

_counter = itertools.count(1)


def sign(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Slack's v0 signature headers for ``body`` (``timestamp`` defaults to now, in Unix seconds)."""
    ts = int(time.time()) if timestamp is None else int(timestamp)
    base = b"v0:" + str(ts).encode() + b":" + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": f"v0={digest}"}


def retry_headers(num: int = 1, reason: str = "http_timeout") -> dict[str, str]:
    """Headers Slack adds when it re-delivers a request it thinks failed."""
    return {"X-Slack-Retry-Num": str(num), "X-Slack-Retry-Reason": reason}


def post_signed(
    url: str,
    body: bytes,
    content_type: str,
    secret: str,
    timestamp: int | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> httpx.Response:
    """POST ``body`` to ``url`` signed with ``secret``; extra ``headers`` win over the computed ones."""
    all_headers = {"Content-Type": content_type, **sign(secret, body, timestamp), **(headers or {})}
    return httpx.post(url, content=body, headers=all_headers, timeout=timeout)


# ---------------------------------------------------------------------------- ids and small parts


def _unique() -> int:
    return next(_counter)


def _trigger_id() -> str:
    return f"{1000000 + _unique()}.{TEAM_ID[1:] or '1'}.{uuid.uuid4().hex}"


def _action_ts() -> str:
    return f"{time.time():.6f}"


def _response_url(kind: str = "actions") -> str:
    return f"{RESPONSE_URL_BASE}/{kind}/{TEAM_ID}/{_unique()}/{uuid.uuid4().hex[:24]}"


def _user(user_id: str) -> dict[str, Any]:
    name = user_id.lower()
    return {"id": user_id, "username": name, "name": name, "team_id": TEAM_ID}


def _team() -> dict[str, Any]:
    return {"id": TEAM_ID, "domain": TEAM_DOMAIN}


def _form_payload(payload: Mapping[str, Any]) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


def text_value(value: str | None) -> dict[str, Any]:
    """A ``plain_text_input`` entry for ``view.state.values[block_id][action_id]``."""
    return {"type": "plain_text_input", "value": value}


def select_value(value: str | None, text: str | None = None, type: str = "static_select") -> dict[str, Any]:
    """A select entry for ``view.state.values[block_id][action_id]`` (None = nothing selected)."""
    option = None if value is None else {"text": {"type": "plain_text", "text": text or value}, "value": value}
    return {"type": type, "selected_option": option}


def user_value(user_id: str | None) -> dict[str, Any]:
    """A ``users_select`` entry for ``view.state.values[block_id][action_id]``."""
    return {"type": "users_select", "selected_user": user_id}


# ---------------------------------------------------------------------------- interactive payloads


def block_action_body(
    action_id: str,
    value: str,
    user_id: str,
    channel: str = "CHANDOFFS",
    message_ts: str = "1700000000.000100",
    trigger_id: str | None = None,
    response_url: str | None = None,
    *,
    block_id: str = "actions",
    message: Mapping[str, Any] | None = None,
    actions: list[dict[str, Any]] | None = None,
    view: Mapping[str, Any] | None = None,
    **extra: Any,
) -> bytes:
    """A form-encoded ``block_actions`` payload for a button click on a channel message.

    ``message`` replaces the clicked message (default ``{ts, text, blocks: []}``); ``actions`` replaces the
    single button action; with ``view`` (a dict with at least ``id``) the click comes from a modal or App Home
    instead of a message. ``extra`` top-level fields are merged last.
    """
    action_ts = _action_ts()
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": _user(user_id),
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "trigger_id": trigger_id or _trigger_id(),
        "team": _team(),
        "enterprise": None,
        "is_enterprise_install": False,
        "state": {"values": {}},
        "actions": actions
        if actions is not None
        else [
            {
                "action_id": action_id,
                "block_id": block_id,
                "text": {"type": "plain_text", "text": action_id, "emoji": True},
                "value": value,
                "type": "button",
                "action_ts": action_ts,
            }
        ],
    }
    if view is not None:
        full_view = {"type": "home", "team_id": TEAM_ID, "app_id": APP_ID, "bot_id": "BBOT", **view}
        payload["container"] = {"type": "view", "view_id": full_view["id"]}
        payload["view"] = full_view
    else:
        payload["container"] = {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel,
            "is_ephemeral": False,
        }
        payload["channel"] = {"id": channel, "name": channel.lower()}
        payload["message"] = (
            dict(message)
            if message is not None
            else {
                "type": "message",
                "user": "UBOT",
                "bot_id": "BBOT",
                "ts": message_ts,
                "text": "",
                "blocks": [],
            }
        )
        payload["response_url"] = response_url or _response_url()
    payload.update(extra)
    return _form_payload(payload)


def view_submission_body(
    callback_id: str,
    state_values: Mapping[str, Mapping[str, Any]],
    user_id: str,
    private_metadata: str = "",
    view_id: str | None = None,
    *,
    trigger_id: str | None = None,
    title: str = "Handoff",
    blocks: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> bytes:
    """A form-encoded ``view_submission`` payload.

    ``state_values`` is ``{block_id: {action_id: entry}}``; build entries with :func:`text_value`,
    :func:`select_value`, :func:`user_value`.
    """
    view_id = view_id or f"V{_unique():08d}"
    payload: dict[str, Any] = {
        "type": "view_submission",
        "team": _team(),
        "user": _user(user_id),
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "trigger_id": trigger_id or _trigger_id(),
        "view": {
            "id": view_id,
            "team_id": TEAM_ID,
            "type": "modal",
            "blocks": blocks or [],
            "private_metadata": private_metadata,
            "callback_id": callback_id,
            "state": {"values": {k: dict(v) for k, v in state_values.items()}},
            "hash": f"{int(time.time())}.{uuid.uuid4().hex[:8]}",
            "title": {"type": "plain_text", "text": title, "emoji": True},
            "clear_on_close": False,
            "notify_on_close": False,
            "close": {"type": "plain_text", "text": "Cancel", "emoji": True},
            "submit": {"type": "plain_text", "text": "Submit", "emoji": True},
            "previous_view_id": None,
            "root_view_id": view_id,
            "app_id": APP_ID,
            "external_id": "",
            "app_installed_team_id": TEAM_ID,
            "bot_id": "BBOT",
        },
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }
    payload.update(extra)
    return _form_payload(payload)


def shortcut_body(
    callback_id: str,
    user_id: str,
    type: str = "shortcut",
    *,
    channel_id: str = "CGENERAL",
    message: Mapping[str, Any] | None = None,
    message_ts: str | None = None,
    trigger_id: str | None = None,
    response_url: str | None = None,
    **extra: Any,
) -> bytes:
    """A form-encoded global ``shortcut`` or, with ``type="message_action"``, a message shortcut payload.

    For a message shortcut ``message`` is the message it was used on (default: a plain user message by
    ``UAUTHOR`` at ``message_ts``).
    """
    if type not in ("shortcut", "message_action"):
        raise ValueError(f"unknown shortcut type {type!r}")
    payload: dict[str, Any] = {
        "type": type,
        "token": VERIFICATION_TOKEN,
        "action_ts": _action_ts(),
        "team": _team(),
        "user": _user(user_id),
        "is_enterprise_install": False,
        "enterprise": None,
        "callback_id": callback_id,
        "trigger_id": trigger_id or _trigger_id(),
    }
    if type == "message_action":
        msg: dict[str, Any] = dict(message) if message is not None else {}
        ts = message_ts or msg.get("ts") or "1700000000.000100"
        msg.setdefault("type", "message")
        msg.setdefault("user", "UAUTHOR")
        msg.setdefault("ts", ts)
        msg.setdefault("text", "")
        msg.setdefault("team", TEAM_ID)
        payload.update(
            channel={"id": channel_id, "name": channel_id.lower()},
            response_url=response_url or _response_url("app"),
            message_ts=ts,
            message=msg,
        )
    payload.update(extra)
    return _form_payload(payload)


def slash_command_body(
    text: str,
    user_id: str,
    channel_id: str = "CGENERAL",
    command: str = "/handoff",
    trigger_id: str | None = None,
    response_url: str | None = None,
    **extra: str,
) -> bytes:
    """A slash command invocation, form-encoded with the fields Slack sends."""
    fields: dict[str, str] = {
        "token": VERIFICATION_TOKEN,
        "team_id": TEAM_ID,
        "team_domain": TEAM_DOMAIN,
        "channel_id": channel_id,
        "channel_name": channel_id.lower(),
        "user_id": user_id,
        "user_name": user_id.lower(),
        "command": command,
        "text": text,
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url or _response_url("commands"),
        "trigger_id": trigger_id or _trigger_id(),
    }
    fields.update(extra)
    return urlencode(fields).encode()


# ---------------------------------------------------------------------------- Events API


def event_body(event: Mapping[str, Any], event_id: str | None = None, team_id: str = TEAM_ID, **extra: Any) -> bytes:
    """A JSON ``event_callback`` envelope around ``event``. Reuse ``event_id`` to imitate a Slack retry."""
    envelope: dict[str, Any] = {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "api_app_id": APP_ID,
        "event": dict(event),
        "type": "event_callback",
        "event_id": event_id or f"Ev{_unique():08d}{uuid.uuid4().hex[:6].upper()}",
        "event_time": int(time.time()),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": "UBOT",
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
        "event_context": f"4-{uuid.uuid4().hex}",
    }
    envelope.update(extra)
    return json.dumps(envelope).encode()


def message_event(
    channel: str,
    user: str,
    text: str,
    ts: str | None = None,
    *,
    thread_ts: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    blocks: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A ``message`` event (channel message by a person); ``metadata`` is ``{event_type, event_payload}``."""
    ts = ts or f"{time.time():.6f}"
    event: dict[str, Any] = {
        "type": "message",
        "channel": channel,
        "user": user,
        "text": text,
        "ts": ts,
        "event_ts": ts,
        "channel_type": "channel",
        "team": TEAM_ID,
    }
    if blocks is not None:
        event["blocks"] = blocks
    if thread_ts is not None:
        event["thread_ts"] = thread_ts
    if metadata is not None:
        event["metadata"] = dict(metadata)
    event.update(extra)
    return event


def url_verification_body(challenge: str = "challenge-token") -> bytes:
    """The JSON body of Slack's Request URL check."""
    return json.dumps({"token": VERIFICATION_TOKEN, "challenge": challenge, "type": "url_verification"}).encode()
