"""The pipeline's batching helpers: prefetching in a background thread, batches."""

from __future__ import annotations

import threading
import time

import pytest

from recognition.core.pipeline import batched, prefetched


def test_prefetched_keeps_the_order_and_works_ahead_in_one_other_thread() -> None:
    started: list[int] = []
    threads: set[str] = set()

    def work(i: int) -> int:
        started.append(i)
        threads.add(threading.current_thread().name)
        return i * i

    stream = prefetched(range(6), work, ahead=2)
    assert next(stream) == 0
    deadline = time.monotonic() + 10
    while len(started) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    # While the caller holds item 0, items 1 and 2 are prepared, and no further.
    assert started == [0, 1, 2]
    assert list(stream) == [1, 4, 9, 16, 25]
    assert len(threads) == 1 and threading.current_thread().name not in threads


def test_prefetched_raises_a_failure_at_its_item_and_cancels_the_rest_on_close() -> None:
    def work(i: int) -> int:
        if i == 2:
            raise ValueError("bad item")
        return i

    stream = prefetched(range(5), work, ahead=1)
    assert [next(stream), next(stream)] == [0, 1]
    with pytest.raises(ValueError, match="bad item"):
        next(stream)
    stream.close()


def test_prefetched_without_ahead_runs_in_the_callers_thread() -> None:
    names = list(prefetched(range(2), lambda _: threading.current_thread().name, ahead=0))
    assert names == [threading.current_thread().name] * 2


def test_batched_cuts_consecutive_batches() -> None:
    assert list(batched(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(batched([], 3)) == []
