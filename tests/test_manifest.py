"""`manifest.yml` against the code: command, shortcuts, scopes and events are what the code uses.

The bot scopes are derived from the source: every Slack Web API call in `bot/`, `handoffs/` and
`storage/` (a `WebClient` method such as `client.chat_postMessage(...)`, `api_call("x.y")`, or Bolt's
`say(...)`) is looked up in METHOD_SCOPES, every event the code registers in EVENT_SCOPES. A new call
or event fails here until the table and the manifest say what it needs.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from slack_sdk import WebClient

from bot import ids

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "manifest.yml"
PRODUCT_PACKAGES = ("bot", "handoffs", "storage")
ENDPOINT_PATH = "/slack/events"

# Bot-token scopes per Web API method (docs.slack.dev/reference/methods/<method>, "Scopes").
# Where a method accepts one of several scopes, the entry names those handoff-bot's use needs.
METHOD_SCOPES: dict[str, frozenset[str]] = {
    "auth.test": frozenset(),
    "apps.connections.open": frozenset(),  # the app-level token's connections:write (Socket Mode), no bot scope
    "chat.postMessage": frozenset({"chat:write"}),
    "chat.update": frozenset({"chat:write"}),
    "chat.postEphemeral": frozenset({"chat:write"}),
    "chat.delete": frozenset({"chat:write"}),
    "chat.scheduleMessage": frozenset({"chat:write"}),
    "chat.getPermalink": frozenset(),
    "views.open": frozenset(),
    "views.push": frozenset(),
    "views.update": frozenset(),
    "views.publish": frozenset(),
    "users.info": frozenset({"users:read"}),
    "reactions.add": frozenset({"reactions:write"}),
    "reactions.remove": frozenset({"reactions:write"}),
    "usergroups.list": frozenset({"usergroups:read"}),
    "usergroups.users.list": frozenset({"usergroups:read"}),
    "conversations.open": frozenset({"im:write"}),  # a person's DM with the app, to look in it
    "conversations.info": frozenset({"channels:read", "groups:read"}),
    # channels and private channels (cards, replies) and the app's DMs (reminders, notices): bot/posted_messages.py
    "conversations.history": frozenset({"channels:history", "groups:history", "im:history"}),
    "conversations.replies": frozenset({"channels:history", "groups:history"}),
}

# Scopes each subscribable bot event needs (docs.slack.dev/reference/events/<event>).
EVENT_SCOPES: dict[str, frozenset[str]] = {
    "app_home_opened": frozenset(),
    "app_mention": frozenset({"app_mentions:read"}),
    "message.channels": frozenset({"channels:history"}),
    "message.groups": frozenset({"groups:history"}),
    "message.im": frozenset({"im:history"}),
    "message.mpim": frozenset({"mpim:history"}),
    "reaction_added": frozenset({"reactions:read"}),
}

# Every Web API method of the SDK client, by its Python name (`chat_postMessage` → `chat.postMessage`).
WEB_API_METHODS = frozenset(
    name for name, value in vars(WebClient).items() if callable(value) and not name.startswith("_") and "_" in name
)


@dataclass(frozen=True)
class Use:
    """One use of Slack found in the source: a Web API method or a registered event, and where."""

    name: str
    where: str


def _product_files() -> Iterator[Path]:
    for package in PRODUCT_PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def _parsed() -> Iterator[tuple[Path, ast.AST]]:
    for path in _product_files():
        yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"


def _constant(node: ast.AST) -> str | None:
    """A string argument: a literal, or a `bot.ids` constant written `ids.NAME`."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "ids":
        value = getattr(ids, node.attr, None)
        return value if isinstance(value, str) else None
    return None


def web_api_calls() -> list[Use]:
    """Every Slack Web API method the product source calls."""
    found: list[Use] = []
    for path, tree in _parsed():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in WEB_API_METHODS:
                found.append(Use(func.attr.replace("_", "."), _where(path, node)))
            elif isinstance(func, ast.Attribute) and func.attr == "api_call" and node.args:
                method = _constant(node.args[0])
                assert method, f"{_where(path, node)}: api_call with a method name the test cannot read"
                found.append(Use(method, _where(path, node)))
            elif isinstance(func, ast.Name) and func.id == "say":  # Bolt's say() is chat.postMessage
                found.append(Use("chat.postMessage", _where(path, node)))
    return found


