"""The process: one HTTP server (intake API, health, Slack endpoint), the outbox sender, Socket Mode.

With `serve --workers N`, N such servers share the port and their parent sends (bot/workers.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, NoReturn
from urllib.error import URLError

import uvicorn
from apscheduler.schedulers.background import BackgroundScheduler
from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from bot.api import create_api, with_body_limit
from bot.outbox import OutboxSender
from bot.people import People
from bot.runtime import Runtime, build_runtime
from bot.scheduler import build_scheduler
from bot.settings import Settings, SettingsError, load_settings
from bot.slack.app import create_bolt_app, create_slack_client
from bot.slack.http import mount_slack
from bot.sweep import Sweeper
from bot.webhooks import WebhookSender
from bot.workers import (
    GROUP_DIRECTORY_ENV,
    LISTEN_HINT,
    STARTUP_FAILURE,
    STOP_SECONDS,
    WakeInbox,
    WakePoker,
    WorkerStartupError,
    serve_workers,
)
from handoffs.config import HandoffConfig
from storage.outbox import OutboxStore

if TYPE_CHECKING:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

log = logging.getLogger("handoff_bot.server")

# `apps.connections.open` errors that refuse the token itself (the others: Slack is failing)
APP_TOKEN_REFUSALS = frozenset({
    "not_authed", "invalid_auth", "account_inactive", "token_revoked", "token_expired", "not_allowed_token_type",
    "missing_scope", "no_permission", "org_login_required", "ekm_access_denied",
})


class SlackUnavailableError(Exception):
    """Slack could not be reached, or failed, when `serve --socket-mode` asked it for a connection: one line."""


@dataclass
class Senders:
    """What sends and sweeps: the outbox sender, the webhook sender and the SLA scheduler. One set per `serve`:
    in its one process, or, with `--workers N`, in the parent (bot/workers.py)."""

    sender: OutboxSender
    webhooks: WebhookSender
    scheduler: BackgroundScheduler

    def start(self) -> None:
        self.sender.start()
        self.webhooks.start()
        self.scheduler.start()

    def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        self.sender.stop()
        self.webhooks.stop()

    def wake(self) -> None:
        self.sender.wake()
        self.webhooks.wake()


@dataclass
class Bot:
    """Everything one `serve` process runs, built from a runtime; `start`/`stop` own the senders' threads."""

    runtime: Runtime
    bolt: App
    asgi: ASGIApp
    senders: Senders

    def start(self) -> None:
        self.senders.start()

    def stop(self) -> None:
        self.senders.stop()


def build_bot(runtime: Runtime, *, socket_mode: bool = False) -> Bot:
    client = connect_slack(runtime)
    senders = build_senders(runtime, client)
    bolt, asgi = build_http(runtime, client, socket_mode=socket_mode)
    return Bot(runtime, bolt, asgi, senders)


def connect_slack(runtime: Runtime) -> WebClient:
    """The Web API client, and people (time zones, who can own a handoff) read through it."""
    client = create_slack_client(runtime.settings)
    runtime.people = People(client, runtime.config.zone)
    return client


def build_senders(runtime: Runtime, client: WebClient) -> Senders:
    """The senders, woken by this runtime's writes."""
    sender = OutboxSender(OutboxStore(runtime.db), runtime.repo, client, runtime.config, runtime.clock,
                          lease_seconds=runtime.settings.outbox_lease_seconds)
    assert runtime.people is not None, "connect_slack(runtime) first"
    scheduler = build_scheduler(runtime, Sweeper(runtime, runtime.people))
    senders = Senders(sender, build_webhook_sender(runtime), scheduler)
    runtime.notify = senders.wake
    return senders


def build_http(runtime: Runtime, client: WebClient, *, socket_mode: bool = False) -> tuple[App, ASGIApp]:
    """The Bolt app, and the HTTP app: intake API, health and (unless over Socket Mode) `/slack/events`."""
    bolt = create_bolt_app(runtime, client, socket_mode=socket_mode)
    api = create_api(runtime, outbox=OutboxStore(runtime.db))
    if not socket_mode:
        mount_slack(api, bolt)
    return bolt, with_body_limit(api)


def build_webhook_sender(runtime: Runtime) -> WebhookSender:
    settings = runtime.settings
    return WebhookSender(OutboxStore(runtime.db), settings.webhook_secrets(runtime.config), runtime.clock,
                         timeout=settings.webhook_timeout_seconds, give_up_after=settings.webhook_give_up_after)


def create_asgi_app(runtime: Runtime) -> ASGIApp:
    """The HTTP app alone (intake API and health), without Slack: used by API-only tests."""
    return with_body_limit(create_api(runtime, outbox=OutboxStore(runtime.db)))


