"""`syncd run`: one pickup pass per source, or the long-running scheduler (SPEC §3.4)."""

from __future__ import annotations

import os
import signal
import threading
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from syncd import audit
from syncd.config import SourceConfig, find_config_path, load_config
from syncd.db import store
from syncd.errors import SourceUnreachable, SyncdError
from syncd.pickup import PassResult, Pickup
from syncd.sources.base import Source
from syncd.sources.local import LocalSource

if TYPE_CHECKING:
    from syncd.cli import App


def open_source(config: SourceConfig) -> Source:
    """Return the drop folder of a source; raise SourceUnreachable when it cannot be used."""
    if config.is_sftp:
        raise SourceUnreachable(
            f'source "{config.name}": sftp sources are not supported by this build yet'
        )
    folder = config.path
    try:
        os.makedirs(folder, exist_ok=True)
        for name in ("processing", "held", "archive", "failed", "reports"):
            os.makedirs(getattr(config.folders, name), exist_ok=True)
    except OSError as error:
        raise SourceUnreachable(
            f'source "{config.name}": cannot use folder {folder}: {error.strerror}'
        ) from error
    if not os.access(folder, os.R_OK | os.W_OK | os.X_OK):
        raise SourceUnreachable(f'source "{config.name}": folder {folder} is not writable')
    return LocalSource(config)


def check_source(config: SourceConfig) -> str | None:
    """Return why a source cannot be reached, or None."""
    try:
        open_source(config).close()
    except SyncdError as error:
        return str(error)
    return None


def poll_source(app: App, config: SourceConfig, run_id: str) -> PassResult:
    """Run one pass over one source, recording poll/success/error; raises SourceUnreachable."""
    now = app.clock.now()
    context = {"source": config.name, "site": config.site, "run_id": run_id}
    try:
        source = open_source(config)
    except SourceUnreachable as error:
        with app.engine.begin() as connection:
            previous = store.source_states(connection).get(config.name)
            store.set_source_state(
                connection, config.name, config.site, last_poll=now, error=str(error)
            )
        retry = config.poll or timedelta(seconds=60)
        audit.emit(
            audit.SOURCE_ERROR,
            level="error",
            error=str(error),
            retry_in=f"{int(retry.total_seconds())}s",
            **context,
        )
        del previous
        raise
    try:
        result = Pickup(config, source, app.pipeline(), app.clock).run_once(run_id)
    finally:
        source.close()
    with app.engine.begin() as connection:
        previous = store.source_states(connection).get(config.name)
        store.set_source_state(
            connection,
            config.name,
            config.site,
            last_poll=app.clock.now(),
            last_success=app.clock.now(),
            error=None,
            waiting=result.waiting,
        )
    if previous is not None and previous.error:
        audit.emit(audit.SOURCE_RECOVERED, **context)
    audit.emit(
        audit.SOURCE_POLLED,
        applied=result.applied,
        failed=result.failed,
        held=result.held,
        duplicate=result.duplicate,
        waiting=result.waiting,
        **context,
    )
    return result


def _selected(app: App, source_name: str | None) -> list[SourceConfig]:
    if source_name is not None:
        return [app.config.source(source_name)]
    return list(app.config.sources)


def run_pass(app: App, source_name: str | None) -> int:
    """One pass over the selected sources; return the exit code (0, 1 failed/held, 3)."""
    from syncd.cli import new_run_id

    unreachable = failed = 0
    run_id = new_run_id()
    app.engine  # noqa: B018 - reach the database before touching any folder
    for config in _selected(app, source_name):
        try:
            result = poll_source(app, config, run_id)
        except SourceUnreachable as error:
            unreachable += 1
            import click

            click.echo(f"syncd: {error}", err=True)
            continue
        failed += result.failed + result.held
    if unreachable:
        return 3
    return 1 if failed else 0


def run_daemon(app: App, source_name: str | None) -> int:
    """Run until SIGTERM: a scheduled pass per source; SIGHUP reloads the config."""
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    from syncd.cli import new_run_id

    stop = threading.Event()
    reload_requested = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def on_hangup(*_: object) -> None:
        reload_requested.set()
        stop.set()

    signal.signal(signal.SIGHUP, on_hangup)
    app.engine  # noqa: B018 - fail fast (exit 3) when the database is unreachable

    def job(config: SourceConfig) -> None:
        try:
            poll_source(app, config, new_run_id())
        except SourceUnreachable:
            pass  # logged as source.error; the next poll retries
        except Exception as error:  # noqa: BLE001 - a job error must never kill the daemon
            audit.emit(
                audit.SOURCE_ERROR,
                level="error",
                source=config.name,
                site=config.site,
                error=str(error).splitlines()[0] if str(error) else type(error).__name__,
                retry_in="next poll",
            )

    def schedule(scheduler: Any) -> None:
        for config in _selected(app, source_name):
            triggers = []
            if config.cron:
                triggers.append(CronTrigger.from_crontab(config.cron, timezone=config.timezone))
            if config.poll or not config.cron:
                interval = config.poll or timedelta(seconds=60)
                triggers.append(IntervalTrigger(seconds=interval.total_seconds()))
            for number, trigger in enumerate(triggers):
                scheduler.add_job(
                    job,
                    trigger,
                    args=[config],
                    id=f"{config.name}:{number}",
                    coalesce=True,
                    max_instances=1,
                    misfire_grace_time=3600,
                    next_run_time=app.clock.now() if number == 0 else None,
                )

    audit.emit(
        audit.DAEMON_STARTED,
        pid=os.getpid(),
        sources=[config.name for config in _selected(app, source_name)],
    )
    while True:
        scheduler = BackgroundScheduler(timezone="UTC")
        schedule(scheduler)
        scheduler.start()
        while not stop.wait(1.0):
            pass
        scheduler.shutdown(wait=True)
        if not reload_requested.is_set():
            break
        reload_requested.clear()
        stop.clear()
        try:
            app._config = load_config(find_config_path(app.config_option))
            audit.configure(app._config.audit_path)
            audit.emit(
                audit.CONFIG_RELOADED, sources=[config.name for config in app.config.sources]
            )
        except SyncdError as error:
            audit.emit(audit.CONFIG_RELOADED, level="error", error=str(error))
    audit.emit(audit.DAEMON_STOPPED, pid=os.getpid())
    return 0
