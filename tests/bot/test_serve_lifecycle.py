"""`handoff-bot serve` starting and stopping: Socket Mode refused at start, SIGTERM, a client that stalls."""

from __future__ import annotations

import contextlib
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from bot.cli import main
from tests.bot.slack.e2e import wait_until
from tests.bot.slack.test_restart import BotProcess, _environment
from tests.bot.test_cli import SETTINGS
from tests.conftest import API_TOKEN, free_port
from tests.factories import payload
from tests.fakes.slack_api import FakeSlack

APP_TOKEN = "xapp-1-A0-123-abc"


class _SlackAnswer(BaseHTTPRequestHandler):
    """Answers every Web API call with the server's `status` and `body` (FakeSlack refuses xapp- tokens first)."""

    server: _SlackStandIn

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body)


class _SlackStandIn(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(("127.0.0.1", 0), _SlackAnswer)
        self.status = status
        self.body = body


@pytest.fixture
def slack_answering(request: pytest.FixtureRequest) -> Iterator[str]:
    """The Web API base URL of a Slack answering `request.param` (status, body), or of none (param None)."""
    if request.param is None:
        yield f"http://127.0.0.1:{free_port()}/api/"
        return
    server = _SlackStandIn(*request.param)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("slack_answering", "says"),
    [
        ((200, b'{"ok": false, "error": "invalid_auth"}'), "Slack refused SLACK_APP_TOKEN (invalid_auth)"),
        ((200, b'{"ok": false, "error": "token_revoked"}'), "Slack refused SLACK_APP_TOKEN (token_revoked)"),
        ((500, b""), "Slack did not open a Socket Mode connection (HTTP 500)"),
        ((200, b'{"ok": false, "error": "fatal_error"}'), "Slack did not open a Socket Mode connection (fatal_error)"),
        (None, "cannot reach Slack at SLACK_API_URL http://127.0.0.1:"),
    ],
    indirect=["slack_answering"],
    ids=["invalid-auth", "token-revoked", "slack-500", "slack-error", "slack-unreachable"],
)
def test_socket_mode_that_slack_does_not_open_stops_with_one_line_and_every_thread_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    make_database_url: Callable[[str], str], slack_answering: str, says: str,
) -> None:
    """`apps.connections.open` failing at start was a slack_sdk traceback (SlackApiError, URLError), exit 1, with
    the senders and the scheduler, already started, never stopped."""
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    for name, value in {"DATABASE_URL": make_database_url("sqlite"), "SLACK_BOT_TOKEN": "xoxb-1",
                        "SLACK_APP_TOKEN": APP_TOKEN, "SLACK_API_URL": slack_answering,
                        "HANDOFF_DEFAULT_CHANNEL": "CHANDOFFS", "PORT": str(free_port())}.items():
        monkeypatch.setenv(name, value)
    threads_before = set(threading.enumerate())

    assert main(["serve", "--socket-mode"]) == 2

    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"handoff-bot: {says}"), line
    wait_until(lambda: set(threading.enumerate()) <= threads_before, timeout=5,
               what=f"the threads serve started to stop: {set(threading.enumerate()) - threads_before}")


def _serve_socket_mode(env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    env = {**env, "SLACK_APP_TOKEN": APP_TOKEN}
    env.pop("SLACK_SIGNING_SECRET")
    return subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--socket-mode"], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_sigterm_while_serve_is_starting_stops_it_cleanly(
    make_database_url: Callable[[str], str], tmp_path: Path
) -> None:
    """Here while Socket Mode waits for Slack to open its connection, the senders already running."""
    with FakeSlack() as slack:
        slack.set_delay(30, "apps.connections.open")
        process = _serve_socket_mode(_environment(make_database_url("sqlite"), slack), tmp_path)
        with _stops_cleanly(process, timeout=10):
            slack.wait_for("apps.connections.open", timeout=30)