def registered_events() -> list[Use]:
    """Every event type a Bolt listener is registered for (`app.event(...)`, `app.message(...)`)."""
    found: list[Use] = []
    for path, tree in _parsed():
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr == "message" and _is_app(node.func.value):
                found.append(Use("message", _where(path, node)))
            elif node.func.attr == "event" and _is_app(node.func.value):
                assert node.args, f"{_where(path, node)}: app.event() without an event type"
                first = node.args[0]
                if isinstance(first, ast.Dict):  # app.event({"type": "message", "subtype": ...})
                    types = [_constant(v) for k, v in zip(first.keys, first.values, strict=True)
                             if k is not None and _constant(k) == "type"]
                    event = types[0] if types else None
                else:
                    event = _constant(first)
                assert event, f"{_where(path, node)}: app.event() with an event type the test cannot read"
                found.append(Use(event, _where(path, node)))
    return found


def registered_ids(registration: str) -> list[Use]:
    """The first argument of every `app.<registration>(...)` (`command`, `shortcut`) the test can read."""
    found: list[Use] = []
    for path, tree in _parsed():
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == registration and _is_app(node.func.value) and node.args):
                value = _constant(node.args[0])
                assert value, f"{_where(path, node)}: app.{registration}() with an id the test cannot read"
                found.append(Use(value, _where(path, node)))
    return found


def _is_app(node: ast.AST) -> bool:
    """`app`, `bolt`, `self.app`, `bot.bolt`…: the receiver of a Bolt registration."""
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
    return name in ("app", "bolt", "bolt_app")


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    loaded = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _bot_events(manifest: dict[str, Any]) -> set[str]:
    subscriptions = manifest.get("settings", {}).get("event_subscriptions") or {}
    return set(subscriptions.get("bot_events") or [])


def test_manifest_is_a_v2_manifest_for_handoff_bot(manifest: dict[str, Any]) -> None:
    assert manifest["_metadata"] == {"major_version": 2, "minor_version": 1}
    assert manifest["display_information"]["name"] == "handoff-bot"
    assert 0 < len(manifest["display_information"]["description"]) <= 140
    assert manifest["features"]["bot_user"] == {"display_name": "handoff-bot", "always_online": True}
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    settings = manifest["settings"]
    assert settings["org_deploy_enabled"] is False
    assert settings["socket_mode_enabled"] is False
    assert settings["token_rotation_enabled"] is False


def test_slash_command_is_the_one_the_code_answers(manifest: dict[str, Any]) -> None:
    commands = manifest["features"]["slash_commands"]
    assert [command["command"] for command in commands] == [ids.SLASH_COMMAND]
    [command] = commands
    assert command["should_escape"] is True  # the grammar needs <@U…> and <#C…>, which only escaping sends
    assert command["description"]
    for subcommand in ("help", "new", "mine", "stalled", "show", "claim", "assign", "close", "reopen", "stats"):
        assert subcommand in command["usage_hint"]


def test_shortcuts_match_the_callback_ids_in_the_code(manifest: dict[str, Any]) -> None:
    shortcuts = {shortcut["callback_id"]: shortcut for shortcut in manifest["features"]["shortcuts"]}
    assert set(shortcuts) == {ids.MESSAGE_SHORTCUT, ids.GLOBAL_SHORTCUT}
    assert shortcuts[ids.MESSAGE_SHORTCUT]["type"] == "message"
    assert shortcuts[ids.MESSAGE_SHORTCUT]["name"] == "Create handoff"
    assert shortcuts[ids.GLOBAL_SHORTCUT]["type"] == "global"
    assert shortcuts[ids.GLOBAL_SHORTCUT]["name"] == "New handoff"
    assert all(shortcut.get("description") for shortcut in shortcuts.values())


def test_registered_commands_and_shortcuts_match_the_manifest(manifest: dict[str, Any]) -> None:
    commands = {command["command"] for command in manifest["features"]["slash_commands"]}
    assert {use.name for use in registered_ids("command")} == commands, "slash commands: code != manifest.yml"
    shortcut_types = {shortcut["callback_id"]: shortcut["type"] for shortcut in manifest["features"]["shortcuts"]}
    registered: dict[str, str] = {}
    for registration, kind in (("global_shortcut", "global"), ("message_shortcut", "message"), ("shortcut", None)):
        for use in registered_ids(registration):
            assert use.name in shortcut_types, f"{use.where}: {use.name} is not a shortcut in manifest.yml"
            registered[use.name] = kind or shortcut_types[use.name]
    assert registered == shortcut_types, f"shortcuts the code registers {registered} != manifest.yml {shortcut_types}"


