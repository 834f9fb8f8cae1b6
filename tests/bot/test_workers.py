"""`handoff-bot serve --workers N`: every worker answers, the parent alone sends, SQLite writers take turns."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bot import ids
from bot.workers import WakeInbox, WakePoker
from storage.db import Database
from tests.bot.slack.e2e import wait_until
from tests.bot.slack.test_restart import BotProcess, _environment
from tests.bot.test_cli import run
from tests.conftest import API_TOKEN
from tests.factories import payload
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_signing import FORM, block_action_body, sign

HEADERS = {"Authorization": f"Bearer {API_TOKEN}"}
SIGNING_SECRET = "test-signing-secret"  # the one tests/bot/slack/test_restart.py's environment sets
CHANNELS = [f"CWORK{n:02d}" for n in range(12)]  # one route each: Slack's pace is per channel
HANDOFFS = 48
CLAIMERS = [f"UCLAIM{n:02d}" for n in range(12)]


# --------------------------------------------------------------------------- the pieces, in one process


def test_the_pokes_waiting_for_the_parent_wake_its_senders_once(tmp_path: Path) -> None:
    woken: list[float] = []
    wake = threading.Event()

    def on_wake() -> None:
        woken.append(time.monotonic())
        wake.set()

    inbox = WakeInbox(tmp_path, wake=on_wake)  # bound, not yet reading: the pokes below wait in its queue
    pokers = [WakePoker(tmp_path) for _ in range(2)]
    try:
        for _ in range(5):  # a burst of writes, from both workers
            for poker in pokers:
                poker.poke()
        inbox.start()
        assert wake.wait(2)
        time.sleep(0.2)
        assert len(woken) == 1  # drained together, not one wake-up per byte
        wake.clear()
        pokers[1].poke()
        assert wake.wait(2)  # a later write wakes them again
        time.sleep(0.2)
        assert len(woken) == 2  # and nothing else does
    finally:
        for poker in pokers:
            poker.close()
        inbox.stop()


def test_a_poke_without_a_parent_listening_is_dropped_quietly(tmp_path: Path) -> None:
    poker = WakePoker(tmp_path)
    poker.poke()  # nobody listens (the parent is stopping): no error, its senders scan the outbox when they start
    poker.close()


def test_sqlite_writers_of_two_processes_take_turns_on_the_write_lock_file(tmp_path: Path) -> None:
    path = tmp_path / "handoffs.db"
    first, second = Database(f"sqlite:///{path}"), Database(f"sqlite:///{path}")  # one per worker process
    probe = os.open(f"{path}.write-lock", os.O_RDWR)

    def locked() -> bool:
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(probe, fcntl.LOCK_UN)
        return False

    held, release = threading.Event(), threading.Event()
    released_at: list[float] = []
    entered_at: list[float] = []

    def hold() -> None:
        with first.write():
            held.set()
            release.wait(5)
            released_at.append(time.perf_counter())

    def wait_turn() -> None:
        with second.write():
            entered_at.append(time.perf_counter())

    try:
        assert not locked()
        holder = threading.Thread(target=hold)
        holder.start()
        assert held.wait(5)
        assert locked()  # the whole transaction holds the lock
        waiter = threading.Thread(target=wait_turn)
        waiter.start()
        time.sleep(0.2)
        assert entered_at == []  # the second writer waits ...
        release.set()
        holder.join(5)
        waiter.join(5)
        # ... and gets its turn as soon as the first one commits, not at SQLite's next busy-handler poll
        assert entered_at and entered_at[0] - released_at[0] < 0.05
        assert not locked()
    finally:
        os.close(probe)
        first.dispose()
        second.dispose()


# --------------------------------------------------------------------------- `serve` with two workers


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        # Slack's pace, one a second per channel. Two senders (each pacing at 0.95/s) would draw 429s within each
        # channel's four cards even with a burst of 2, which forgives the first wave of a burst leaving the
        # sender's thread pool late (the pacer counts a write when it is leased, not when it is sent).
        fake.enforce_rate(1.0, burst=2)
        yield fake


def serve_with_workers(database_url: str, slack: FakeSlack, tmp_path: Path, workers: int = 2) -> BotProcess:
    config = {"routes": [{"name": f"route-{n}", "when": {"source_system": f"system-{n}"}, "channel": channel}
                         for n, channel in enumerate(CHANNELS)] + [{"name": "default", "channel": "CHANDOFFS"}]}
    (tmp_path / "handoffs.yml").write_text(yaml.safe_dump(config))
    env = {**_environment(database_url, slack), "HANDOFF_CONFIG": str(tmp_path / "handoffs.yml"),
           "HANDOFF_WORKERS": str(workers)}
    bot = BotProcess(env, tmp_path, "bot")
    try:
        bot.wait_ready()
        wait_until(lambda: len(re.findall(r"worker \d+ ready", bot.log_path.read_text())) == workers, timeout=30,
                   what=f"{workers} workers ready")
    except BaseException:
        bot.stop()
        raise
    return bot


def _post(client: httpx.Client, url: str, body: dict[str, Any]) -> tuple[int, int]:
    response = client.post(f"{url}/api/handoffs", json=body, headers=HEADERS)
    assert response.status_code in (200, 201), response.text
    return response.status_code, int(response.json()["id"])


def test_two_workers_store_every_intake_once_and_post_every_card_once_at_slacks_pace(
    database_url: str, slack: FakeSlack, tmp_path: Path
) -> None:
    bot = serve_with_workers(database_url, slack, tmp_path)
    try:
        bodies = [payload(source={"system": f"system-{n % len(CHANNELS)}"}, external_id=f"job-{n}")
                  for n in range(HANDOFFS)]
        # each body twice, at the same time, from separate connections (so, mostly, separate workers)
        clients = [httpx.Client(timeout=10) for _ in range(16)]
        try:
            with ThreadPoolExecutor(len(clients)) as pool:
                answers = list(pool.map(lambda i: _post(clients[i % len(clients)], bot.url, bodies[i // 2]),
                                        range(2 * HANDOFFS)))
        finally:
            for client in clients:
                client.close()

        for n in range(HANDOFFS):
            (status_a, id_a), (status_b, id_b) = answers[2 * n], answers[2 * n + 1]
            assert id_a == id_b and sorted((status_a, status_b)) == [200, 201]  # one created, one repeat
        created = {handoff_id for _, handoff_id in answers}
        listed = httpx.get(f"{bot.url}/api/handoffs?limit=200", headers=HEADERS, timeout=5).json()
        assert {item["id"] for item in listed["items"]} == created and len(created) == HANDOFFS

        def cards() -> list[str]:
            return [str(call.params.get("text", "")).split(" · ")[0] for call in slack.posted_cards()]

        wait_until(lambda: len(cards()) >= HANDOFFS, timeout=30, what=f"{HANDOFFS} cards")
        wait_until(lambda: httpx.get(f"{bot.url}/healthz", timeout=5).json()["outbox"]["pending"] == 0,
                   timeout=15, what="an empty outbox")
        assert Counter(cards()) == Counter(f"H-{handoff_id}" for handoff_id in created)  # each once
        assert slack.rate_limited_count == 0  # one pacer for the group
        assert slack.calls("chat.postMessage", ok=False) == []
    finally:
        bot.stop()


def test_twelve_simultaneous_claims_on_two_workers_make_one_owner(
    database_url: str, slack: FakeSlack, tmp_path: Path
) -> None:
    bot = serve_with_workers(database_url, slack, tmp_path)
    try:
        with httpx.Client(timeout=10) as client:
            _, handoff_id = _post(client, bot.url, payload())
        [card] = wait_until(lambda: slack.posted_cards("CHANDOFFS"), what="the card")
        assert card.response is not None
        bodies = {user: block_action_body(ids.CLAIM, str(handoff_id), user, channel="CHANDOFFS",
                                          message_ts=card.response["ts"])
                  for user in CLAIMERS}
        clients = {user: httpx.Client(timeout=10) for user in CLAIMERS}
        barrier = threading.Barrier(len(CLAIMERS))

        def press(user: str) -> int:
            headers = {"Content-Type": FORM, **sign(SIGNING_SECRET, bodies[user])}
            barrier.wait(timeout=10)
            return clients[user].post(f"{bot.url}/slack/events", content=bodies[user], headers=headers).status_code

        try:
            with ThreadPoolExecutor(len(CLAIMERS)) as pool:
                statuses = list(pool.map(press, CLAIMERS))
        finally:
            for client in clients.values():
                client.close()
        assert statuses == [200] * len(CLAIMERS)

        handoff = httpx.get(f"{bot.url}/api/handoffs/{handoff_id}", headers=HEADERS, timeout=5).json()
        assert handoff["status"] == "claimed" and handoff["owner"] in CLAIMERS
        actions = [event["action"] for event in handoff["events"]]
        assert actions.count("claimed") == 1 and actions.count("refused") == len(CLAIMERS) - 1
        losers = set(CLAIMERS) - {handoff["owner"]}
        slack.wait_for("chat.postEphemeral", count=len(losers), ok=True, timeout=15)
        assert {notice.params["user"] for notice in slack.ephemerals()} == losers
    finally:
        bot.stop()


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has stopped; only its parent (here: init) has yet to reap it


def _pids(bot: BotProcess, what: str, role: str = "worker") -> list[int]:
    return [int(pid) for pid in re.findall(rf"{role} (\d+) {what}", bot.log_path.read_text())]


def test_the_parent_sends_when_a_worker_dies_and_when_the_parent_dies_the_workers_stop(
    make_database_url: Callable[[str], str], slack: FakeSlack, tmp_path: Path
) -> None:
    bot = serve_with_workers(make_database_url("sqlite"), slack, tmp_path)
    try:
        [sender] = wait_until(lambda: _pids(bot, "sends", "process"), what="the sending process")
        assert sender == bot.process.pid  # the parent, not a worker
        workers = wait_until(lambda: pids if len(pids := _pids(bot, "ready")) == 2 else None, what="both workers")
        os.kill(workers[0], signal.SIGKILL)
        wait_until(lambda: len(_pids(bot, "ready")) == 3, timeout=30, what="the dead worker replaced")
        with httpx.Client(timeout=10) as client:
            _, handoff_id = _post(client, bot.url, payload())  # whichever worker answers, the card is posted
        wait_until(lambda: [c for c in slack.posted_cards() if f"H-{handoff_id}" in str(c.params.get("text"))],
                   timeout=10, what="the card")

        alive = [pid for pid in _pids(bot, "ready") if pid != workers[0]]
        os.kill(bot.process.pid, signal.SIGKILL)
        bot.process.wait(5)
        wait_until(lambda: not any(_running(pid) for pid in alive), timeout=15, what="the orphaned workers to stop")
    finally:
        bot.stop()
        for group in Path(tempfile.gettempdir()).glob(f"handoff-bot-{bot.process.pid}-*"):  # left by the SIGKILL
            shutil.rmtree(group, ignore_errors=True)


def test_the_startup_failure_code_is_uvicorns() -> None:
    from uvicorn.config import STARTUP_FAILURE as UVICORN_STARTUP_FAILURE

    from bot.workers import STARTUP_FAILURE

    assert STARTUP_FAILURE == UVICORN_STARTUP_FAILURE


# --------------------------------------------------------------------------- operator errors


@pytest.mark.parametrize(("value", "flag"), [("0", False), ("many", False), ("33", True), ("1.5", True)])
def test_a_bad_worker_count_stops_serve_with_one_line_naming_it(tmp_path: Path, value: str, flag: bool) -> None:
    result = run(tmp_path, "serve", "--workers", value) if flag else run(tmp_path, "serve", HANDOFF_WORKERS=value)
    name = "--workers" if flag else "HANDOFF_WORKERS"
    assert result.returncode != 0
    assert result.stderr.splitlines() == [
        f"handoff-bot: {name} must be a number of processes from 1 to 32 or auto, not {value!r}"]
    assert list(tmp_path.iterdir()) == []  # nothing touched


def test_socket_mode_with_several_workers_stops_with_one_line(tmp_path: Path) -> None:
    result = run(tmp_path, "serve", "--socket-mode", "--workers", "2", SLACK_BOT_TOKEN="xoxb-test",
                 SLACK_APP_TOKEN="xapp-test", HANDOFF_DEFAULT_CHANNEL="CHANDOFFS",
                 DATABASE_URL=f"sqlite:///{tmp_path / 'handoffs.db'}")
    assert result.returncode != 0
    assert result.stderr.splitlines() == [
        "handoff-bot: --socket-mode runs in one process (one Socket Mode connection), not 2 workers: "
        "leave out --workers and HANDOFF_WORKERS"]
    assert not (tmp_path / "handoffs.db").exists()  # stopped before anything was touched


def test_a_port_in_use_stops_serve_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(tmp_path, "serve", "--workers", "2", SLACK_BOT_TOKEN="xoxb-test", SLACK_SIGNING_SECRET="secret",
                     HANDOFF_DEFAULT_CHANNEL="CHANDOFFS", DATABASE_URL=f"sqlite:///{tmp_path / 'handoffs.db'}",
                     PORT=str(port))
    assert result.returncode != 0
    assert result.stderr.splitlines()[-1] == (
        f"handoff-bot: cannot listen on 127.0.0.1:{port}: Address already in use "
        "(set HOST and PORT to a free address of this machine)")
    assert "Traceback" not in result.stderr


def test_the_worker_count_setting() -> None:
    from bot.settings import load_settings

    assert load_settings({}).workers == 1
    assert load_settings({"HANDOFF_WORKERS": " 3 "}).workers == 3
    assert load_settings({"HANDOFF_WORKERS": "auto"}).workers == min(32, len(os.sched_getaffinity(0)))