@contextlib.contextmanager
def _stops_cleanly(process: subprocess.Popen[str], *, timeout: float) -> Iterator[None]:
    """Once the block has brought `process` where the test wants it: SIGTERM, and an exit 0 within `timeout`
    seconds with no traceback in its output. Killed if it is still running after all."""
    try:
        yield
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert "Traceback" not in output, output
    assert process.returncode == 0, output


def _outbox_rows(database_url: str) -> list[tuple[str, str]]:
    with sqlite3.connect(database_url.removeprefix("sqlite:///")) as connection:
        return [(kind, state) for kind, state in connection.execute("SELECT kind, state FROM outbox ORDER BY id")]


def test_sigterm_stops_serve_cleanly_after_the_slack_post_in_flight(
    make_database_url: Callable[[str], str], tmp_path: Path
) -> None:
    """uvicorn re-raises the SIGTERM it captured after its graceful stop, and the default action killed the
    process there (status -15): the senders were never stopped, and a card post in flight was left leased."""
    url = make_database_url("sqlite")
    with FakeSlack() as slack:
        slack.set_delay(1.5, "chat.postMessage")
        bot = BotProcess(_environment(url, slack), tmp_path, "bot")
        try:
            bot.wait_ready()
            created = httpx.post(f"{bot.url}/api/handoffs", json=payload(),
                                 headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=5)
            assert created.status_code == 201, created.text
            slack.wait_for("chat.postMessage", timeout=10)
            bot.process.send_signal(signal.SIGTERM)
            returncode = bot.process.wait(15)
        finally:
            bot.stop()
    assert "Traceback" not in bot.log_path.read_text(errors="replace")
    assert _outbox_rows(url) == [("slack.post_card", "sent")]
    assert returncode == 0


def _stall_a_request(port: int) -> socket.socket:
    """A client that sends a request's headers and the first byte of its body, and no more."""
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    client.sendall(b"POST /api/handoffs HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer " + API_TOKEN.encode()
                   + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
    return client


def test_a_second_sigterm_stops_serve_held_by_a_stalled_client(
    make_database_url: Callable[[str], str], tmp_path: Path
) -> None:
    """The graceful stop waits for requests in progress: one client that never finishes its body held serve after
    SIGTERM, and after a second one (uvicorn forces the exit on a second SIGINT only)."""
    with FakeSlack() as slack:
        bot = BotProcess(_environment(make_database_url("sqlite"), slack), tmp_path, "bot")
        try:
            bot.wait_ready()
            with _stall_a_request(bot.port):
                wait_until(lambda: httpx.get(f"{bot.url}/healthz", timeout=5).status_code == 200, timeout=5)
                bot.process.send_signal(signal.SIGTERM)
                with pytest.raises(subprocess.TimeoutExpired):
                    bot.process.wait(1)  # still waiting for the stalled request
                bot.process.send_signal(signal.SIGTERM)
                returncode = bot.process.wait(5)
        finally:
            bot.stop()
    assert returncode == 0
    assert "Traceback" not in bot.log_path.read_text(errors="replace")


STALLED_SERVER = """
import sys
from bot import server

async def echo(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})

with server.sigterm_stops():
    server.serve_http(echo, "127.0.0.1", int(sys.argv[1]), graceful_seconds=float(sys.argv[2]))
"""


def test_the_graceful_stop_of_serve_is_bounded(tmp_path: Path) -> None:
    """Without a bound, one SIGTERM waited for a stalled request for as long as its client stayed connected.
    (serve's bound is bot.workers.STOP_SECONDS, 20 s, as for `serve --workers N`; 1 s here.)"""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", STALLED_SERVER, str(port), "1"], cwd=Path.cwd(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    def listening() -> bool:
        assert process.poll() is None, process.communicate()[0]
        return _listening(port)

    with contextlib.ExitStack() as stalled, _stops_cleanly(process, timeout=5):
        wait_until(listening, timeout=15, what="the server")
        stalled.enter_context(_stall_a_request(port))  # still stalled when the SIGTERM comes


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True
