"""A fake Slack Web API served over real HTTP on loopback, with call recording and fault injection.

Point a ``slack_sdk.WebClient`` (or the product's ``SLACK_API_URL``) at ``FakeSlack().url``; every
``POST {url}{method}`` is recorded as a :class:`Call` and answered with a realistic payload.

    with FakeSlack() as slack:
        client = WebClient(base_url=slack.url, token="xoxb-test")
        client.chat_postMessage(channel="C1", text="hi")
        [call] = slack.wait_for("chat.postMessage", channel="C1")

Faults: :meth:`FakeSlack.fail_next`, :meth:`FakeSlack.fail_channel`, :meth:`FakeSlack.set_delay`,
:meth:`FakeSlack.down` / :meth:`FakeSlack.up` and :meth:`FakeSlack.enforce_rate`.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["Call", "FakeSlack"]

JSON_PARAMS = ("blocks", "view", "attachments", "metadata")
RATE_LIMITED_METHODS = ("chat.postMessage", "chat.update")
API_PREFIX = "/api/"

Predicate = Callable[["Call"], bool]


@dataclass
class Call:
    """One request received by the fake. ``status``/``response``/``answered_at`` are set once it is answered."""

    index: int
    method: str
    params: dict[str, Any]
    raw_body: bytes
    headers: dict[str, str]  # lower-cased names
    received_at: float  # time.monotonic()
    http_method: str = "POST"
    answered_at: float | None = None
    status: int | None = None
    response: dict[str, Any] | None = None
    response_headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when answered with HTTP 200 and ``{"ok": true}``."""
        return self.status == 200 and self.response is not None and self.response.get("ok") is True

    @property
    def error(self) -> str | None:
        return None if self.response is None else self.response.get("error")

    @property
    def channel(self) -> str | None:
        value = self.params.get("channel")
        return value if isinstance(value, str) else None

    @property
    def latency(self) -> float | None:
        return None if self.answered_at is None else self.answered_at - self.received_at

    def summary(self) -> str:
        keys = ("channel", "ts", "thread_ts", "user", "text")
        shown = {k: self.params[k] for k in keys if k in self.params}
        text = shown.get("text")
        if isinstance(text, str) and len(text) > 60:
            shown["text"] = text[:57] + "..."
        outcome = "pending" if self.status is None else f"{self.status} {'ok' if self.ok else self.error}"
        return f"#{self.index} {self.method} {shown} -> {outcome}"


@dataclass
class _Fault:
    status: int
    error: str
    retry_after: int
    remaining: int
    performed: bool = False  # the call takes effect, and only its answer is the failure


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class _Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], fake: FakeSlack) -> None:
        self.fake = fake
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.fake._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self._handle()

    def do_GET(self) -> None:
        self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        fake = self.server.fake
        if fake.is_down:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        answer, call = fake._dispatch(self.command, self.path, headers, body)
        if call is not None:
            fake._sleep(call.method)
        payload = json.dumps(answer.body).encode()
        if call is not None:
            fake._answered(call, answer)
        try:
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()
        except OSError:
            self.close_connection = True


