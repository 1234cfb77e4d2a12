"""Signals that ask a command to stop at its next safe point (`syncd import`, `syncd run
--once`), and a second one that stops it at once."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class StoppedAtOnce(BaseException):  # noqa: N818 - a stop, like KeyboardInterrupt
    """A second signal: stop at once, saying so in one line (exit 130).

    Not a KeyboardInterrupt, which click answers with a bare newline on stderr."""


# The signals that ask to stop at the next safe point, and how messages name them: Ctrl-C,
# a `kill` or systemd's stop, the terminal closing under the command.
STOP_SIGNALS = {
    signal.SIGINT: "Ctrl-C",
    signal.SIGTERM: "SIGTERM",
    signal.SIGHUP: "SIGHUP: its terminal closed",
}


@contextmanager
def stop_on_signals() -> Iterator[Callable[[], str | None]]:
    """Within the block, Ctrl-C (SIGINT), SIGTERM or SIGHUP asks to stop at the next safe
    point rather than at once; a second signal stops at once (StoppedAtOnce). Yields "which
    signal asked, if any?". A signal the process was started ignoring (nohup, a background
    job's Ctrl-C) stays ignored."""
    asked: str | None = None

    def ask(signum: int, _frame: object) -> None:
        nonlocal asked
        if asked is not None:
            raise StoppedAtOnce(f"{STOP_SIGNALS[signal.Signals(signum)]} after {asked}")
        asked = STOP_SIGNALS[signal.Signals(signum)]

    previous = {
        number: signal.signal(number, ask)
        for number in STOP_SIGNALS
        if signal.getsignal(number) is not signal.SIG_IGN
    }
    try:
        yield lambda: asked
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
