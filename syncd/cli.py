"""The `syncd` command line (SPEC §5): parse arguments, build the App, call one function."""

from __future__ import annotations

import csv
import json
import logging
import os
import posixpath
import sys
import tempfile
import threading
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial, wraps
from pathlib import Path
from typing import Any, NoReturn

import click
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from syncd import audit, reports
from syncd.clock import Clock, SystemClock
from syncd.config import Config, SourceConfig, find_config_path, load_config, local_source
from syncd.db import store, trail
from syncd.db.apply import OrphanCarry
from syncd.db.database import (
    database_problem,
    describe,
    open_database,
    reader,
    upgrade_database,
)
from syncd.db.schema import files, links, pending_links, persons
from syncd.edits import manual_link, revert_file
from syncd.errors import (
    AuditUnwritable,
    DatabaseUnreachable,
    FileFailed,
    Interrupted,
    SourceUnreachable,
    SyncdError,
    UsageError,
    one_line,
)
from syncd.locks import run_marked
from syncd.model import Counts, FileStatus, Kind, PersonKind, RelType
from syncd.pickup import (
    Pickup,
    archive_folder,
    expire_pending_of,
    ledger_result,
    peek_kind,
    write_reports,
)
from syncd.pipeline import FileResult, Job, Pipeline, sha256_of
from syncd.sources.base import MARKER_SUFFIXES, Source
from syncd.sources.local import LocalSource, write_new, write_refused
from syncd.stopping import StoppedAtOnce, stop_on_signals


@dataclass(slots=True)
class App:
    """What every command needs, built once from the global options."""

    config_option: str | None
    debug: bool
    clock: Clock = field(default_factory=SystemClock)
    _config: Config | None = None
    _engine: Engine | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            config = load_config(find_config_path(self.config_option))
            audit.open_log(config.path, config.audit_path, stdout_taken=_prints_json())
            self._config = config
        return self._config

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = open_database(self.config.database_url)
        return self._engine

    @property
    def reader(self) -> Engine:
        """The engine for what only reads (status, files, history, export): never made to
        wait for a file being applied (database.reader)."""
        return reader(self.engine)

    def pipeline(self) -> Pipeline:
        return Pipeline(self.engine, self.clock)

    def events(self, **context: Any) -> audit.EventBuffer:
        return audit.EventBuffer(context=context, now=self.clock.now())

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


def _prints_json() -> bool:
    """Whether the running command prints a JSON document on stdout (its --json)."""
    context = click.get_current_context(silent=True)
    return context is not None and bool(context.params.get("as_json"))


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def print_json(document: Any) -> None:
    click.echo(json.dumps(document, ensure_ascii=False, indent=2, default=str))


def print_json_array(documents: Iterable[Any]) -> None:
    """Print `documents` as print_json prints their list, one at a time (an export of a
    district's million persons is never held in memory)."""
    out = sys.stdout
    first = True
    for document in documents:
        text = json.dumps(document, ensure_ascii=False, indent=2, default=str)
        out.write(("[\n" if first else ",\n") + "  " + text.replace("\n", "\n  "))
        first = False
    out.write("[]\n" if first else "\n]\n")
    out.flush()


pass_app = click.make_pass_decorator(App)


# A ledger id: the database's integers are 64-bit (a larger one is a usage error, exit 2).
FILE_ID = click.IntRange(1, 2**63 - 1)
FILE_ID.name = "file id"  # "'abc' is not a valid file id", not "… integer range"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", metavar="PATH", help="Configuration file.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(package_name="syncd")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, debug: bool) -> None:
    """Keep a school's roster in step with the files its SIS drops."""
    ctx.obj = App(config_option=config_path, debug=debug)
    ctx.call_on_close(ctx.obj.close)
    if debug:
        _show_ssh_log(ctx)


def _show_ssh_log(ctx: click.Context) -> None:
    """--debug: paramiko's own log on stderr, what `ssh -v` would show of a connection
    (versions, algorithms, authentication methods tried; never a secret), for SFTP
    failures whose one line cannot say everything."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("paramiko: %(message)s"))
    log = logging.getLogger("paramiko")
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)

    def restore() -> None:
        log.removeHandler(handler)
        log.setLevel(level)

    ctx.call_on_close(restore)


# --- import ----------------------------------------------------------------------------------


def _import_source(app: App, source_name: str | None) -> tuple[SourceConfig, str | None]:
    """Return the settings an import uses: the named (or only) source's, else the defaults."""
    config = app.config
    if source_name is None and not config.sources:
        return local_source(Path.cwd(), name="import", site=config.site(None)), None
    source = config.source(source_name)
    return source, source.name


