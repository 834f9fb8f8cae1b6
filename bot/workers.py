"""`serve --workers N`: N server processes on one port, of which exactly one sends.

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
import os
import select
import socket
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("handoff_bot.workers")

GROUP_DIRECTORY_ENV = "HANDOFF_WORKER_GROUP"  # set by `serve` for its workers: where the group's files are
RETRY_LEAD_SECONDS = 2.0
WAKE_BYTE = b"!"


class WorkerStartupError(Exception):
    """A worker process could not build its app; the message is one line for the operator."""


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
        """Stop leading or trying to; the caller then stops what `lead` started."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._outbox.close()
        os.close(self._lock_fd)  # releases the lock: another worker may lead now

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
            self._leading.set()
            log.info("worker %d sends the Slack writes and webhooks and runs the scheduler", os.getpid())
            self._lead()
            while not self._stop.is_set():
                readable, _, _ = select.select([inbox], [], [], 0.5)  # a timeout, to notice `stop`
                if readable:
                    _drain(inbox)  # a burst of writes wakes the senders once
                    self._wake()


def _drain(inbox: socket.socket) -> None:
    with contextlib.suppress(BlockingIOError):
        while True:
            inbox.recv(64)
