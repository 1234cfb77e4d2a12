"""The column reader's next block prepared in a second process while this one writes.

A district's first load spends about as long turning its blocks of lines into columns
(syncd.core.columns: pure Python, one core) as handing them to the database driver (the
same core). With a second core free, a worker process prepares block n+1 while this one
writes block n (docs/benchmarks.md has the figures).

The worker is a plain `python -m syncd.column_worker` child that reads pickles on its stdin
and answers on its stdout: none of multiprocessing's machinery (its resource tracker, its
re-import of `__main__`, its feeder threads competing for this process's GIL). Whatever
goes wrong with it (it cannot start, it dies, a block fails in it) costs speed only: that
block and the rest are prepared here, as without a worker, so a block that fails raises
here what it always raised.
"""

from __future__ import annotations

import copyreg
import os
import pickle
import select
import signal
import site
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, TypeVar

from syncd.cores import usable_cores

__all__ = ["WORKER_MIN_BYTES", "prepared_ahead"]

T = TypeVar("T")

# A smaller file is prepared here: the worker's start (a Python process, ≈ 0.1 s of the
# other core, and the first block's wait for it) would not be won back.
WORKER_MIN_BYTES = 16 * 1024 * 1024


def _read_only(items: dict[Any, Any]) -> MappingProxyType[Any, Any]:
    return MappingProxyType(items)


# Settings hold read-only mappings (syncd.core.validate.Columns); they travel as dicts.
copyreg.pickle(MappingProxyType, lambda proxy: (_read_only, (dict(proxy),)))

_LENGTH = 8  # bytes of the length before each message


@contextmanager
def prepared_ahead(
    blocks: Iterable[bytes], prepare: Callable[[bytes], T], size: int
) -> Iterator[Iterator[tuple[bytes, T]]]:
    """Yield an iterator of (block, prepare(block)) for `blocks`, in order.

    For a file of `size` bytes ≥ WORKER_MIN_BYTES on a machine with a second core, a worker
    process runs `prepare` (which must pickle) one block ahead of the caller: while the
    caller works on a block's result, the next block is being prepared. The worker is gone
    when the block ends.
    """
    worth_it = size >= WORKER_MIN_BYTES and usable_cores() > 1 and not getattr(sys, "frozen", False)
    worker = _Worker.start(prepare) if worth_it else None
    try:
        if worker is None:
            yield ((block, prepare(block)) for block in blocks)
        else:
            yield _ahead(iter(blocks), prepare, worker)
    finally:
        if worker is not None:
            worker.stop()


def _ahead(
    blocks: Iterator[bytes], prepare: Callable[[bytes], T], worker: _Worker
) -> Iterator[tuple[bytes, T]]:
    current = next(blocks, None)
    if current is None:
        return
    result = prepare(current)  # here, while the worker starts
    for following in blocks:
        # The worker waits for a block whenever one is sent (its last answer was read), so
        # neither side can block the other on a full pipe.
        sent = worker.send(following)
        yield current, result
        current = following
        answer = worker.receive() if sent else None
        result = answer[0] if answer is not None else prepare(current)
    yield current, result


def _site_folders() -> set[str]:
    folders = [*site.getsitepackages(), site.getusersitepackages()]
    return {str(Path(folder).resolve()) for folder in folders}


