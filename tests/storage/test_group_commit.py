"""Group commit on its own: many threads, batches written one at a time, every caller gets its own answer."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from storage.group_commit import GroupCommit
from tests.storage.test_concurrency import all_at_once


class Refused(Exception):
    pass


class Recorder:
    """A write_batch that takes a little time (so that callers queue) and refuses odd numbers."""

    def __init__(self, *, fail_batches_with: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.fail_batches_with = fail_batches_with
        self.writing = threading.Lock()

    def __call__(self, items: Sequence[int]) -> list[str | Exception]:
        assert self.writing.acquire(blocking=False), "two batches written at once"
        try:
            self.batches.append(list(items))
            time.sleep(0.005)
            if self.fail_batches_with in items:
                raise RuntimeError("the database went away")
            return [Refused(f"odd {item}") if item % 2 else f"stored {item}" for item in items]
        finally:
            self.writing.release()


def test_every_caller_gets_its_own_answer_and_each_item_is_written_once() -> None:
    recorder = Recorder()
    group: GroupCommit[int, str] = GroupCommit(recorder, max_batch=8)

    results = all_at_once(40, group.run)

    for item, result in enumerate(results):
        if item % 2:
            assert isinstance(result, Refused) and str(result) == f"odd {item}"
        else:
            assert result == f"stored {item}"
    written = [item for batch in recorder.batches for item in batch]
    assert sorted(written) == list(range(40))
    assert max(len(batch) for batch in recorder.batches) > 1  # they were grouped
    assert max(len(batch) for batch in recorder.batches) <= 8


def test_a_batch_that_fails_is_written_again_one_by_one_and_only_the_failing_caller_hears_of_it() -> None:
    recorder = Recorder(fail_batches_with=6)
    group: GroupCommit[int, str] = GroupCommit(recorder, max_batch=4)

    results = all_at_once(24, group.run)

    failed_batch = next(batch for batch in recorder.batches if 6 in batch)
    assert len(failed_batch) > 1  # shared with others, who must not fail with it
    for item in failed_batch:
        assert [item] in recorder.batches[recorder.batches.index(failed_batch):]  # then written on its own
    for item, result in enumerate(results):
        if item == 6:
            assert isinstance(result, RuntimeError)
        elif item % 2:
            assert isinstance(result, Refused) and str(result) == f"odd {item}"
        else:
            assert result == f"stored {item}"
    assert group.run(8) == "stored 8"  # and the next caller writes again


def test_one_caller_alone_writes_a_batch_of_one() -> None:
    recorder = Recorder()
    group: GroupCommit[int, str] = GroupCommit(recorder)
    assert [group.run(2), group.run(4)] == ["stored 2", "stored 4"]
    with pytest.raises(Refused):
        group.run(5)
    assert recorder.batches == [[2], [4], [5]]
