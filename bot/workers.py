"""`serve --workers N`: N server processes on one port, of which exactly one sends.

Each worker is a uvicorn server on a socket of its own, bound with SO_REUSEPORT, so that the kernel spreads
new connections over the workers (uvicorn's own `workers=` shares one socket, and the first worker to wake
accepted every connection of a burst: all 16 keep-alive clients of bench/intake.py on one core). The parent
only starts, restarts and stops them.

Every worker answers HTTP. One of them, the leader, also runs the outbox sender, the webhook sender and the
scheduler: Slack's pace is per channel, so two independent pacers would send twice as fast and draw 429s,
and the webhook sender's per-host limit would double. The leader is whoever holds a non-blocking `flock` on
a file in the group's directory; the others try again every few seconds, so when the leader dies, another
worker takes over. A write in another worker wakes the leader's senders with one byte on a Unix datagram
socket the leader reads; a lost byte only costs the sender's own poll interval.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import multiprocessing
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from pathlib import Path

log = logging.getLogger("handoff_bot.workers")

GROUP_DIRECTORY_ENV = "HANDOFF_WORKER_GROUP"  # set by `serve` for its workers: where the group's files are
RETRY_LEAD_SECONDS = 2.0
WAKE_BYTE = b"!"
STARTUP_FAILURE = 3  # uvicorn's exit code for a server that could not start (uvicorn.config.STARTUP_FAILURE)
STOP_SECONDS = 20.0  # a worker's graceful stop (requests in flight, the senders' last Slack calls), then SIGKILL


class WorkerStartupError(Exception):
    """The workers could not start (the port is taken, or a worker could not build its app): one line."""


class WorkerGroup:
    """This worker's place in the group: `start` begins trying to lead; `poke` wakes the leader's senders."""

    def __init__(self, directory: Path, *, lead: Callable[[], None], wake: Callable[[], None],
                 retry_seconds: float = RETRY_LEAD_SECONDS) -> None:
        self.lock_path = directory / "sender.lock"
        self.wake_path = str(directory / "wake.sock")
        self._lead = lead  # starts this worker's senders and scheduler, once it leads
        self._wake = wake  # wakes this worker's senders
        self._retry_seconds = retry_seconds
        self._stop = threading.Event()
        self._leading = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._outbox = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._outbox.setblocking(False)

    @property
    def leading(self) -> bool:
        return self._leading.is_set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="worker-group", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop trying to lead and reading wake-ups; then the caller stops what `lead` started, then `close`s."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def close(self) -> None:
        """Give up the lead (after this worker's senders stopped, so that two never send at once)."""
        self._outbox.close()
        os.close(self._lock_fd)

    def poke(self) -> None:
        """Something was written: wake the leader's senders (from another worker; errors only delay it)."""
        if self._leading.is_set():
            return
        with contextlib.suppress(OSError):  # no leader right now, or its socket buffer is full: it polls anyway
            self._outbox.sendto(WAKE_BYTE, self.wake_path)

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._try_lock():
                self._serve_as_leader()
                return
            self._stop.wait(self._retry_seconds)

    def _try_lock(self) -> bool:
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _serve_as_leader(self) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as inbox:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.wake_path)  # a dead leader's socket; only the lock holder gets here
            inbox.bind(self.wake_path)
            inbox.setblocking(False)
            poller = select.poll()
            poller.register(inbox, select.POLLIN)
            self._leading.set()
            log.info("worker %d sends the Slack writes and webhooks and runs the scheduler", os.getpid())
            self._lead()
            while not self._stop.is_set():
                if poller.poll(500):  # a timeout, to notice `stop`
                    _drain(inbox)  # a burst of writes wakes the senders once
                    self._wake()


def _drain(inbox: socket.socket) -> None:
    with contextlib.suppress(BlockingIOError):
        while True:
            inbox.recv(64)


def serve_workers(count: int, *, app: str, host: str, port: int) -> bool:
    """Run `count` uvicorn servers of the app factory `app` (an import string) until SIGINT or SIGTERM,
    restarting any that dies. False when a worker could not start: then all of them are stopped."""
    reserved = _port_socket(host, port)  # holds the port (and picks one for port 0); not listening, gets nothing
    port = reserved.getsockname()[1]
    log.info("serving on http://%s:%s with %d worker processes", host, port, count)
    stop = threading.Event()
    handlers = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    workers = [_start_worker(app, host, port) for _ in range(count)]
    started = True
    try:
        while started and not stop.wait(0.5):
            for index, process in enumerate(workers):
                if process.is_alive():
                    continue
                if process.exitcode == STARTUP_FAILURE:
                    started = False
                    break
                log.warning("worker %s exited with %s; starting another", process.pid, process.exitcode)
                workers[index] = _start_worker(app, host, port)
    finally:
        _stop_all(workers)
        reserved.close()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    return started


def _port_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise WorkerStartupError(f"cannot listen on {host}:{port}: {error.strerror}") from error
    return sock


def _start_worker(app: str, host: str, port: int) -> BaseProcess:
    process = multiprocessing.get_context("spawn").Process(target=_run_worker, args=(app, host, port, os.getpid()))
    process.start()
    return process


def _stop_all(workers: list[BaseProcess]) -> None:
    for process in workers:
        if process.is_alive():
            process.terminate()  # SIGTERM: uvicorn's graceful shutdown, with the app's lifespan
    deadline = time.monotonic() + STOP_SECONDS
    for process in workers:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            log.warning("worker %s did not stop in %.0f s; killing it", process.pid, STOP_SECONDS)
            process.kill()
            process.join()


def _run_worker(app: str, host: str, port: int, parent: int) -> None:
    """A worker process: one uvicorn server on its own SO_REUSEPORT socket; it stops when the parent is gone."""
    import uvicorn

    threading.Thread(target=_stop_without_parent, args=(parent,), name="parent-watch", daemon=True).start()
    config = uvicorn.Config(app, factory=True, host=host, port=port, log_level="warning", access_log=False)
    try:
        sock = _port_socket(host, port)
    except WorkerStartupError as error:
        log.error("%s", error)
        raise SystemExit(STARTUP_FAILURE) from error
    uvicorn.Server(config).run(sockets=[sock])


def _stop_without_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)  # a parent killed with SIGKILL leaves no orphans serving the port