class _Worker:
    """The child process; `alive` turns False for good at its first failure.

    The pipes are non-blocking on this side, and no wait for the worker lasts longer than
    PATIENCE: a worker that hangs (stopped, starved) is given up, not waited for forever.
    """

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self.alive = True
        assert process.stdin is not None and process.stdout is not None
        self._requests, self._answers = process.stdin.fileno(), process.stdout.fileno()
        os.set_blocking(self._requests, False)
        os.set_blocking(self._answers, False)

    @classmethod
    def start(cls, prepare: Callable[[bytes], Any]) -> _Worker | None:
        try:
            settings = pickle.dumps(prepare, pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError):
            return None  # a test's stand-in for the reader, say
        environment = dict(os.environ)
        # The child imports the syncd this process runs, wherever it came from; an installed
        # one is found as it is (site-packages on PYTHONPATH would come before the stdlib).
        package_root = str(Path(__file__).resolve().parent.parent)
        if package_root not in _site_folders():
            path = environment.get("PYTHONPATH")
            environment["PYTHONPATH"] = package_root + (os.pathsep + path if path else "")
        try:
            process = subprocess.Popen(
                [sys.executable, "-P", "-m", "syncd.column_worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,  # whatever happens there, the block is done here
                env=environment,
                bufsize=0,
                # Its own process group: a terminal's Ctrl-C reaches this process only,
                # which decides, even before the worker has started ignoring it.
                process_group=0,
            )
        except OSError:
            return None
        worker = cls(process)
        if worker.send(settings):
            return worker
        worker.stop()
        return None

    def send(self, data: bytes) -> bool:
        """Send a block (or the settings); return False if the worker is gone."""
        if self.alive:
            try:
                _write_all(self._requests, len(data).to_bytes(_LENGTH, "little") + data)
            except (OSError, TimeoutError):  # a broken pipe (it died), or it hangs
                self.alive = False
        return self.alive

    def receive(self) -> tuple[Any] | None:
        """Return (result,) for the block sent last, or None if the worker did not give it
        (then it is not asked again)."""
        if not self.alive:
            return None
        try:
            length = int.from_bytes(_read_exactly(self._answers, _LENGTH), "little")
            answer = pickle.loads(_read_exactly(self._answers, length))  # noqa: S301 - our child
        except (OSError, TimeoutError, EOFError, pickle.UnpicklingError, ValueError):
            answer = None
        if not isinstance(answer, tuple) or len(answer) != 1:
            self.alive = False  # it died, or the block failed there: done here from now on
            return None
        return answer

    def stop(self) -> None:
        self.alive = False
        self.process.kill()  # it holds nothing but a block: no need to let it finish
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                with suppress(OSError):
                    stream.close()
        self.process.wait()


# How long the worker may keep this process waiting for its answer or for room in the pipe
# (a block takes it a few hundredths of a second).
PATIENCE = 30.0


def _wait_for(fd: int, event: int, deadline: float) -> None:
    """Wait until `fd` is ready for `event` (or closed), at the latest until `deadline`."""
    poller = select.poll()  # not select(): a daemon's descriptors may number over 1,024
    poller.register(fd, event)
    if not poller.poll(max(0, int((deadline - time.monotonic()) * 1000))):
        raise TimeoutError


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    deadline = time.monotonic() + PATIENCE
    while view:
        _wait_for(fd, select.POLLOUT, deadline)
        with suppress(BlockingIOError):
            view = view[os.write(fd, view) :]


def _read_exactly(fd: int, count: int) -> bytes:
    """Return the next `count` bytes; EOFError when the worker is gone first."""
    parts, wanted = [], count
    deadline = time.monotonic() + PATIENCE
    while wanted:
        _wait_for(fd, select.POLLIN, deadline)
        try:
            part = os.read(fd, min(wanted, 1 << 20))
        except BlockingIOError:
            continue
        if not part:
            raise EOFError
        parts.append(part)
        wanted -= len(part)
    return b"".join(parts)


def _write_message(stream: IO[bytes], data: bytes) -> None:
    stream.write(len(data).to_bytes(_LENGTH, "little"))
    stream.write(data)
    stream.flush()


def _read_message(stream: IO[bytes]) -> bytes | None:
    """Return the next message, or None at the end of the stream."""
    head = stream.read(_LENGTH)
    if len(head) < _LENGTH:
        return None
    length = int.from_bytes(head, "little")
    data = stream.read(length)
    return data if len(data) == length else None


def _serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    """The worker: read the settings (the pickled `prepare`), then answer each block with
    (prepare(block),), or with () when it fails (the parent prepares it again itself)."""
    # The readers' error handlers (the cp1252 fallback) are registered when they load.
    import syncd.formats.detect  # noqa: F401

    settings = _read_message(requests)
    if settings is None:
        return
    prepare = pickle.loads(settings)  # noqa: S301 - from our parent
    while (block := _read_message(requests)) is not None:
        try:
            answer: tuple[Any, ...] = (prepare(block),)
        except Exception:  # noqa: BLE001 - the parent raises it with its own traceback
            answer = ()
        _write_message(answers, pickle.dumps(answer, pickle.HIGHEST_PROTOCOL))


if __name__ == "__main__":
    # Ctrl-C reaches the whole process group, and systemd's SIGTERM the whole unit: the
    # parent decides (a stopping daemon finishes the file in hand) and stops this one. When
    # the parent is gone, its end of the pipes closes and this one ends too.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        _serve(sys.stdin.buffer, sys.stdout.buffer)
    except BaseException:  # noqa: BLE001 - a broken pipe when the parent stops: just go
        os._exit(1)
