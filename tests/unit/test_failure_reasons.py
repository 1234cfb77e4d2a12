"""Which errors fail the file in hand (it moves to failed/ with its report) and which leave
it to be taken up again (the database or server unreachable): pipeline._failure_reason."""

from __future__ import annotations

import sqlite3

import sqlalchemy as sa

from syncd.errors import FileFailed
from syncd.pipeline import _failure_reason


def test_a_file_failure_says_its_own_reason() -> None:
    assert _failure_reason(FileFailed("empty file")) == "empty file"


def test_memory_run_out_fails_the_file_alone() -> None:
    reason = _failure_reason(MemoryError())
    assert reason is not None and reason.startswith("ran out of memory reading it")


def test_a_database_refusal_of_the_files_rows_fails_the_file_naming_it() -> None:
    refused = sa.exc.IntegrityError("INSERT …", {}, sqlite3.IntegrityError("UNIQUE failed: x"))
    reason = _failure_reason(refused)
    assert reason is not None
    assert reason.startswith("the database refused it: UNIQUE failed: x; nothing of it applied")


def test_an_unreachable_database_leaves_the_file_to_be_taken_up_again() -> None:
    lost = sa.exc.OperationalError("SELECT 1", {}, sqlite3.OperationalError("disk I/O error"))
    assert _failure_reason(lost) is None
    assert _failure_reason(ConnectionResetError()) is None