def test_the_source_scan_finds_the_calls_the_code_is_known_to_make() -> None:
    methods = {use.name for use in web_api_calls()}
    assert {"chat.postMessage", "chat.update", "chat.postEphemeral", "views.open"} <= methods


def test_every_web_api_method_the_code_calls_has_known_scopes() -> None:
    unknown = sorted({f"{use.name} ({use.where})" for use in web_api_calls() if use.name not in METHOD_SCOPES})
    assert not unknown, (
        "the code calls Slack Web API methods this test does not know: "
        f"{', '.join(unknown)}; add each to METHOD_SCOPES in tests/test_manifest.py with the bot scopes "
        "its docs page lists, then add those scopes to manifest.yml"
    )


def test_bot_scopes_are_exactly_what_the_code_needs(manifest: dict[str, Any]) -> None:
    needed: dict[str, set[str]] = {}
    for use in web_api_calls():
        for scope in METHOD_SCOPES.get(use.name, frozenset()):
            needed.setdefault(scope, set()).add(use.name)
    features = manifest["features"]
    if features.get("slash_commands") or features.get("shortcuts"):
        needed.setdefault("commands", set()).add("slash command / shortcuts")
    for event in _bot_events(manifest):
        assert event in EVENT_SCOPES, f"add the event {event!r} to EVENT_SCOPES in tests/test_manifest.py"
        for scope in EVENT_SCOPES[event]:
            needed.setdefault(scope, set()).add(f"event {event}")

    declared = manifest["oauth_config"]["scopes"]["bot"]
    assert len(declared) == len(set(declared)), "a bot scope is listed twice"
    missing = {scope: sorted(why) for scope, why in needed.items() if scope not in declared}
    unused = sorted(set(declared) - set(needed))
    assert not missing, f"manifest.yml lacks bot scopes the code needs (scope: used by): {missing}"
    assert not unused, f"manifest.yml asks for bot scopes nothing in the code uses: {unused}"
    assert "chat:write.public" not in declared  # the bot posts only where it was invited


def test_events_match_the_listeners_the_code_registers(manifest: dict[str, Any]) -> None:
    registered = {use.name for use in registered_events()}
    subscribed = _bot_events(manifest)
    # A `message` listener is fed by the message.* subscriptions (one per conversation type).
    expected_plain = registered - {"message"}
    subscribed_plain = {event for event in subscribed if not event.startswith("message.")}
    subscribed_message = {event for event in subscribed if event.startswith("message.")}
    assert subscribed_plain == expected_plain, (
        f"bot_events {sorted(subscribed_plain)} != events the code registers {sorted(expected_plain)}"
    )
    if "message" in registered:
        assert subscribed_message, "the code listens to messages: subscribe to message.channels / message.groups"
    else:
        assert not subscribed_message, f"{sorted(subscribed_message)} subscribed, but no message listener exists"


def test_event_subscriptions_are_complete_when_present(manifest: dict[str, Any]) -> None:
    subscriptions = manifest["settings"].get("event_subscriptions")
    if subscriptions is None:
        assert not registered_events(), "the code registers events: add settings.event_subscriptions"
        return
    assert subscriptions.get("bot_events"), "Slack rejects an empty bot_events list: drop event_subscriptions"
    assert str(subscriptions["request_url"]).endswith(ENDPOINT_PATH)


def test_request_urls_point_at_the_slack_endpoint(manifest: dict[str, Any]) -> None:
    urls = [command["url"] for command in manifest["features"]["slash_commands"]]
    urls.append(manifest["settings"]["interactivity"]["request_url"])
    subscriptions = manifest["settings"].get("event_subscriptions")
    if subscriptions:
        urls.append(subscriptions["request_url"])
    assert len(urls) >= 2
    for url in urls:
        assert str(url).startswith("https://") and str(url).endswith(ENDPOINT_PATH), url


def test_interactivity_is_enabled(manifest: dict[str, Any]) -> None:
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
