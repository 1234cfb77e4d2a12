"""How many cores this process may run on: the work syncd spreads (argon2, the column
worker) is sized by it."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """Return the cores this process may run on: its CPU affinity (systemd's CPUAffinity=,
    taskset), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