def _decode_params(path: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    params: dict[str, Any] = {}

    def merge_form(text: str) -> None:
        for key, values in parse_qs(text, keep_blank_values=True).items():
            params[key] = values[0] if len(values) == 1 else values

    merge_form(urlsplit(path).query)
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if body:
        if content_type == "application/json":
            try:
                decoded = json.loads(body)
            except ValueError:
                decoded = None
            if isinstance(decoded, dict):
                params.update(decoded)
        elif content_type == "application/x-www-form-urlencoded" or not content_type:
            merge_form(body.decode("utf-8", errors="replace"))
    for key in JSON_PARAMS:
        value = params.get(key)
        if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
            with contextlib.suppress(ValueError):
                params[key] = json.loads(value)
    return params


class FakeSlack:
    """A Slack Web API stand-in on ``http://127.0.0.1:PORT/api/``. Thread-safe; use as a context manager.

    Configurable data (plain attributes, change them any time):

    - ``users``: user id -> fields merged over the default ``users.info`` user
    - ``usergroups``: usergroup id -> list of user ids for ``usergroups.users.list``
    - ``channels``: channel id -> name for ``conversations.info``
    - ``messages``: channel id -> message dicts answered by ``conversations.history`` (before what was posted
      there) and ``conversations.replies``
    - ``valid_tokens``: when set, only these ``xoxb-`` tokens are accepted (others get ``invalid_auth``)
    """

    def __init__(self, port: int = 0) -> None:
        self._lock = threading.RLock()
        self._calls: list[Call] = []
        self._index = itertools.count(1)
        self._last_ts_us = 0
        self._view_counter = itertools.count(1)
        self._posted: dict[tuple[str, str], dict[str, Any]] = {}
        self._dm_users: dict[str, str] = {}  # a DM conversations.open answered -> the person it is with
        self._faults: dict[str, list[_Fault]] = {}
        self._failing_channels: dict[str, str] = {}
        self._delays: dict[str | None, float] = {}
        self._rate: float | None = None
        self._burst = 1
        self._rate_methods: tuple[str, ...] = RATE_LIMITED_METHODS
        self._buckets: dict[str, _Bucket] = {}
        self._rate_limited = 0
        self._down = False
        self._stopped = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port = port
        self.users: dict[str, dict[str, Any]] = {}
        self.usergroups: dict[str, list[str]] = {}
        self.channels: dict[str, str] = {}
        self.messages: dict[str, list[dict[str, Any]]] = {}
        self.valid_tokens: set[str] | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("FakeSlack is not started")
        return self._port

    @property
    def url(self) -> str:
        """Base URL for ``WebClient(base_url=...)`` / ``SLACK_API_URL``, ending in ``/api/``."""
        return f"http://127.0.0.1:{self.port}{API_PREFIX}"

    @property
    def is_down(self) -> bool:
        return self._down

    def start(self) -> FakeSlack:
        if self._server is not None:
            return self
        self._stopped.clear()
        self._serve()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._close_server()
        self._drop_connections()

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self) -> None:
        server = _Server(("127.0.0.1", self._port), self)
        self._port = int(server.server_address[1])
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-slack", daemon=True
        )
        self._server, self._thread = server, thread
        thread.start()

    def _close_server(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def _track(self, connection: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def _drop_connections(self) -> None:
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    # ------------------------------------------------------------------ faults

    def down(self) -> None:
        """Slack is unreachable: the port refuses connections and open connections are dropped."""
        with self._lock:
            self._down = True
        self._close_server()
        self._drop_connections()

    def up(self) -> None:
        """Serve again on the same port."""
        with self._lock:
            self._down = False
        if self._server is None and not self._stopped.is_set():
            self._serve()

    def fail_next(
        self,
        method: str,
        count: int = 1,
        status: int = 500,
        error: str | None = None,
        retry_after: int = 1,
    ) -> None:
        """Answer the next ``count`` calls of ``method`` with a failure.

        ``status`` 429 sends ``Retry-After: retry_after`` and ``error`` "ratelimited"; 5xx sends ``error``
        "internal_error"; 200 sends ``{"ok": false, "error": error}`` (default "internal_error").
        Queued failures for one method are used in order.
        """
        if error is None:
            error = "ratelimited" if status == 429 else "internal_error"
        with self._lock:
            self._faults.setdefault(method, []).append(_Fault(status, error, max(1, int(retry_after)), count))

    def lose_answer_next(self, method: str, count: int = 1, status: int = 500) -> None:
        """The next ``count`` calls of ``method`` take effect (a message is stored), but answer ``status`` with
        ``internal_error``: the caller cannot tell that it worked, as after a timeout or a crash."""
        with self._lock:
            self._faults.setdefault(method, []).append(_Fault(status, "internal_error", 1, count, performed=True))

    def fail_channel(self, channel: str, error: str | None = "channel_not_found") -> None:
        """Every call whose ``channel`` param is ``channel`` gets ``{"ok": false, "error": error}``; None heals it."""
        with self._lock:
            if error is None:
                self._failing_channels.pop(channel, None)
            else:
                self._failing_channels[channel] = error

    def set_delay(self, seconds: float, method: str | None = None) -> None:
        """Answer ``method`` (or, with None, every method without its own delay) ``seconds`` late; 0 clears."""
        with self._lock:
            if seconds > 0:
                self._delays[method] = seconds
            else:
                self._delays.pop(method, None)

    def enforce_rate(
        self,
        per_channel_per_second: float | None = 1.0,
        burst: int = 1,
        methods: Iterable[str] = RATE_LIMITED_METHODS,
    ) -> None:
        """Token bucket per channel shared by ``methods``; over it, HTTP 429 with ``Retry-After``. None disables."""
        with self._lock:
            self._rate = per_channel_per_second
            self._burst = max(1, burst)
            self._rate_methods = tuple(methods)
            self._buckets.clear()

    @property
    def rate_limited_count(self) -> int:
        """How many HTTP 429 answers :meth:`enforce_rate` has sent (not counting :meth:`fail_next`)."""
        with self._lock:
            return self._rate_limited

    def reset(self) -> None:
        """Forget recorded calls and clear every fault, delay and rate limit. Posted messages stay known."""
        with self._lock:
            self._calls.clear()
            self._faults.clear()
            self._failing_channels.clear()
            self._delays.clear()
            self._rate = None
            self._buckets.clear()
            self._rate_limited = 0
        if self._down:
            self.up()

    # ------------------------------------------------------------------ queries

    def calls(self, method: str | None = None, *, ok: bool | None = None, **match: Any) -> list[Call]:
        """Recorded calls in arrival order, filtered by method, by ``ok`` and by params.

        A ``match`` value is compared for equality, or called with the param value if it is callable
        (a missing param never matches).
        """
        with self._lock:
            calls = list(self._calls)
        return [c for c in calls if _matches(c, method, ok, match)]

    def wait_for(
        self,
        predicate_or_method: str | Predicate | None = None,
        count: int = 1,
        timeout: float = 5.0,
        *,
        ok: bool | None = None,
        **match: Any,
    ) -> list[Call]:
        """Poll until at least ``count`` matching calls exist; returns all matching calls.

        ``predicate_or_method`` is a method name or a ``Call -> bool`` function; ``ok`` and ``match`` filter
        as in :meth:`calls`. Raises AssertionError listing the recorded calls on timeout.
        """
        method = predicate_or_method if isinstance(predicate_or_method, str) else None
        predicate = predicate_or_method if callable(predicate_or_method) else None
        deadline = time.monotonic() + timeout
        while True:
            found = [c for c in self.calls(method, ok=ok, **match) if predicate is None or predicate(c)]
            if len(found) >= count:
                return found
            if time.monotonic() >= deadline:
                break
            time.sleep(0.01)
        wanted = getattr(predicate_or_method, "__name__", predicate_or_method)
        raise AssertionError(
            f"timed out after {timeout}s waiting for {count} call(s) of {wanted!r}"
            f" (ok={ok}, match={match}); {len(found)} matched. Recorded calls:\n{self.describe()}"
        )

    def describe(self) -> str:
        calls = self.calls()
        return "\n".join(f"  {c.summary()}" for c in calls) or "  (none)"

    def posted_cards(self, channel: str | None = None, *, include_failed: bool = False) -> list[Call]:
        """Successful ``chat.postMessage`` calls that are not thread replies."""
        return [
            c
            for c in self._successful("chat.postMessage", include_failed)
            if not c.params.get("thread_ts") and (channel is None or c.channel == channel)
        ]

    def thread_replies(
        self, channel: str | None = None, thread_ts: str | None = None, *, include_failed: bool = False
    ) -> list[Call]:
        """Successful ``chat.postMessage`` calls with a ``thread_ts``."""
        return [
            c
            for c in self._successful("chat.postMessage", include_failed)
            if c.params.get("thread_ts")
            and (channel is None or c.channel == channel)
            and (thread_ts is None or c.params.get("thread_ts") == thread_ts)
        ]

    def updates(self, ts: str | None = None, *, include_failed: bool = False) -> list[Call]:
        """Successful ``chat.update`` calls, optionally for one message ``ts``."""
        return [c for c in self._successful("chat.update", include_failed) if ts is None or c.params.get("ts") == ts]

    def ephemerals(self, user: str | None = None, *, include_failed: bool = False) -> list[Call]:
        """Successful ``chat.postEphemeral`` calls, optionally for one ``user``."""
        return [
            c
            for c in self._successful("chat.postEphemeral", include_failed)
            if user is None or c.params.get("user") == user
        ]

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        """The current state of a message the fake posted (after updates), or None."""
        with self._lock:
            found = self._posted.get((channel, ts))
            return dict(found) if found is not None else None

    def channel_messages(self, channel: str) -> list[dict[str, Any]]:
        """What is in `channel` now, outside threads, oldest first (including posts whose answer was lost)."""
        with self._lock:
            found = [dict(m) for (where, _), m in self._posted.items() if where == channel and not m.get("thread_ts")]
        return sorted(found, key=lambda m: float(m["ts"]))

    def thread_messages(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """What is in the thread of `thread_ts` now, oldest first (including posts whose answer was lost)."""
        with self._lock:
            found = [dict(m) for (where, _), m in self._posted.items()
                     if where == channel and m.get("thread_ts") == thread_ts]
        return sorted(found, key=lambda m: float(m["ts"]))

    def _successful(self, method: str, include_failed: bool) -> list[Call]:
        return self.calls(method, ok=None if include_failed else True)

    # ------------------------------------------------------------------ request handling

    def _sleep(self, method: str) -> None:
        with self._lock:
            delay = self._delays.get(method, self._delays.get(None, 0.0))
        if delay > 0:
            self._stopped.wait(delay)

    def _answered(self, call: Call, answer: _Answer) -> None:
        with self._lock:
            call.status = answer.status
            call.response = answer.body
            call.response_headers = dict(answer.headers)
            call.answered_at = time.monotonic()

    def _dispatch(
        self, http_method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[_Answer, Call | None]:
        received = time.monotonic()
        route = urlsplit(path).path
        if not route.startswith(API_PREFIX):
            return _Answer(404, {"ok": False, "error": "not_found"}), None
        method = route[len(API_PREFIX) :]
        params = _decode_params(path, headers, body)
        with self._lock:
            call = Call(next(self._index), method, params, body, headers, received, http_method)
            self._calls.append(call)
            return self._answer(call), call

    def _answer(self, call: Call) -> _Answer:
        auth = call.headers.get("authorization", "")
        if not auth.startswith("Bearer xoxb-"):
            return _Answer(200, {"ok": False, "error": "not_authed"})
        if self.valid_tokens is not None and auth[len("Bearer ") :] not in self.valid_tokens:
            return _Answer(200, {"ok": False, "error": "invalid_auth"})
        faults = self._faults.get(call.method)
        if faults:
            fault = faults[0]
            fault.remaining -= 1
            if fault.remaining <= 0:
                faults.pop(0)
            if fault.performed:
                handler = _METHODS.get(call.method)
                if handler is not None:
                    handler(self, call.params)
            answer = _Answer(fault.status, {"ok": False, "error": fault.error})
            if fault.status in (429, 503):
                answer.headers["Retry-After"] = str(fault.retry_after)
            return answer
        channel = call.channel
        if self._rate is not None and call.method in self._rate_methods and channel:
            retry_after = self._take_token(channel, call.received_at)
            if retry_after is not None:
                self._rate_limited += 1
                return _Answer(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)})
        if channel and channel in self._failing_channels:
            return _Answer(200, {"ok": False, "error": self._failing_channels[channel]})
        handler = _METHODS.get(call.method)
        if handler is None:
            return _Answer(200, {"ok": False, "error": "unknown_method"})
        return _Answer(200, handler(self, call.params))

    def _take_token(self, channel: str, now: float) -> int | None:
        """Spends a token from the channel's bucket; returns None when allowed, else Retry-After seconds."""
        rate = self._rate or 0.0
        bucket = self._buckets.get(channel)
        if bucket is None:
            bucket = self._buckets[channel] = _Bucket(float(self._burst), now)
        bucket.tokens = min(float(self._burst), bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        if rate <= 0:
            return 60
        return max(1, math.ceil((1.0 - bucket.tokens) / rate))

    # ------------------------------------------------------------------ method implementations (under lock)

    def _next_ts(self) -> str:
        """Like Slack's: the time of posting, in microseconds, unique."""
        self._last_ts_us = max(int(time.time() * 1_000_000), self._last_ts_us + 1)
        return f"{self._last_ts_us // 1_000_000}.{self._last_ts_us % 1_000_000:06d}"

    def _view(self, params: dict[str, Any], view_id: str | None = None) -> dict[str, Any]:
        posted = params.get("view")
        view: dict[str, Any] = dict(posted) if isinstance(posted, dict) else {}
        view_id = view_id or f"V{next(self._view_counter):08d}"
        view.update(
            id=view_id,
            team_id="T1",
            app_id="AAPP",
            bot_id="BBOT",
            hash=f"{int(time.time())}.{hashlib.sha1(f'{view_id}{time.monotonic()}'.encode()).hexdigest()[:8]}",
            root_view_id=view_id,
        )
        view.setdefault("private_metadata", "")
        view.setdefault("callback_id", "")
        view.setdefault("state", {"values": {}})
        if params.get("external_id"):
            view["external_id"] = params["external_id"]
        return view

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://example.slack.com/",
            "team": "Example",
            "user": "handoff-bot",
            "team_id": "T1",
            "user_id": "UBOT",
            "bot_id": "BBOT",
            "is_enterprise_install": False,
        }

    def _post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = params.get("channel")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if not (params.get("text") or params.get("blocks") or params.get("attachments")):
            return {"ok": False, "error": "no_text"}
        ts = self._next_ts()
        message: dict[str, Any] = {
            "type": "message",
            "user": "UBOT",
            "bot_id": "BBOT",
            "app_id": "AAPP",
            "text": params.get("text", ""),
            "blocks": params.get("blocks") or [],
            "ts": ts,
            "team": "T1",
        }
        if params.get("thread_ts"):
            message["thread_ts"] = params["thread_ts"]
        if params.get("metadata"):
            message["metadata"] = params["metadata"]
        self._posted[(str(channel), ts)] = message
        return {"ok": True, "channel": channel, "ts": ts, "message": message}

    def _update(self, params: dict[str, Any]) -> dict[str, Any]:
        channel, ts = params.get("channel"), params.get("ts")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        message = self._posted.get((str(channel), str(ts)))
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        for key in ("text", "blocks", "attachments", "metadata"):
            if key in params:
                message[key] = params[key]
        message["edited"] = {"user": "UBOT", "ts": self._next_ts()}
        return {"ok": True, "channel": channel, "ts": ts, "text": message.get("text", ""), "message": dict(message)}

    def _delete(self, params: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(params.get("channel")), str(params.get("ts"))
        if self._posted.pop((channel, ts), None) is None:
            return {"ok": False, "error": "message_not_found"}
        return {"ok": True, "channel": channel, "ts": ts}

    def _post_ephemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        if not params.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        if not params.get("user"):
            return {"ok": False, "error": "user_not_in_channel"}
        return {"ok": True, "message_ts": self._next_ts()}

    def _permalink(self, params: dict[str, Any]) -> dict[str, Any]:
        channel, ts = params.get("channel"), str(params.get("message_ts", ""))
        if not channel or not ts:
            return {"ok": False, "error": "message_not_found"}
        return {
            "ok": True,
            "channel": channel,
            "permalink": f"https://example.slack.com/archives/{channel}/p{ts.replace('.', '')}",
        }

    def _views_open(self, params: dict[str, Any]) -> dict[str, Any]:
        if not params.get("trigger_id"):
            return {"ok": False, "error": "invalid_arguments"}
        if not isinstance(params.get("view"), dict):
            return {"ok": False, "error": "invalid_arguments"}
        return {"ok": True, "view": self._view(params)}

    def _views_update(self, params: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(params.get("view"), dict):
            return {"ok": False, "error": "invalid_arguments"}
        if not params.get("view_id") and not params.get("external_id"):
            return {"ok": False, "error": "invalid_arguments"}
        return {"ok": True, "view": self._view(params, params.get("view_id"))}

    def _views_publish(self, params: dict[str, Any]) -> dict[str, Any]:
        if not params.get("user_id") or not isinstance(params.get("view"), dict):
            return {"ok": False, "error": "invalid_arguments"}
        return {"ok": True, "view": self._view(params)}

    def _users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        user_id = str(params.get("user") or "")
        if not user_id:
            return {"ok": False, "error": "user_not_found"}
        name = user_id.lower()
        user: dict[str, Any] = {
            "id": user_id,
            "team_id": "T1",
            "name": name,
            "real_name": name.title(),
            "deleted": False,
            "tz": "Europe/Berlin",
            "tz_label": "Central European Time",
            "tz_offset": 3600,
            "is_bot": False,
            "is_admin": False,
            "profile": {"real_name": name.title(), "display_name": name, "email": f"{name}@example.com"},
        }
        user.update(self.users.get(user_id, {}))
        return {"ok": True, "user": user}

    def _conversations_info(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = str(params.get("channel") or "")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        name = self.channels.get(channel, channel.lower())
        return {
            "ok": True,
            "channel": {"id": channel, "name": name, "is_channel": True, "is_private": False, "is_member": True},
        }

    def _conversations_open(self, params: dict[str, Any]) -> dict[str, Any]:
        users = str(params.get("users") or "")
        if not users and not params.get("channel"):
            return {"ok": False, "error": "users_list_not_supplied"}
        channel_id = str(params.get("channel") or "D" + users.replace(",", "").lstrip("U"))
        if users and "," not in users:
            with self._lock:
                self._dm_users[channel_id] = users
        return {"ok": True, "channel": {"id": channel_id}}

    def _history(self, params: dict[str, Any]) -> dict[str, Any]:
        """The configured messages, then what was posted to the channel (not in threads) after ``oldest``,
        newest first, ``limit`` a page; metadata only with ``include_all_metadata``, as Slack does."""
        channel = str(params.get("channel") or "")
        posted = sorted(self._posted_after(channel, params, lambda m: not m.get("thread_ts")),
                        key=lambda m: float(m["ts"]), reverse=True)
        return self._page([*self.messages.get(channel, []), *posted], params)

    def _replies(self, params: dict[str, Any]) -> dict[str, Any]:
        """The configured messages of the thread of ``ts``, then what was posted in that thread after ``oldest``,
        oldest first, as ``conversations.history`` pages them."""
        channel, ts = str(params.get("channel") or ""), params.get("ts")
        configured = [m for m in self.messages.get(channel, [])
                      if ts is None or ts in (m.get("ts"), m.get("thread_ts"))]
        posted = sorted(self._posted_after(channel, params, lambda m: m.get("thread_ts") == ts),
                        key=lambda m: float(m["ts"]))
        return self._page([*configured, *posted], params)

    def _posted_after(
        self, channel: str, params: dict[str, Any], keep: Callable[[dict[str, Any]], bool],
    ) -> list[dict[str, Any]]:
        """What was posted in `channel` after ``oldest``; in a DM, also what was posted to its person's user id
        (chat.postMessage to a user id posts in their DM with the app)."""
        oldest = float(params.get("oldest") or 0)
        names = {channel, self._dm_users.get(channel, channel)}
        return [m for (where, ts), m in self._posted.items() if where in names and float(ts) > oldest and keep(m)]

    @staticmethod
    def _page(messages: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
        with_metadata = str(params.get("include_all_metadata", "")).lower() in ("1", "true")
        shown = [m if with_metadata else {k: v for k, v in m.items() if k != "metadata"} for m in messages]
        start, limit = int(params.get("cursor") or 0), int(params.get("limit") or 100)
        page, rest = shown[start:start + limit], shown[start + limit:]
        cursor = str(start + limit) if rest else ""
        return {"ok": True, "messages": page, "has_more": bool(rest), "response_metadata": {"next_cursor": cursor}}

    def _usergroup_users(self, params: dict[str, Any]) -> dict[str, Any]:
        group = str(params.get("usergroup") or "")
        if group not in self.usergroups:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": list(self.usergroups[group])}

    def _schedule(self, params: dict[str, Any]) -> dict[str, Any]:
        if not params.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        return {
            "ok": True,
            "channel": params["channel"],
            "scheduled_message_id": f"Q{next(self._view_counter):08d}",
            "post_at": params.get("post_at"),
            "message": {
                "text": params.get("text", ""),
                "blocks": params.get("blocks") or [],
                "type": "delayed_message",
            },
        }

    def _ok(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True}


def _matches(call: Call, method: str | None, ok: bool | None, match: dict[str, Any]) -> bool:
    if method is not None and call.method != method:
        return False
    if ok is not None and call.ok != ok:
        return False
    for key, expected in match.items():
        if key not in call.params:
            return False
        actual = call.params[key]
        if callable(expected):
            if not expected(actual):
                return False
        elif actual != expected:
            return False
    return True


_METHODS: dict[str, Callable[[FakeSlack, dict[str, Any]], dict[str, Any]]] = {
    "auth.test": FakeSlack._auth_test,
    "chat.postMessage": FakeSlack._post_message,
    "chat.update": FakeSlack._update,
    "chat.delete": FakeSlack._delete,
    "chat.postEphemeral": FakeSlack._post_ephemeral,
    "chat.getPermalink": FakeSlack._permalink,
    "chat.scheduleMessage": FakeSlack._schedule,
    "views.open": FakeSlack._views_open,
    "views.update": FakeSlack._views_update,
    "views.push": FakeSlack._views_open,
    "views.publish": FakeSlack._views_publish,
    "users.info": FakeSlack._users_info,
    "reactions.add": FakeSlack._ok,
    "reactions.remove": FakeSlack._ok,
    "conversations.info": FakeSlack._conversations_info,
    "conversations.open": FakeSlack._conversations_open,
    "conversations.join": FakeSlack._conversations_info,
    "conversations.history": FakeSlack._history,
    "conversations.replies": FakeSlack._replies,
    "usergroups.users.list": FakeSlack._usergroup_users,
}
