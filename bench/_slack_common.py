"""Plumbing for the Slack benchmarks (ack.py, burst.py): server subprocesses, a cheap load client, figures.

Not part of the product. Run the benches from the repository root (`python bench/ack.py`); this module
puts the root on sys.path so `bot` and `tests.fakes` import without an install.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from harness import (  # noqa: E402
    free_port,
    machine_line,
    percentile,
    process_cpu_seconds,
    process_tree_cpu_seconds,
    verdict,
    workers_ready,
)

from tests.fakes.slack_signing import FORM, sign  # noqa: E402  (needs ROOT on sys.path)

__all__ = ["free_port", "machine_line", "percentile", "process_cpu_seconds", "verdict"]  # re-exported for ack/burst

API_TOKEN = "bench-token-0123456789"
SIGNING_SECRET = "bench-signing-secret"
BOT_TOKEN = "xoxb-bench"


class ServerProcess:
    """A server in a subprocess, in a throwaway working directory; ready once `GET /healthz` answers 200."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], port: int, *, workers: int = 1) -> None:
        self.name = name
        self.workers = workers  # ready once this many worker processes said so (`serve --workers N`)
        self.argv = list(argv)
        self.port = port
        self.workdir = Path(tempfile.mkdtemp(prefix=f"handoff-bench-{name}-"))
        self.log_path = self.workdir / "server.log"
        base = {key: value for key, value in os.environ.items()
                if not key.startswith(("HANDOFF_", "SLACK_", "DATABASE_URL"))}
        base["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        base.update(HOST="127.0.0.1", PORT=str(port))
        base.update(env)
        self.env = base
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0) -> ServerProcess:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(self.argv, cwd=self.workdir, env=self.env,
                                            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                try:
                    connection.request("GET", "/healthz")
                    if connection.getresponse().status == 200 and workers_ready(self.log_path) >= self.workers:
                        return self
                finally:
                    connection.close()
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer /healthz within {timeout:.0f}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, *, keep_dir: bool = False) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if not keep_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def cpu_seconds(self) -> float:
        """User + system CPU time the server has used so far (all its threads, and its worker processes)."""
        assert self.process is not None
        return process_tree_cpu_seconds(self.process.pid)

    def main_cpu_seconds(self) -> float:
        """CPU time of the first process alone (`serve --workers N`: the one that sends the outbox)."""
        assert self.process is not None
        return process_cpu_seconds(self.process.pid)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def bot_server(slack_api_url: str, *, workers: int = 1, extra_env: dict[str, str] | None = None) -> ServerProcess:
    """`handoff-bot serve` (HTTP mode, `workers` processes) on a fresh SQLite file in its own directory."""
    port = free_port()
    server = ServerProcess("bot", [sys.executable, "-m", "bot.cli", "serve"], {"HANDOFF_WORKERS": str(workers)}, port,
                           workers=workers)
    server.env.update(
        DATABASE_URL=f"sqlite:///{server.workdir / 'handoffs.db'}",
        SLACK_API_URL=slack_api_url,
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        HANDOFF_API_TOKENS=f"bench:{API_TOKEN}",
        HANDOFF_DEFAULT_CHANNEL="CBENCH",
    )
    server.env.update(extra_env or {})
    return server


# ---------------------------------------------------------------------------- raw HTTP/1.1 requests


def raw_request(port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def signed_slack_request(port: int, body: bytes, secret: str = SIGNING_SECRET) -> bytes:
    """A `POST /slack/events` as Slack sends it, signed now (valid for 5 minutes)."""
    return raw_request(port, "POST", "/slack/events", body, {"Content-Type": FORM, **sign(secret, body)})


def api_request(port: int, method: str, path: str, payload: Any = None) -> bytes:
    body = json.dumps(payload).encode() if payload is not None else b""
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    if payload is not None:
        headers["Content-Type"] = "application/json"
    return raw_request(port, method, path, body, headers)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if not chunked:
        return status, await reader.readexactly(length) if length else b""
    body = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return status, bytes(body)
        body += await reader.readexactly(size)
        await reader.readexactly(2)


@dataclass
class LoadResult:
    """Latencies (seconds) and statuses of the measured requests, and the measured wall time."""

    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    bodies: list[tuple[int, bytes]] = field(default_factory=list)
    warmup_requests: int = 0
    sent: int = 0  # requests taken from the list (answered or failed), in list order
    errors: int = 0
    seconds: float = 0.0
    ran_out: bool = False  # the requests ended before max_requests or max_seconds did
    cpu: dict[str, float] = field(default_factory=dict)  # filled in by callers that measure CPU

    @property
    def count(self) -> int:
        return len(self.latencies)

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else float("nan")


async def _load(port: int, requests: Sequence[bytes], concurrency: int, warmup_s: float, max_requests: int,
                max_seconds: float, keep_bodies: bool, rate: float | None = None) -> LoadResult:
    result = LoadResult()
    queue = iter(requests)
    loop_start = time.perf_counter()
    warm_until = loop_start + warmup_s
    measure_start: list[float] = []
    measure_end = [0.0]

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while True:
                now = time.perf_counter()
                if result.count >= max_requests or (measure_start and now - measure_start[0] >= max_seconds):
                    return
                request = next(queue, None)
                if request is None:
                    result.ran_out = True
                    return
                if rate:  # open loop: request n is due at n / rate, and its latency counts from then
                    started = loop_start + result.sent / rate
                    result.sent += 1
                    await asyncio.sleep(max(0.0, started - time.perf_counter()))
                else:
                    result.sent += 1
                    started = time.perf_counter()
                try:
                    writer.write(request)
                    status, body = await asyncio.wait_for(_read_response(reader), timeout=30)
                except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                    result.errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    continue
                finished = time.perf_counter()
                if started < warm_until:
                    result.warmup_requests += 1
                    continue
                if not measure_start:
                    measure_start.append(started)
                if result.count >= max_requests:
                    return
                result.latencies.append(finished - started)
                result.statuses[status] = result.statuses.get(status, 0) + 1
                if keep_bodies:
                    result.bodies.append((status, body))
                measure_end[0] = max(measure_end[0], finished)
        finally:
            writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await writer.wait_closed()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    if measure_start:
        result.seconds = measure_end[0] - measure_start[0]
    return result


def run_load(port: int, requests: Sequence[bytes], *, concurrency: int, warmup_s: float = 0.0,
             max_requests: int | None = None, max_seconds: float = 3600.0, keep_bodies: bool = False,
             rate: float | None = None) -> LoadResult:
    """Send `requests` in order over `concurrency` keep-alive connections (asyncio, raw sockets: a cheap client).

    Closed loop by default: each connection sends its next request when answered. With `rate`, open loop: the
    n-th request is due n / rate seconds after the start and is timed from then, so waiting for a free
    connection counts in its latency (a server that falls behind is not excused by sending fewer requests).
    Requests started in the first `warmup_s` seconds are not measured; measuring stops after `max_requests`
    measured requests or `max_seconds`, or when `requests` run out.
    """
    limit = len(requests) if max_requests is None else max_requests
    return asyncio.run(_load(port, requests, concurrency, warmup_s, limit, max_seconds, keep_bodies, rate))