def _check_report_dir(folder: Path) -> None:
    """Make --report-dir when it is not there; refuse one that cannot be made or written
    before any file is taken in (a report that cannot be written would leave its file
    applied or held, unsaid)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"--report-dir {folder}: cannot be made ({error.strerror})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"--report-dir {folder}: not writable")
    if (refused := write_refused(folder)) is not None:
        raise UsageError(f"--report-dir {folder}: not writable ({refused})")


def _check_beside(paths: Sequence[Path]) -> None:
    """Refuse, before any file is taken in, a file whose folder its reports cannot be
    written to (a read-only share or mount): applied or held, it would leave no report."""
    for folder in dict.fromkeys(path.resolve().parent for path in paths):
        if (refused := write_refused(folder)) is not None:
            raise UsageError(
                f"{folder}: reports cannot be written next to the files there ({refused}); "
                "give --report-dir DIR"
            )


@cli.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path, readable=False))
@click.option("--kind", type=click.Choice([kind.value for kind in Kind]), help="Force the kind.")
@click.option("--source", "source_name", metavar="NAME", help="Use this source's settings.")
@click.option("--dry-run", is_flag=True, help="Validate and plan; change nothing.")
@click.option(
    "--report-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Write the reports here (made if missing), not next to each file.",
)
@click.option("--json", "as_json", is_flag=True, help="Print each file's report (or plan) as JSON.")
@pass_app
def import_command(
    app: App,
    paths: tuple[Path, ...],
    kind: str | None,
    source_name: str | None,
    dry_run: bool,
    report_dir: Path | None,
    as_json: bool,
) -> None:
    """Run the pipeline on local files, in kind order."""
    source, name = _import_source(app, source_name)
    for path in paths:
        if path.is_dir():
            raise UsageError(f"{path}: a folder, not a file; give the files in it")
        if not path.is_file():
            if path.is_symlink():
                raise UsageError(f"{path}: a link to {os.readlink(path)}, which is not there")
            if path.exists():  # a FIFO or a device: reading it could wait forever
                raise UsageError(f"{path}: not a regular file")
            raise UsageError(f"{path}: no such file")
    if not dry_run:
        if report_dir is not None:
            _check_report_dir(report_dir)
        else:
            _check_beside(paths)
    forced = Kind(kind) if kind else None

    def order(path: Path) -> tuple[int, float, str]:
        found = forced or peek_kind(path, source, path.name)
        return (found.rank if found else len(Kind), path.stat().st_mtime, path.name)

    ordered = sorted(paths, key=order)
    pipeline = app.pipeline()
    run_id = new_run_id()
    events = app.events(site=source.site, source=name, run_id=run_id)
    now = app.clock.now()
    orphans = OrphanCarry()  # judged at the end of the batch (SPEC §2.4)
    # A signal asks to stop at the next safe point: the file being applied fails whole
    # (errors.Interrupted, at its next progress point), one that committed gets its report and
    # audit lines, no later file starts, so that no ledger entry is left `processing`.
    with stop_on_signals() as interrupted:
        jobs = [
            replace(
                _import_job(path, source, name, forced, dry_run, run_id, interrupted),
                orphans=orphans,
                defer_orphans=index < len(ordered) - 1,
            )
            for index, path in enumerate(ordered)
        ]
        results: list[FileResult] = []
        unwritten: list[str] = []
        if dry_run:
            # One batch, rolled back: each file is planned after those before it (students
            # before their parents), expired pending links included, as a real run applies
            # them.
            with pipeline.preview_batch() as connection:
                expire_pending_of(connection, source, name, now, events)
                for job in jobs:
                    if interrupted() is not None:
                        break
                    results.append(_process(pipeline, job))
        else:
            for row in pipeline.fail_abandoned_imports(own_run=run_id):
                click.echo(f"syncd: file {row.id} ({row.name}): failed: {row.reason}", err=True)
            with app.engine.begin() as connection:
                expire_pending_of(connection, source, name, now, events)
                events.write(connection)
            events.emit()
            with run_marked(app.engine, run_id):
                for job in jobs:
                    if interrupted() is not None:
                        break
                    result = _process(pipeline, job)
                    folder = report_dir or job.path.parent
                    try:
                        reports.write_reports_with(partial(write_new, folder), result)
                    except OSError as error:  # the file's outcome stands: say so, exit 1
                        unwritten.append(
                            f"{one_line(result.name)}: {reports.report_status(result.status)}, "
                            f"but its report could not be written in {folder}: "
                            f"{error.strerror or error}"
                        )
                    results.append(result)
                pipeline.settle_orphans(orphans, source.site, name, run_id)
    _print_results(results, dry_run, as_json, reports_written=True)
    for result in results:
        if (line := reports.problem_line(result)) is not None:
            click.echo(f"syncd: {line}", err=True)
    for line in unwritten:
        click.echo(f"syncd: {line}", err=True)
    left = [job.name for job in jobs[len(results) :]]
    if left:
        click.echo(f"syncd: interrupted: not started: {', '.join(left)}", err=True)
    # A dry run exits as the real run would: 1 for a file it would fail or hold, so that a
    # script can check a file before it sends it.
    if (
        left
        or unwritten
        or any({r.status, r.would} & {FileStatus.FAILED, FileStatus.HELD} for r in results)
    ):
        sys.exit(1)


def _process(pipeline: Pipeline, job: Job) -> FileResult:
    result = pipeline.process(job)
    if _wants_progress(job.path):
        click.echo(err=True)  # end the progress line
    return result


def _import_job(
    path: Path,
    source: SourceConfig,
    name: str | None,
    forced: Kind | None,
    dry_run: bool,
    run_id: str,
    interrupted: Callable[[], str | None] = lambda: None,
) -> Job:
    """Return the job of one file given to `syncd import`: it stays where it is."""
    return Job(
        path=path.resolve(),
        name=path.name,
        source=source,
        source_name=name,
        kind=forced,
        dry_run=dry_run,
        run_id=run_id,
        location=str(path.resolve()),
        progress=_progress(path, interrupted),
        checkpoint=partial(_interrupt_if_asked, interrupted),
    )


PROGRESS_MIN_BYTES = 256 * 1024


def _wants_progress(path: Path) -> bool:
    """A progress line is for a person watching a large file, never for logs or pipes."""
    return sys.stderr.isatty() and path.stat().st_size >= PROGRESS_MIN_BYTES


def _interrupt_if_asked(interrupted: Callable[[], str | None]) -> None:
    """Stop the file here if a signal asked to (stop_on_signals): it fails whole."""
    if (signal_name := interrupted()) is not None:
        raise Interrupted(f"interrupted ({signal_name}): nothing of it applied")


def _progress(path: Path, interrupted: Callable[[], str | None]) -> Callable[[int], None]:
    """Told the rows read now and then: stop there if a signal asked to (stop_on_signals),
    show the count on a terminal."""
    shows = _wants_progress(path)

    def told(rows: int) -> None:
        _interrupt_if_asked(interrupted)
        if shows:
            click.echo(f"\r{path.name}: {rows:,} rows read", err=True, nl=False)

    return told


def _previewed_status(result: FileResult) -> str:
    """A dry run's status: what the real run would end in (held, failed), else planned;
    the reason says "would be held: …" or "would fail: …"."""
    if result.would is not None:
        return result.would.value
    return "planned" if result.status is FileStatus.APPLIED else result.status.value


def _plan_document(result: FileResult) -> dict[str, Any]:
    return {
        "file": result.name,
        "kind": result.kind.value if result.kind else None,
        "status": _previewed_status(result),
        "reason": result.reason,
        "counts": result.counts.as_dict(),
        "changes": result.changes,
        **({"links_kept": result.links_kept} if result.links_kept else {}),
        "errors": [
            {"row": e.row, "column": e.column, "value": e.value, "error": e.error}
            for e in result.errors
        ],
    }


def _print_results(
    results: Sequence[FileResult], dry_run: bool, as_json: bool, reports_written: bool = False
) -> None:
    """Print each file's outcome (and, with `reports_written`, where its reports went)."""
    if as_json:
        documents = [_plan_document(r) if dry_run else reports.report_document(r) for r in results]
        print_json(documents[0] if len(documents) == 1 else documents)
        return
    for result in results:
        counts = result.counts.as_dict()
        figures = ", ".join(f"{name} {value}" for name, value in counts.items() if value)
        status = _previewed_status(result) if dry_run else result.status
        kind = result.kind.value if result.kind else "unknown kind"
        name = one_line(result.name)
        click.echo(f"{name}: {status} ({kind}){': ' + figures if figures else ''}")
        if result.reason:
            click.echo(f"  reason: {result.reason}")
        for error in result.errors[:20]:
            column = f", {error.column}" if error.column else ""  # a row of shifted cells has none
            click.echo(f"  row {error.row}{column}: {error.error}")
        if len(result.errors) > 20:
            where = "--json lists them all" if dry_run else "the errors file lists them all"
            click.echo(f"  … and {len(result.errors) - 20} more errors ({where})")
        for kept in result.links_kept[:20]:
            link = f"{one_line(kept['parent'])} → {one_line(kept['child'])}"
            click.echo(f"  row {kept['row']}: link {link} stays: {kept['kept']}")
        if len(result.links_kept) > 20:
            where = "--json lists them all" if dry_run else "the report lists them all"
            click.echo(f"  … and {len(result.links_kept) - 20} more links kept ({where})")
        if dry_run:
            for change in result.changes[:50]:
                click.echo("  " + json.dumps(change, ensure_ascii=False))
        if reports_written:  # where they went: a name already taken got a numeric suffix
            for name, path in result.reports_written.items():
                click.echo(f"  {name}: {one_line(path)}")


