"""A source's poll and cron jobs are two APScheduler jobs (each limited to one instance):
they must never run one source at once (SPEC §3.4: a slow run is never started twice)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import ClassVar

import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from syncd.cli import App
from syncd.daemon import Daemon, SourceRunner
from syncd.locks import AdvisoryLock
from syncd.pickup import PassResult

STUDENTS = "SyncID,First name,Last name\nS1,Lena,Müller\n"


def _app(root: Path, database_url: str | None = None) -> App:
    (root / "drop").mkdir()
    config = root / "config.toml"
    database_url = database_url or f"sqlite:///{root / 'syncd.db'}"
    config.write_text(
        f'[database]\nurl = "{database_url}"\n'
        f'[audit]\npath = "{root / "audit.jsonl"}"\n'
        '[[sources]]\nname = "a"\nurl = "file:drop"\npoll = "60s"\ncron = "0 2 * * *"\n'
        'min_age = "0s"\n',
        encoding="utf-8",
    )
    return App(config_option=str(config), debug=False)


def test_a_job_arriving_while_its_source_runs_leaves_it_a_rescan(tmp_path: Path) -> None:
    app = _app(tmp_path)
    daemon = Daemon(app, None)
    [config] = app.config.sources
    runner = daemon.runners["a"] = SourceRunner(app, config)
    (tmp_path / "drop" / "students.csv").write_text(STUDENTS, encoding="utf-8")
    with runner.running:  # the poll job's pass is in hand
        daemon._job("a")  # the cron job fires meanwhile
        assert runner.rescan.is_set()
        assert not (tmp_path / "drop" / "archive").exists()  # it did not run the source
    daemon._job("a")
    assert list((tmp_path / "drop" / "archive").rglob("students.csv"))
    assert not runner.running.locked()
    app.close()


def _leader(app: App) -> tuple[Daemon, SourceRunner]:
    """A daemon leading the app's one source on its PostgreSQL lock (source.acquired said)."""
    daemon = Daemon(app, None)
    [config] = app.config.sources
    runner = SourceRunner(app, config)
    runner.lock = AdvisoryLock(app.engine, config.name)
    with capture_logs() as logged:
        assert daemon._lead(runner)
    assert [e["event"] for e in logged] == ["source.acquired"]
    return daemon, runner


def test_a_leader_whose_lock_session_is_lost_says_it_released_the_source(
    tmp_path: Path, postgres_url: str
) -> None:
    app = _app(tmp_path, postgres_url)
    daemon, runner = _leader(app)
    other = sa.create_engine(postgres_url)
    try:
        with other.connect() as connection:
            # The database drops the leader's session; another daemon takes the lock.
            connection.execute(
                sa.text("SELECT pg_terminate_backend(:pid)"),
                {"pid": runner.lock.connection.connection.driver_connection.info.backend_pid},
            )
            # pg_terminate_backend only signals it: the lock is free once the backend is gone.
            deadline = time.monotonic() + 10
            while not connection.execute(
                sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": runner.lock.key}
            ).scalar_one():
                assert time.monotonic() < deadline, "the terminated session kept the lock"
                time.sleep(0.05)
            with capture_logs() as logged:
                assert not daemon._lead(runner)
            assert [(e["event"], e["log_level"]) for e in logged] == [
                ("source.released", "warning")
            ]
            connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": runner.lock.key})
    finally:
        other.dispose()
        app.close()


