"""`serve --workers N`: N server processes on one port; the parent sends.

Each worker is a uvicorn server on a socket of its own, bound with SO_REUSEPORT, so that the kernel spreads
new connections over the workers (uvicorn's own `workers=` shares one socket, and the first worker to wake
accepted every connection of a burst: all 16 keep-alive clients of bench/intake.py on one core). The workers
only answer HTTP.

The parent starts, restarts and stops them, and runs the group's one outbox sender, webhook sender and
scheduler: Slack's pace is per channel, so two independent pacers would send twice as fast and draw 429s,
and the webhook sender's per-host limit would double. (The senders used to run in one of the workers, which
then answered its clients slowest: a third of its GIL went to sending. bench/ack.py's p99 went from 106 to
61–70 ms when they moved out.) A write in a worker wakes the parent's senders with one byte on a Unix
datagram socket in the group's directory; a lost byte only costs the sender's own poll interval.
"""

from __future__ import annotations

import contextlib
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
WAKE_BYTE = b"!"
WAKE_SOCKET = "wake.sock"
STARTUP_FAILURE = 3  # uvicorn's exit code for a server that could not start (uvicorn.config.STARTUP_FAILURE)
STOP_SECONDS = 20.0  # a worker's graceful stop (requests in flight), then SIGKILL


class WorkerStartupError(Exception):
    """The workers could not start (the port is taken, or a worker could not build its app): one line."""


class WakeInbox:
    """The parent's end: `wake` runs when workers poke, once for all the pokes waiting. Bound before workers start."""

    def __init__(self, directory: Path, *, wake: Callable[[], None]) -> None:
        self._wake = wake
        self._stop = threading.Event()
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(directory / WAKE_SOCKET))
        self._socket.setblocking(False)
        self._thread = threading.Thread(target=self._run, name="wake-inbox", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._socket.close()

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._socket, select.POLLIN)
        while not self._stop.is_set():
            if poller.poll(500):  # a timeout, to notice `stop`
                _drain(self._socket)  # a burst of writes wakes the senders once
                self._wake()


class WakePoker:
    """A worker's end: `poke` after a write wakes the parent's senders (errors only delay the send)."""

    def __init__(self, directory: Path) -> None:
        self._path = str(directory / WAKE_SOCKET)
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.setblocking(False)

    def poke(self) -> None:
        with contextlib.suppress(OSError):  # the parent is stopping, or its socket buffer is full: it polls anyway
            self._socket.sendto(WAKE_BYTE, self._path)

    def close(self) -> None:
        self._socket.close()


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


LISTEN_HINT = "set HOST and PORT to a free address of this machine"


def _port_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise WorkerStartupError(f"cannot listen on {host}:{port}: {error.strerror} ({LISTEN_HINT})") from error
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
