"""`syncd run` as a real process: files dropped while it runs are applied; SIGHUP reloads the
configuration (a new source starts being watched); SIGTERM stops it cleanly with exit 0."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

STUDENTS = "SyncID,First name,Last name\nS1,Lena,Müller\nS2,Zoë,Martin\n"


def write_config(root: Path, sources: list[str], poll: str = "60s", make: bool = True) -> Path:
    """Write a config of local sources on root/NAME, the folders made unless `make` is
    false (syncd never makes a drop folder)."""
    lines = [
        "[database]",
        f'url = "sqlite:///{root / "syncd.db"}"',
        "[audit]",
        f'path = "{root / "audit.jsonl"}"',
    ]
    for name in sources:
        if make:
            (root / name).mkdir(exist_ok=True)
        lines += ["[[sources]]", f'name = "{name}"', f'url = "file:{name}"', f'poll = "{poll}"',
                  'min_age = "0s"']  # fmt: skip
    path = root / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def drop(path: Path, text: str) -> None:
    """Put a file into a drop folder whole, as an SIS job should: these tests' min_age is
    0 s, so a file written in place can be taken while still empty ("empty file")."""
    temp = path.with_name(f".{path.name}.tmp")  # a name pickup never takes
    temp.write_text(text)
    os.rename(temp, path)


def events(root: Path, name: str | None = None) -> list[dict[str, object]]:
    path = root / "audit.jsonl"
    if not path.exists():
        return []
    # The daemon may be appending a block of lines right now: a read can end inside its
    # last line, which a tailing reader takes only when its newline has arrived.
    text = path.read_text()
    complete = text[: text.rfind("\n") + 1]
    found = [json.loads(line) for line in complete.splitlines() if line.strip()]
    return [e for e in found if name is None or e["event"] == name]


@contextmanager
def running(config: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """Run `syncd --config CONFIG run ARGS` as a process; kill it if the test leaves it up."""
    process = subprocess.Popen(
        [sys.executable, "-m", "syncd", "--config", str(config), "run", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    config = write_config(tmp_path, ["district-a"])
    with running(config) as process:
        assert wait_for(lambda: bool(events(tmp_path, "daemon.started"))), process.stderr
        yield process, tmp_path


def test_file_dropped_while_running_is_applied_at_once(
    daemon: tuple[subprocess.Popen[bytes], Path],
) -> None:
    process, root = daemon
    drop(root / "district-a" / "students.csv", STUDENTS)
    # poll is 60 s: only the file event can make this quick.
    assert wait_for(lambda: bool(events(root, "file.applied")), timeout=10)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    assert [e["event"] for e in events(root)][-1] == "daemon.stopped"


def test_an_upload_under_way_does_not_make_a_poll_of_each_write(
    daemon: tuple[subprocess.Popen[bytes], Path],
) -> None:
    # An SFTP upload is thousands of writes under a temporary name: each was a poll (and a
    # preview of any file waiting for it). Its rename into place is what starts the work.
    process, root = daemon
    assert wait_for(lambda: bool(events(root, "source.polled")))
    before = len(events(root, "source.polled"))
    part = root / "district-a" / "students.csv.part"
    rows = "".join(f"S{n},Ann,Lee{n}\n" for n in range(3, 2000))
    with part.open("w") as upload:
        upload.write("SyncID,First name,Last name\n")
        for start in range(0, len(rows), 400):
            upload.write(rows[start : start + 400])
            upload.flush()
            os.fsync(upload.fileno())
            time.sleep(0.005)
    time.sleep(1)
    assert len(events(root, "source.polled")) - before <= 2
    os.rename(part, part.with_name("students.csv"))
    assert wait_for(lambda: bool(events(root, "file.applied")), timeout=10)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0


def test_a_drop_folder_replaced_while_running_is_watched_again(
    daemon: tuple[subprocess.Popen[bytes], Path],
) -> None:
    process, root = daemon
    assert wait_for(lambda: bool(events(root, "source.polled")))
    folder = root / "district-a"
    folder.rename(root / "district-a.old")  # an operator swaps the folder, as a deploy may
    folder.mkdir()
    time.sleep(0.5)
    drop(folder / "students.csv", STUDENTS)
    # poll is 60 s: only watching the new folder makes this quick.
    assert wait_for(lambda: bool(events(root, "file.applied")), timeout=12)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0


@pytest.mark.parametrize("when", ["gone while running", "missing at start"])
def test_a_drop_folder_not_there_is_a_source_error_never_made(tmp_path: Path, when: str) -> None:
    # A mount that dropped, or a mistyped path: a folder made anew would take uploads that
    # nobody sees, or be polled, empty and healthy-looking, while the SIS uploads elsewhere.
    # The operator sees source.error (and a line in the journal), source.recovered once back.
    gone = when == "gone while running"
    config = write_config(tmp_path, ["district-a"], poll="1s", make=gone)
    folder = tmp_path / "district-a"
    with running(config) as process:
        if gone:
            assert wait_for(lambda: bool(events(tmp_path, "source.polled")))
            shutil.rmtree(folder)
        assert wait_for(lambda: bool(events(tmp_path, "source.error")), timeout=10)
        [error] = events(tmp_path, "source.error")[:1]
        said = "is gone" if gone else "does not exist"
        assert "drop folder" in str(error["error"]) and said in str(error["error"])
        time.sleep(1.5)
        assert not folder.exists()
        folder.mkdir()
        drop(folder / "students.csv", STUDENTS)
        assert wait_for(lambda: bool(events(tmp_path, "file.applied")), timeout=15)
        # Said once the pass is done, after the file's own events.
        assert wait_for(lambda: bool(events(tmp_path, "source.recovered")), timeout=10)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        assert process.stderr is not None
        journal = process.stderr.read().decode()
    assert f"drop folder {folder} {said}" in journal


def test_daemon_started_comes_before_the_first_poll_events(tmp_path: Path) -> None:
    config = write_config(tmp_path, [f"district-{letter}" for letter in "abcdef"])
    for letter in "abcdef":
        (tmp_path / f"district-{letter}" / "students.csv").write_text(STUDENTS)
    with running(config) as process:
        assert wait_for(lambda: len(events(tmp_path, "file.applied")) == 6)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    names = [e["event"] for e in events(tmp_path)]
    assert names[0] == "daemon.started" and names[-1] == "daemon.stopped"


def test_sighup_that_changes_the_database_is_refused_saying_restart(
    daemon: tuple[subprocess.Popen[bytes], Path],
) -> None:
    # The engine and its locks stay: taking the new file while applying to the old
    # database would tell the operator one thing and do another.
    process, root = daemon
    config = root / "config.toml"
    config.write_text(config.read_text().replace("syncd.db", "other.db"))
    process.send_signal(signal.SIGHUP)
    assert wait_for(lambda: bool(events(root, "config.reloaded")))
    [reloaded] = events(root, "config.reloaded")
    assert reloaded["level"] == "error"
    assert "[database] url changed" in str(reloaded["error"])
    assert "restart syncd" in str(reloaded["error"])
    drop(root / "district-a" / "students.csv", STUDENTS)
    assert wait_for(lambda: bool(events(root, "file.applied")))
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    assert not (root / "other.db").exists()


def test_sighup_reloads_config_and_watches_the_new_source(
    daemon: tuple[subprocess.Popen[bytes], Path],
) -> None:
    process, root = daemon
    write_config(root, ["district-a", "district-b"])
    process.send_signal(signal.SIGHUP)
    assert wait_for(lambda: bool(events(root, "config.reloaded")))
    (root / "district-b").mkdir(exist_ok=True)
    drop(root / "district-b" / "pupils.csv", STUDENTS)
    assert wait_for(
        lambda: any(e.get("source") == "district-b" for e in events(root, "file.applied"))
    )
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0


def test_sighup_taking_out_a_source_releases_it_once_its_file_in_hand_is_done(
    tmp_path: Path,
) -> None:
    # source.released tells the operator the source may be pointed elsewhere: not while
    # this daemon still applies its file. A source that stays is not run twice meanwhile.
    config = write_config(tmp_path, ["district-a", "district-b"])
    rows = "".join(f"S{n},Ann,Lee{n}\n" for n in range(150_000))
    with running(config) as process:
        assert wait_for(lambda: len(events(tmp_path, "source.polled")) >= 2)
        drop(tmp_path / "district-a" / "students.csv", "SyncID,First name,Last name\n" + rows)
        assert wait_for(lambda: bool(events(tmp_path, "file.received")))
        write_config(tmp_path, ["district-b"])
        process.send_signal(signal.SIGHUP)
        assert wait_for(lambda: bool(events(tmp_path, "config.reloaded")), timeout=60)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    order = [
        (e["event"], e.get("source"))
        for e in events(tmp_path)
        if e["event"] in ("file.applied", "source.released", "config.reloaded")
    ]
    assert order[:3] == [
        ("file.applied", "district-a"),
        ("source.released", "district-a"),
        ("config.reloaded", None),
    ]


def test_sighup_with_a_broken_config_still_reopens_the_rotated_audit_log(
    daemon: tuple[subprocess.Popen[bytes], Path],
) -> None:
    process, root = daemon
    config = root / "config.toml"
    good = config.read_text()
    (root / "audit.jsonl").rename(root / "audit.jsonl.1")  # logrotate
    config.write_text(good + "bogus = 1\n")
    process.send_signal(signal.SIGHUP)
    # The reload is refused, but the log is reopened: the refusal is in the new file.
    assert wait_for(lambda: bool(events(root, "config.reloaded")))
    refused = events(root, "config.reloaded")[0]
    assert refused["level"] == "error" and "bogus" in str(refused["error"])
    # An audit path that cannot be opened refuses the reload too; the daemon keeps running
    # on the old configuration and its old log.
    (root / "logs").mkdir()
    config.write_text(good.replace(str(root / "audit.jsonl"), str(root / "logs")))
    process.send_signal(signal.SIGHUP)
    assert wait_for(lambda: len(events(root, "config.reloaded")) == 2)
    refused = events(root, "config.reloaded")[1]
    assert refused["level"] == "error" and "audit.path" in str(refused["error"])
    assert process.poll() is None
    drop(root / "district-a" / "students.csv", STUDENTS)
    assert wait_for(lambda: bool(events(root, "file.applied")), timeout=10)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    assert [e["event"] for e in events(root)][-1] == "daemon.stopped"
    # Each refusal is a line on stderr too (the journal under systemd).
    assert process.stderr is not None
    refusals = [
        line
        for line in process.stderr.read().decode().splitlines()
        if line.startswith("syncd: reload refused, the old configuration stays: ")
    ]
    assert len(refusals) == 2


@pytest.mark.parametrize(
    "schedule",
    # A minute's poll; or a nightly cron only, whose one-off first poll is gone once it ran.
    ['poll = "60s"', 'cron = "0 2 * * *"'],
)
def test_a_young_file_is_looked_at_again_once_min_age_old_not_at_the_next_run(
    tmp_path: Path, schedule: str
) -> None:
    config = write_config(tmp_path, ["district-a"])
    text = config.read_text().replace('poll = "60s"', schedule)
    config.write_text(text.replace('min_age = "0s"', 'min_age = "2s"'))
    with running(config) as process:
        assert wait_for(lambda: bool(events(tmp_path, "source.polled")))
        drop(tmp_path / "district-a" / "students.csv", STUDENTS)
        # The file event's pass finds it younger than min_age; it is looked at again then,
        # not at the next poll or the next night's cron.
        assert wait_for(lambda: bool(events(tmp_path, "file.applied")), timeout=15)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0


def test_sigterm_during_apply_leaves_database_and_file_consistent(
    daemon: tuple[subprocess.Popen[bytes], Path],
) -> None:
    process, root = daemon
    rows = "".join(f"S{i},First{i},Last{i}\n" for i in range(60_000))
    staging = root / "staging.csv"
    staging.write_text("SyncID,First name,Last name\n" + rows)
    os.rename(staging, root / "district-a" / "students.csv")
    assert wait_for(lambda: bool(events(root, "file.received")))
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    outcome = subprocess.run(
        [sys.executable, "-m", "syncd", "--config", str(root / "config.toml"), "files", "--json"],
        capture_output=True, check=True,
    )  # fmt: skip
    ledger = json.loads(outcome.stdout)
    drop = root / "district-a"
    archived = list((drop / "archive").rglob("students.csv"))
    in_processing = (drop / "processing" / "students.csv").exists()
    # Either the file was finished (applied and archived) or it was rolled back and is
    # still in processing/ for the next start; never half.
    if ledger and ledger[0]["status"] == "applied":
        assert archived and not in_processing
        assert ledger[0]["counts"]["created"] == 60_000
    else:
        assert in_processing and not archived
        persons = subprocess.run(
            [sys.executable, "-m", "syncd", "--config", str(root / "config.toml"),
             "export", "persons", "--json"],
            capture_output=True, check=True,
        )  # fmt: skip
        assert json.loads(persons.stdout) == []


def test_sigterm_while_passwords_are_hashed_rolls_the_file_back_at_once(tmp_path: Path) -> None:
    # argon2 takes hours for a district's first parents file: systemd's stop must not wait
    # for it (and then kill -9 it, which three times over would fail a good file). Rolled
    # back, the file waits in processing/ for the next start, which counts no take-up.
    config, folder = _hashing_pass(tmp_path)
    for _ in range(3):  # each would be a take-up, were it counted
        with running(config) as process:
            assert wait_for(lambda: len(events(tmp_path, "file.received")) >= 2, timeout=30)
            time.sleep(2)  # hashing
            stopping, asked_at = time.monotonic(), datetime.now(UTC)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
            assert time.monotonic() - stopping < 10  # 2,000 hashes take minutes
        # The pass ended after the SIGTERM: it was hashing the parents file then.
        last_pass = events(tmp_path, "source.polled")[-1]
        assert datetime.fromisoformat(str(last_pass["ts"])) > asked_at
        assert (folder / "processing" / "parents.csv").is_file()
        assert not events(tmp_path, "file.failed")
        assert [e["event"] for e in events(tmp_path)][-1] == "daemon.stopped"
    config.write_text(config.read_text().replace('passwords = "hash"', 'passwords = "drop"'))
    with running(config, "--once") as process:
        assert process.wait(timeout=60) == 0
    assert [e["name"] for e in events(tmp_path, "file.applied")] == ["students.csv", "parents.csv"]


def test_files_dropped_while_a_file_is_processed_are_all_applied_once(
    daemon: tuple[subprocess.Popen[bytes], Path],
) -> None:
    process, root = daemon
    drop = root / "district-a"
    big = "SyncID,First name,Last name\n" + "".join(f"B{i},F{i},L{i}\n" for i in range(30_000))
    (root / "big.tmp").write_text(big)
    os.rename(root / "big.tmp", drop / "students-big.csv")
    assert wait_for(lambda: bool(events(root, "file.received")))
    for number in range(5):  # events arrive while the big file is being applied
        (root / f"s{number}.tmp").write_text(f"SyncID,First name,Last name\nX{number},A,B\n")
        os.rename(root / f"s{number}.tmp", drop / f"pupils-{number}.csv")

    def finished() -> list[str]:
        return [e["name"] for e in events(root) if e["event"] in ("file.applied", "file.held")]

    assert wait_for(lambda: len(finished()) == 6, timeout=60)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    # Each small full file would deactivate the big one's students, so it is held: what
    # matters here is that every file was taken exactly once.
    assert sorted(finished()) == sorted(
        ["students-big.csv"] + [f"pupils-{n}.csv" for n in range(5)]
    )
    assert len(events(root, "file.received")) == 6


def test_metrics_and_health_are_served_when_configured(tmp_path: Path) -> None:
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = write_config(tmp_path, ["district-a"])
    config.write_text(config.read_text() + f'[metrics]\nlisten = "127.0.0.1:{port}"\n')
    with running(config) as process:
        (tmp_path / "district-a").mkdir(exist_ok=True)
        drop(tmp_path / "district-a" / "students.csv", STUDENTS)
        assert wait_for(
            lambda: bool(events(tmp_path, "source.polled") and events(tmp_path, "file.applied"))
        )

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
                return str(reply.read().decode())

        assert wait_for(
            lambda: 'syncd_files_total{source="district-a",status="applied"} 1.0' in scrape()
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as reply:
            assert reply.status == 200 and json.loads(reply.read())["status"] == "ok"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0


def test_a_metrics_port_in_use_exits_3_which_systemd_restarts(tmp_path: Path) -> None:
    # Often the old daemon still stopping: exit 2 (a configuration error) would leave the
    # unit down for good (RestartPreventExitStatus=2).
    import socket

    config = write_config(tmp_path, ["district-a"])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config.write_text(config.read_text() + f'[metrics]\nlisten = "127.0.0.1:{port}"\n')
        done = subprocess.run(
            [sys.executable, "-m", "syncd", "--config", str(config), "run"],
            capture_output=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 3
    assert done.stderr.decode().strip() == (
        f"syncd: metrics.listen 127.0.0.1:{port}: cannot listen (Address already in use)"
    )


def test_sigterm_during_run_once_exits_0_leaving_the_files_for_the_next_pass(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, ["district-a"])
    config.write_text(config.read_text().replace('min_age = "0s"', 'min_age = "120s"'))
    drop = tmp_path / "district-a"
    (drop / "students.csv").write_text(STUDENTS)  # young: the pass waits min_age for it
    with running(config, "--once") as process:
        assert wait_for(lambda: (drop / "processing").is_dir())  # the pass is under way
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0  # at once, not after min_age
    assert not events(tmp_path, "file.applied")
    config.write_text(config.read_text().replace('min_age = "120s"', 'min_age = "0s"'))
    # The next pass takes up what the stopped one left.
    again = subprocess.run(
        [sys.executable, "-m", "syncd", "--config", str(config), "run", "--once"],
        capture_output=True,
        timeout=60,
    )
    assert again.returncode == 0, again.stderr
    assert len(events(tmp_path, "file.applied")) == 1


def _hashing_pass(tmp_path: Path) -> tuple[Path, Path]:
    """A config whose source holds students and 2,000 parents with passwords to hash (real
    argon2: minutes), and its drop folder."""
    config = write_config(tmp_path, ["district-a"])
    config.write_text(config.read_text() + 'passwords = "hash"\n')
    folder = tmp_path / "district-a"
    drop(folder / "students.csv", STUDENTS)
    rows = "".join(f"P{n},Ann,Lee{n},Pass-{n}-word,S1\n" for n in range(2000))
    drop(folder / "parents.csv", "SyncID,First name,Last name,Password,ChildID\n" + rows)
    return config, folder


@pytest.mark.parametrize("asked", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_stopped_run_once_says_which_files_wait_for_the_next_pass(
    tmp_path: Path, asked: signal.Signals
) -> None:
    # A cron job's mail must say why its parents file was not applied: exit 0 (SPEC §3.4),
    # one line on stderr, and the pass's source.polled counts the file as waiting. Ctrl-C
    # at a terminal stops the pass as SIGTERM does.
    config, folder = _hashing_pass(tmp_path)
    with running(config, "--once") as process:
        assert wait_for(lambda: len(events(tmp_path, "file.received")) >= 2, timeout=30)
        time.sleep(1)  # hashing
        process.send_signal(asked)
        assert process.wait(timeout=30) == 0
        stderr = process.stderr.read().decode()  # type: ignore[union-attr]
    name = "SIGTERM" if asked is signal.SIGTERM else "Ctrl-C"
    assert stderr.splitlines() == [
        f'syncd: source "district-a": stopped ({name}): 1 file waits in processing/ for the '
        "next pass"
    ]
    assert (folder / "processing" / "parents.csv").is_file()
    [polled] = events(tmp_path, "source.polled")
    assert polled["waiting"] == 1
    assert not events(tmp_path, "file.failed")


def test_a_second_signal_stops_run_once_at_once_in_one_line(tmp_path: Path) -> None:
    config, folder = _hashing_pass(tmp_path)
    with running(config, "--once") as process:
        assert wait_for(lambda: len(events(tmp_path, "file.received")) >= 2, timeout=30)
        process.send_signal(signal.SIGINT)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 130
        stderr = process.stderr.read().decode()  # type: ignore[union-attr]
    assert stderr.splitlines() == [
        "syncd: stopped at once (SIGTERM after Ctrl-C): what was not committed is rolled back"
    ]
    assert (folder / "processing" / "parents.csv").is_file()
    assert all(event["name"] != "parents.csv" for event in events(tmp_path, "file.applied"))


def _hashing(process: subprocess.Popen[bytes]) -> bool:
    """Whether the process hashes passwords now: a `run --once` has no thread but its
    main one until its argon2 pool starts."""
    return len(os.listdir(f"/proc/{process.pid}/task")) >= 2


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc")
def test_stops_at_once_do_not_count_as_deaths_against_the_file(tmp_path: Path) -> None:
    # A file syncd dies with three times is failed (out of memory, say); a person who
    # pressed Ctrl-C twice did not kill it, and the file waits for the next pass each time.
    config, folder = _hashing_pass(tmp_path)
    for _ in range(4):
        with running(config, "--once") as process:
            assert wait_for(lambda process=process: _hashing(process), timeout=30)
            process.send_signal(signal.SIGINT)
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 130
        assert (folder / "processing" / "parents.csv").is_file()
    config.write_text(config.read_text().replace('passwords = "hash"', 'passwords = "drop"'))
    with running(config, "--once") as process:
        assert process.wait(timeout=60) == 0
    assert not events(tmp_path, "file.failed")
    assert [e["name"] for e in events(tmp_path, "file.applied")] == ["students.csv", "parents.csv"]


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _health(port: int) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (urllib.error.URLError, ConnectionError):
        return 0  # not listening (yet)


def test_a_database_outage_fails_health_and_is_said_once_in_the_journal(
    tmp_path: Path, postgres_url: str
) -> None:
    # The database gone for a while (a restart, the network): every poll fails, as a
    # source's outage does (/healthz 503, a source.error a retry), and the journal says
    # its start and its end once each, not a line per retry.
    import re

    import sqlalchemy as sa

    from tests.conftest import PG_URL

    port = _free_port()
    config = write_config(tmp_path, ["district-a"], poll="1s")
    pattern = r'url = "sqlite:///[^"]*"'
    text = re.sub(pattern, f'url = "{postgres_url}"', config.read_text(), count=1)
    config.write_text(text + f'[metrics]\nlisten = "127.0.0.1:{port}"\n')
    schema = re.search(r"syncd_test_[0-9a-f]+", postgres_url)
    assert schema is not None
    admin = sa.create_engine(PG_URL)
    away = f'ALTER SCHEMA "{schema[0]}" RENAME TO "{schema[0]}_away"'
    back = f'ALTER SCHEMA "{schema[0]}_away" RENAME TO "{schema[0]}"'
    try:
        with running(config) as process:
            assert wait_for(lambda: len(events(tmp_path, "source.polled")) >= 1)
            assert _health(port) == 200
            with admin.begin() as connection:
                connection.execute(sa.text(away))
            try:
                assert wait_for(lambda: len(events(tmp_path, "source.error")) >= 3)
                assert _health(port) == 503
            finally:
                with admin.begin() as connection:
                    connection.execute(sa.text(back))
            assert wait_for(lambda: bool(events(tmp_path, "source.recovered")))
            assert _health(port) == 200
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=20)
    finally:
        admin.dispose()
    lines = stderr.decode().splitlines()
    [outage] = [line for line in lines if "database error" in line]
    assert outage.startswith('syncd: source "district-a": database error: ')
    assert outage.endswith("(retrying, first in 1s)") and "\\n" not in outage
    assert lines.count('syncd: source "district-a": reachable again') == 1
    error = events(tmp_path, "source.error")[0]["error"]
    assert isinstance(error, str) and error.startswith('source "district-a": database error: ')


def test_a_failing_source_taken_out_by_a_reload_leaves_health_and_metrics(
    tmp_path: Path,
) -> None:
    port = _free_port()
    config = write_config(tmp_path, ["district-a"], poll="1s")
    base = config.read_text()
    gone = '[[sources]]\nname = "gone"\nurl = "file:nowhere"\npoll = "1s"\n'
    metrics = f'[metrics]\nlisten = "127.0.0.1:{port}"\n'
    config.write_text(base + gone + metrics)
    with running(config) as process:
        assert wait_for(lambda: _health(port) == 503)  # "gone": no such folder
        config.write_text(base + metrics)
        process.send_signal(signal.SIGHUP)
        assert wait_for(lambda: _health(port) == 200)
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            scraped = reply.read().decode()
        assert 'source="gone"' not in scraped
        assert 'syncd_source_up{source="district-a"} 1.0' in scraped
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0


def test_a_full_disk_under_the_audit_log_fails_polls_until_there_is_room(
    tmp_path: Path,
) -> None:
    # The daemon works on, its polls failed (/healthz 503, one journal line naming the log)
    # while its log cannot be written, and takes the file up once there is room again.
    from tests.cli.mounts import fill, mounted_tmpfs

    port = _free_port()
    with mounted_tmpfs(tmp_path / "logs", "64k") as logs:
        config = write_config(tmp_path, ["district-a"], poll="1s")
        text = config.read_text().replace(str(tmp_path / "audit.jsonl"), str(logs / "audit.jsonl"))
        config.write_text(text + f'[metrics]\nlisten = "127.0.0.1:{port}"\n')
        with running(config) as process:
            # Started, and polled once: a daemon whose log is full at its start exits 3.
            assert wait_for(lambda: bool(events(logs, "source.polled")))
            assert _health(port) == 200
            filler = fill(logs)
            drop(tmp_path / "district-a" / "students.csv", STUDENTS)
            assert wait_for(lambda: _health(port) == 503), process.communicate(timeout=20)
            filler.unlink()
            assert wait_for(lambda: _health(port) == 200)
            assert wait_for(lambda: bool(events(logs, "file.applied")))
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=20)
    said = [line for line in stderr.decode().splitlines() if "audit log" in line]
    assert said == [
        f'syncd: source "district-a": audit log {logs / "audit.jsonl"} cannot be written: '
        "No space left on device (retrying, first in 1s)"
    ]
