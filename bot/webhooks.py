"""Webhook delivery: signs and POSTs the outbox's `webhook` rows (handoffs/webhooks.py writes them).

One dispatcher thread leases due rows and hands them to a small worker pool. At most `per_host` requests
are in flight to one host (host:port), and a row is leased only when a slot is free for it, so a slow or
dead endpoint holds its own slots and nothing else. Every attempt is signed afresh:

    X-Handoff-Signature: v1=<hex HMAC-SHA256(secret, "<X-Handoff-Timestamp>.<body>")>

over the body bytes fixed when the change was written (the same bytes and delivery id on every retry).

Answers: 2xx is sent. 400, 405, 410, 413, 415 and 422 say the receiver refused these very bytes (or, for
410, is gone), so they end the delivery as failed at once. Anything else (other 4xx such as 401/403/404
while a receiver is being set up, 429, 5xx, 3xx since redirects are not followed), network errors and
timeouts are retried with exponential back-off and jitter (capped at 15 minutes; a longer `Retry-After` is
honoured) until `give_up_after` (a day by default) after the row was written; then the delivery is failed, with
the last error, in the log, `GET /api/handoffs/{ref}` and the figures. Several processes on one PostgreSQL
database each lease a row with a compare-and-set, so each attempt is made by one of them.

`timeout` bounds a whole attempt (connect, send, the answer's status and headers), not each socket operation as
httpx's own timeout does: a receiver that answers a byte at a time is cut off, and the attempt is a timeout.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from bot.dispatcher import Dispatcher
from bot.retry_after import retry_after_seconds
from handoffs.durations import humanize
from handoffs.webhooks import DEFAULT_SECRET_ENV, WEBHOOK
from storage.outbox import FAILED, SENT, OutboxStore
from storage.tables import OutboxRow

log = logging.getLogger("handoff_bot.webhooks")

USER_AGENT = "handoff-bot-webhooks/1"
PERMANENT_STATUSES = frozenset({400, 405, 410, 413, 415, 422})
DEFAULT_TIMEOUT_SECONDS = 10.0
DEFAULT_GIVE_UP_AFTER = timedelta(days=1)
MAX_RETRY_AFTER_SECONDS = 3600.0
WAKE_COALESCE_SECONDS = 0.05
DUE_PAGE_ROWS = 50
# A look at the outbox reads at most this many due rows (about 10 ms on SQLite when a dead host's backlog fills them
# all; 500 took 19 ms, four times a second); a longer backlog is read on over the next looks.
DUE_SCAN_ROWS = 200


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The `X-Handoff-Signature` value: `v1=` and the hex HMAC-SHA256 of `<timestamp>.<body>`."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def signed_headers(*, secret: str, event: str, delivery: str, body: bytes, timestamp: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Handoff-Event": event,
        "X-Handoff-Delivery": delivery,
        "X-Handoff-Timestamp": timestamp,
        "X-Handoff-Signature": signature(secret, timestamp, body),
    }


@dataclass(frozen=True)
class Backoff:
    """Exponential back-off with jitter: about `first` seconds after the first attempt, doubling up to `cap`."""

    first: float = 5.0
    cap: float = 900.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after attempt number `attempt` (1 for the first) failed."""
        ceiling = min(self.cap, self.first * 2 ** min(max(attempt - 1, 0), 30))
        return ceiling * random.uniform(0.5, 1.0)


class Retry(Exception):
    """The attempt failed in a way that may pass: try again later (at least `after` seconds, when given)."""

    def __init__(self, error: str, after: float | None = None) -> None:
        super().__init__(error)
        self.after = after


class Undeliverable(Exception):
    """The receiver refused this delivery for good."""


def host_of(url: str | None) -> str:
    """`host:port` of a URL: the unit of the in-flight cap, and what the log names (a hook URL's path is often
    its only secret)."""
    # Not `netloc`: it holds the URL's user and password, which would be logged (and make one host several).
    return urlsplit(url or "").netloc.rpartition("@")[2].lower()


class AttemptDeadlines(httpcore.NetworkBackend):
    """httpcore's network backend, with every connect, read and write cut short at the deadline of the attempt
    the calling thread is making (`within`). httpx's timeouts bound each socket operation, so without this a
    receiver that answers a byte at a time, each byte in time, holds the attempt for as long as it likes."""

    def __init__(self) -> None:
        self._backend = httpcore.SyncBackend()
        self._attempt = threading.local()  # each worker thread makes one attempt at a time

    @contextmanager
    def within(self, seconds: float) -> Iterator[None]:
        """The socket operations in this block end, with a timeout, at most `seconds` from now."""
        self._attempt.deadline = time.monotonic() + seconds
        try:
            yield
        finally:
            self._attempt.deadline = None

    def time_left(self, timeout: float | None, timed_out: type[httpcore.TimeoutException]) -> float | None:
        """`timeout`, shortened to what is left of the attempt; `timed_out` is raised when nothing is."""
        deadline: float | None = getattr(self._attempt, "deadline", None)
        if deadline is None:
            return timeout
        left = deadline - time.monotonic()
        if left <= 0:
            raise timed_out("the attempt's deadline has passed")
        return left if timeout is None else min(timeout, left)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        # The name lookup inside cannot be cut short (it is the system's getaddrinfo); the connect can.
        stream = self._backend.connect_tcp(host, port, self.time_left(timeout, httpcore.ConnectTimeout),
                                           local_address, socket_options)
        return DeadlineStream(stream, self)