class _Proxy:
    """A loopback TCP relay to PostgreSQL that can be cut (a network gone, a database
    down): every relayed connection closed, new ones refused."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            self.sockets += [client, server]
            for one, other in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(one, other), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        with suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        with suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        with suppress(OSError):  # wakes the accept (a close alone leaves it accepting)
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for one in self.sockets:
            with suppress(OSError):
                one.shutdown(socket.SHUT_RDWR)
            one.close()


@contextmanager
def _through_proxy(postgres_url: str) -> Iterator[tuple[str, _Proxy]]:
    url = sa.engine.make_url(postgres_url)
    proxy = _Proxy(url.host or "127.0.0.1", url.port or 5432)
    try:
        yield url.set(host="127.0.0.1", port=proxy.port).render_as_string(False), proxy
    finally:
        proxy.cut()


def test_a_leader_that_cannot_reach_the_database_says_it_lost_the_source(
    tmp_path: Path, postgres_url: str
) -> None:
    # The lock's session is lost with the network: another daemon can take the source, so
    # the trail says this one let it go (it only said source.error, for ever).
    with _through_proxy(postgres_url) as (url, proxy):
        app = _app(tmp_path, url)
        daemon, runner = _leader(app)
        proxy.cut()
        with capture_logs() as logged, pytest.raises(sa.exc.OperationalError):
            daemon._lead(runner)
        assert [(e["event"], e["log_level"]) for e in logged] == [("source.released", "warning")]
        assert not runner.lock.leading
        app.close()


def test_a_file_waiting_for_an_earlier_kind_is_said_once_while_it_waits(tmp_path: Path) -> None:
    # The daemon polls every few seconds; an alert on file.waiting must not fire at each.
    app = _app(tmp_path)
    [config] = app.config.sources
    runner = SourceRunner(app, config)
    drop = tmp_path / "drop"
    (drop / "students.csv.part").write_text(STUDENTS, encoding="utf-8")  # still uploading
    (drop / "parents.csv").write_text("SyncID,First name,Last name,ChildID\nP1,A,B,S1\n")

    def waiting() -> list[str]:
        lines = (tmp_path / "audit.jsonl").read_text(encoding="utf-8").splitlines()
        return [json.loads(line)["name"] for line in lines if '"file.waiting"' in line]

    for _ in range(3):
        assert runner.poll(False).waiting == 1
    assert waiting() == ["parents.csv"]
    # The upload ends: the parents file applies after the students file.
    (drop / "students.csv.part").rename(drop / "students.csv")
    runner.poll(False)
    assert list((drop / "archive").rglob("parents.csv"))
    # A new parents file waiting later is said again.
    (drop / "students-2.csv.part").write_text(STUDENTS, encoding="utf-8")
    (drop / "parents-2.csv").write_text("SyncID,First name,Last name,ChildID\nP2,A,B,S1\n")
    runner.poll(False)
    runner.poll(False)
    assert waiting() == ["parents.csv", "parents-2.csv"]
    app.close()


def _two_sources(root: Path, database_url: str) -> App:
    config = root / "config.toml"
    sources = "".join(
        f'[[sources]]\nname = "{name}"\nurl = "file:{name}"\nmin_age = "0s"\n' for name in "ab"
    )
    for name in "ab":
        (root / name).mkdir()
    config.write_text(
        f'[database]\nurl = "{database_url}"\n[audit]\npath = "{root / "audit.jsonl"}"\n' + sources,
        encoding="utf-8",
    )
    return App(config_option=str(config), debug=False)


class _TimedRunner(SourceRunner):
    """A runner that notes when each of its passes began and ended (spans[name])."""

    spans: ClassVar[dict[str, list[float]]] = {}

    def poll(self, wait_for_young: bool) -> PassResult:
        self.spans[self.config.name] = [time.monotonic()]
        try:
            return super().poll(wait_for_young)
        finally:
            self.spans[self.config.name].append(time.monotonic())


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_on_sqlite_one_sources_pass_waits_for_anothers_big_file(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    # SQLite has one writer, held for a file's whole transaction: a second source's pass
    # beside it would wait 30 s and fail ("database is locked"), paging for a healthy source.
    sqlite = backend == "sqlite"
    url = (
        f"sqlite:///{tmp_path / 'syncd.db'}" if sqlite else request.getfixturevalue("postgres_url")
    )
    app = _two_sources(tmp_path, url)
    daemon = Daemon(app, None)
    spans = _TimedRunner.spans
    spans.clear()
    for config in app.config.sources:
        daemon.runners[config.name] = _TimedRunner(app, config)
    rows = "".join(f"S{n},Ann,Lee{n}\n" for n in range(60_000))
    (tmp_path / "a" / "students.csv").write_text("SyncID,First name,Last name\n" + rows)
    first = threading.Thread(target=daemon._job, args=["a"])
    first.start()
    assert _until(lambda: "a" in spans)
    second = threading.Thread(target=daemon._job, args=["b"])
    second.start()
    first.join(60)
    second.join(60)
    assert list((tmp_path / "a" / "archive").rglob("students.csv"))
    a_ended, b_began = spans["a"][1], spans["b"][0]
    assert (b_began >= a_ended) is sqlite  # on PostgreSQL the two run side by side
    app.close()


def _until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True
