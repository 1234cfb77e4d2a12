"""A person importing a large file sees a progress line on stderr; logs and pipes never do."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path


def big_students(path: Path, rows: int = 12_000) -> Path:
    lines = ["SyncID,First name,Last name,Grade"]
    lines += [f"S{number},First{number},Last{number},{number % 12}" for number in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_import(tmp_path: Path, stderr: int) -> subprocess.CompletedProcess[bytes]:
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "db.sqlite"}"\n')
    students = big_students(tmp_path / "students.csv")
    return subprocess.run(
        [sys.executable, "-m", "syncd", "--config", str(config), "import", str(students)],
        stdout=subprocess.PIPE,
        stderr=stderr,
        timeout=120,
        check=False,
    )


def test_progress_line_on_a_terminal(tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    try:
        done = run_import(tmp_path, follower)
        os.close(follower)
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(leader)
    assert done.returncode == 0
    assert b"students.csv: 10,000 rows read" in seen


def test_no_progress_line_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    done = run_import(tmp_path, subprocess.PIPE)
    assert done.returncode == 0
    assert b"rows read" not in done.stderr