# --- run -----------------------------------------------------------------------------------


@cli.command("run")
@click.option("--once", is_flag=True, help="One pickup pass over the sources, then exit.")
@click.option("--source", "source_name", metavar="NAME", help="Only this source (default: all).")
@pass_app
def run_command(app: App, once: bool, source_name: str | None) -> None:
    """Pick files up from the drop folders (foreground daemon, or one pass)."""
    from syncd.daemon import run_daemon, run_pass

    if once:
        sys.exit(run_pass(app, source_name))
    sys.exit(run_daemon(app, source_name))


# --- export ----------------------------------------------------------------------------------


def reader_may_leave(command: Callable[..., None]) -> Callable[..., None]:
    """For a command that only prints what it read: a reader that stops early (`syncd
    export … | head`) wanted no more, so it ends quietly with exit 0 (click's own answer to a
    closed pipe is exit 1: an error code for nothing wrong)."""

    @wraps(command)
    def printing(*args: Any, **kwargs: Any) -> None:
        try:
            command(*args, **kwargs)
        except BrokenPipeError:
            # stdout now leads nowhere, so that its flush at exit cannot fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise click.exceptions.Exit(0) from None

    return printing


PERSON_FIELDS = (
    "site", "kind", "sync_key", "username", "first_name", "last_name", "email", "active",
    "attributes",
)  # fmt: skip
LINK_FIELDS = ("site", "parent", "child", "type", "status", "origin")


@cli.command("export")
@click.argument("what", type=click.Choice(["persons", "relationships"]))
@click.option(
    "--site", metavar="SITE", help="The site (tenant); needed when the config has several."
)
@click.option(
    "--format", "fmt", type=click.Choice(["json", "csv"]), default=None, help="Default: json."
)
@click.option("--json", "as_json", is_flag=True, help="The same as --format json.")
@pass_app
@reader_may_leave
def export_command(app: App, what: str, site: str | None, fmt: str | None, as_json: bool) -> None:
    """Print the current persons or relationships (never a password)."""
    if fmt == "csv" and as_json:
        raise UsageError("export: --json and --format csv ask for two formats; give one")
    site_name = app.config.site(site) if (site or app.config.sources) else None
    columns: tuple[str, ...]
    with app.reader.connect() as connection:
        # Streamed from the database to stdout, inside the one read transaction.
        if what == "persons":
            documents = _export_persons(connection, site_name)
            columns = PERSON_FIELDS
        else:
            documents = _export_links(connection, site_name, app.clock.now())
            columns = LINK_FIELDS
        if fmt == "csv":
            _print_csv(documents, columns)
        else:
            print_json_array(documents)  # JSON is the default output, --json or not


def _print_csv(documents: Iterable[dict[str, Any]], columns: Sequence[str]) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(columns)
    for document in documents:
        writer.writerow(
            [
                json.dumps(document[c], ensure_ascii=False)
                if isinstance(document[c], dict)
                else (
                    "true"
                    if document[c] is True
                    else "false"
                    if document[c] is False
                    else reports.inert("" if document[c] is None else str(document[c]))
                )
                for c in columns
            ]
        )


# Rows fetched at a time by an export: a district's million persons are streamed out, never
# held (a list of them took 928 MB for 250,000).
EXPORT_BATCH = 2000


def _export_persons(connection: sa.Connection, site: str | None) -> Iterator[dict[str, Any]]:
    in_order = partial(store.in_code_point_order, connection)
    query = sa.select(persons).order_by(
        in_order(persons.c.site), persons.c.kind.desc(), in_order(persons.c.sync_key)
    )
    if site is not None:
        query = query.where(persons.c.site == site)
    return (
        {
            "site": row.site,
            "kind": row.kind,
            "sync_key": row.sync_key,
            "username": row.username,
            "first_name": row.first_name,
            "last_name": row.last_name,
            "email": row.email,
            "active": bool(row.active),
            "attributes": dict(row.attributes or {}),
        }
        for row in connection.execute(query.execution_options(yield_per=EXPORT_BATCH))
    )


def _export_links(
    connection: sa.Connection, site: str | None, now: datetime
) -> Iterator[dict[str, Any]]:
    parent = persons.alias("parent")
    child = persons.alias("child")
    in_order = partial(store.in_code_point_order, connection)
    query = (
        sa.select(links, parent.c.sync_key.label("parent_key"), child.c.sync_key.label("child_key"))
        .join(parent, parent.c.id == links.c.parent_id)
        .join(child, child.c.id == links.c.child_id)
        .where(store.active_link_clause())
        .order_by(in_order(parent.c.sync_key), in_order(child.c.sync_key))
    )
    if site is not None:
        query = query.where(links.c.site == site)
    for row in connection.execute(query.execution_options(yield_per=EXPORT_BATCH)):
        yield {
            "site": row.site,
            "parent": row.parent_key,
            "child": row.child_key,
            "type": row.type,
            "status": "active",
            "origin": "manual" if row.manual == "link" else "file",
        }
    pending_query = (
        sa.select(pending_links, parent.c.sync_key.label("parent_key"))
        .join(parent, parent.c.id == pending_links.c.parent_id)
        # One past pending_ttl is gone for the reader, though the source's next pass removes
        # it (relationship.expired): a daily cron's could show for a day.
        .where(pending_links.c.expires_at >= now)
        .order_by(in_order(parent.c.sync_key), in_order(pending_links.c.child_value))
    )
    if site is not None:
        pending_query = pending_query.where(pending_links.c.site == site)
    for row in connection.execute(pending_query.execution_options(yield_per=EXPORT_BATCH)):
        yield {
            "site": row.site,
            "parent": row.parent_key,
            "child": row.child_value,
            "type": row.type,
            "status": "pending",
            "origin": "file",
        }


