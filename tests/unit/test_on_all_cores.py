"""Work spread over all cores (argon2 hashes and checks): results in order, and a stop heard
within a few items, however many are left."""

from __future__ import annotations

import threading
import time

import pytest

from syncd.cores import usable_cores
from syncd.db.apply import AHEAD_PER_CORE, on_all_cores
from syncd.db.apply import no_checkpoint as never_stop


class Stop(Exception):
    pass


def test_results_come_in_the_order_of_the_items_whatever_finishes_first() -> None:
    def work(item: int) -> int:
        time.sleep(0.002 * (item % 5))  # later items often finish first
        return item * 10

    assert on_all_cores(work, list(range(60)), never_stop) == [i * 10 for i in range(60)]


def test_a_handful_of_items_is_worked_here() -> None:
    threads: set[str] = set()

    def work(item: int) -> int:
        threads.add(threading.current_thread().name)
        return -item

    assert on_all_cores(work, [1, 2, 3], never_stop) == [-1, -2, -3]
    assert threads == {threading.current_thread().name}


def test_a_stop_waits_only_for_the_items_already_handed_out() -> None:
    # A district's first parents file is hours of argon2: a stop asked meanwhile must not
    # wait for a slice of dozens of hashes per core, only for those already handed out.
    asked = threading.Event()
    started: list[int] = []
    lock = threading.Lock()

    def work(item: int) -> int:
        with lock:
            started.append(item)
        if item == 20:
            asked.set()
        time.sleep(0.02)  # drops the GIL, as argon2 does
        return item

    def checkpoint() -> None:
        if asked.is_set():
            raise Stop

    begun = time.monotonic()
    with pytest.raises(Stop):
        on_all_cores(work, list(range(2000)), checkpoint)
    cores = usable_cores()
    # Item 20 was handed out with at most that many more before the stop was heard.
    assert max(started) <= 20 + cores * AHEAD_PER_CORE
    assert len(started) <= 21 + cores * AHEAD_PER_CORE
    assert time.monotonic() - begun < 10  # 2,000 items of 20 ms would be 40 s a core


def test_an_item_that_fails_raises_and_nothing_more_is_started() -> None:
    started: list[int] = []

    def work(item: int) -> int:
        started.append(item)
        if item == 5:
            raise ValueError("item 5")
        time.sleep(0.01)
        return item

    with pytest.raises(ValueError, match="item 5"):
        on_all_cores(work, list(range(500)), never_stop)
    assert max(started) <= 5 + usable_cores() * AHEAD_PER_CORE
