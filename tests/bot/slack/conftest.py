"""End-to-end: the real bot (HTTP server, Bolt, outbox sender) against a fake Slack Web API on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from bot.runtime import Runtime, build_runtime
from bot.server import Bot, build_bot
from handoffs.config import HandoffConfig
from tests.conftest import API_TOKEN, LiveServer, make_settings
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_signing import FORM, block_action_body, post_signed, view_submission_body

SIGNING_SECRET = "test-signing-secret"


@dataclass
class SlackHarness:
    slack: FakeSlack
    server: LiveServer
    runtime: Runtime
    bot: Bot

    @property
    def events_url(self) -> str:
        return f"{self.server.url}/slack/events"

    def create(self, **fields: Any) -> dict[str, Any]:
        body = {"title": "Call ACME back", "next_action": "Phone Jane about the renewal", **fields}
        response = httpx.post(f"{self.server.url}/api/handoffs", json=body,
                              headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=10)
        assert response.status_code == 201, response.text
        return dict(response.json())

    def card_of(self, handoff_id: int) -> Any:
        """Wait for the handoff's card to be posted, and return that chat.postMessage call."""
        def posted() -> list[Any]:
            handoff = self.runtime.repo.get(handoff_id)
            return [c for c in self.slack.posted_cards() if handoff and handoff.card_ts and c.response is not None
                    and c.response.get("ts") == handoff.card_ts]
        return _wait(posted)[0]

    def click(self, action_id: str, handoff_id: int, user: str, **kwargs: Any) -> httpx.Response:
        handoff = self.runtime.repo.get(handoff_id)
        assert handoff is not None
        body = block_action_body(action_id, str(handoff_id), user, channel=handoff.channel or "C0",
                                 message_ts=handoff.card_ts or "1.1", **kwargs)
        return post_signed(self.events_url, body, FORM, SIGNING_SECRET)

    def submit(self, callback_id: str, values: dict[str, Any], user: str, handoff_id: int) -> httpx.Response:
        import json

        body = view_submission_body(callback_id, values, user, private_metadata=json.dumps({"handoff_id": handoff_id}))
        return post_signed(self.events_url, body, FORM, SIGNING_SECRET)

    def events(self, handoff_id: int) -> list[str]:
        return [event.action for event in self.runtime.repo.events(handoff_id)]


def _wait(probe: Any, timeout: float = 10.0) -> Any:
    import time

    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack() as slack:
        yield slack


@pytest.fixture
def harness(database_url: str, handoff_config: HandoffConfig, fake_slack: FakeSlack) -> Iterator[SlackHarness]:
    settings = make_settings(database_url, slack_api_url=fake_slack.url, slack_signing_secret=SIGNING_SECRET)
    runtime = build_runtime(settings, config=handoff_config)
    bot = build_bot(runtime)
    bot.start()
    with LiveServer(bot.asgi) as server:
        yield SlackHarness(fake_slack, server, runtime, bot)
    bot.stop()
    runtime.close()