def run(settings: Settings, *, socket_mode: bool = False) -> None:
    settings.require_slack(socket_mode=socket_mode)
    if socket_mode and settings.workers > 1:
        raise SettingsError(f"--socket-mode runs in one process (one Socket Mode connection), not "
                            f"{settings.workers} workers: leave out --workers and HANDOFF_WORKERS")
    config = settings.load_handoff_config()
    settings.webhook_secrets(config)  # a webhook without its secret stops here, before the database is touched
    check_listen_address(settings.host, settings.port)
    with sigterm_stops():
        if settings.workers > 1:
            run_workers(settings, config)
        else:
            run_one_process(settings, config, socket_mode=socket_mode)


def run_one_process(settings: Settings, config: HandoffConfig, *, socket_mode: bool) -> None:
    with contextlib.ExitStack() as stop:  # however it ends: Socket Mode closed, then the senders, then the database
        runtime = build_runtime(settings, config=config)
        stop.callback(runtime.close)
        bot = build_bot(runtime, socket_mode=socket_mode)
        bot.start()
        stop.callback(bot.stop)
        if socket_mode:
            stop.callback(connect_socket_mode(bot.bolt, settings).close)
        log.info("serving on http://%s:%s", settings.host, settings.port)
        freeze_startup_objects()
        serve_http(bot.asgi, settings.host, settings.port)


@contextlib.contextmanager
def sigterm_stops() -> Iterator[None]:
    """SIGTERM (what systemd, Docker and Kubernetes send) stops `serve` as SIGINT does: through every `finally`
    (the senders finish the send in flight), exit 0. Its default action killed the process where it landed,
    also after uvicorn's graceful stop, which raises again the signal it stopped on."""
    previous = signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _exit_cleanly(signal_number: int, frame: FrameType | None) -> NoReturn:
    raise SystemExit(0)


class _Server(uvicorn.Server):
    """uvicorn's server, whose graceful stop ends the requests still in progress after `grace` seconds, or at once
    on a second SIGINT or SIGTERM, by closing their connections: their handlers see the client gone and end.
    (uvicorn's own bound cancels them instead, each logged as an "Exception in ASGI application" traceback, and
    uvicorn heeds a second SIGINT only.)"""

    def __init__(self, config: uvicorn.Config, *, grace: float) -> None:
        super().__init__(config)
        self.grace = grace
        self.cut_short = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit:
            self.cut_short = True
        else:
            super().handle_exit(sig, frame)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        cut_off = asyncio.create_task(self._close_connections_after_grace())
        try:
            await super().shutdown(sockets)
        finally:
            cut_off.cancel()

    async def _close_connections_after_grace(self) -> None:
        deadline = time.monotonic() + self.grace
        while not self.cut_short and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        for connection in list(self.server_state.connections):
            connection.transport.close()


def serve_http(app: ASGIApp, host: str, port: int, *, graceful_seconds: float = STOP_SECONDS) -> None:
    """Serve until SIGINT or SIGTERM; then the requests in progress have `graceful_seconds` to finish, as in the
    workers of `serve --workers N` (a client that never finished its request held the process for ever)."""
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=math.ceil(graceful_seconds) + 1)  # for a handler that hangs
    with contextlib.suppress(KeyboardInterrupt):  # the SIGINT uvicorn raises again after stopping, as uvicorn.run
        _Server(config, grace=graceful_seconds).run()


def connect_socket_mode(bolt: App, settings: Settings) -> SocketModeHandler:
    """Slack traffic over Socket Mode. When Slack does not open the connection: SettingsError (SLACK_APP_TOKEN
    refused) or SlackUnavailableError, the handler's threads stopped."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    handler = SocketModeHandler(bolt, settings.slack_app_token)
    try:
        # asked here rather than by connect(), which would log the SDK's own account of a refusal first
        handler.client.wss_uri = socket_mode_url(bolt.client, settings)
        handler.connect()
    except BaseException:
        handler.close()
        raise
    log.info("Slack traffic over Socket Mode")
    return handler


def socket_mode_url(client: WebClient, settings: Settings) -> str:
    """A WebSocket URL from `apps.connections.open`, or the one line that says why Slack gave none."""
    try:
        return str(client.apps_connections_open(app_token=settings.slack_app_token or "")["url"])
    except SlackApiError as error:
        raise _refusal(error.response) from None
    except (OSError, HTTPException) as error:
        reason = error.reason if isinstance(error, URLError) else error
        raise SlackUnavailableError(f"cannot reach Slack at SLACK_API_URL {settings.slack_api_url} ({reason}): "
                                    "check it and the network, then start the bot again") from None


def _refusal(answer: SlackResponse) -> Exception:
    code = answer.get("error")
    if code in APP_TOKEN_REFUSALS:
        return SettingsError(f"Slack refused SLACK_APP_TOKEN ({code}): set it to an app-level token (xapp-…) of this "
                             "app with the connections:write scope")
    why = code if answer.status_code == 200 else f"HTTP {answer.status_code}"
    return SlackUnavailableError(f"Slack did not open a Socket Mode connection ({why}): Slack may be failing; "
                                 "start the bot again later")


def check_listen_address(host: str, port: int) -> None:
    """Stop with one line naming HOST or PORT when the server could not listen there (uvicorn would say only
    "[Errno -2] Name or service not known", after the database and the scheduler had started)."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as error:
        raise SettingsError(f"HOST {host!r} is not an address of this machine ({error}): set HOST to an IP "
                            "address or host name to listen on, such as 127.0.0.1 or 0.0.0.0") from None
    family, kind, protocol, _, address = addresses[0]
    with socket.socket(family, kind, protocol) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as error:
            raise SettingsError(f"cannot listen on {host}:{port}: {error.strerror} ({LISTEN_HINT})") from None


