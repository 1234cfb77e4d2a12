"""`syncd run`: one pickup pass per source, or the long-running scheduler (SPEC §3.4)."""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import signal
import stat
import sys
import threading
import traceback
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import sqlalchemy as sa

from syncd import audit, reports
from syncd.config import Config, SourceConfig, cron_trigger, find_config_path, load_config
from syncd.db import store
from syncd.db.database import database_problem
from syncd.errors import (
    AuditUnwritable,
    ConfigError,
    SourceUnreachable,
    SyncdError,
    UnreachableError,
    one_line,
)
from syncd.locks import SourceLock, folder_pass, source_lock
from syncd.metrics import Metrics, serve
from syncd.pickup import PassResult, Pickup
from syncd.sources.base import Source, is_candidate_name
from syncd.sources.local import LocalSource, write_refused
from syncd.stopping import stop_on_signals

if TYPE_CHECKING:
    from syncd.cli import App

WORK_FOLDERS = ("processing", "held", "archive", "failed", "reports")
# Retry an unreachable source after 5 s, 10 s, 20 s, … but never later than its poll.
FIRST_RETRY = timedelta(seconds=5)
# The soonest a pass that left young files waiting lists them again.
MIN_RECHECK = timedelta(seconds=1)


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def open_source(config: SourceConfig, first_open: bool = True) -> Source:
    """Return the drop folder of a source; raise SourceUnreachable when it cannot be used.

    The drop folder itself must be there: a mistyped path made and polled, empty, would
    look healthy while the sender's files wait elsewhere. Its work folders are made.
    `first_open` false: the folder was there when the daemon started (a mount that
    dropped, a folder removed by mistake), which the error says."""
    if config.is_sftp:
        from syncd.sources.sftp import SftpSource

        return SftpSource(config)
    folder = config.path
    if not os.path.isdir(folder):
        if not first_open:
            raise SourceUnreachable(
                f'source "{config.name}": drop folder {folder} is gone (syncd worked it '
                "before): restore it (a mount?), or correct the path"
            )
        _check_local_folder(config)  # says whether it is missing or not a folder
    for path in _work_folders(config):
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as error:
            raise SourceUnreachable(
                f'source "{config.name}": cannot use folder {path}: {error.strerror}'
            ) from error
    if not os.access(folder, os.R_OK | os.W_OK | os.X_OK):
        raise SourceUnreachable(f'source "{config.name}": folder {folder} is not writable')
    _same_filesystem(config, config.folders.processing)
    return LocalSource(config)


@contextlib.contextmanager
def _folder_pass(config: SourceConfig) -> Iterator[bool]:
    """The pass's lock on a local source's processing folder (locks.folder_pass); none for
    SFTP (its server's folders are not this host's)."""
    if config.is_sftp:
        yield True
        return
    with folder_pass(Path(config.folders.processing)) as taken:
        yield taken


def _check_reloadable(running: Config, new: Config) -> None:
    """Raise ConfigError when `new` changes what a reload cannot: the database the daemon
    works on (its engine, its locks) and where it serves metrics (a bound socket). Said so,
    not taken silently while the old ones stay in use."""
    changed = [
        key
        for key, before, after in (
            ("[database] url", running.database_url, new.database_url),
            ("[metrics] listen", running.metrics_listen, new.metrics_listen),
        )
        if before != after
    ]
    if changed:
        raise ConfigError(
            f"{' and '.join(changed)} changed: a reload cannot change "
            f"{'them' if len(changed) > 1 else 'it'}; restart syncd (systemctl restart syncd)"
        )


# The file events that can change what a poll does: a file appeared, was renamed into
# place, or was written and closed. Not each write of an upload (an SFTP upload of a
# district's file is thousands of them: a whole poll and preview each), nor anything under an
# upload's temporary name: the poll, or the recheck once a young file is min_age old, sees
# those.
_WORK_EVENTS = frozenset({"created", "moved", "closed"})


def _may_start_work(event: Any) -> bool:
    """Return whether a watchdog event can make a poll find something new."""
    if event.event_type not in _WORK_EVENTS:
        return False
    paths = [event.src_path, event.dest_path] if event.event_type == "moved" else [event.src_path]
    return any(is_candidate_name(os.path.basename(os.fsdecode(path))) for path in paths if path)


