"""Ctrl-C during `syncd import`: the file being applied fails whole (its report says so), no
later file starts, and nothing is left half done or unreported (SPEC §2.5, §5)."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROWS = 400_000


def _write(path: Path, header: str, line: str) -> Path:
    with path.open("w") as out:
        out.write(header + "\n")
        out.writelines(line.format(n=number) + "\n" for number in range(ROWS))
    return path


def _received(database: Path) -> bool:
    """Whether the import has read its first file's digest (its ledger entry has a size)."""
    if not database.exists():
        return False
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
            return connection.execute("SELECT 1 FROM files WHERE size IS NOT NULL").fetchone()
    except sqlite3.Error:
        return False


def test_ctrl_c_fails_the_file_being_applied_whole_and_starts_no_other(tmp_path: Path) -> None:
    database = tmp_path / "syncd.db"
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{database}"\n')
    students = _write(tmp_path / "students.csv", "SyncID,First name,Last name", "S{n},F{n},L{n}")
    parents = _write(
        tmp_path / "parents.csv", "SyncID,First name,Last name,ChildID", "P{n},A,B,S{n}"
    )
    command = [sys.executable, "-m", "syncd", "--config", str(config), "import"]
    process = subprocess.Popen(
        [*command, str(students), str(parents)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 60
    while not _received(database) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    errors = stderr.decode()
    assert process.returncode == 1, errors
    assert "Traceback" not in errors
    assert "syncd: students.csv: failed: interrupted (Ctrl-C): nothing of it applied" in errors
    assert "syncd: interrupted: not started: parents.csv" in errors
    report = json.loads((tmp_path / "students.csv.report.json").read_text())
    assert (report["status"], report["reason"]) == (
        "failed",
        "interrupted (Ctrl-C): nothing of it applied",
    )
    assert not (tmp_path / "parents.csv.report.json").exists()
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT count(*) FROM persons").fetchone() == (0,)
        assert connection.execute("SELECT name, status FROM files").fetchall() == [
            ("students.csv", "failed")
        ]