# --- link / unlink ---------------------------------------------------------------------------


def _link(
    app: App,
    parent: str,
    child: str,
    rel_type: str | None,
    site: str | None,
    unlink: bool,
    as_json: bool,
) -> None:
    site_name = app.config.site(site)
    chosen = None
    if rel_type is not None:
        chosen = next((t for t in RelType if t.value.casefold() == rel_type.casefold()), None)
        # Else as the site's files say it (`[sources.relationship_types] Mother = "Parent"`).
        mapped = {
            written: mapped_type
            for source in app.config.sources
            if source.site == site_name
            for written, mapped_type in source.relationship_types.items()
        }
        chosen = chosen or mapped.get(rel_type.strip().casefold())
        if chosen is None:
            also = f", or as the site's sources map: {', '.join(sorted(mapped))}" if mapped else ""
            raise UsageError(
                f"--type {rel_type}: one of Parent, Aide, Guardian, Relative, Other{also}"
            )
    with app.engine.begin() as connection:
        # A manual edit is a run of its own: its events carry a run_id, as a revert's do.
        events = app.events(site=site_name, run_id=new_run_id())
        child_fields = {
            source.child_field.value for source in app.config.sources if source.site == site_name
        }
        edit = manual_link(
            connection, site_name, parent, child, chosen, unlink, events, child_fields
        )
        events.write(connection)
    events.emit()
    verb = "unlinked" if unlink else "linked"
    if as_json:
        action = "unlink" if unlink else "link"
        print_json(
            {
                "site": site_name,
                "parent": edit.parent,
                "child": edit.child,
                "action": action,
                "changed": edit.changed,
                "parent_deactivated": edit.parent_deactivated,
                "parent_reactivated": edit.parent_reactivated,
                "pending": edit.pending,
                "type": edit.type,
                "previous_type": edit.retyped[0] if edit.retyped else None,
                "was_linked": edit.was_linked,
                "child_active": not edit.child_inactive,
            }
        )
        return
    note = " (already so)" if not edit.changed else "; no file will link them" if unlink else ""
    if unlink and edit.changed and not edit.was_linked:
        note = " (they were not linked); no file will link them"
    if edit.retyped is not None:
        note = f" (now {edit.retyped[1]}, was {edit.retyped[0]})"
    if edit.child_inactive and not unlink:
        note += f"; {edit.child} is an inactive student"
    if edit.pending and edit.changed:
        note = (
            " (pending: no student has that value); no file will link them, now or when the "
            "student arrives"
        )
    if edit.parent_deactivated:
        note += f"; {edit.parent} has no active child left and was deactivated"
    elif edit.parent_reactivated:
        note += f"; {edit.parent} has an active child again and was reactivated"
    click.echo(f"{verb} {edit.parent} → {edit.child}{note}")


def _edit_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options of `link` and `unlink`."""
    for option in reversed(
        (
            click.option(
                "--parent", required=True, metavar="KEY", help="The parent's key (see above)."
            ),
            click.option(
                "--child", required=True, metavar="KEY", help="The child's key (see above)."
            ),
            click.option(
                "--type", "rel_type", metavar="T", help="Parent, Aide, Guardian, Relative or Other."
            ),
            click.option(
                "--site",
                metavar="SITE",
                help="The site (tenant); needed when the config has several.",
            ),
            click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON."),
            pass_app,
        )
    ):
        command = option(command)
    return command


@cli.command("link")
@_edit_options
def link_command(
    app: App, parent: str, child: str, rel_type: str | None, site: str | None, as_json: bool
) -> None:
    """Link a parent to a child by hand; file syncs never remove it.

    Each KEY is a sync key, username or email; a child's may also be its student number
    or syncd's internal id where a source of the site matches children by it (child_field).
    A value that names two students is refused, naming both.
    """
    _link(app, parent, child, rel_type, site, unlink=False, as_json=as_json)


@cli.command("unlink")
@_edit_options
def unlink_command(
    app: App, parent: str, child: str, rel_type: str | None, site: str | None, as_json: bool
) -> None:
    """Unlink a parent from a child by hand; file syncs never bring it back.

    Keys as for link; a child value no student has yet drops its pending link and keeps
    the pair apart when that student arrives.
    """
    _link(app, parent, child, rel_type, site, unlink=True, as_json=as_json)


# --- files -----------------------------------------------------------------------------------


def _file_document(row: Any) -> dict[str, Any]:
    received = store.aware(row.received_at)
    return {
        "id": row.id,
        "source": row.source,
        "site": row.site,
        "name": row.name,
        "kind": row.kind,
        "status": row.status,
        "sha256": row.sha256,
        "received_at": received.isoformat() if received else None,
        "counts": row.counts,
        "reason": row.reason,
    }


@cli.group("files", invoke_without_command=True)
@click.option(
    "--status",
    type=click.Choice([s.value for s in FileStatus]),
    # Files not claimed yet (waiting for min_age, a marker, a students file) are not in the
    # ledger: `syncd status` counts them.
    help="Only files in this ledger state.",
)
@click.option("--source", "source_name", metavar="NAME", help="Only this source's files.")
@click.option("--json", "as_json", is_flag=True, help="Print the ledger as JSON.")
@click.pass_context
def files_group(
    ctx: click.Context, status: str | None, source_name: str | None, as_json: bool
) -> None:
    """The file ledger; release, reject or revert a file."""
    if ctx.invoked_subcommand is not None:
        return
    app: App = ctx.obj
    with app.reader.connect() as connection:
        rows = store.list_files(connection, status, source_name)
        # A name neither configured nor in the ledger is a typo, not an empty list; a source
        # since removed from the config still lists its files.
        configured = {source.name for source in app.config.sources}
        unknown = source_name not in (None, *configured) and not rows
        if unknown and not store.list_files(connection, None, source_name):
            app.config.source(source_name)
    documents = [_file_document(row) for row in rows]
    if as_json:
        print_json(documents)
        return
    for doc, row in zip(documents, rows, strict=True):
        received = store.aware(row.received_at)
        when = f"{received:%Y-%m-%d %H:%M}Z" if received else "-"
        click.echo(
            f"{doc['id']:>6}  {when:<17} {doc['status']:<10} {doc['kind'] or '-':<13} "
            f"{doc['source'] or '-':<12} {one_line(doc['name'])}"
            + (f"  ({one_line(doc['reason'])})" if doc["reason"] else "")
        )


def _ledger_row(connection: sa.Connection, file_id: int) -> Any:
    """Return the file's ledger row; raise UsageError when there is none."""
    row = store.file_row(connection, file_id)
    if row is None:
        raise UsageError(f"no file {file_id} in the ledger")
    return row


