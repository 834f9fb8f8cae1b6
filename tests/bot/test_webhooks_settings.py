"""Webhook settings and secrets: each bad one is one line naming the variable, and a callback that could not be
signed is refused before anything is stored (here: from an intake channel; the API's 422 is in test_webhooks.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.blocks.stats import stats_message
from bot.cli import main
from bot.settings import Settings, SettingsError, load_settings
from handoffs.config import HandoffConfig, parse_config
from handoffs.metrics import compute_stats
from handoffs.webhooks import DeliveryCounts
from tests.bot.slack.conftest import SlackHarness
from tests.bot.slack.e2e import wait_until
from tests.bot.test_webhooks import running_bot
from tests.conftest import DEFAULT_CONFIG
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_signing import JSON, event_body, message_event, post_signed

HOOK = "https://automation.example.com/hooks/handoff"
LONG_SECRET = "0123456789abcdef0123"


def config_with(**hook: object) -> HandoffConfig:
    return parse_config({"routes": [{"name": "default", "channel": "CHANDOFFS"}], "webhooks": [{"url": HOOK, **hook}]})


# --- settings -----------------------------------------------------------------------------------


def test_a_configured_webhook_whose_secret_env_is_unset_is_named() -> None:
    settings = Settings(webhook_secret=LONG_SECRET, environment={})
    with pytest.raises(SettingsError) as error:
        settings.webhook_secrets(config_with(secret_env="HOOKS_SECRET"))
    assert str(error.value).startswith(f"HOOKS_SECRET is not set: webhooks[0] ({HOOK}) is signed with it")


def test_a_configured_webhook_without_secret_env_needs_the_default_secret() -> None:
    with pytest.raises(SettingsError) as error:
        Settings().webhook_secrets(config_with())
    assert str(error.value).startswith("HANDOFF_WEBHOOK_SECRET is not set: webhooks[0]")
    assert "has no secret_env" in str(error.value)


def test_the_secrets_are_read_by_variable_name() -> None:
    settings = Settings(webhook_secret=LONG_SECRET, environment={"HOOKS_SECRET": "s" * 20})
    assert settings.webhook_secrets(config_with(secret_env="HOOKS_SECRET")) == {
        "HANDOFF_WEBHOOK_SECRET": LONG_SECRET, "HOOKS_SECRET": "s" * 20,
    }
    assert Settings().webhook_secrets(parse_config({})) == {}  # no webhooks, no secret: callbacks are refused
    assert LONG_SECRET not in repr(settings) and "s" * 20 not in repr(settings)  # never shown, e.g. in a log


def test_webhook_settings_are_read_with_their_defaults() -> None:
    settings = load_settings({"HANDOFF_WEBHOOK_SECRET": LONG_SECRET, "HANDOFF_WEBHOOK_GIVE_UP_AFTER": "3s",
                              "HANDOFF_WEBHOOK_TIMEOUT_SECONDS": "2.5"})
    assert (settings.webhook_secret, settings.webhook_give_up_after, settings.webhook_timeout_seconds) == (
        LONG_SECRET, timedelta(seconds=3), 2.5)
    defaults = load_settings({})
    assert (defaults.webhook_secret, defaults.webhook_give_up_after, defaults.webhook_timeout_seconds) == (
        None, timedelta(days=1), 10.0)


@pytest.mark.parametrize(("variable", "value"), [
    ("HANDOFF_WEBHOOK_SECRET", "short"),
    ("HANDOFF_WEBHOOK_GIVE_UP_AFTER", "forever"),
    ("HANDOFF_WEBHOOK_GIVE_UP_AFTER", "90d"),
    ("HANDOFF_WEBHOOK_TIMEOUT_SECONDS", "0"),
    ("HANDOFF_WEBHOOK_TIMEOUT_SECONDS", "ten"),
])
def test_a_malformed_webhook_setting_is_one_line_naming_it(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({variable: value})
    assert str(error.value).startswith(f"{variable} ")
    assert "\n" not in str(error.value)


def test_serve_stops_with_one_line_before_touching_the_database_when_a_webhook_secret_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("DATABASE_URL", "HANDOFF_CONFIG", "HANDOFF_WEBHOOK_SECRET", "HOOKS_SECRET", "SLACK_APP_TOKEN",
                 "HANDOFF_DEFAULT_CHANNEL", "PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "handoffs.yml").write_text(
        "routes: [{name: default, channel: C0HANDOFFS}]\n"
        f"webhooks:\n  - {{url: '{HOOK}', events: [closed], secret_env: HOOKS_SECRET}}\n"
    )
    for name, value in {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s",
                        "DATABASE_URL": "sqlite:///./serve.db"}.items():
        monkeypatch.setenv(name, value)

    assert main(["serve"]) == 2

    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"handoff-bot: HOOKS_SECRET is not set: webhooks[0] ({HOOK}) is signed with it")
    assert not (tmp_path / "serve.db").exists()


# --- the figures in Slack -----------------------------------------------------------------------


def test_the_stats_message_shows_the_periods_webhooks() -> None:
    now = datetime(2025, 3, 12, 10, 0, tzinfo=UTC)
    stats = compute_stats([], [], now=now, period=timedelta(days=7))

    _, blocks = stats_message(stats, DeliveryCounts(sent=12, failed=1, pending=2))

    assert "*Webhooks* sent 12 · failed *1* · pending 2" in blocks[0]["text"]["text"]
    _, without = stats_message(stats)
    assert "Webhooks" not in without[0]["text"]["text"]


# --- an intake channel's callback_url without a secret ------------------------------------------

INTAKE = "CINTAKE"
PRODUCER = "UAGENT"


@pytest.fixture
def intake(database_url: str) -> Iterator[SlackHarness]:
    config = parse_config({**DEFAULT_CONFIG, "intake_channels": [{"channel": INTAKE, "producers": [PRODUCER]}]})
    with FakeSlack() as slack, running_bot(database_url, slack, config, webhook_secret=None) as harness:
        yield harness


def test_an_intake_message_with_a_callback_url_but_no_secret_is_answered_in_its_thread(intake: SlackHarness) -> None:
    handoff = {"title": "ACME wants a demo", "next_action": "Call Jane", "callback_url": "https://hooks.test/h"}
    event = message_event(INTAKE, PRODUCER, "New handoff", ts="1700000001.000100",
                          metadata={"event_type": "handoff", "event_payload": handoff})
    response = post_signed(intake.events_url, event_body(event), JSON, "test-signing-secret")
    assert response.status_code == 200, response.text

    [reply] = wait_until(lambda: intake.slack.thread_replies(INTAKE, "1700000001.000100"), what="the reply")
    assert "`callback_url`" in reply.params["text"] and "HANDOFF_WEBHOOK_SECRET" in reply.params["text"]
    assert intake.runtime.repo.page().items == []
