"""A webhook receiver on loopback, as an automation would run one: it checks each request's signature with
the README's own snippet, records what arrived, and answers as a test tells it (500s, a slow answer, 200).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[2] / "README.md"
VerifyFn = Callable[[bytes, Mapping[str, str], bytes], bool]


def readme_verify() -> VerifyFn:
    """The `verify` function of the README's receiver snippet (the Python block under "Verifying a webhook")."""
    text = README.read_text(encoding="utf-8")
    section = text.split("Verifying a webhook", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README: no ```python block after 'Verifying a webhook'"
    namespace: dict[str, Any] = {}
    exec(match.group(1), namespace)
    verify: VerifyFn = namespace["verify"]
    return verify


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    valid: bool
    at: float

    @property
    def delivery(self) -> str:
        return self.headers.get("X-Handoff-Delivery", "")

    @property
    def event(self) -> str:
        return self.headers.get("X-Handoff-Event", "")

    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@dataclass
class Answer:
    status: int = 200
    sleep: float = 0.0  # seconds to wait before answering (past the sender's timeout, to make it give up)
    headers: dict[str, str] = field(default_factory=dict)
    byte_every: float = 0.0  # when set: the answer goes one byte at a time, this far apart (each byte in time)

    def raw(self, protocol: str) -> bytes:
        """The status line and headers, as they go on the wire."""
        lines = [f"{protocol} {self.status} {HTTPStatus(self.status).phrase}",
                 *(f"{name}: {value}" for name, value in self.headers.items()), "Content-Length: 0"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()


@dataclass
class WebhookReceiver:
    """Serves `http://127.0.0.1:<port>/…`; `url(path)` names an endpoint (every path is served alike)."""

    secret: bytes
    verify: VerifyFn = field(default_factory=readme_verify)
    received: list[Received] = field(default_factory=list)
    _plan: deque[Answer] = field(default_factory=deque)
    _always: Answer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {key: value for key, value in self.headers.items()}
                answer = receiver._receive(self.path, headers, body)
                try:
                    if answer.sleep:
                        time.sleep(answer.sleep)
                    if answer.byte_every:
                        self.trickle(answer)
                        return
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:  # the sender gave up waiting and closed the connection
                    pass

            def trickle(self, answer: Answer) -> None:
                for byte in answer.raw(self.protocol_version):
                    self.wfile.write(bytes([byte]))
                    time.sleep(answer.byte_every)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False  # a handler still sleeping (a timeout test) must not hold up the test
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    # --- what to answer -------------------------------------------------------------------------

    def then(self, *answers: Answer) -> None:
        """Answer the next requests with these, in order; 200 after them."""
        with self._lock:
            self._plan.extend(answers)

    def always(self, answer: Answer | None) -> None:
        """Answer every request so (None: back to the plan, then 200)."""
        with self._lock:
            self._always = answer

    def _receive(self, path: str, headers: dict[str, str], body: bytes) -> Answer:
        valid = self.verify(self.secret, headers, body)
        with self._lock:
            self.received.append(Received(path, headers, body, valid, time.monotonic()))
            if not valid:
                return Answer(401)
            if self._always is not None:
                return self._always
            return self._plan.popleft() if self._plan else Answer()

    # --- what arrived ---------------------------------------------------------------------------

    def requests(self, *, path: str | None = None, event: str | None = None) -> list[Received]:
        with self._lock:
            found = list(self.received)
        return [r for r in found if (path is None or r.path == path) and (event is None or r.event == event)]

    def by_delivery(self, *, path: str | None = None) -> dict[str, list[Received]]:
        grouped: dict[str, list[Received]] = {}
        for request in self.requests(path=path):
            grouped.setdefault(request.delivery, []).append(request)
        return grouped
