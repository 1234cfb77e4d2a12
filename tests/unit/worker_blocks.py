"""What a test's worker process runs (tests/unit/test_column_worker.py): plain functions of a
block, importable by the worker, that tell which process ran them."""

from __future__ import annotations

import os


def where(parent: int, block: bytes) -> tuple[bytes, bool]:
    """The block, and whether a process other than `parent` prepared it."""
    return block.upper(), os.getpid() != parent


def dies_at(parent: int, fatal: bytes, block: bytes) -> tuple[bytes, bool]:
    """As `where`, but a worker given `fatal` dies on the spot."""
    if block == fatal and os.getpid() != parent:
        os._exit(9)
    return where(parent, block)


def refuses(bad: bytes, block: bytes) -> bytes:
    if block == bad:
        raise ValueError(f"cannot read {block!r} in process {os.getpid()}")
    return block
