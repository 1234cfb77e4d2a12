"""Ctrl-C, SIGTERM or a closed terminal during `syncd import`: the file being applied fails
whole (its report says so), no later file starts, and nothing is left half done or
unreported (SPEC §2.5, §5). An import killed outright (kill -9) leaves its entry
`processing` only until the next import or pickup pass fails it."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from syncd.locks import RunMark

ROWS = 400_000


def _write(path: Path, header: str, line: str) -> Path:
    with path.open("w") as out:
        out.write(header + "\n")
        out.writelines(line.format(n=number) + "\n" for number in range(ROWS))
    return path


def _entries(url: str) -> list[tuple[int, str, str | None]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            query = sa.text("SELECT id, status, reason FROM files ORDER BY id")
            return [tuple(row) for row in connection.execute(query)]  # type: ignore[misc]
    except sa.exc.DBAPIError:  # the schema not made yet
        return []
    finally:
        engine.dispose()


def _started(url: str) -> bool:
    """Whether the import has read its file's digest (its ledger entry has a size)."""
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return False  # not made here: syncd makes it
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            query = sa.text("SELECT 1 FROM files WHERE size IS NOT NULL")
            return connection.execute(query).first() is not None
    except sa.exc.DBAPIError:
        return False
    finally:
        engine.dispose()


def _signals_as_from_a_terminal() -> None:
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, signal.SIG_DFL)


@pytest.mark.parametrize(
    ("signum", "said"),
    [
        (signal.SIGINT, "Ctrl-C"),
        (signal.SIGTERM, "SIGTERM"),
        (signal.SIGHUP, "SIGHUP: its terminal closed"),
    ],
)
def test_a_stop_signal_fails_the_file_being_applied_whole_and_starts_no_other(
    tmp_path: Path, signum: signal.Signals, said: str
) -> None:
    database = tmp_path / "syncd.db"
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{database}"\n')
    students = _write(tmp_path / "students.csv", "SyncID,First name,Last name", "S{n},F{n},L{n}")
    parents = _write(
        tmp_path / "parents.csv", "SyncID,First name,Last name,ChildID", "P{n},A,B,S{n}"
    )
    command = [sys.executable, "-m", "syncd", "--config", str(config), "import"]
    process = subprocess.Popen(
        [*command, str(students), str(parents)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # As from a terminal: under nohup the tests inherit SIGHUP ignored, and syncd keeps
        # an ignored signal ignored (so the import would rightly finish).
        preexec_fn=_signals_as_from_a_terminal,
    )
    deadline = time.monotonic() + 60
    while (
        not _started(f"sqlite:///{database}")
        and process.poll() is None
        and time.monotonic() < deadline
    ):
        time.sleep(0.01)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    errors = stderr.decode()
    assert process.returncode == 1, errors
    assert "Traceback" not in errors
    assert f"syncd: students.csv: failed: interrupted ({said}): nothing of it applied" in errors
    assert "syncd: interrupted: not started: parents.csv" in errors
    report = json.loads((tmp_path / "students.csv.report.json").read_text())
    assert (report["status"], report["reason"]) == (
        "failed",
        f"interrupted ({said}): nothing of it applied",
    )
    assert not (tmp_path / "parents.csv.report.json").exists()
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT count(*) FROM persons").fetchone() == (0,)
        assert connection.execute("SELECT name, status FROM files").fetchall() == [
            ("students.csv", "failed")
        ]


def test_a_second_signal_stops_the_import_at_once_with_exit_130(tmp_path: Path) -> None:
    database = tmp_path / "syncd.db"
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{database}"\n')
    students = _write(tmp_path / "students.csv", "SyncID,First name,Last name", "S{n},F{n},L{n}")
    command = [sys.executable, "-m", "syncd", "--config", str(config), "import", str(students)]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=_signals_as_from_a_terminal,
    )
    deadline = time.monotonic() + 60
    while not _started(f"sqlite:///{database}") and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)  # two kinds: the same signal twice may come as one
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr.decode()
    # One line (not click's bare newline), naming both signals.
    assert stderr.decode().splitlines() == [
        "syncd: stopped at once (SIGTERM after Ctrl-C): what was not committed is rolled back"
    ]


@pytest.mark.parametrize("then", ["import", "run --once"])
def test_an_import_killed_outright_has_its_entry_failed_by_the_next_command(
    tmp_path: Path, database_url: str, then: str
) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    audit_log = tmp_path / "audit.jsonl"
    config = tmp_path / "config.toml"
    config.write_text(
        f'[database]\nurl = "{database_url}"\n[audit]\npath = "{audit_log}"\n'
        f'[[sources]]\nname = "district"\nurl = "file://{drop}"\nmin_age = "0s"\n'
    )
    students = _write(tmp_path / "students.csv", "SyncID,First name,Last name", "S{n},F{n},L{n}")
    command = [sys.executable, "-m", "syncd", "--config", str(config)]
    process = subprocess.Popen([*command, "import", str(students)])
    deadline = time.monotonic() + 60
    while not _started(database_url) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.kill()
    process.wait(timeout=30)
    assert [status for _, status, _ in _entries(database_url)] == ["processing"]

    small = tmp_path / "small.csv"
    small.write_text("SyncID,First name,Last name\nS1,Ann,Lee\n")
    if then == "import":
        after = subprocess.run([*command, "import", str(small)], capture_output=True, text=True)
    else:
        (drop / "students.csv").write_bytes(small.read_bytes())
        after = subprocess.run([*command, "run", "--once"], capture_output=True, text=True)
    assert after.returncode == 0, after.stderr
    reason = (
        "the import that read it stopped before it finished (killed?); nothing of it was "
        "applied: import it again"
    )
    assert _entries(database_url) == [(1, "failed", reason), (2, "applied", None)]
    if then == "import":
        assert f"syncd: file 1 (students.csv): failed: {reason}" in after.stderr
    failed = [
        event
        for event in map(json.loads, audit_log.read_text().splitlines())
        if event["event"] == "file.failed"
    ]
    assert [(e["file_id"], e["level"], e["reason"]) for e in failed] == [(1, "error", reason)]


