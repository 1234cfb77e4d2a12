"""Real small file systems for tests of full disks and read-only mounts (root only)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def mounted_tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A real small file system at `folder` (root only: skipped elsewhere, saying why)."""
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path, size: int = 1 << 20) -> Path:
    """Write up to `size` bytes into folder/filler (as many as fit: a full disk); return it."""
    filler = folder / "filler"
    with contextlib.suppress(OSError), filler.open("wb") as handle:
        handle.write(b"x" * size)
    return filler
