"""What the outbox's two senders (Slack, webhooks) share: a dispatcher thread, its wake-up, a worker pool."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor


class Dispatcher:
    """Runs `_run` on a daemon thread until `stop`; `wake` tells it new work was written."""

    def __init__(self, *, workers: int, name: str) -> None:
        self._name = name
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"{self._name}-dispatcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def wake(self) -> None:
        """New rows were written (or a slot came free): look now instead of at the next poll."""
        self._wake.set()

    def _wait_for_work(self, timeout: float, *, coalesce: float) -> bool:
        """Sleep until woken or `timeout`; True when woken. Every write wakes the dispatcher, so after a
        wake-up it waits `coalesce` more: a burst of writes costs one look at the outbox, not one each."""
        if not self._wake.wait(timeout):
            return False
        self._stop.wait(coalesce)
        self._wake.clear()
        return True

    def _run(self) -> None:
        raise NotImplementedError
