"""One active worker per source (SPEC §3.4): the lock a process holds while it works a
source's folder, so that no other daemon or `run --once` takes a file it has in hand.

Its claim (the rename into processing/, recorded in the ledger first) keeps two processes
off a new file, but a file already in processing/ is a crash's leftover only when nobody
holds the source: whoever takes the lock may take up those its database's ledger claimed.
On PostgreSQL the lock is a session advisory lock, on SQLite (one host) an flock on a file
beside the database; either ends with its holder. A local folder is also locked for each
pass (`folder_pass`), whatever the database: a second configuration naming the folder
with another database is told so (source.error), rather than quietly applying part of the
folder's files to another roster.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine


class SourceLock(Protocol):
    @property
    def leading(self) -> bool:
        """Whether this process holds the lock (as far as it last knew)."""

    def acquire(self) -> bool:
        """Return whether this process holds the lock now (taking it if free)."""

    def release(self) -> None: ...


def source_lock(engine: Engine, source: str) -> SourceLock | None:
    """Return the lock of `source` for the database `engine` reaches; None where only this
    process can reach that database (an in-memory SQLite)."""
    if engine.dialect.name == "postgresql":
        return AdvisoryLock(engine, source)
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        return FileLock(Path(database).resolve(), source)
    return None


def _key(source: str) -> bytes:
    return hashlib.sha256(f"syncd:{source}".encode()).digest()


class AdvisoryLock:
    """A PostgreSQL session advisory lock, held on a dedicated connection while leading;
    when its holder dies its session ends and another process's next poll takes over."""

    def __init__(self, engine: Engine, source: str) -> None:
        self.engine = engine
        self.source = source
        self.key = int.from_bytes(_key(source)[:8], "big", signed=True)
        self.connection: sa.Connection | None = None

    @property
    def leading(self) -> bool:
        return self.connection is not None

    def acquire(self) -> bool:
        if self.connection is not None:
            try:
                self.connection.execute(sa.text("SELECT 1"))
                return True
            except sa.exc.DBAPIError:
                self._drop()
        connection = self.engine.connect()
        got = connection.execute(
            sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key}
        ).scalar_one()
        connection.commit()
        if not got:
            connection.close()
            return False
        self.connection = connection
        return True

    def release(self) -> None:
        if self.connection is None:
            return
        try:
            self.connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
            self.connection.commit()
        except sa.exc.DBAPIError:
            pass
        self._drop()

    def _drop(self) -> None:
        if self.connection is not None:
            with contextlib.suppress(sa.exc.DBAPIError):
                self.connection.close()
        self.connection = None


class FileLock:
    """An exclusive flock on `DATABASE.SOURCEHASH.lock` beside a SQLite database (its
    processes share this host). The file says which process holds it, for an operator."""

    def __init__(self, database: Path, source: str) -> None:
        self.source = source
        self.path = database.with_name(f"{database.name}.{_key(source)[:6].hex()}.lock")
        self._fd: int | None = None

    @property
    def leading(self) -> bool:
        return self._fd is not None

    def acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f'pid {os.getpid()} works source "{self.source}"\n'.encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor releases the flock
            self._fd = None


@contextlib.contextmanager
def folder_pass(folder: Path) -> Iterator[bool]:
    """Hold an flock on the folder itself for a pass (no file of syncd's left in it);
    yield whether it was taken (False: another process works the folder)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing the only descriptor releases the flock


class RunMark:
    """Marks a `syncd import` run alive while it works, so that its ledger entries left
    `processing` can later be told apart: a run that holds its mark is still at work, one
    that does not was killed (kill -9, a power cut) before it finished them. On PostgreSQL
    the mark is an advisory lock; on SQLite one byte of `DATABASE.runs.lock`, locked with
    fcntl (POSIX record locks end with their process, and one file serves every run)."""

    def __init__(self, engine: Engine, run_id: str) -> None:
        self._lock: SourceLock | None = None
        self._fd: int | None = None
        database = engine.url.database
        if engine.dialect.name == "postgresql":
            self._lock = AdvisoryLock(engine, f"run {run_id}")
            self.path: Path | None = None
        elif engine.dialect.name == "sqlite" and database and database != ":memory:":
            resolved = Path(database).resolve()
            self.path = resolved.with_name(f"{resolved.name}.runs.lock")
        else:
            self.path = None
        self.offset = int.from_bytes(_key(f"run {run_id}")[:5], "big")

    def acquire(self) -> bool:
        """Take the mark; False if a live process holds it."""
        if self._lock is not None:
            return self._lock.acquire()
        if self.path is None:
            return True
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:  # a folder this account may not write: no mark, so never "dead"
            return False
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, self.offset)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
        if self._fd is not None:
            # Closing any descriptor of the file ends all of this process's record locks on
            # it: a process holds one mark at most, and tests others' only before taking it.
            os.close(self._fd)
            self._fd = None

    def alive(self) -> bool:
        """Whether the run that made this mark still holds it (False: it ended or died);
        True where no other process can reach the database (nothing to tell)."""
        if self._lock is None and self.path is None:
            return True
        if not self.acquire():
            return True
        self.release()
        return False


@contextlib.contextmanager
def run_marked(engine: Engine, run_id: str) -> Iterator[None]:
    """Hold the run's mark (RunMark) within the block."""
    mark = RunMark(engine, run_id)
    mark.acquire()
    try:
        yield
    finally:
        mark.release()
