"""SPEC §3.4: several daemons on one database — one works a source, the others stand by,
and one of them takes over when the holder dies; a `run --once` beside a daemon leaves the
daemon's source (and the file it has in processing/) alone."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon.test_daemon_process import STUDENTS, _free_port, drop, events, wait_for


def start(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "syncd", "--config", str(config), "run"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _leader_and_standby(homes: list[Path]) -> tuple[int, int]:
    """Wait until exactly one daemon took the source; return (its index, the other's)."""

    def leaders() -> list[int]:
        return [i for i, home in enumerate(homes) if events(home, "source.acquired")]

    assert wait_for(lambda: len(leaders()) == 1)
    leader = leaders()[0]
    return leader, 1 - leader


@pytest.fixture
def two_daemons(
    tmp_path: Path, database_url: str
) -> Iterator[tuple[list[subprocess.Popen[bytes]], list[Path], Path]]:
    folder = tmp_path / "drop"
    folder.mkdir()
    homes = [tmp_path / "a", tmp_path / "b"]
    processes = []
    for home in homes:
        home.mkdir()
        (home / "config.toml").write_text(
            f'[database]\nurl = "{database_url}"\n[audit]\npath = "{home / "audit.jsonl"}"\n'
            f'[[sources]]\nname = "district-a"\nurl = "file://{folder}"\npoll = "1s"\n'
            f'min_age = "0s"\n[metrics]\nlisten = "127.0.0.1:{_free_port()}"\n'
        )
    for home in homes:
        processes.append(start(home / "config.toml"))
        assert wait_for(lambda home=home: bool(events(home, "daemon.started")))
    yield processes, homes, folder
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_one_daemon_leads_a_source_and_another_takes_over(
    two_daemons: tuple[list[subprocess.Popen[bytes]], list[Path], Path],
) -> None:
    processes, homes, folder = two_daemons

    leader, other = _leader_and_standby(homes)
    drop(folder / "students.csv", STUDENTS)
    assert wait_for(lambda: bool(events(homes[leader], "file.applied")))
    assert not events(homes[other], "file.received")

    processes[leader].kill()  # dies without releasing: its session ends, the lock with it
    processes[leader].wait()
    assert wait_for(lambda: bool(events(homes[other], "source.acquired")), timeout=20)
    drop(folder / "pupils.csv", STUDENTS.replace("S1", "S9"))
    assert wait_for(
        lambda: bool(events(homes[other], "file.applied") or events(homes[other], "file.held")),
        timeout=20,
    )
    processes[other].send_signal(signal.SIGTERM)
    assert processes[other].wait(timeout=20) == 0
    assert events(homes[other], "source.released")
    # Its journal said once why it polled nothing while it stood by.
    journal = processes[other].stderr.read().decode()  # type: ignore[union-attr]
    assert journal.splitlines() == [
        'syncd: source "district-a": another syncd process works it; standing by to take over'
    ]


def _leading(home: Path) -> str | None:
    """The daemon's syncd_source_leading of district-a, as /metrics serves it."""
    import re
    import urllib.request

    port = re.search(r'listen = "127.0.0.1:(\d+)"', (home / "config.toml").read_text())
    assert port is not None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port[1]}/metrics", timeout=5) as reply:
            scraped = reply.read().decode()
    except OSError:
        return None  # not listening (yet, or any more)
    found = re.search(r'^syncd_source_leading\{source="district-a"\} (\S+)$', scraped, re.M)
    return found[1] if found else None


def test_metrics_tell_the_daemon_that_works_a_source_from_the_one_standing_by(
    two_daemons: tuple[list[subprocess.Popen[bytes]], list[Path], Path],
) -> None:
    # An operator alerts when no daemon works a source (the sum over daemons is 0), and
    # sees which one stands by.
    processes, homes, _ = two_daemons
    leader, other = _leader_and_standby(homes)
    assert wait_for(lambda: _leading(homes[leader]) == "1.0")
    assert wait_for(lambda: _leading(homes[other]) == "0.0")
    processes[leader].kill()
    processes[leader].wait()
    assert wait_for(lambda: _leading(homes[other]) == "1.0", timeout=20)


def test_a_reload_keeps_the_lock_of_a_source_the_leader_still_works(
    two_daemons: tuple[list[subprocess.Popen[bytes]], list[Path], Path],
) -> None:
    processes, homes, folder = two_daemons

    leader, other = _leader_and_standby(homes)
    processes[leader].send_signal(signal.SIGHUP)
    assert wait_for(lambda: bool(events(homes[leader], "config.reloaded")))
    # The next polls go on under the same lock: no gap for the standby to take over.
    drop(folder / "students.csv", STUDENTS)
    assert wait_for(lambda: bool(events(homes[leader], "file.applied")))
    assert not events(homes[leader], "source.released")
    assert len(events(homes[leader], "source.acquired")) == 1
    assert not events(homes[other], "source.acquired")


def test_run_once_leaves_a_source_a_daemon_works_alone(
    two_daemons: tuple[list[subprocess.Popen[bytes]], list[Path], Path],
) -> None:
    _, homes, folder = two_daemons
    leader, other = _leader_and_standby(homes)
    drop(folder / "students.csv", STUDENTS)
    once = subprocess.run(
        [sys.executable, "-m", "syncd", "--config", str(homes[other] / "config.toml"), "run",
         "--once"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert once.returncode == 0, once.stderr
    assert 'source "district-a": another syncd process is working it; skipped' in once.stderr
    assert wait_for(lambda: bool(events(homes[leader], "file.applied")))
    assert not events(homes[other], "file.received")
    assert len(list((folder / "reports").glob("students.csv*.report.json"))) == 1