def _held_file(app: App, file_id: int) -> Any:
    with app.reader.connect() as connection:
        row = _ledger_row(connection, file_id)
    if row.status != FileStatus.HELD.value:
        raise UsageError(f"file {file_id} is {row.status}, not held")
    return row


def _refuse_stale_release(app: App, row: Any) -> None:
    """Raise UsageError when a file of the held file's site and kind was applied after it
    came: released, the older file would undo what the newer one did (a full file's
    deactivations judged against yesterday's roster)."""
    with app.reader.connect() as connection:
        newer = connection.execute(
            sa.select(files.c.id, files.c.name)
            .where(
                files.c.site == row.site,
                files.c.kind == row.kind,
                files.c.status == FileStatus.APPLIED.value,
                files.c.id > row.id,
            )
            .order_by(files.c.id.desc())
            .limit(1)
        ).first()
    if newer is not None:
        raise UsageError(
            f"file {row.id} ({row.name}): {row.kind} file {newer.id} ({newer.name}) was applied "
            f"after it; releasing the older file would undo that. Reject it (syncd files reject "
            f"{row.id}), or send its content again to have it planned against today's roster"
        )


# What a release approves, as the held report counted it.
APPROVED_COUNTS = {
    "deactivated": "deactivate {now} {kind}",
    "updated": "update {now} {kind}",
    "links_removed": "remove {now} links",
}


def _refuse_grown_release(
    app: App, row: Any, local: Path, source_config: SourceConfig, source_name: str | None
) -> None:
    """Raise UsageError when the held file would now change more than its held report said
    (a revert or a manual edit since): the operator approved those numbers, not these."""
    held = Counts(**row.counts) if row.counts else Counts()
    preview = app.pipeline().process(
        Job(
            path=local,
            name=row.name,
            source=source_config,
            source_name=source_name,
            kind=Kind(row.kind) if row.kind else None,
            dry_run=True,
            force=True,
        )
    )
    if preview.status is FileStatus.FAILED:
        return  # the release fails the file the same way, and says why
    for count, change in APPROVED_COUNTS.items():
        now, then = getattr(preview.counts, count), getattr(held, count)
        if now > then:
            would = change.format(now=now, kind=row.kind)
            raise UsageError(
                f"file {row.id} ({row.name}): the roster changed since it was held: released "
                f"now, it would {would}, where its report said {then}. "
                f"Reject it (syncd files reject {row.id}), or send its content again to have "
                "it judged against today's roster"
            )


def _source_of(app: App, row: Any) -> tuple[SourceConfig, str | None]:
    if row.source is None:
        return local_source(Path.cwd(), name="import", site=row.site), None
    try:
        return app.config.source(row.source), row.source
    except UsageError as error:
        raise UsageError(f"file {row.id}: its source is no longer configured ({error})") from error