def test_a_live_import_is_never_taken_for_a_killed_one(tmp_path: Path, database_url: str) -> None:
    """The mark an import holds while it works tells it from a killed one, across
    processes, on either database; it ends with its process."""
    code = (
        "import sys, time, sqlalchemy as sa\n"
        "from syncd.locks import RunMark\n"
        "mark = RunMark(sa.create_engine(sys.argv[1]), 'run-1')\n"
        "assert mark.acquire()\n"
        "print('held', flush=True)\n"
        "time.sleep(60)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, database_url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        engine = sa.create_engine(database_url)
        assert RunMark(engine, "run-1").alive()
        assert not RunMark(engine, "run-2").alive()
    finally:
        holder.kill()
        holder.wait(timeout=30)
    deadline = time.monotonic() + 10
    while RunMark(engine, "run-1").alive() and time.monotonic() < deadline:
        time.sleep(0.05)  # PostgreSQL ends the session of a dead client a moment later
    assert not RunMark(engine, "run-1").alive()
    engine.dispose()


def _ledger_value(url: str, query: str) -> Any:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text(query)).scalar()
    except sa.exc.DBAPIError:
        return None
    finally:
        engine.dispose()


def test_a_file_syncd_keeps_dying_with_is_failed_after_two_take_ups(tmp_path: Path) -> None:
    """SPEC §3.2 takes a crash's leftover up again; a file that kills its worker each time
    (out of memory) would stop its source for good: the third take-up fails it instead."""
    url = f"sqlite:///{tmp_path / 'syncd.db'}"
    drop = tmp_path / "drop"
    drop.mkdir()
    config = tmp_path / "config.toml"
    config.write_text(
        f'[database]\nurl = "{url}"\n'
        f'[[sources]]\nname = "district"\nurl = "file://{drop}"\nmin_age = "0s"\n'
    )
    _write(drop / "students.csv", "SyncID,First name,Last name", "S{n},F{n},L{n}")
    command = [sys.executable, "-m", "syncd", "--config", str(config), "run", "--once"]
    for attempts in (None, 1, 2):  # the first read, then two take-ups, each killed
        process = subprocess.Popen(command, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            if _ledger_value(url, "SELECT count(*) FROM files WHERE size IS NOT NULL") and (
                _ledger_value(url, "SELECT attempts FROM files") == attempts
            ):
                break
            time.sleep(0.01)
        process.kill()
        process.wait(timeout=30)
        assert _ledger_value(url, "SELECT status FROM files") == "processing"

    last = subprocess.run(command, capture_output=True, text=True)
    reason = (
        "syncd stopped 3 times while applying it (killed: out of memory, or a stop that timed "
        "out?); nothing of it was applied, and it is failed so that it no longer holds up its "
        "source: check it, then send it again"
    )
    assert last.returncode == 1, last.stderr
    assert reason in last.stderr
    assert _ledger_value(url, "SELECT status FROM files") == "failed"
    assert _ledger_value(url, "SELECT count(*) FROM persons") == 0
    assert [path.name for path in (drop / "failed").iterdir()] == ["students.csv"]
    report = json.loads((drop / "reports" / "students.csv.report.json").read_text())
    assert (report["status"], report["reason"]) == ("failed", reason)


def test_ctrl_c_while_passwords_are_hashed_stops_within_seconds(tmp_path: Path) -> None:
    # argon2 runs for minutes over a few thousand parents: the stop is heard between slices.
    database = tmp_path / "syncd.db"
    config = tmp_path / "config.toml"
    (tmp_path / "drop").mkdir()
    config.write_text(
        f'[database]\nurl = "sqlite:///{database}"\n'
        '[[sources]]\nname = "a"\nurl = "file:drop"\npasswords = "hash"\n'
    )
    students = tmp_path / "students.csv"
    students.write_text("SyncID,First name,Last name\nS1,Ann,Lee\n")
    parents = tmp_path / "parents.csv"
    parents.write_text(
        "SyncID,First name,Last name,Password,ChildID\n"
        + "".join(f"P{n},Ann,Lee{n},Pass-{n}-word,S1\n" for n in range(2000))
    )
    command = [sys.executable, "-m", "syncd", "--config", str(config), "import"]
    assert subprocess.run([*command, str(students)], capture_output=True).returncode == 0
    process = subprocess.Popen(
        [*command, str(parents)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=_signals_as_from_a_terminal,
    )
    deadline = time.monotonic() + 30
    while len(_entries(f"sqlite:///{database}")) < 2 and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(2)  # hashing
    stopping = time.monotonic()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert time.monotonic() - stopping < 10  # 2,000 hashes take minutes
    assert process.returncode == 1, stderr.decode()
    assert "parents.csv: failed: interrupted (Ctrl-C): nothing of it applied" in stderr.decode()
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT count(*) FROM persons").fetchone() == (1,)