def check_source(config: SourceConfig) -> SyncdError | None:
    """Return why a source cannot be reached (host key included), or None. Creates nothing
    (`run` makes the work folders a drop folder lacks)."""
    try:
        if config.is_sftp:
            from syncd.sources.sftp import SftpSource

            SftpSource(config, check_only=True).close()
        else:
            _check_local_folder(config)
    except SyncdError as error:
        return error
    return None


def _check_local_folder(config: SourceConfig) -> None:
    folder = Path(config.path)
    named = f'source "{config.name}": drop folder {folder}'
    if not folder.exists():
        raise SourceUnreachable(f"{named} does not exist: create it, or correct the path")
    if not folder.is_dir():
        raise SourceUnreachable(f"{named} is not a folder")
    if not os.access(folder, os.R_OK | os.W_OK | os.X_OK):
        raise SourceUnreachable(f"{named} is not writable")
    if (refused := write_refused(folder)) is not None:
        raise SourceUnreachable(f"{named} is not writable ({refused})")
    for path in _work_folders(config):
        if (problem := _unusable_folder(path)) is not None:
            raise SourceUnreachable(f'source "{config.name}": folder {path} {problem}')
    _same_filesystem(config, _nearest_existing(Path(config.folders.processing)))


def _work_folders(config: SourceConfig) -> list[str]:
    return [getattr(config.folders, name) for name in WORK_FOLDERS]


