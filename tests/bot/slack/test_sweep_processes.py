"""Two `handoff-bot serve` processes on one PostgreSQL database sweep together: each nudge and escalation once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml

from tests.bot.slack.e2e import wait_until
from tests.bot.slack.test_restart import BotProcess, _environment, slack  # noqa: F401  (the `slack` fixture)
from tests.bot.slack.test_sweep import SWEEP_CONFIG
from tests.conftest import API_TOKEN, PG_URL
from tests.factories import payload
from tests.fakes.slack_api import FakeSlack

HANDOFFS = 3
HEADERS = {"Authorization": f"Bearer {API_TOKEN}"}

pytestmark = [pytest.mark.postgres,
              pytest.mark.skipif(not PG_URL, reason="two processes on one database need TEST_DATABASE_URL")]


def _events(url: str, ref: str) -> list[str]:
    response = httpx.get(f"{url}/api/handoffs/{ref}", headers=HEADERS, timeout=5)
    assert response.status_code == 200, response.text
    return [e["action"] for e in response.json()["events"] if e["action"] in ("nudged", "escalated")]


def test_two_processes_send_each_nudge_and_escalation_once(
    make_database_url: Callable[[str], str], slack: FakeSlack, tmp_path: Path  # noqa: F811
) -> None:
    config_path = tmp_path / "handoffs.yml"
    config_path.write_text(yaml.safe_dump(SWEEP_CONFIG))
    database_url = make_database_url("postgres")
    processes = []
    try:
        for name in ("first", "second"):
            env = {**_environment(database_url, slack), "HANDOFF_CONFIG": str(config_path)}
            processes.append(BotProcess(env, tmp_path, name))
        for process in processes:
            process.wait_ready()
        first, second = processes
        refs = []
        for index in range(HANDOFFS):
            target = processes[index % 2]
            response = httpx.post(f"{target.url}/api/handoffs", json=payload(), headers=HEADERS, timeout=5)
            assert response.status_code == 201, response.text
            refs.append(response.json()["ref"])

        def all_escalated() -> bool:
            return all("escalated" in _events(first.url, ref) for ref in refs)

        wait_until(all_escalated, timeout=40, what="every handoff escalated")

        def outbox_idle() -> bool:
            health = [httpx.get(f"{p.url}/healthz", timeout=5).json() for p in processes]
            return all(int(h["outbox"]["pending"]) == 0 for h in health)

        wait_until(outbox_idle, timeout=90, what="every reminder and escalation sent")
        for ref in refs:
            assert _events(second.url, ref) == ["nudged", "nudged", "escalated"], ref
        reminders = Counter(str(c.params.get("thread_ts")) for c in slack.calls("chat.postMessage", ok=True)
                            if str(c.params.get("text", "")).startswith("⏰"))
        assert sorted(reminders.values()) == [2] * HANDOFFS
        assert len(slack.calls("chat.postMessage", ok=True, channel="CLEADS")) == HANDOFFS
    finally:
        for process in processes:
            process.stop()