@files_group.command("release")
@click.argument("file_id", type=FILE_ID, metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the file's report document.")
@pass_app
def release_command(app: App, file_id: int, as_json: bool) -> None:
    """Apply a held file despite its safety threshold."""
    finished = _finish_decided(app, file_id, (FileStatus.APPLIED, FileStatus.FAILED))
    if finished is not None:  # released before, but the source failed before it moved on
        _print_results([finished], False, as_json)
        if finished.status is not FileStatus.APPLIED:
            sys.exit(1)
        return
    row = _held_file(app, file_id)
    _refuse_stale_release(app, row)
    source_config, source_name = _source_of(app, row)
    source = _open_held_source(row, source_name, source_config)
    try:
        with tempfile.TemporaryDirectory(prefix="syncd-") as temp:
            local = _fetch_held(row, source, source_config, Path(temp))
            _refuse_grown_release(app, row, local, source_config, source_name)
            result = _apply_released(app, row, local, source_config, source_name)
        if source is None:
            _report_beside(row, result)
        else:
            _finish_held(app, row, source, result, archive_folder(app.clock.now(), result.status))
    finally:
        if source is not None:
            source.close()
    _print_results([result], False, as_json)
    if result.status is not FileStatus.APPLIED:
        sys.exit(1)


def _finish_decided(app: App, file_id: int, decided: tuple[FileStatus, ...]) -> FileResult | None:
    """Move on a file that a release or reject decided (its status one of `decided`) but
    that still lies in held/ because its source failed before the move; return what the
    ledger says of it, or None when there is no such file (the command then goes on)."""
    with app.reader.connect() as connection:
        row = _ledger_row(connection, file_id)
        if row.status not in {status.value for status in decided}:
            return None
        result = ledger_result(row, store.row_errors(connection, file_id))
    source_config, source_name = _source_of(app, row)
    source = _open_held_source(row, source_name, source_config)
    if source is None:
        return None
    try:
        if not source.holds(row.path):
            return None
        _finish_held(app, row, source, result, archive_folder(app.clock.now(), result.status))
    finally:
        source.close()
    return result


def _apply_released(
    app: App, row: Any, local: Path, source_config: SourceConfig, source_name: str | None
) -> FileResult:
    """Run the pipeline on a released file (thresholds skipped), under its ledger entry."""
    pipeline = app.pipeline()
    job = Job(
        path=local,
        name=row.name,
        source=source_config,
        source_name=source_name,
        kind=Kind(row.kind) if row.kind else None,
        file_id=row.id,
        force=True,
        run_id=new_run_id(),
        location=row.path,
    )
    events = pipeline._events(job, row.id)
    events.add(audit.FILE_RELEASED, name=row.name)
    with app.engine.begin() as connection:
        events.write(connection)
    events.emit()
    return pipeline.process(job)


def _held_in_source(row: Any, source_name: str | None, source_config: SourceConfig) -> bool:
    """Return whether a held ledger file waits in its source's held/ (not a `syncd import`).

    `syncd import FILE` leaves the file where it is (SPEC §3.2), also once released or
    rejected; only a file the pickup held moves on to archive/ or failed/, in its source.
    """
    if source_name is None:
        return False
    if source_config.is_sftp:  # remote paths: relative ones are under the drop folder
        root = posixpath.normpath(source_config.path) if source_config.path else "."
        held = posixpath.normpath(posixpath.join(root, str(source_config.folders.held)))
        return posixpath.dirname(posixpath.normpath(posixpath.join(root, row.path))) == held
    return Path(row.path).resolve().parent == Path(source_config.folders.held).resolve()


def _open_held_source(
    row: Any, source_name: str | None, source_config: SourceConfig
) -> Source | None:
    """Return the drop folder holding a held file, None for a file given to `syncd import`."""
    if not _held_in_source(row, source_name, source_config):
        return None
    from syncd.daemon import open_source

    return open_source(source_config)


def _fetch_held(row: Any, source: Source | None, source_config: SourceConfig, into: Path) -> Path:
    """Return a local path with the held file's content (downloaded from an SFTP source).

    Raises FileFailed when that content is not what was held: a release applies the file
    the operator reviewed, never what someone put in its place since.
    """
    if not (Path(row.path).is_file() if source is None else source.holds(row.path)):
        raise UsageError(f"file {row.id}: {row.path} is gone; cannot release it")
    local = Path(row.path) if source is None else source.fetch_location(row.path, into)
    if row.sha256 and sha256_of(local) != row.sha256:
        raise FileFailed(
            f"file {row.id}: {row.path} changed since it was held (its sha256 is not the held "
            "file's); not released. Reject it, and send the new content as a new file"
        )
    return local


def _finish_held(app: App, row: Any, source: Source, result: FileResult, folder: str) -> None:
    """Move a released/rejected file on in its source and write its reports, as the pickup."""
    try:
        where = source.take_back(row.path, folder, row.name)
    except (SyncdError, OSError) as error:  # decided already: the same command again moves it on
        command = "reject" if result.status is FileStatus.REJECTED else "release"
        hint = (
            f"file {row.id} is {result.status}; `syncd files {command} {row.id}` again moves it on"
        )
        if isinstance(error, SyncdError):
            raise type(error)(f"{error} ({hint})") from error
        raise SourceUnreachable(
            f'source "{row.source}": cannot move {row.name} from held/ to {folder}: '
            f"{error.strerror or error} ({hint})"
        ) from error
    # The pickup moved the file's done marker into held/ beside it; it goes on with the file.
    # Only a marker named after the held file itself: never another upload's.
    for suffix in MARKER_SUFFIXES:
        source.remove_marker(row.path + suffix, folder, posixpath.basename(where) + suffix)
    app.pipeline().set_location(row.id, where)
    write_reports(source, result)


def _report_beside(row: Any, result: FileResult) -> None:
    """Write the reports of a released/rejected `syncd import` file next to it."""
    folder = Path(row.path).parent
    if not folder.is_dir():
        return
    reports.write_reports_with(partial(write_new, folder), result)


@files_group.command("reject")
@click.argument("file_id", type=FILE_ID, metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the file's ledger entry.")
@pass_app
def reject_command(app: App, file_id: int, as_json: bool) -> None:
    """Drop a held file: nothing applies, it moves to failed/."""
    if _finish_decided(app, file_id, (FileStatus.REJECTED,)) is not None:
        if as_json:
            _print_ledger_entry(app, file_id)
        else:
            click.echo(f"file {file_id} rejected")
        return
    row = _held_file(app, file_id)
    stranded = row.source is not None and all(s.name != row.source for s in app.config.sources)
    # The report keeps what the held report said of the file (format, rows, rejected rows),
    # now failed; of its changes none applied, as a failed file's report counts them.
    with app.reader.connect() as connection:
        held = ledger_result(row, store.row_errors(connection, file_id))
    counts = held.counts.read_only()
    result = replace(
        held, status=FileStatus.REJECTED, reason="rejected by an operator", counts=counts
    )
    if stranded:  # its source was taken out of the config: the ledger only, the file stays
        source_name, source = row.source, None
    else:
        source_config, source_name = _source_of(app, row)
        source = _open_held_source(row, source_name, source_config)
    try:
        events = app.events(source=source_name, site=row.site, file_id=file_id, run_id=new_run_id())
        events.add(audit.FILE_REJECTED, name=row.name)
        with app.engine.begin() as connection:
            connection.execute(
                files.update()
                .where(files.c.id == file_id)
                .values(
                    status=FileStatus.REJECTED.value,
                    reason=result.reason,
                    counts=counts.as_dict(),
                    finished_at=app.clock.now(),
                )
            )
            events.write(connection)
        events.emit()
        if source is not None:
            if source.holds(row.path):  # else someone removed it already: nothing to move
                _finish_held(app, row, source, result, "failed")
        elif not stranded:
            _report_beside(row, result)
    finally:
        if source is not None:
            source.close()
    if as_json:
        _print_ledger_entry(app, file_id)
        return
    if stranded:
        click.echo(
            f'file {file_id} ({row.name}) rejected; its source "{row.source}" is no longer '
            f"configured, so {row.path} was left where it is"
        )
        return
    click.echo(f"file {file_id} ({row.name}) rejected")


@files_group.command("revert")
@click.argument("file_id", type=FILE_ID, metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the file's ledger entry.")
@pass_app
def revert_command(app: App, file_id: int, as_json: bool) -> None:
    """Undo what one applied file changed, as one new audited change."""
    with app.reader.connect() as connection:
        row = _ledger_row(connection, file_id)
    events = app.events(source=row.source, site=row.site, file_id=file_id, run_id=new_run_id())
    # A pending link the file dropped is pending again for its source's pending_ttl.
    configured = {source.name: source for source in app.config.sources}
    settings = configured.get(row.source or "") or local_source(Path.cwd(), site=row.site)
    with app.engine.begin() as connection:
        reverted = revert_file(connection, file_id, events, settings.pending_ttl)
        events.write(connection)
    events.emit()
    if reverted.passwords_kept:
        click.echo(
            f"syncd: {_counted(reverted.passwords_kept, 'new password')} "
            f"{'stays' if reverted.passwords_kept == 1 else 'stay'}: syncd keeps no earlier "
            "password to put back",
            err=True,
        )
    if as_json:
        _print_ledger_entry(app, file_id, undone=reverted.undone)
        return
    click.echo(
        f"file {file_id} ({row.name}) reverted: {_counted(reverted.undone, 'change')} undone"
    )


def _counted(number: int, noun: str) -> str:
    """Return `number` with `noun`, plural unless one: 1 change, 3 changes."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _print_ledger_entry(app: App, file_id: int, **extra: Any) -> None:
    """Print a file's ledger entry as `files --json` shows it (plus `extra`)."""
    with app.reader.connect() as connection:
        row = store.file_row(connection, file_id)
    print_json({**_file_document(row), **extra})


# --- status / history ------------------------------------------------------------------------


@cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the sources' state as JSON.")
@pass_app
def status_command(app: App, as_json: bool) -> None:
    """Per source: last poll, last success, files waiting, held, failed, pending links."""

    documents = []
    with app.reader.connect() as connection:
        states = store.source_states(connection)
        for source in app.config.sources:
            state = states.get(source.name)
            # An SFTP folder is not listed here (no connection for a status): its count is
            # the one the last pickup pass recorded.
            waiting = int(state.waiting or 0) if state else 0
            error = state.error if state else None
            if not source.is_sftp:
                pickup = Pickup(source, LocalSource(source), app.pipeline(), app.clock)
                try:
                    ready, young = pickup.ready_entries(LocalSource(source).list_entries())
                    waiting = len(ready) + len(young)
                except OSError as problem:  # the folder is a file, unreadable, ...
                    error = error or (
                        f'source "{source.name}": cannot list {source.path}: '
                        f"{problem.strerror or problem}"
                    )
            # And the files claimed into processing/ and not yet applied: the one in hand,
            # or those a stop or a crash left there for the next pass to take up.
            waiting += store.count_files(connection, source.name, FileStatus.PROCESSING.value)
            pending = connection.execute(
                sa.select(sa.func.count()).where(
                    pending_links.c.source == source.name,
                    pending_links.c.expires_at >= app.clock.now(),  # as the export
                )
            ).scalar_one()
            documents.append(
                {
                    "source": source.name,
                    "site": source.site,
                    "last_poll": _iso(state.last_poll if state else None),
                    "last_success": _iso(state.last_success if state else None),
                    "waiting": waiting,
                    "held": store.count_files(connection, source.name, "held"),
                    "failed": store.count_files(connection, source.name, "failed"),
                    "pending_links": int(pending),
                    "error": error,
                }
            )
    if as_json:
        print_json(documents)
        return
    if not documents:
        click.echo("no sources configured")
    for doc in documents:
        click.echo(
            f"{doc['source']} ({doc['site']}): last poll {doc['last_poll'] or 'never'}, "
            f"last success {doc['last_success'] or 'never'}, waiting {doc['waiting']}, "
            f"held {doc['held']}, failed {doc['failed']}, pending links {doc['pending_links']}"
            + (f", error: {doc['error']}" if doc["error"] else "")
        )


def _iso(moment: Any) -> str | None:
    value = store.aware(moment)
    return value.isoformat() if value else None


@cli.command("history")
@click.option(
    "--person", "person_key", metavar="KEY", help="A person's sync key, username or email."
)
@click.option("--file", "file_id", type=FILE_ID, metavar="ID", help="A file's id (syncd files).")
@click.option(
    "--site", metavar="SITE", help="The site (tenant); needed when the config has several."
)
@click.option(
    "--kind",
    type=click.Choice([kind.value for kind in PersonKind]),
    help="With --person: only the student or only the parent of that key.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the events as JSON.")
@pass_app
@reader_may_leave
def history_command(
    app: App,
    person_key: str | None,
    file_id: int | None,
    site: str | None,
    kind: str | None,
    as_json: bool,
) -> None:
    """The audit trail of a person or a file, from the database."""
    if (person_key is None) == (file_id is None):
        raise UsageError("pass exactly one of --person KEY or --file ID")
    if kind is not None and person_key is None:
        raise UsageError("--kind goes with --person KEY")
    with app.reader.connect() as connection:
        if file_id is not None:
            _ledger_row(connection, file_id)  # an unknown id is a mistake, as for a person
            rows = trail.events_of_file(connection, file_id)
        else:
            assert person_key is not None
            site_name = app.config.site(site)
            in_site = sa.select(persons.c.id, persons.c.username).where(persons.c.site == site_name)
            if kind is not None:  # a student and a parent may share a key (two SIS tables)
                in_site = in_site.where(persons.c.kind == kind)
            query = in_site.where(
                sa.or_(persons.c.sync_key == person_key, persons.c.email == person_key.casefold())
            )
            ids = sorted(
                {row.id for row in connection.execute(query)}
                | {row.id for row in store.persons_by_username(connection, in_site, person_key)}
            )
            if not ids:
                who = f"{kind} " if kind else "person "
                raise UsageError(f'no {who}"{person_key}" in site "{site_name}"')
            rows = trail.events_of_person(connection, ids)
    # One document at a time: a district's first load is millions of events.
    documents = (audit.event_as_dict(row) for row in rows)
    if as_json:
        print_json_array(documents)
        return
    out = sys.stdout
    for doc in documents:
        extra = {k: v for k, v in doc.items() if k not in ("ts", "level", "event")}
        out.write(f"{doc['ts']}  {doc['event']:<22} {json.dumps(extra, ensure_ascii=False)}\n")
    out.flush()


# --- check-config / db -------------------------------------------------------------------------


@cli.command("check-config")
@click.option("--json", "as_json", is_flag=True, help="Print each check's outcome as JSON.")
@pass_app
def check_config_command(app: App, as_json: bool) -> None:
    """Validate the config, reach the database and every source. Each problem is one line on
    stderr, with --json too (stdout then holds the whole document, problems included)."""
    from syncd.daemon import check_source

    try:
        config = app.config
    except SyncdError as error:  # no config, or one that cannot be read: nothing else to check
        if as_json:
            print_json(
                {
                    "config": _config_path_or_none(app),
                    "config_ok": False,
                    "config_error": str(error),
                    "database": None,
                    "database_ok": None,
                    "database_error": None,
                    "sources": [],
                }
            )
        raise
    # The sources are checked whatever the database says: an operator (or a monitor reading
    # --json) learns everything that is wrong in one run.
    database_error = _database_problem(app)
    errors = {source.name: check_source(source) for source in config.sources}
    problems = {name: str(error) if error else None for name, error in errors.items()}
    database = describe(config.database_url)
    if as_json:
        print_json(
            {
                "config": str(config.path),
                "config_ok": True,
                "config_error": None,
                "database": database,
                "database_ok": database_error is None,
                "database_error": str(database_error) if database_error else None,
                "sources": [
                    {
                        "source": source.name,
                        "url": source.url,
                        "ok": problems[source.name] is None,
                        "error": problems[source.name],
                    }
                    for source in config.sources
                ],
            }
        )
    else:
        click.echo(f"config {config.path}: ok")
        if database_error is None:
            click.echo(f"database {database}: ok")
    if database_error is not None:
        click.echo(f"syncd: {database_error}", err=True)
    for source in config.sources:
        problem = problems[source.name]
        if problem:
            # A source's errors already name it; say so once, in the `syncd: ` error form.
            named = f'source "{source.name}"'
            if not problem.startswith(named):
                problem = f"{named}: {problem}"
            click.echo(f"syncd: {problem}", err=True)
        elif not as_json:
            click.echo(f'source "{source.name}" ({source.url}): ok')
    codes = {error.exit_code for error in [database_error, *errors.values()] if error is not None}
    if codes:
        sys.exit(min(codes))  # 2: settings (a secret not set, an old schema); else 3


def _config_path_or_none(app: App) -> str | None:
    """Return the config file a command would read, or None when there is none."""
    try:
        return str(find_config_path(app.config_option))
    except SyncdError:
        return None


def _database_problem(app: App) -> SyncdError | None:
    """Return why the database cannot be used (the error `main` would print), or None."""
    try:
        with app.reader.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except SyncdError as error:
        return error
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as error:
        return DatabaseUnreachable(database_problem(error))
    return None


@cli.group("db")
def db_group() -> None:
    """Database maintenance."""


@db_group.command("upgrade")
@pass_app
def db_upgrade_command(app: App) -> None:
    """Migrate the database schema to this version (safe to repeat)."""
    before, after = upgrade_database(app.config.database_url)
    if before == after:
        click.echo(f"database schema is current ({after})")
    else:
        click.echo(f"database schema upgraded from {before or 'empty'} to {after}")


# --- entry point -------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI; errors are one line on stderr with the documented exit code (after the
    traceback with --debug, which changes nothing else)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = _global_debug(args)

    def fail(line: str, code: int) -> NoReturn:
        if debug:
            traceback.print_exc()
        click.echo(one_line(line), err=True)
        sys.exit(code)

    previous_hook = threading.excepthook
    threading.excepthook = partial(_thread_failed, debug)
    try:
        cli.main(args=args, prog_name="syncd", standalone_mode=False)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.Abort as aborted:
        if isinstance(aborted.__cause__, KeyboardInterrupt):  # click's answer to Ctrl-C
            sys.exit(130)
        fail("syncd: aborted", 1)
    except click.exceptions.NoArgsIsHelpError as error:
        error.show()  # `syncd` alone: the help text, not an error line
        sys.exit(2)
    except click.UsageError as error:
        # click's own layout is four lines (usage, hint, blank, error); errors are one line.
        message = " ".join(error.format_message().split())
        where = error.ctx.command_path if error.ctx else "syncd"
        if isinstance(error, click.NoSuchOption) and error.option_name in GLOBAL_OPTIONS:
            # `syncd status --debug`: say where a global option goes.
            option = "--config PATH" if error.option_name == "--config" else error.option_name
            usage = where.replace("syncd", f"syncd {option}", 1)
            fail(f"syncd: {message} (a global option goes before the command: {usage} ...)", 2)
        fail(f"syncd: {message} (see {where} --help)", 2)
    except click.ClickException as error:
        fail(f"syncd: {error.format_message()}", error.exit_code or 1)
    except SyncdError as error:
        if isinstance(error, AuditUnwritable):
            audit.take_lost()  # this line says it
        fail(f"syncd: {error}", error.exit_code)
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as error:
        fail(f"syncd: {database_problem(error)}", 3)
    except StoppedAtOnce as stopped:
        # Each file commits whole: the one in hand is rolled back. An import's ledger entry is
        # failed by the next import or pass; a pass's file waits in processing/ (README).
        fail(f"syncd: stopped at once ({stopped}): what was not committed is rolled back", 130)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as error:  # noqa: BLE001 - the promise is one line, never a traceback
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        fail(f"syncd: unexpected error: {message} (run with --debug for details)", 1)
    finally:
        threading.excepthook = previous_hook
        _say_lost_lines()


def _say_lost_lines() -> None:
    """Exit 3 when the audit log lost lines of changes this command committed (a full
    disk): the command did its work (reports, output), and the events are in the database."""
    lost = audit.take_lost()
    if lost is not None:
        click.echo(
            f"syncd: {lost}: the JSON lines of changes this command made are missing from "
            "it (their events are in the database: syncd history --file ID)",
            err=True,
        )
        sys.exit(3)


def _thread_failed(debug: bool, args: threading.ExceptHookArgs) -> None:
    """An error no thread caught: one line, the traceback only with --debug. paramiko's
    prefetch thread dies with a dropped connection, which the download it served then
    names in its own line: nothing more is said of it."""
    if debug:
        threading.__excepthook__(args)
        return
    if args.exc_type is SystemExit:
        return
    frame = args.exc_traceback
    while frame is not None:
        if str(frame.tb_frame.f_globals.get("__name__", "")).startswith("paramiko."):
            return
        frame = frame.tb_next
    name = args.thread.name if args.thread is not None else "a thread"
    problem = str(args.exc_value) or args.exc_type.__name__
    click.echo(one_line(f"syncd: {name} stopped: {problem}"), err=True)


GLOBAL_OPTIONS = ("--debug", "--config")


def _global_debug(args: Sequence[str]) -> bool:
    """Whether `--debug` is among the global options, before the command (after it, it is
    an unknown option: a usage error)."""
    rest = iter(args)
    for arg in rest:
        if arg == "--debug":
            return True
        if arg == "--config":
            next(rest, None)  # its value
        elif arg == "--" or not arg.startswith("-"):
            return False
    return False
