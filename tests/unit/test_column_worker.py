"""A big file's blocks are prepared one ahead in a worker process (syncd.column_worker):
the same results in the same order, and nothing lost when the worker fails."""

from __future__ import annotations

import functools
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from syncd import column_worker
from syncd.column_worker import WORKER_MIN_BYTES, prepared_ahead
from tests.unit import worker_blocks

BLOCKS = [b"a", b"b", b"c", b"d", b"e"]


@pytest.fixture(autouse=True)
def _two_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    # The worker needs a second core; the tests run wherever they run.
    monkeypatch.setattr(column_worker, "usable_cores", lambda: 2)
    # The worker must import the test's functions (an installed syncd has no tests).
    root = str(Path(__file__).resolve().parents[2])
    monkeypatch.setenv("PYTHONPATH", root)


def _prepared(prepare: functools.partial[object], size: int = WORKER_MIN_BYTES) -> list[object]:
    with prepared_ahead(iter(BLOCKS), prepare, size) as prepared:
        return list(prepared)


def test_blocks_after_the_first_are_prepared_in_a_worker_in_order() -> None:
    results = _prepared(functools.partial(worker_blocks.where, os.getpid()))
    assert [block for block, _ in results] == BLOCKS
    assert [result for _, (result, _) in results] == [b"A", b"B", b"C", b"D", b"E"]
    # The first block is prepared here while the worker starts; the others there.
    assert [elsewhere for _, (_, elsewhere) in results] == [False, True, True, True, True]


def test_a_small_file_is_prepared_here() -> None:
    results = _prepared(functools.partial(worker_blocks.where, os.getpid()), size=100)
    assert [result for _, result in results] == [(block.upper(), False) for block in BLOCKS]


def test_a_worker_that_dies_leaves_the_rest_to_this_process() -> None:
    results = _prepared(functools.partial(worker_blocks.dies_at, os.getpid(), b"c"))
    assert [result for _, (result, _) in results] == [b"A", b"B", b"C", b"D", b"E"]
    assert [elsewhere for _, (_, elsewhere) in results] == [False, True, False, False, False]


def test_a_block_that_fails_in_the_worker_fails_here_with_its_own_error() -> None:
    with pytest.raises(ValueError, match=f"cannot read b'd' in process {os.getpid()}$"):
        _prepared(functools.partial(worker_blocks.refuses, b"d"))


def test_a_reader_that_cannot_travel_is_run_here() -> None:
    def local(block: bytes) -> tuple[bytes, int]:  # a closure: it does not pickle
        return block, os.getpid()

    results = _prepared(functools.partial(local))
    assert [pid for _, (_, pid) in results] == [os.getpid()] * len(BLOCKS)


def _keep_workers(monkeypatch: pytest.MonkeyPatch) -> list[column_worker._Worker | None]:
    workers: list[column_worker._Worker | None] = []
    start = column_worker._Worker.start

    def kept(prepare: functools.partial[object]) -> column_worker._Worker | None:
        workers.append(start(prepare))  # type: ignore[arg-type]
        return workers[-1]

    monkeypatch.setattr(column_worker._Worker, "start", kept)
    return workers


def _signalled_once_up(monkeypatch: pytest.MonkeyPatch, signum: int) -> list[Any]:
    """The blocks' results, the worker sent `signum` once it has answered a block."""
    workers = _keep_workers(monkeypatch)
    prepare = functools.partial(worker_blocks.where, os.getpid())
    with prepared_ahead(iter(BLOCKS), prepare, WORKER_MIN_BYTES) as prepared:
        results = [next(prepared), next(prepared)]  # the worker has answered: it is up
        assert workers[0] is not None
        os.kill(workers[0].process.pid, signum)
        results += list(prepared)
    assert [result for _, (result, _) in results] == [b"A", b"B", b"C", b"D", b"E"]
    return [elsewhere for _, (_, elsewhere) in results]


def test_the_worker_outlives_a_sigterm_to_the_whole_unit(monkeypatch: pytest.MonkeyPatch) -> None:
    # systemd stops a unit with SIGTERM to each of its processes; the daemon finishes the
    # file in hand, and its worker keeps preparing blocks for it.
    assert _signalled_once_up(monkeypatch, signal.SIGTERM) == [False, True, True, True, True]


def test_stopping_early_stops_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    workers = _keep_workers(monkeypatch)
    prepare = functools.partial(worker_blocks.where, os.getpid())
    with prepared_ahead(iter(BLOCKS), prepare, WORKER_MIN_BYTES) as prepared:
        next(prepared)
        next(prepared)  # the worker has answered
    assert workers[0] is not None
    assert workers[0].process.poll() is not None  # gone, and reaped


def test_a_worker_that_hangs_is_given_up(monkeypatch: pytest.MonkeyPatch) -> None:
    # A worker stopped (SIGSTOP) or starved never answers: after PATIENCE the rest of the
    # blocks are prepared here, instead of the file waiting forever.
    monkeypatch.setattr(column_worker, "PATIENCE", 0.5)
    elsewhere = _signalled_once_up(monkeypatch, signal.SIGSTOP)
    # C was sent before the stop, and may have been answered before it.
    assert elsewhere[:2] == [False, True] and elsewhere[3:] == [False, False]


def test_the_worker_has_its_own_process_group(monkeypatch: pytest.MonkeyPatch) -> None:
    # A terminal's Ctrl-C goes to the foreground process group: this process decides, even
    # in the moment before the worker ignores SIGINT.
    workers = _keep_workers(monkeypatch)
    prepare = functools.partial(worker_blocks.where, os.getpid())
    with prepared_ahead(iter(BLOCKS), prepare, WORKER_MIN_BYTES) as prepared:
        next(prepared)
        assert workers[0] is not None
        assert os.getpgid(workers[0].process.pid) != os.getpgrp()