class DeadlineStream(httpcore.NetworkStream):
    """A connection whose reads and writes end at the deadline of the attempt under way (`AttemptDeadlines`)."""

    def __init__(self, stream: httpcore.NetworkStream, deadlines: AttemptDeadlines) -> None:
        self._stream = stream
        self._deadlines = deadlines

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._deadlines.time_left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, self._deadlines.time_left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        left = self._deadlines.time_left(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, left), self._deadlines)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


def connect_through(client: httpx.Client, deadlines: AttemptDeadlines) -> None:
    """Make every connection of `client` (direct, or through a proxy set in the environment) with `deadlines`.

    httpx takes neither an overall timeout nor a network backend (encode/httpx#1450), but each of its transports
    keeps an httpcore pool, which hands its backend to every connection it opens.
    """
    for transport in [client._transport, *client._mounts.values()]:
        if isinstance(transport, httpx.HTTPTransport):
            transport._pool._network_backend = deadlines


class WebhookSender(Dispatcher):
    def __init__(
        self,
        store: OutboxStore,
        secrets: Mapping[str, str],
        clock: Callable[[], datetime],
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        give_up_after: timedelta = DEFAULT_GIVE_UP_AFTER,
        workers: int = 8,
        per_host: int = 2,
        poll_seconds: float = 0.25,
        backoff: Backoff | None = None,
        page_rows: int = DUE_PAGE_ROWS,
        scan_rows: int = DUE_SCAN_ROWS,
    ) -> None:
        self.store = store
        self.secrets = dict(secrets)  # by variable name; never logged, never stored
        self.clock = clock
        self.timeout = timeout
        self.give_up_after = give_up_after
        self.workers = workers
        self.per_host = per_host
        self.poll_seconds = poll_seconds
        self.backoff = backoff or Backoff()
        self.page_rows = page_rows  # due rows read per query
        self.scan_rows = scan_rows  # and at most this many per look, so that a look stays cheap
        self._scan_after: int | None = None  # where the last look stopped short of the end, if it did
        # An attempt ends `timeout` after it starts (`AttemptDeadlines`). The lease, so that no other process
        # takes a row still being sent, adds a margin for what that deadline cannot cut short: the name lookup,
        # a worker that starts late on a busy machine, and the write of the outcome.
        self.lease_seconds = 3 * timeout + 10
        self._deadlines = AttemptDeadlines()
        self._client = httpx.Client(timeout=timeout, follow_redirects=False)
        connect_through(self._client, self._deadlines)
        super().__init__(workers=workers, name="webhook")
        self._in_flight: Counter[str] = Counter()  # requests under way, by host
        self._in_flight_urls: Counter[str] = Counter()
        self._lock = threading.Lock()

    # --- lifecycle ------------------------------------------------------------------------------

    def stop(self, timeout: float = 5.0) -> None:
        super().stop(timeout)
        self._client.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.dispatch_due()
            except Exception:  # the dispatcher must outlive a database hiccup
                log.exception("webhook dispatch failed; retrying shortly")
            # Most writes carry no webhook; a due query per write cost a sixth of an intake's CPU.
            self._wait_for_work(self.poll_seconds, coalesce=WAKE_COALESCE_SECONDS)

    # --- dispatch -------------------------------------------------------------------------------

    def dispatch_due(self) -> int:
        """Lease the due deliveries that have a free slot and start them; return how many were started.

        The due rows are read oldest first, a page at a time, on past the rows of hosts at their limit (a slow
        host's backlog, one URL per handoff, can be thousands long) until the free slots are filled or no due
        row is left. One look reads at most `scan_rows`; when that stops it, the next look goes on from there,
        and the look after the one that reaches the end starts again at the oldest row.
        """
        with self._lock:
            free = self.workers - sum(self._in_flight.values())
            full = {host for host, count in self._in_flight.items() if count >= self.per_host}
            skip = frozenset(url for url in self._in_flight_urls if host_of(url) in full)
        if free <= 0:
            return 0
        now = self.clock()
        started, read, after = 0, 0, self._scan_after
        self._scan_after = None
        while True:
            rows = self.store.due(now, limit=self.page_rows, kinds=frozenset({WEBHOOK}), skip_targets=skip,
                                  after_id=after)
            for row in rows:
                if started >= free:
                    return started
                if not self._take_slot(row):
                    continue
                if not self.store.lease_many([row], now=now, until=now + timedelta(seconds=self.lease_seconds)):
                    self._free_slot(row)
                    continue
                started += 1
                self._pool.submit(self._deliver, row)
            if started >= free or len(rows) < self.page_rows:
                return started
            after, read = rows[-1].id, read + len(rows)
            if read >= self.scan_rows:
                self._scan_after = after
                return started

    def _take_slot(self, row: OutboxRow) -> bool:
        host = host_of(row.target)
        with self._lock:
            if self._in_flight[host] >= self.per_host:
                return False
            self._in_flight[host] += 1
            self._in_flight_urls[row.target or ""] += 1
            return True

    def _free_slot(self, row: OutboxRow) -> None:
        with self._lock:
            _decrement(self._in_flight, host_of(row.target))
            _decrement(self._in_flight_urls, row.target or "")

    # --- one delivery ---------------------------------------------------------------------------

    def _deliver(self, row: OutboxRow) -> None:
        assert row.id is not None
        attempt = row.attempts + 1  # the lease counted this attempt in the database
        try:
            self._post(row)
        except Retry as retry:
            self._retry(row, attempt, str(retry), retry.after)
        except Undeliverable as refused:
            self._fail(row, str(refused))
        except Exception as error:  # a bug must not wedge the outbox: keep the row, back off, log loudly
            log.exception("webhook row %s raised", row.id)
            self._retry(row, attempt, f"{type(error).__name__}: {error}", None)
        else:
            self.store.finish(row.id, state=SENT, now=self.clock())
        finally:
            self._free_slot(row)
            self._wake.set()

    def _post(self, row: OutboxRow) -> None:
        payload: dict[str, Any] = row.payload or {}
        secret_env = str(payload.get("secret_env") or DEFAULT_SECRET_ENV)
        secret = self.secrets.get(secret_env)
        if not secret:  # e.g. written before a restart without the variable: set it and restart to deliver
            raise Retry(f"{secret_env} is not set: cannot sign this webhook")
        body = str(payload.get("body", "")).encode()
        headers = signed_headers(secret=secret, event=str(payload.get("event", "")),
                                 delivery=str(payload.get("delivery", "")), body=body,
                                 timestamp=str(int(time.time())))
        try:
            # stream: the answer's status and headers are all we need; a large body is never read
            with (self._deadlines.within(self.timeout),
                  self._client.stream("POST", row.target or "", content=body, headers=headers) as response):
                status, retry_after = response.status_code, response.headers.get("retry-after")
        except httpx.TimeoutException as error:
            raise Retry(f"timed out after {self.timeout:g}s ({type(error).__name__})") from None
        except httpx.HTTPError as error:
            raise Retry(f"{type(error).__name__}: {error}"[:500]) from None
        if 200 <= status < 300:
            return
        answer = f"HTTP {status} {httpx.codes.get_reason_phrase(status)}".strip()
        if status in PERMANENT_STATUSES:
            raise Undeliverable(f"{answer}: refused by the receiver, not retried")
        raise Retry(answer, _retry_after_seconds(retry_after, self.clock()))

    def _retry(self, row: OutboxRow, attempt: int, error: str, after: float | None) -> None:
        assert row.id is not None
        now = self.clock()
        give_up_at = row.created_at + self.give_up_after
        if now >= give_up_at:
            tries = f"{attempt} attempt{'' if attempt == 1 else 's'}"
            self._fail(row, f"gave up after {tries} in {humanize(now - row.created_at)}: {error}")
            return
        # A Retry-After may lengthen the back-off, never shorten it: `0` or a date gone by would retry at once.
        delay = max(after or 0.0, self.backoff.delay(attempt))
        at = min(now + timedelta(seconds=delay), give_up_at)  # the last try comes at the give-up time
        log.warning("webhook %s to %s failed (attempt %s): %s; next try in %.1fs",
                    row.id, host_of(row.target), attempt, error, (at - now).total_seconds())
        self.store.retry(row.id, at=at, error=error)

    def _fail(self, row: OutboxRow, error: str) -> None:
        assert row.id is not None
        log.error("webhook %s to %s failed for good: %s", row.id, host_of(row.target), error)
        self.store.finish(row.id, state=FAILED, now=self.clock(), error=error)


def _decrement(counter: Counter[str], key: str) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]


def _retry_after_seconds(value: str | None, now: datetime) -> float | None:
    return retry_after_seconds(value, now, cap=MAX_RETRY_AFTER_SECONDS)
