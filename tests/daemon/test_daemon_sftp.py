"""`syncd run` against a real sshd that goes away: the daemon keeps running, says so
(`source.error` with `retry_in`), and picks the files up once the server is back."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tests.daemon.test_daemon_process import STUDENTS, events, wait_for
from tests.integration.sshd import Sshd
from tests.integration.sshd import sshd as sshd  # noqa: F401 - the fixture


def test_daemon_survives_server_going_away_and_coming_back(sshd: Sshd, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        "[database]\n"
        f'url = "sqlite:///{tmp_path / "syncd.db"}"\n'
        "[audit]\n"
        f'path = "{tmp_path / "audit.jsonl"}"\n'
        + sshd.source_toml("district-a")
        + 'poll = "1s"\nmin_age = "0s"\n'
    )
    sshd.stop()
    process = subprocess.Popen(
        [sys.executable, "-m", "syncd", "--config", str(config), "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert wait_for(lambda: bool(events(tmp_path, "source.error")), timeout=20)
        error = events(tmp_path, "source.error")[0]
        assert error["source"] == "district-a" and error["retry_in"].endswith("s")
        assert process.poll() is None  # still running
        (sshd.upload / "students.csv").write_text(STUDENTS)
        sshd.start()
        assert wait_for(lambda: bool(events(tmp_path, "file.applied")), timeout=30)
        assert wait_for(lambda: bool(events(tmp_path, "source.recovered")), timeout=10)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert len(events(tmp_path, "file.received")) == 1
    assert list((sshd.upload / "reports").iterdir())


def test_cron_only_sftp_source_is_retried_with_backoff(sshd: Sshd, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        "[database]\n"
        f'url = "sqlite:///{tmp_path / "syncd.db"}"\n'
        "[audit]\n"
        f'path = "{tmp_path / "audit.jsonl"}"\n'
        + sshd.source_toml("district-a")
        + 'cron = "0 2 * * *"\nmin_age = "0s"\n'
    )
    sshd.stop()
    process = subprocess.Popen(
        [sys.executable, "-m", "syncd", "--config", str(config), "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert wait_for(lambda: bool(events(tmp_path, "source.error")), timeout=20)
        first = events(tmp_path, "source.error")[0]
        assert first["retry_in"] == "5s"
        # The retry it announces happens, though the next cron run is hours away.
        assert wait_for(lambda: len(events(tmp_path, "source.error")) >= 2, timeout=20)
        sshd.start()
        assert wait_for(lambda: bool(events(tmp_path, "source.recovered")), timeout=30)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
