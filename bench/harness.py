"""Shared plumbing for the benchmark scripts: a real server subprocess, throwaway databases, figures.

Not part of the product: nothing here is imported by `bot`, `handoffs` or `storage`.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/x.py` from anywhere, also without an editable install
    sys.path.insert(0, str(ROOT))

BENCH_TOKEN = "bench-token-0123456789"
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def pg_base_url(explicit: str | None = None) -> str:
    """The maintenance database used to create and drop the benchmark's own database."""
    return explicit or os.environ.get("BENCH_PG_URL") or os.environ.get("TEST_DATABASE_URL") or DEFAULT_PG_URL


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _with_database(url: str, name: str) -> str:
    head, _, tail = url.rpartition("/")
    query = ""
    if "?" in tail:
        query = "?" + tail.split("?", 1)[1]
    return f"{head}/{name}{query}"


@contextlib.contextmanager
def postgres_database(base_url: str, *, name: str | None = None, keep: bool = False) -> Iterator[str]:
    """A database of its own (created here, dropped afterwards unless `keep`); yields its SQLAlchemy URL."""
    import psycopg

    name = name or f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_libpq(base_url), autocommit=True) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(base_url, name)
    finally:
        if not keep:
            drop_postgres_database(base_url, name)


def drop_postgres_database(base_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(_libpq(base_url), autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """`handoff-bot serve` in a subprocess, in an empty directory (no .env, no handoffs.yml)."""

    def __init__(self, database_url: str, *, workers: int = 1, extra_env: dict[str, str] | None = None) -> None:
        self.database_url = database_url
        self.workers = workers
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="handoff-bench-"))
        self.log_path = self.workdir / "server.log"
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("HANDOFF_", "SLACK_", "DATABASE_URL"))}
        env.update(
            DATABASE_URL=database_url,
            HANDOFF_API_TOKENS=f"bench:{BENCH_TOKEN}",
            HANDOFF_DEFAULT_CHANNEL="CBENCH",
            HOST="127.0.0.1",
            PORT=str(self.port),
            SLACK_BOT_TOKEN="xoxb-bench",
            SLACK_SIGNING_SECRET="bench",
            SLACK_API_URL="http://127.0.0.1:9/api/",
            HANDOFF_WORKERS=str(workers),
            PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        )
        env.update(extra_env or {})
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, *, timeout: float = 120.0) -> Server:
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "serve"], cwd=self.workdir, env=self.env,
            stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                connection.request("GET", "/healthz")
                if connection.getresponse().status == 200 and workers_ready(self.log_path) >= self.workers:
                    connection.close()
                    return self
                connection.close()
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not answer /healthz within {timeout:.0f}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def cpu_seconds(self) -> float:
        return process_tree_cpu_seconds(self.pid)

    def memory(self) -> dict[str, int]:
        return process_memory_kib(self.pid)


def process_cpu_seconds(pid: int | None = None) -> float:
    """user + system CPU time of a process (all its threads; default: this one), from /proc."""
    fields = Path(f"/proc/{pid or os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def process_tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and of all its descendants alive now (`serve --workers N`: the workers)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(stat.parent.name))
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(OSError):  # a process that ended meanwhile
            total += process_cpu_seconds(current)
        pending.extend(children.get(current, []))
    return total


def workers_ready(log_path: Path) -> int:
    """How many worker processes of `serve --workers N` said they are ready (a single process says nothing: 1)."""
    try:
        return max(1, len(re.findall(r"worker \d+ ready", log_path.read_text(errors="replace"))))
    except OSError:
        return 0


def process_memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak resident set) in KiB."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values


class Client:
    """A keep-alive HTTP/1.1 client for timing single requests against the server."""

    def __init__(self, port: int, token: str = BENCH_TOKEN) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"Authorization": f"Bearer {token}"}

    def get(self, path: str) -> tuple[int, Any, float]:
        """(status, decoded JSON body, seconds)."""
        started = time.perf_counter()
        self.connection.request("GET", path, headers=self.headers)
        response = self.connection.getresponse()
        raw = response.read()
        elapsed = time.perf_counter() - started
        return response.status, json.loads(raw) if raw else None, elapsed

    def close(self) -> None:
        self.connection.close()


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (0 < fraction <= 1) of unsorted values; nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5 - 1e-9)))
    return ordered[rank - 1]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def machine_line() -> str:
    load = os.getloadavg()
    return (f"python {sys.version.split()[0]} · {os.cpu_count()} cores · "
            f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
