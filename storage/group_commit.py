"""Group commit: writes from many threads, stored a batch at a time in one transaction.

Under load, intake spent most of its time queued for the database's write turn (SQLite has one writer;
on PostgreSQL every transaction pays its BEGIN, COMMIT and log flush). Here the first thread to arrive
writes for everyone queued behind it: one transaction, one write turn and one commit for the batch. With
nobody else waiting, a batch is one write, and a call costs what it did before.

No thread of its own: a caller that finds a batch being written waits; when that batch is done, the
first caller still waiting writes the next one, so no caller ever writes more than one batch of others'.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

log = logging.getLogger("handoff_bot.storage")

MAX_BATCH = 32


class _Waiting(Generic[Item, Result]):
    """A queued item, and its caller's wake-up: a lock taken at creation, which `wake` lets go of and `wait`
    takes again. A `threading.Event` (a Python-level Condition) cost a worker several per cent of its time
    under a stream of clicks. A caller is woken at most once before each wait (as the next leader, then with
    its answer); a leader's own answer is a wake-up nobody waits for, which costs nothing."""

    __slots__ = ("_ready", "error", "item", "leads", "result")

    def __init__(self, item: Item) -> None:
        self.item = item
        self.result: Result | None = None
        self.error: BaseException | None = None
        self._ready = threading.Lock()
        self._ready.acquire()
        self.leads = False  # woken to write the next batch, not with an answer

    def wait(self) -> None:
        self._ready.acquire()

    def wake(self) -> None:
        self._ready.release()

    def answer(self) -> Result:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


class GroupCommit(Generic[Item, Result]):
    """`run(item)` returns `write_batch([.., item, ..])`'s answer for `item`, or raises its error.

    `write_batch` gets the items in arrival order and returns one answer per item, an exception instance
    for an item that failed alone. If it raises for a batch of several (a key taken by another process
    meanwhile, a deadlock, a database error), each item is written again in a batch of its own, so that one
    never fails another; if it raises for a batch of one, that item's caller gets the error.
    """

    def __init__(
        self, write_batch: Callable[[Sequence[Item]], Sequence[Result | BaseException]], *,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._write_batch = write_batch
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Waiting[Item, Result]] = []
        self._writing = False

    def run(self, item: Item) -> Result:
        waiting: _Waiting[Item, Result] = _Waiting(item)
        with self._lock:
            self._queue.append(waiting)
            leads = not self._writing
            self._writing = True
        if not leads:
            waiting.wait()
            if not waiting.leads:
                return waiting.answer()
        self._write_next_batch()
        return waiting.answer()

    def _write_next_batch(self) -> None:
        """Write the oldest queued items (this caller's among them), answer them, and pass the turn on."""
        with self._lock:
            batch = self._queue[:self._max_batch]
            del self._queue[:self._max_batch]
        answers = self._answers([waiting.item for waiting in batch])
        with self._lock:
            following = self._queue[0] if self._queue else None
            if following is None:
                self._writing = False
            else:
                following.leads = True
        for waiting, answer in zip(batch, answers, strict=True):
            if isinstance(answer, BaseException):
                waiting.error = answer
            else:
                waiting.result = answer
            waiting.wake()
        if following is not None:
            following.wake()

    def _answers(self, items: list[Item]) -> list[Result | BaseException]:
        try:
            answers = list(self._write_batch(items))
            if len(answers) != len(items):
                raise RuntimeError(f"a batch of {len(items)} writes got {len(answers)} answers")
            return answers
        except BaseException as error:
            if len(items) == 1:
                return [error]  # its caller hears of it
            log.info("a batch of %d writes failed as a whole (%s); writing them one by one",
                     len(items), type(error).__name__)
        return [self._answers([item])[0] for item in items]
