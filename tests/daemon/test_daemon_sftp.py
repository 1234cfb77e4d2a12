"""`syncd run` against a real sshd that goes away: the daemon keeps running, says so
(`source.error` with `retry_in`), and picks the files up once the server is back."""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from pathlib import Path

from tests.daemon.test_daemon_process import STUDENTS, drop, events, running, wait_for
from tests.integration.sshd import Sshd
from tests.integration.sshd import sshd as sshd  # noqa: F401 - the fixture


def write_config(root: Path, sshd: Sshd, source: str) -> Path:
    """A config with one SFTP source, district-a, on `sshd` (its other keys in `source`)."""
    config = root / "config.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{root / "syncd.db"}"\n'
        f'[audit]\npath = "{root / "audit.jsonl"}"\n' + sshd.source_toml("district-a") + source
    )
    return config


def test_daemon_survives_server_going_away_and_coming_back(sshd: Sshd, tmp_path: Path) -> None:
    config = write_config(tmp_path, sshd, 'poll = "1s"\nmin_age = "0s"\n')
    sshd.stop()
    with running(config) as process:
        assert wait_for(lambda: bool(events(tmp_path, "source.error")), timeout=20)
        error = events(tmp_path, "source.error")[0]
        assert error["source"] == "district-a" and error["retry_in"].endswith("s")
        assert process.poll() is None  # still running
        drop(sshd.upload / "students.csv", STUDENTS)
        sshd.start()
        assert wait_for(lambda: bool(events(tmp_path, "file.applied")), timeout=30)
        assert wait_for(lambda: bool(events(tmp_path, "source.recovered")), timeout=10)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert len(events(tmp_path, "file.received")) == 1
    assert list((sshd.upload / "reports").iterdir())


def test_cron_only_sftp_source_is_retried_with_backoff(sshd: Sshd, tmp_path: Path) -> None:
    config = write_config(tmp_path, sshd, 'cron = "0 2 * * *"\nmin_age = "0s"\n')
    sshd.stop()
    with running(config) as process:
        assert wait_for(lambda: bool(events(tmp_path, "source.error")), timeout=20)
        first = events(tmp_path, "source.error")[0]
        assert first["retry_in"] == "5s"
        # The retry it announces happens, though the next cron run is hours away.
        assert wait_for(lambda: len(events(tmp_path, "source.error")) >= 2, timeout=20)
        sshd.start()
        assert wait_for(lambda: bool(events(tmp_path, "source.recovered")), timeout=30)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        # The journal (stderr) has the outage's start and end, not every retry.
        assert process.stderr is not None
        journal = process.stderr.read().decode().splitlines()
    assert len(journal) == 2, journal
    assert journal[0].startswith('syncd: source "district-a": ')
    assert journal[0].endswith("(retrying, first in 5s)")
    assert journal[1] == 'syncd: source "district-a": reachable again'


def test_sigterm_while_a_server_never_answers_still_exits_0(sshd: Sshd, tmp_path: Path) -> None:
    # The pass in hand ends in source.error and asks for a retry while the daemon stops:
    # APScheduler's shutdown holds its job store lock while it waits for that pass, so
    # the daemon must wait for its passes first (it hung for ever).
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(5)
    accepted: list[socket.socket] = []

    def accept_and_say_nothing() -> None:
        with contextlib.suppress(OSError):  # the test closes the socket at its end
            while True:
                accepted.append(silent.accept()[0])

    threading.Thread(target=accept_and_say_nothing, daemon=True).start()
    try:
        source = sshd.source_toml("district-a").replace(
            f":{sshd.port}/", f":{silent.getsockname()[1]}/"
        )
        config = tmp_path / "config.toml"
        config.write_text(
            f'[database]\nurl = "sqlite:///{tmp_path / "syncd.db"}"\n'
            f'[audit]\npath = "{tmp_path / "audit.jsonl"}"\n{source}poll = "60s"\n'
        )
        with running(config) as process:
            assert wait_for(lambda: bool(accepted), timeout=20)  # the pass is connecting
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=60) == 0
        names = [event["event"] for event in events(tmp_path)]
        assert "source.error" in names and names[-1] == "daemon.stopped"
    finally:
        silent.close()
        for connection in accepted:
            connection.close()
