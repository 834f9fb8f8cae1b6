"""The outbox survives `kill -9`: handoffs accepted while Slack is down get their cards, once each, after a restart.

The bot runs as a real `handoff-bot serve` subprocess, configured only through its environment.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.bot.slack.e2e import wait_until
from tests.conftest import API_TOKEN, API_TOKEN_NAME, free_port
from tests.factories import payload
from tests.fakes.slack_api import FakeSlack

REPO_ROOT = Path(__file__).resolve().parents[3]
HANDOFFS = 5
LEASE_SECONDS = 2  # a row taken by the killed process is due again this soon (default 30 s)


class BotProcess:
    """`python -m bot.cli serve` in a temporary directory; its output goes to a log file there."""

    def __init__(self, env: dict[str, str], cwd: Path, name: str) -> None:
        self.port = int(env["PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = cwd / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "serve"], cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"the bot exited with {self.process.returncode}:\n{self.log()}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout=timeout, what="the bot's /healthz")

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def _environment(database_url: str, slack: FakeSlack) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("SLACK_", "HANDOFF_", "DATABASE_URL"))}
    env.update({
        "DATABASE_URL": database_url,
        "SLACK_API_URL": slack.url,
        "SLACK_BOT_TOKEN": "xoxb-test-token",
        "SLACK_SIGNING_SECRET": "test-signing-secret",
        "HANDOFF_API_TOKENS": f"{API_TOKEN_NAME}:{API_TOKEN}",
        "HANDOFF_DEFAULT_CHANNEL": "CHANDOFFS",
        "HANDOFF_OUTBOX_LEASE_SECONDS": str(LEASE_SECONDS),
        "PORT": str(free_port()),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    })
    return env


def _deliveries(url: str, ref: str) -> list[dict[str, object]]:
    response = httpx.get(f"{url}/api/handoffs/{ref}", headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=5)
    assert response.status_code == 200, response.text
    return list(response.json()["deliveries"])


def test_cards_pending_when_the_bot_is_killed_arrive_exactly_once_after_restart(
    database_url: str, slack: FakeSlack, tmp_path: Path
) -> None:
    slack.down()
    first = BotProcess(_environment(database_url, slack), tmp_path, "first")
    second: BotProcess | None = None
    try:
        first.wait_ready()
        created = []
        for _ in range(HANDOFFS):
            response = httpx.post(f"{first.url}/api/handoffs", json=payload(),
                                  headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=5)
            assert response.status_code == 201, response.text
            created.append(response.json())
        # the first process really tried, and failed, to post the cards (Slack is down); it is killed while
        # some rows wait for their next attempt and others were never tried
        wait_until(lambda: any(d["kind"] == "slack.post_card" and d["last_error"]
                               for d in _deliveries(first.url, created[0]["ref"])),
                   timeout=15, what="a failed attempt at the first card")
        first.kill()

        slack.up()
        second = BotProcess(_environment(database_url, slack), tmp_path, "second")
        second.wait_ready()

        def cards() -> list[str]:
            return [str(c.params.get("text", "")).split(" · ")[0] for c in slack.posted_cards()]

        wait_until(lambda: len(cards()) >= HANDOFFS, timeout=30, what=f"{HANDOFFS} cards")
        wait_until(lambda: httpx.get(f"{second.url}/healthz", timeout=5).json()["outbox"]["pending"] == 0,
                   timeout=15, what="an empty outbox")
        assert Counter(cards()) == Counter(h["ref"] for h in created)  # every card, none twice
        for handoff in created:
            [post] = [d for d in _deliveries(second.url, handoff["ref"]) if d["kind"] == "slack.post_card"]
            assert post["state"] == "sent"
        assert slack.calls("chat.postMessage", ok=False) == []  # Slack was down, not failing: no error answers
    finally:
        if first.process.poll() is None:
            first.kill()
        first.stop()
        if second is not None:
            second.stop()


def test_the_outbox_lease_is_an_operator_setting_with_a_clear_error() -> None:
    from bot.settings import DEFAULT_OUTBOX_LEASE_SECONDS, SettingsError, load_settings

    assert load_settings({}).outbox_lease_seconds == DEFAULT_OUTBOX_LEASE_SECONDS == 30
    assert load_settings({"HANDOFF_OUTBOX_LEASE_SECONDS": " 12.5 "}).outbox_lease_seconds == 12.5
    for bad in ("0", "-3", "soon", "99999"):
        with pytest.raises(SettingsError, match="HANDOFF_OUTBOX_LEASE_SECONDS"):
            load_settings({"HANDOFF_OUTBOX_LEASE_SECONDS": bad})