def freeze_startup_objects() -> None:
    """Take everything built so far (modules, app, engines), which lives as long as the process, out of the
    cyclic GC's reach: a full collection then scans only what requests and sends leave behind.

    Unfrozen, each full collection scanned ~125,000 start-up objects and held the GIL for 40-90 ms, several
    times a second under load; in the sending process that could happen while it held the database's write
    turn, stalling every worker's clicks.
    """
    gc.collect()
    gc.freeze()


STARTUP_FAILURE_FILE = "startup-failure"


def run_workers(settings: Settings, config: HandoffConfig) -> None:
    """Migrate once, here; then `settings.workers` processes, each with its own runtime and HTTP app built from
    the same environment by `create_worker_app` (bot/workers.py). This process supervises them and sends."""
    runtime = build_runtime(settings, config=config)
    senders = build_senders(runtime, connect_slack(runtime))
    group = Path(tempfile.mkdtemp(prefix=f"handoff-bot-{os.getpid()}-"))
    os.environ[GROUP_DIRECTORY_ENV] = str(group)  # the workers inherit it
    inbox = WakeInbox(group, wake=senders.wake)  # bound before any worker can write
    freeze_startup_objects()
    try:
        inbox.start()
        senders.start()
        log.info("process %d sends the Slack writes and webhooks and runs the scheduler", os.getpid())
        if not serve_workers(settings.workers, app="bot.server:create_worker_app", host=settings.host,
                             port=settings.port):
            failure = group / STARTUP_FAILURE_FILE
            reason = failure.read_text().strip() if failure.exists() else "see the log above"
            raise WorkerStartupError(f"a worker process could not start: {reason}")
    finally:  # the workers have stopped: nothing more to wake, and their last writes are in the outbox
        inbox.stop()
        senders.stop()
        runtime.close()
        shutil.rmtree(group, ignore_errors=True)


def create_worker_app() -> ASGIApp:
    """One worker of `serve --workers N`: uvicorn calls this in each worker process (the parent migrated).

    A worker that cannot start tells the parent why and exits with uvicorn's startup-failure code, which
    stops the whole group instead of restarting the worker forever.
    """
    from bot.cli import configure_logging

    configure_logging()
    group = Path(os.environ[GROUP_DIRECTORY_ENV])
    try:
        app = _build_worker(group)
    except Exception as error:
        log.exception("worker %d could not start", os.getpid())
        (group / STARTUP_FAILURE_FILE).write_text(f"{type(error).__name__}: {error}".splitlines()[0])
        sys.exit(STARTUP_FAILURE)
    freeze_startup_objects()
    return app


def _build_worker(group_directory: Path) -> ASGIApp:
    """HTTP only: the parent's senders send what this worker writes, woken by `poke`."""
    runtime = build_runtime(load_settings(), run_migrations=False)
    _, asgi = build_http(runtime, connect_slack(runtime))
    poker = WakePoker(group_directory)
    runtime.notify = poker.poke

    def stop() -> None:
        poker.close()
        runtime.close()

    return WorkerLifespan(asgi, startup=lambda: log.info("worker %d ready", os.getpid()), shutdown=stop)


class WorkerLifespan:
    """A worker's ASGI app: requests go to `app`; the lifespan start and stop the worker's own threads."""

    def __init__(self, app: ASGIApp, *, startup: Callable[[], None], shutdown: Callable[[], None]) -> None:
        self.app = app
        self.startup = startup
        self.shutdown = shutdown

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.to_thread(self.shutdown)  # joins threads: off the event loop
                await send({"type": "lifespan.shutdown.complete"})
                return