def _nearest_existing(path: Path) -> Path:
    """Return `path`, or the nearest folder above it that exists (where it would be made)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _unusable_folder(path: str) -> str | None:
    """Return why `run` could not use or make the folder `path`, or None."""
    folder = Path(path)
    if folder.exists():
        if not folder.is_dir():
            return "is not a folder"
        if not os.access(folder, os.W_OK | os.X_OK):
            return "is not writable"
        refused = write_refused(folder)
        return None if refused is None else f"is not writable ({refused})"
    parent = _nearest_existing(folder.parent)
    if not parent.is_dir():
        return f"cannot be made: {parent} is not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot be made: {parent} is not writable"
    refused = write_refused(parent)
    return None if refused is None else f"cannot be made in {parent}: {refused}"


def _same_filesystem(config: SourceConfig, processing: os.PathLike[str] | str) -> None:
    if os.stat(processing).st_dev != os.stat(config.path).st_dev:
        # A claim is an atomic rename (SPEC §3.2); across filesystems it would be a copy.
        raise ConfigError(
            f'source "{config.name}": [sources.folders] processing = '
            f'"{config.folders.processing}" must be on the same filesystem as the drop folder '
            f"{config.path}"
        )


@dataclass(slots=True)
class SourceRunner:
    """Polls one source: keeps its pickup memory and its retry state between polls."""

    app: App
    config: SourceConfig
    pickup: Pickup | None = None
    failures: int = 0
    lock: SourceLock | None = None
    should_stop: Callable[[], bool] = lambda: False
    # Set by file events; a poll that was running when they arrived polls again at once
    # (APScheduler skips a run-now while the job is still running).
    rescan: threading.Event = field(default_factory=threading.Event)
    metrics: Metrics | None = None
    # Held while a pass runs: a source's poll and cron jobs are two APScheduler jobs, each
    # limited to one instance, but they must not run the same source at once.
    running: threading.Lock = field(default_factory=threading.Lock)
    # Whether a pass opened the source once: its drop folder is then made no more.
    opened: bool = False
    # Whether a failed pass is tried again (the daemon) or not (`run --once`): said in
    # source.error's retry_in only when it is.
    retries: bool = True
    # Taken out of the configuration by a reload: the pass in hand stops after its file.
    retired: bool = False
    # Another daemon leads the source (said once on stderr until this one takes it).
    standing_by: bool = False
    # Told how long a pass waits for young files (Pickup.tell_wait).
    tell_wait: Callable[[float, list[str]], None] | None = None

    def poll(self, wait_for_young: bool) -> PassResult:
        """Run one pass; raise UnreachableError (after recording it) when the source fails."""
        config = self.config
        run_id = new_run_id()
        context = {"source": config.name, "site": config.site, "run_id": run_id}
        try:
            source = open_source(config, first_open=not self.opened)
        except UnreachableError as error:
            self._record_error(error, context)
            raise
        self.opened = True
        try:
            if self.pickup is None:
                self.pickup = Pickup(config, source, self.app.pipeline(), self.app.clock)
                self.pickup.tell_wait = self.tell_wait
            self.pickup.source = source
            with _folder_pass(config) as taken:
                if not taken:
                    raise SourceUnreachable(
                        f'source "{config.name}": another syncd process works its folder '
                        f"{config.path}: one with another database (one folder, one "
                        "configuration), or one finishing a file after it lost the source's lock"
                    )
                result = self.pickup.run_once(run_id, wait_for_young, self._stopping)
        except UnreachableError as error:
            self._record_error(error, context)
            raise
        except OSError as error:
            # The folder cannot be used as it must (a reports/ or archive/ that cannot be
            # written): as unreachable, so that the other sources are still worked and the
            # file in processing/ is taken up again once it is fixed.
            where = f": {error.filename}" if error.filename else ""
            unusable = SourceUnreachable(
                f'source "{config.name}": {error.strerror or error}{where}'
            )
            self._record_error(unusable, context)
            raise unusable from error
        finally:
            source.close()
        self._record_success(result, context)
        return result

    def _stopping(self) -> bool:
        return self.retired or self.should_stop()

    def retry_in(self) -> timedelta:
        poll = self.config.poll or timedelta(seconds=60)
        backoff: timedelta = FIRST_RETRY * (2 ** max(0, min(self.failures - 1, 10)))
        return min(poll, backoff)

    def _record_error(self, error: SyncdError, context: dict[str, Any]) -> None:
        self.failures += 1
        if self.metrics is not None:
            self.metrics.failed(self.config.name, str(error))
        with self.app.engine.begin() as connection:
            store.set_source_state(
                connection,
                self.config.name,
                self.config.site,
                last_poll=self.app.clock.now(),
                error=str(error),
            )
        retry = {"retry_in": f"{int(self.retry_in().total_seconds())}s"} if self.retries else {}
        audit.emit(audit.SOURCE_ERROR, level="error", error=str(error), **retry, **context)

    def _record_success(self, result: PassResult, context: dict[str, Any]) -> None:
        now = self.app.clock.now()
        with self.app.engine.begin() as connection:
            previous = store.source_states(connection).get(self.config.name)
            store.set_source_state(
                connection,
                self.config.name,
                self.config.site,
                last_poll=now,
                last_success=now,
                error=None,
                waiting=result.waiting,
            )
        if self.metrics is not None:
            self.metrics.polled(self.config.name, result, now.timestamp())
        if self.failures or (previous is not None and previous.error):
            audit.emit(audit.SOURCE_RECOVERED, **context)
        self.failures = 0
        audit.emit(
            audit.SOURCE_POLLED,
            applied=result.applied,
            failed=result.failed,
            held=result.held,
            duplicate=result.duplicate,
            waiting=result.waiting,
            **context,
        )


def _selected(app: App, source_name: str | None) -> list[SourceConfig]:
    if source_name is not None:
        return [app.config.source(source_name)]
    return list(app.config.sources)


def run_pass(app: App, source_name: str | None) -> int:
    """One pass over the selected sources; return the exit code (0, 1 failed/held, 3
    unreachable, 2 when a source's own settings are what failed)."""
    app.engine  # noqa: B018 - reach the database before touching any folder
    unreachable = failed = 0
    codes: set[int] = set()
    # SIGTERM (systemctl stop of a timer's run), Ctrl-C or SIGHUP as SIGTERM for the daemon:
    # the file in hand finishes or rolls back, the rest waits in processing/ for the next
    # pass, exit 0; a second signal stops at once (StoppedAtOnce: one line, exit 130).
    with stop_on_signals() as asked:

        def stopping() -> bool:
            return asked() is not None

        for config in _selected(app, source_name):
            if stopping():
                break
            lock = source_lock(app.engine, config.name)
            if lock is not None and not lock.acquire():
                # A daemon (or another pass) works it, files in processing/ included.
                click.echo(
                    f'syncd: source "{config.name}": another syncd process is working it; skipped',
                    err=True,
                )
                continue
            try:
                runner = SourceRunner(app, config, should_stop=stopping, retries=False)
                if sys.stderr.isatty():  # a person waiting at a terminal, not a cron job
                    runner.tell_wait = partial(_say_waiting, config.name)
                result = runner.poll(wait_for_young=True)
            except SyncdError as error:  # unreachable, or its own settings: the others go on
                unreachable += 1
                codes.add(error.exit_code)
                if app.debug:
                    traceback.print_exc()  # with what paramiko or the OS said underneath
                if isinstance(error, AuditUnwritable):
                    audit.take_lost()  # this line says it
                click.echo(f"syncd: {error}", err=True)
                continue
            finally:
                if lock is not None:
                    lock.release()
            failed += result.failed + result.held
            for done in result.results:
                if (line := reports.problem_line(done)) is not None:
                    click.echo(f'syncd: source "{config.name}": {line}', err=True)
            if result.stopped:
                # A cron job's mail says why its files were not applied.
                left = "1 file waits" if result.stopped == 1 else f"{result.stopped} files wait"
                click.echo(
                    f'syncd: source "{config.name}": stopped ({asked()}): {left} in '
                    "processing/ for the next pass",
                    err=True,
                )
    if unreachable:
        return min(codes)  # 2 (fix the settings) before 3 (the network)
    return 1 if failed else 0


def _pass_problem(name: str, error: Exception) -> str:
    """Return the one line that says why a pass failed other than by its source."""
    if isinstance(error, sa.exc.DBAPIError):
        return f'source "{name}": {database_problem(error)}'
    if isinstance(error, SyncdError):  # the audit log cannot be written, say
        return f'source "{name}": {one_line(str(error))}'
    text = str(error).strip().splitlines()
    return f'source "{name}": unexpected error: {text[0] if text else type(error).__name__}'


def _say_waiting(source: str, seconds: float, names: list[str]) -> None:
    shown = ", ".join(one_line(name) for name in names[:3])
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    click.echo(
        f'syncd: source "{source}": waiting {math.ceil(seconds)}s for {shown}{more} to be '
        "min_age old, unchanged",
        err=True,
    )


class Daemon:
    """The scheduler loop: signal handlers only set flags; the main thread acts on them."""

    def __init__(self, app: App, source_name: str | None) -> None:
        self.app = app
        self.source_name = source_name
        self.stop = threading.Event()
        self.reload = threading.Event()
        self.wake = threading.Event()
        self.runners: dict[str, SourceRunner] = {}
        self.scheduler: Any = None
        self.observer: Any = None
        # Per local source: its folder's watch and which folder it was (_check_watches).
        self._watches: dict[str, tuple[Any, tuple[int, int] | None]] = {}
        self._handler_for: Callable[[str], Any] = lambda name: None
        self.metrics = Metrics()
        # SQLite has one writer, and a file holds it for its whole transaction: another
        # source's pass would wait busy_timeout (30 s) behind a big file and then fail as
        # "database is locked", a source.error for a healthy source. Passes take turns.
        self._sqlite_turn = threading.Lock()

    def install_signal_handlers(self) -> None:
        def on_term(*_: object) -> None:
            self.stop.set()
            self.wake.set()

        def on_hangup(*_: object) -> None:
            self.reload.set()
            self.wake.set()

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        signal.signal(signal.SIGHUP, on_hangup)

    def run(self) -> int:
        from apscheduler.schedulers.background import BackgroundScheduler

        # Job errors are caught and audited in _job; APScheduler's own notes ("skipped:
        # maximum number of running instances") are expected, not news for stderr.
        scheduler_log = logging.getLogger("apscheduler")
        scheduler_log.addHandler(logging.NullHandler())
        scheduler_log.propagate = False

        self.app.engine  # noqa: B018 - fail fast (exit 3) when the database is unreachable
        self.install_signal_handlers()
        self.scheduler = BackgroundScheduler(
            timezone="UTC",
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
        )
        server = None
        if self.app.config.metrics_listen is not None:
            host, port = self.app.config.metrics_listen
            try:
                server = serve(self.metrics, host, port)
            except OSError as error:
                problem = f"metrics.listen {host}:{port}: cannot listen ({error.strerror})"
                if error.errno == errno.EADDRINUSE:
                    # Often for a moment (the old daemon still stopping): exit 3, which
                    # systemd restarts, not 2, a configuration error it leaves down.
                    raise UnreachableError(problem) from error
                raise ConfigError(problem) from error
        # Jobs added before start() wait for it: daemon.started is the first event of a run,
        # before any poll's (alerts and readers of the log key on it).
        self._schedule_all()
        audit.emit(audit.DAEMON_STARTED, pid=os.getpid(), sources=sorted(self.runners), run_id=None)
        self.scheduler.start()
        _notify("READY=1")
        while not self.stop.is_set():
            self.wake.wait(timeout=5.0)
            self.wake.clear()
            if self.reload.is_set() and not self.stop.is_set():
                self.reload.clear()
                self._reload()
            self._check_watches()
        _notify("STOPPING=1")
        self._stop_observer()
        # Jobs see the stop flag between files: the file in hand finishes (or rolls back).
        # Wait for them before the shutdown: APScheduler's shutdown(wait=True) holds its job
        # store lock while it waits, and a pass that ends asking for a retry (get_job) would
        # wait for that lock for ever.
        self.scheduler.pause()
        for runner in list(self.runners.values()):
            with runner.running:
                pass
        self.scheduler.shutdown(wait=True)
        for runner in self.runners.values():
            self._release(runner)
        if server is not None:
            server.shutdown()
        audit.emit(audit.DAEMON_STOPPED, pid=os.getpid())
        return 0

    # --- jobs ------------------------------------------------------------------------------

    def _job(self, name: str) -> None:
        runner = self.runners.get(name)
        if runner is None or self.stop.is_set():
            return
        if not runner.running.acquire(blocking=False):
            runner.rescan.set()  # the pass in hand lists the folder once more instead
            return
        try:
            with self._database_turn():
                if not (self.stop.is_set() or runner.retired):
                    self._run_source(name, runner)
        finally:
            runner.running.release()

    def _database_turn(self) -> contextlib.AbstractContextManager[object]:
        """One source's pass at a time on SQLite; on PostgreSQL each source runs freely."""
        if self.app.engine.dialect.name == "sqlite":
            return self._sqlite_turn
        return contextlib.nullcontext()

    def _run_source(self, name: str, runner: SourceRunner) -> None:
        try:
            if runner.lock is not None and not self._lead(runner):
                return
            failing = runner.failures > 0
            runner.rescan.clear()
            result = runner.poll(wait_for_young=False)
            if (lost := audit.take_lost()) is not None:
                raise lost  # a failed poll: the log lacks lines of the changes it made
            if failing:
                self._say(f'syncd: source "{name}": reachable again')
            while runner.rescan.is_set() and not self.stop.is_set():
                runner.rescan.clear()
                result = runner.poll(wait_for_young=False)
            if result.young and not runner.config.done_marker:
                # A file not yet min_age old is looked at again once it may be, not at the
                # next poll or cron run (an SFTP file is never old at its first listing).
                self._poll_by(name, max(runner.config.min_age, MIN_RECHECK))
        except UnreachableError as error:
            if runner.failures == 1:
                # The journal shows the start of an outage (the audit log has every retry).
                retry = int(runner.retry_in().total_seconds())
                self._say(f"syncd: {error} (retrying, first in {retry}s)")
            self._poll_at(name, runner.retry_in())
        except Exception as error:  # noqa: BLE001 - a job error must never kill the daemon
            # The database gone (a restart, the network), or a bug: a failed poll as any
            # other, for /healthz and the journal too (the start of the outage, not each retry).
            problem = _pass_problem(name, error)
            runner.failures += 1
            retry = int(runner.retry_in().total_seconds())
            self.metrics.failed(name, problem)
            if runner.failures == 1:
                self._say(f"syncd: {problem} (retrying, first in {retry}s)")
            with contextlib.suppress(AuditUnwritable):  # said above, and by /healthz
                audit.emit(
                    audit.SOURCE_ERROR,
                    level="error",
                    source=name,
                    site=runner.config.site,
                    error=problem,
                    retry_in=f"{retry}s",
                )
            self._poll_at(name, runner.retry_in())

    def _say(self, line: str) -> None:
        """One line on stderr (the journal under systemd), after the traceback of the
        exception in hand with --debug; the audit log has the event."""
        if self.app.debug and sys.exc_info()[0] is not None:
            traceback.print_exc()
        click.echo(one_line(line), err=True)

    def _lead(self, runner: SourceRunner) -> bool:
        assert runner.lock is not None
        was_leading = runner.lock.leading
        try:
            leading = runner.lock.acquire()
        except Exception:
            # The lock's session was lost and the database cannot be reached to take it
            # again: the lock is gone all the same (another daemon may take it).
            if was_leading and not runner.lock.leading:
                self.metrics.lead(runner.config.name, False)
                self._say_lock_lost(runner)
            raise
        self.metrics.lead(runner.config.name, leading)
        if leading and not was_leading:
            audit.emit(audit.SOURCE_ACQUIRED, source=runner.config.name, site=runner.config.site)
        elif was_leading and not leading:
            self._say_lock_lost(runner)
        if not leading and not runner.standing_by:
            # The journal says why this daemon's log has no source.polled for the source.
            self._say(
                f'syncd: source "{runner.config.name}": another syncd process works it; '
                "standing by to take over"
            )
        runner.standing_by = not leading
        return leading

    @staticmethod
    def _say_lock_lost(runner: SourceRunner) -> None:
        # The lock's session was lost (database restart, network): say so, as a release, so
        # that the trail shows who worked the source.
        audit.emit(
            audit.SOURCE_RELEASED,
            level="warning",
            source=runner.config.name,
            site=runner.config.site,
            reason="the lock's database session was lost",
        )

    def _release(self, runner: SourceRunner) -> None:
        if runner.lock is not None and runner.lock.leading:
            runner.lock.release()
            self.metrics.lead(runner.config.name, False)
            audit.emit(audit.SOURCE_RELEASED, source=runner.config.name, site=runner.config.site)

    def _poll_by(self, name: str, delay: timedelta) -> None:
        """Run a source's :poll job after `delay` at the latest."""
        if self.stop.is_set():
            return  # as _poll_at
        job = self.scheduler.get_job(f"{name}:poll")
        when = job.next_run_time if job is not None else None
        if when is None or when > self.app.clock.now() + delay:
            self._poll_at(name, delay)

    def _poll_at(self, name: str, delay: timedelta) -> None:
        """Run a source's :poll job after `delay` (a retry, a file event, a young file)."""
        if self.stop.is_set():
            return  # stopping: no more runs (and the scheduler's locks may be taken)
        when = self.app.clock.now() + delay
        job = self.scheduler.get_job(f"{name}:poll")
        if job is not None:
            job.modify(next_run_time=when)
            return
        if name not in self.runners:
            return
        # A cron-only source's :poll is a one-off job that APScheduler drops once it ran:
        # without a new one its retries and file events would wait for the next cron run.
        self.scheduler.add_job(
            self._job,
            "date",
            args=[name],
            id=f"{name}:poll",
            next_run_time=when,
            replace_existing=True,
        )

    def run_now(self, name: str) -> None:
        """Bring a source's next poll forward (a file event arrived)."""
        runner = self.runners.get(name)
        if runner is not None:
            runner.rescan.set()
        self._poll_at(name, timedelta(0))

    def _schedule_all(self, held: Mapping[str, SourceLock] | None = None) -> None:
        """Add a runner and its jobs for each selected source; `held`: locks kept from
        before a reload."""
        from apscheduler.triggers.interval import IntervalTrigger

        held = held or {}
        for config in _selected(self.app, self.source_name):
            runner = SourceRunner(
                self.app, config, should_stop=self.stop.is_set, metrics=self.metrics
            )
            runner.lock = held.get(config.name) or source_lock(self.app.engine, config.name)
            self.runners[config.name] = runner
            interval = config.poll or (None if config.cron else timedelta(seconds=60))
            if interval is not None:
                self.scheduler.add_job(
                    self._job,
                    IntervalTrigger(seconds=interval.total_seconds(), timezone="UTC"),
                    args=[config.name],
                    id=f"{config.name}:poll",
                    next_run_time=self.app.clock.now(),
                )
            if config.cron:
                self.scheduler.add_job(
                    self._job,
                    cron_trigger(config.cron, config.timezone),
                    args=[config.name],
                    id=f"{config.name}:cron",
                )
                if interval is None:  # "run now" and retries need a :poll job to move
                    self.scheduler.add_job(
                        self._job,
                        "date",
                        args=[config.name],
                        id=f"{config.name}:poll",
                        next_run_time=self.app.clock.now(),
                    )
        self._start_observer()

    def _unschedule_all(self, staying: Collection[str]) -> dict[str, SourceLock]:
        """Remove every job and runner; return the locks this daemon holds of the sources
        `staying` (a reload keeps leading them: releasing would let a standby daemon take
        over for a moment, and log source.released/acquired at every SIGHUP)."""
        self._stop_observer()
        for name, runner in self.runners.items():
            runner.retired = name not in staying  # its pass stops after the file in hand
        for runner in self.runners.values():
            # The pass in hand ends first (the scheduler is paused: no new one starts): a
            # new runner must not work its source beside it, and a source's lock is released
            # (source.released) only once its work is done.
            with runner.running:
                pass
        for job in self.scheduler.get_jobs():
            job.remove()
        kept: dict[str, SourceLock] = {}
        for name, runner in self.runners.items():
            if name in staying and runner.lock is not None and runner.lock.leading:
                kept[name] = runner.lock
            else:
                self._release(runner)
        self.runners.clear()
        return kept

    def _reload(self) -> None:
        try:
            config = load_config(find_config_path(self.app.config_option))
            _check_reloadable(self.app.config, config)
            # Reopens the log (logrotate) or opens a new path; one that cannot be opened
            # refuses the reload as any configuration error does, the old log kept.
            audit.open_log(config.path, config.audit_path)
        except SyncdError as error:
            # logrotate sends SIGHUP after moving the log: reopen it even when the new
            # configuration is refused, or the events go on into the rotated file.
            audit.reopen()
            audit.emit(audit.CONFIG_RELOADED, level="error", error=str(error))
            # And in the journal, where whoever ran `systemctl reload` looks first.
            click.echo(f"syncd: reload refused, the old configuration stays: {error}", err=True)
            return
        self.app._config = config  # later commands of this App see the new file
        # No new runs while the old configuration's passes end (_unschedule_all waits).
        self.scheduler.pause()
        staying = {source.name for source in _selected(self.app, self.source_name)}
        removed = set(self.runners) - staying
        held = self._unschedule_all(staying)
        for name in removed:  # a removed failing source must not keep /healthz at 503
            self.metrics.forget(name)
        self._schedule_all(held)
        self.scheduler.resume()
        audit.emit(audit.CONFIG_RELOADED, sources=sorted(self.runners))

    # --- file events -----------------------------------------------------------------------

    def _start_observer(self) -> None:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        local = [r.config for r in self.runners.values() if not r.config.is_sftp]
        if not local:
            return
        daemon = self

        class Handler(FileSystemEventHandler):
            def __init__(self, name: str) -> None:
                self.name = name

            def on_any_event(self, event: FileSystemEvent) -> None:
                # Events only trigger a listing; the rescan decides (events can be missed).
                try:
                    if not event.is_directory and _may_start_work(event):
                        daemon.run_now(self.name)
                except Exception:  # noqa: BLE001, S110 - an error here would kill the observer
                    pass

        observer = Observer()
        self._handler_for = Handler
        self._watches = {}
        for config in local:
            # A drop folder that is not there is never made (open_source): it is watched
            # once it is (_check_watches).
            self._watch(observer, config)
        observer.daemon = True
        try:
            observer.start()
        except OSError:
            return
        self.observer = observer

    def _watch(self, observer: Any, config: SourceConfig) -> None:
        """Watch a local drop folder (remembering which folder it is), if it is there."""
        identity = _folder_identity(config.path)
        watch = None
        if identity is not None:
            with contextlib.suppress(OSError):  # inotify limits: the rescan still works
                watch = observer.schedule(
                    self._handler_for(config.name), config.path, recursive=False
                )
        self._watches[config.name] = (watch, identity)

    def _check_watches(self) -> None:
        """Start the observer again if it died (an error in it ends its thread silently),
        and watch a drop folder again that was replaced (moved away, made anew: inotify
        follows the old one) or has come back."""
        if self.observer is None:
            return
        if not self.observer.is_alive():
            self._stop_observer()
            self._start_observer()
            return
        for name, (watch, identity) in list(self._watches.items()):
            runner = self.runners.get(name)
            if runner is None or _folder_identity(runner.config.path) == identity:
                continue
            if watch is not None:
                with contextlib.suppress(Exception):  # the old folder's watch may be gone
                    self.observer.unschedule(watch)
            self._watch(self.observer, runner.config)
            self.run_now(name)  # whatever arrived meanwhile

    def _stop_observer(self) -> None:
        if self.observer is not None:
            self.observer.stop()
            self.observer.join(timeout=5)
            self.observer = None


def _folder_identity(path: str) -> tuple[int, int] | None:
    """Return which folder is at `path` now (device, inode), None if no folder is."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino) if stat.S_ISDIR(info.st_mode) else None


def _notify(state: str) -> None:
    """Tell systemd (Type=notify) our state when it started us; a no-op otherwise."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    import socket

    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError:
        pass


def run_daemon(app: App, source_name: str | None) -> int:
    """Run until SIGTERM; SIGHUP reloads the configuration and reopens the audit log."""
    return Daemon(app, source_name).run()
