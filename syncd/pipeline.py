"""One file end to end: parse → validate → resolve → plan → apply, with its audit events.

The caller (the `import` command or the pickup pass) owns where the file lives; this module
reads it, records it in the file ledger and changes the database in one transaction.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from syncd import audit
from syncd.audit import EventBuffer
from syncd.clock import Clock
from syncd.config import SourceConfig
from syncd.core.plan import (
    ExistingPerson,
    LinkPlan,
    PersonPlan,
    PersonUpsert,
    Thresholds,
    changed_fields,
    complete_upsert,
    drained,
    hold_reason,
    plan_relationship_links,
    resolve_links,
    too_many_rejected,
)
from syncd.core.validate import link_child_label, validate_links, without_empty_links
from syncd.db import apply as writes
from syncd.db import store
from syncd.db.database import ANALYZE_AFTER_ROWS, refresh_statistics
from syncd.db.preview import PreviewConnection, keep_preview
from syncd.db.schema import files
from syncd.errors import FileFailed, Stopped
from syncd.formats.detect import Detected, detect_format
from syncd.formats.headers import detect_kind
from syncd.locks import RunMark
from syncd.model import (
    Counts,
    ErrorList,
    FileStatus,
    Kind,
    Limits,
    Mode,
    ParentBy,
    PasswordPolicy,
    PersonFields,
    PersonRecord,
    RowError,
)
from syncd.person_files import PersonFile
from syncd.reading import OpenedFile, counting, open_file
from syncd.stopping import StoppedAtOnce


@dataclass(slots=True)
class FileResult:
    """Everything the report, the CLI and the ledger say about one file."""

    name: str
    file_id: int | None = None
    kind: Kind | None = None
    status: FileStatus = FileStatus.FAILED
    reason: str | None = None
    sha256: str | None = None
    encoding: str | None = None
    delimiter: str | None = None
    counts: Counts = field(default_factory=Counts)
    errors: list[RowError] = field(default_factory=list)
    pending: list[dict[str, str]] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    attribute_columns: list[str] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)
    # Delete rows of a relationships file whose link stays (core.plan.LinkPlan.kept).
    links_kept: list[dict[str, Any]] = field(default_factory=list)
    unresolved_children: int = 0
    duration_s: float = 0.0
    # A dry run's file is planned, never failed or held: what the real run would do then.
    would: FileStatus | None = None
    # Where its reports went, {"errors": …, "report": …} (reports.write_reports_with): a
    # name already taken got a numeric suffix, so `syncd import` says which.
    reports_written: dict[str, str] = field(default_factory=dict)

    def previewed(self, failure: str | None, held: str | None) -> None:
        """Say what the real run would do with a file a dry run planned whole."""
        self.status = FileStatus.APPLIED
        if failure:
            self.would, self.reason = FileStatus.FAILED, f"would fail: {failure}"
        elif held:
            self.would, self.reason = FileStatus.HELD, f"would be held: {held}"


@dataclass(frozen=True, slots=True)
class Job:
    """How to process one file: where it is, for which source, and what may happen."""

    path: Path
    name: str
    source: SourceConfig
    source_name: str | None  # None for `syncd import` without a configured source
    kind: Kind | None = None
    dry_run: bool = False
    file_id: int | None = None  # an existing ledger entry (crash recovery, release)
    # The entry of a file claimed into processing/ and not read yet (register_claim): it is
    # received (sha256, size, file.received) by open_ledger.
    claim_id: int | None = None
    force: bool = False  # released by an operator: skip the safety thresholds
    run_id: str | None = None
    location: str | None = None  # where the file sits while processed, for the ledger
    progress: Callable[[int], None] | None = None  # told the rows read so far, now and then
    # Called before each piece of long work (a password to check or hash); raises to stop
    # there (errors.Stopped: rolled back, left for the next pass; errors.Interrupted: failed).
    checkpoint: Callable[[], None] = writes.no_checkpoint
    # The batch's parents left to judge as orphans, and whether a later file of the batch
    # comes (then they are judged by that file, or by settle_orphans after the batch).
    orphans: writes.OrphanCarry | None = None
    defer_orphans: bool = False


_paused = 0
_paused_lock = threading.Lock()


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a file is processed.

    A million-row file keeps millions of objects alive; each collection walks them all,
    which costs a fifth of the time of a first load. The file's objects form no cycles worth
    collecting meanwhile.
    """
    global _paused
    with _paused_lock:
        _paused += 1
        gc.disable()
    try:
        yield
    finally:
        with _paused_lock:
            _paused -= 1
            if _paused == 0:
                gc.enable()


def kind_by_name(name: str, source: SourceConfig) -> Kind | None:
    """Return the kind the source's name globs give `name`, None when none matches."""
    return detect_kind(name, (), source.globs, source.child_column)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# From this size the format is found while the digest is taken (_digest_and_detect).
SIDE_BY_SIDE_BYTES = 4 << 20


def _digest_and_detect(path: Path, size: int, limits: Limits) -> tuple[str, Detected | None]:
    """Return the file's sha256 and, for a big file, its format and encoding (None: found
    when the file is opened), read side by side: hashlib lets go of the GIL while it hashes,
    so on a second core the digest costs no wall time beside the text scan that finds the
    encoding (280 MB of district files: 0.32 s one after the other, 0.20 s side by side).
    Raises OSError if the file cannot be read; a format that fails is found again when the
    file is opened (after its ledger entry, as before)."""
    if not SIDE_BY_SIDE_BYTES <= size <= limits.max_file_size:
        return sha256_of(path), None
    with ThreadPoolExecutor(max_workers=1) as pool:
        digest = pool.submit(sha256_of, path)
        try:
            with path.open("rb") as binary:
                detected: Detected | None = detect_format(binary)
        except (FileFailed, OSError):
            detected = None
        return digest.result(), detected


def _failure_reason(error: Exception) -> str | None:
    """Return why a file failed: a FileFailed's reason, memory run out, or a database's
    refusal of what the file held (a value or key its rules do not take). These fail that
    file alone, rather than leave it in processing/ to be retried at every pass; None for
    any other error (the database unreachable: the file is taken up again later)."""
    if isinstance(error, FileFailed):
        return str(error)
    if isinstance(error, MemoryError):  # its memory is given back as the error unwinds
        return (
            "ran out of memory reading it; nothing of it applied: check the file "
            "(max_field_chars and max_columns bound what one row may hold)"
        )
    # SQLAlchemy's wrappers, and the drivers' own (COPY's errors come unwrapped).
    modules: list[Any] = [sa.exc, sqlite3]
    if (psycopg := sys.modules.get("psycopg")) is not None:
        modules.append(psycopg)
    conflicts = tuple(module.IntegrityError for module in modules)
    if not isinstance(error, (*conflicts, *(module.DataError for module in modules))):
        return None
    cause = getattr(error, "orig", None) or error
    said = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    why = f"the database refused it: {said}; nothing of it applied"
    if isinstance(error, conflicts):
        why += " (another syncd applying the same rows at the same time? send it again)"
    return why


def _unchanged_link_rows(counts: Counts, removed_by_rows: bool) -> int:
    """Return the rows of a relationships file that changed nothing: each other valid row
    made, retyped or left pending one link, or (a delta file's delete row) removed one; a
    full file's removals are of links it no longer lists, not of its rows."""
    removed = counts.links_removed if removed_by_rows else 0
    changed = counts.links_created + counts.updated + counts.pending + removed
    return max(0, counts.rows - counts.rejected - changed)


# The column of a relationships file that names its parents each way.
_PARENT_COLUMNS = {
    ParentBy.SYNC_KEY: "parent_key",
    ParentBy.USERNAME: "parent_username",
    ParentBy.EMAIL: "parent_email",
}


def _password_only(upsert: PersonUpsert) -> bool:
    """Return whether an upsert only sets a new password (see _plan_password_changes)."""
    return upsert.person_id is not None and not upsert.changed and not upsert.reactivate


class Pipeline:
    """Processes files against one database; holds nothing but its engine and clock (and
    a dry run's batch connection while one is open)."""

    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock
        self._preview: PreviewConnection | None = None

    @contextmanager
    def preview_batch(self) -> Iterator[sa.Connection]:
        """Plan the dry-run files processed inside as one batch (PreviewConnection); yield
        the batch's connection, whose changes are all rolled back at the end."""
        with self.engine.connect() as connection:
            transaction = connection.begin()
            self._preview = PreviewConnection(connection)
            try:
                yield connection
            finally:
                self._preview = None
                transaction.rollback()

    def connect(self, job: Job) -> sa.Connection:
        """Return the connection that applies (or previews) `job`'s file."""
        if job.dry_run:
            assert self._preview is not None, "a dry run plans inside preview_batch()"
            return self._preview  # type: ignore[return-value]
        return self.engine.connect()

    # --- ledger --------------------------------------------------------------------------

    def open_ledger(self, job: Job, sha256: str | None, size: int) -> int:
        """Return the ledger id for the job: its entry, received now (sha256, size and
        file.received) if it is new or only claimed (register_claim)."""
        if job.file_id is not None:
            return job.file_id
        now = self.clock.now()
        with self.engine.begin() as connection:
            store.ensure_site(connection, job.source.site, now)
            if job.claim_id is not None:
                file_id = job.claim_id
                connection.execute(
                    files.update()
                    .where(files.c.id == file_id)
                    .values(sha256=sha256, size=size, path=job.location)
                )
            else:
                # An import's entry names its run from the start (fail_abandoned_imports).
                file_id = self._new_entry(
                    connection, job.source_name, job.source.site, job.name, job.location, now,
                    sha256=sha256, size=size, run_id=job.run_id,
                )  # fmt: skip
            events = self._events(job, file_id)
            events.add(audit.FILE_RECEIVED, name=job.name, sha256=sha256, size=size)
            events.write(connection)
        events.emit()
        return int(file_id)

    def register_claim(self, source: SourceConfig, name: str, location: str) -> int:
        """Record in the ledger a file about to be claimed into processing/ `location`
        (SPEC §3.2), before it is moved: a file found in processing/ is this database's to
        take up only if its ledger says so, never another syncd's claim in progress or a
        file put there by hand. Its size stays unset until it is read (open_ledger)."""
        now = self.clock.now()
        with self.engine.begin() as connection:
            store.ensure_site(connection, source.site, now)
            return self._new_entry(connection, source.name, source.site, name, location, now)

    def fail_abandoned_imports(
        self, own_run: str | None = None, source: str | None = None
    ) -> list[Any]:
        """Fail the ledger entries that `syncd import` runs left `processing` when they were
        killed (kill -9, a power cut: no signal to stop at a safe point), so that no entry
        stays `processing` for ever. Its run's mark (locks.RunMark) tells a dead run from one
        still at work. An entry is finished in its file's own transaction, so nothing of
        such a file was applied. Those of `source` only, if given (each source's pass
        looks at its own). Return the entries failed, as the ledger now has them."""
        with self.engine.connect() as connection:
            left = store.imports_in_processing(connection, source)
        runs = {row.run_id for row in left if row.run_id != own_run}
        dead = {run for run in runs if not RunMark(self.engine, run).alive()}
        reason = (
            "the import that read it stopped before it finished (killed?); nothing of it was "
            "applied: import it again"
        )
        failed = (self.fail_left(row, reason, row.run_id) for row in left if row.run_id in dead)
        return [row for row in failed if row is not None]

    def fail_left(self, row: Any, reason: str, run_id: str) -> Any:
        """Fail a ledger entry left `processing` by a process that is gone (nothing of its
        file was applied), with file.failed; return the entry as the ledger now has it, or
        None when another process decided it meanwhile."""
        now = self.clock.now()
        context = {"source": row.source, "site": row.site, "run_id": run_id, "file_id": row.id}
        events = EventBuffer(context=context, now=now)
        events.add(audit.FILE_FAILED, level="error", name=row.name, kind=row.kind, reason=reason)
        with self.engine.begin() as connection:
            changed = connection.execute(
                files.update()
                .where(files.c.id == row.id, files.c.status == FileStatus.PROCESSING.value)
                .values(status=FileStatus.FAILED.value, reason=reason, finished_at=now)
            ).rowcount
            if not changed:
                return None
            events.write(connection)
            failed = connection.execute(sa.select(files).where(files.c.id == row.id)).one()
        events.emit()
        return failed

    def take_up_again(self, file_id: int) -> int:
        """Count one more take-up of a file syncd died with in hand; return the count."""
        with self.engine.begin() as connection:
            connection.execute(
                files.update()
                .where(files.c.id == file_id)
                .values(attempts=sa.func.coalesce(files.c.attempts, 0) + 1)
            )
            return int(
                connection.execute(
                    sa.select(files.c.attempts).where(files.c.id == file_id)
                ).scalar_one()
            )

    def _give_back_take_up(self, file_id: int) -> None:
        """A file rolled back because syncd was asked to stop is taken up again at the next
        start as if never begun: its take-ups count only the times syncd died with it."""
        with self.engine.begin() as connection:
            connection.execute(
                files.update()
                # A first try counted none (nor does an import's entry): never below 0.
                .where(files.c.id == file_id, files.c.attempts > 0)
                .values(attempts=files.c.attempts - 1)
            )

    def forget_claim(self, file_id: int) -> None:
        """Remove the entry of a claim another syncd won (the file was gone when moved)."""
        with self.engine.begin() as connection:
            connection.execute(files.delete().where(files.c.id == file_id, files.c.size.is_(None)))

    @staticmethod
    def _new_entry(
        connection: sa.Connection,
        source_name: str | None,
        site: str,
        name: str,
        location: str | None,
        now: datetime,
        **received: Any,
    ) -> int:
        """Insert a ledger entry in processing; `received`: its sha256 and size, if read."""
        inserted = connection.execute(
            files.insert().values(
                source=source_name,
                site=site,
                name=name,
                status=FileStatus.PROCESSING.value,
                path=location,
                received_at=now,
                **received,
            )
        ).inserted_primary_key
        assert inserted is not None
        return int(inserted[0])

    def _events(self, job: Job, file_id: int | None) -> EventBuffer:
        return self.events_for(job, file_id, self.clock.now())

    def settle_orphans(
        self, orphans: writes.OrphanCarry, site: str, source_name: str | None, run_id: str
    ) -> None:
        """End a batch: deactivate the orphans among the parents its files deferred that no
        later file of it judged (SPEC §2.4: "at the end of a batch")."""
        if not orphans.parents:
            return
        now = self.clock.now()
        context = {"source": source_name, "site": site, "run_id": run_id}
        events = EventBuffer(context=context, now=now)
        with self.engine.begin() as connection:
            writes.settle_carried_orphans(connection, orphans, now, events)
            events.write(connection)
        events.emit()

    @staticmethod
    def report_waiting(connection: sa.Connection, job: Job, result: FileResult, kind: Kind) -> None:
        """Report the pending links of an applied full file: all its links still waiting
        for their student (those it made earlier included: a file sent again still names
        them), not only those it made (SPEC §2.3: pending links are visible in reports)."""
        result.pending = store.waiting_links(connection, job.source.site, job.source_name, kind)
        result.counts.pending = len(result.pending)

    @staticmethod
    def context_for(job: Job, file_id: int | None, now: datetime) -> writes.ApplyContext:
        """Return how `job`'s file is applied: its source's settings, the batch's orphans."""
        source = job.source
        return writes.ApplyContext(
            site=source.site,
            source=job.source_name,
            file_id=file_id,
            now=now,
            pending_ttl=source.pending_ttl,
            hash_passwords=source.passwords is PasswordPolicy.HASH,
            update_passwords=source.update_passwords,
            deactivate_orphan_parents=source.deactivate_orphan_parents,
            child_field=source.child_field.value,
            orphans=job.orphans,
            defer_orphans=job.defer_orphans,
            dry_run=job.dry_run,
            checkpoint=job.checkpoint,
        )

    @staticmethod
    def events_for(job: Job, file_id: int | None, now: datetime) -> EventBuffer:
        """Return an event buffer for the job's events, stamped `now`."""
        context = {
            "source": job.source_name,
            "site": job.source.site,
            "file_id": file_id,
            "run_id": job.run_id,
        }
        return EventBuffer(context=context, now=now)

    def finish_ledger(
        self,
        connection: sa.Connection,
        file_id: int,
        result: FileResult,
        location: str | None = None,
        run_id: str | None = None,
    ) -> None:
        values: dict[str, Any] = {
            "status": result.status.value,
            "kind": result.kind.value if result.kind else None,
            "counts": result.counts.as_dict(),
            "reason": result.reason,
            "encoding": result.encoding,
            "delimiter": result.delimiter,
            "finished_at": self.clock.now(),
        }
        if location is not None:
            values["path"] = location
        if run_id is not None:
            values["run_id"] = run_id
        connection.execute(files.update().where(files.c.id == file_id).values(**values))

    def set_location(self, file_id: int, location: str, status: FileStatus | None = None) -> None:
        values: dict[str, Any] = {"path": location}
        if status is not None:
            values["status"] = status.value
        with self.engine.begin() as connection:
            connection.execute(files.update().where(files.c.id == file_id).values(**values))

    # --- the spine -----------------------------------------------------------------------

    def process(self, job: Job) -> FileResult:
        """Process one file; never raises for a bad file (the result says failed)."""
        with _collector_paused():
            if job.dry_run and self._preview is None:
                with self.preview_batch():
                    return self._process(job)
            return self._process(job)

    def _process(self, job: Job) -> FileResult:
        started = self.clock.monotonic()
        # The kind the name says, for the report of a file that fails before its header is
        # read (empty, unreadable); the header decides when the name does not.
        result = FileResult(name=job.name, kind=job.kind or kind_by_name(job.name, job.source))
        size = 0
        try:
            size = job.path.stat().st_size
            result.sha256, detected = _digest_and_detect(job.path, size, job.source.limits)
        except OSError as error:
            # Its permissions (a local drop folder's upload, not readable by the account
            # syncd runs as): this file fails, the pass goes on.
            reason = f"cannot read the file: {error.strerror or error}"
            if job.dry_run:
                result.status, result.reason = FileStatus.FAILED, reason
                return result
            return self.fail_unread(job, size, reason)
        if not job.dry_run:
            result.file_id = self.open_ledger(job, result.sha256, size)
        try:
            if size == 0:
                raise FileFailed("empty file")
            if not job.dry_run and not job.force and job.file_id is None:
                duplicate = self._duplicate_of(job, result.sha256)
                if duplicate is not None:
                    result.status = FileStatus.DUPLICATE
                    result.kind = Kind(duplicate.kind) if duplicate.kind else None
                    result.reason = f"same content as file {duplicate.id} ({duplicate.name})"
                    self._record_outcome(job, result, audit.FILE_DUPLICATE)
                    return result
            with open_file(job, result, detected) as opened:
                if opened.kind is Kind.RELATIONSHIPS:
                    self._apply_relationships(job, opened, result)
                else:
                    PersonFile(self, job, result).run(opened)
            self._refresh_statistics(job, result)
        except (Stopped, StoppedAtOnce):
            # Asked to stop, at the next safe point or at once (a second signal): rolled
            # back, not a death to count against the file.
            if result.file_id is not None and not job.dry_run:
                self._give_back_take_up(result.file_id)
            raise
        except Exception as error:
            why = _failure_reason(error)
            if why is None:
                raise
            result.status = FileStatus.FAILED
            result.reason = why
            if isinstance(error, FileFailed) and result.encoding is None:
                result.encoding, result.delimiter = error.encoding, error.delimiter
            # Nothing of a failed file applies: its counts say what was read, not what its
            # rolled-back plan would have changed.
            result.counts = result.counts.read_only()
            if not job.dry_run:
                self._record_outcome(job, result, audit.FILE_FAILED, level="error")
        finally:
            result.duration_s = round(self.clock.monotonic() - started, 3)
        return result

    def _refresh_statistics(self, job: Job, result: FileResult) -> None:
        """After a bulk load, let PostgreSQL plan the next file's reads for the tables as
        they now are (database.ANALYZE_AFTER_ROWS)."""
        if job.dry_run or result.status is not FileStatus.APPLIED:
            return
        counts = result.counts
        loaded = [
            table
            for table, created in (("persons", counts.created), ("links", counts.links_created))
            if created >= ANALYZE_AFTER_ROWS
        ]
        with suppress(sa.exc.SQLAlchemyError):  # the file is applied all the same
            refresh_statistics(self.engine, loaded)

    def fail_unread(self, job: Job, size: int, reason: str) -> FileResult:
        """Record a file as failed without reading it (e.g. too large to download)."""
        kind = job.kind or kind_by_name(job.name, job.source)  # what the name says
        result = FileResult(name=job.name, kind=kind, status=FileStatus.FAILED, reason=reason)
        result.file_id = self.open_ledger(job, None, size)  # never read: no digest
        self._record_outcome(job, result, audit.FILE_FAILED, level="error")
        return result

    def _duplicate_of(self, job: Job, sha256: str) -> Any:
        with self.engine.connect() as connection:
            return store.applied_sha256(connection, job.source_name, job.source.site, sha256)

    def _record_outcome(
        self, job: Job, result: FileResult, event: str, level: str = "info"
    ) -> None:
        events = self._events(job, result.file_id)
        # A failed file's row errors stay in the trail: its changes were rolled back, its
        # rejected rows (too many of them, often) are why.
        events.add_row_errors(result.errors)
        events.add(
            event,
            level=level,
            name=job.name,
            kind=result.kind.value if result.kind else None,
            reason=result.reason,
            counts=result.counts.as_dict(),
        )
        with self.engine.begin() as connection:
            if result.file_id is not None:
                self.finish_ledger(connection, result.file_id, result)
            events.write(connection)
        events.emit()

    def _apply_relationships(self, job: Job, opened: OpenedFile, result: FileResult) -> None:
        """Read, plan and apply a relationships file in one transaction (dry run: roll back).

        The rows are validated and resolved as they are read: what the plan keeps of each
        is a ResolvedLink, not its cells and record.
        """
        source = job.source
        counts = result.counts
        now = self.clock.now()
        context = self.context_for(job, result.file_id, now)
        events = self.events_for(job, result.file_id, now)
        connection = self.connect(job)
        transaction = connection.begin()
        if not job.dry_run:
            events.bind(connection)
        try:
            store.ensure_site(connection, source.site, now)
            errors = ErrorList()
            link_plan = self._plan_links(connection, job, opened, errors, result)
            result.links_kept = link_plan.kept
            names = link_plan.names
            result.errors = sorted(errors.errors, key=lambda error: error.row)
            counts.rejected = len(errors.rejected_lines)
            retyped = sum(1 for change in link_plan.sets if writes.is_retype(change))
            counts.updated = retyped + len(link_plan.pending_retypes)
            counts.links_created = link_plan.created
            counts.links_removed = link_plan.removed + len(link_plan.pending_drops)
            counts.pending = len(link_plan.pending_adds)
            by_rows = source.mode_for(Kind.RELATIONSHIPS) is Mode.DELTA
            counts.unchanged = _unchanged_link_rows(counts, removed_by_rows=by_rows)
            if job.dry_run:  # the change list is the preview; a real apply never prints it
                result.changes = self.describe(connection, None, link_plan, {})
            events.add_row_errors(result.errors)
            events.add(
                audit.FILE_VALIDATED,
                name=job.name,
                kind=Kind.RELATIONSHIPS.value,
                rows=counts.rows,
                rejected=counts.rejected,
            )
            failure, held = self._verdict(connection, job, counts, link_plan)
            if job.dry_run:
                # The preview says what the real run would do with the file as a whole.
                result.previewed(failure, held)
                events.discard()
                if failure or held:
                    transaction.rollback()
                    return
                # A later relationships file of the batch is planned after this one's
                # changes, as a real run applies them (preview_batch rolls them all back).
                applied = writes.Applied()
                writes.apply_links(connection, link_plan, context, events, applied, {}, names)
                writes.settle_parents(connection, context, events, applied)
                result.changes += applied.orphan_change_list()
                # Counted as the real run's report counts them (its changes list them).
                counts.orphans_deactivated = applied.counts.orphans_deactivated
                counts.orphans_reactivated = applied.counts.orphans_reactivated
                if source.mode_for(Kind.RELATIONSHIPS) is Mode.FULL:  # as the real run reports
                    self.report_waiting(connection, job, result, Kind.RELATIONSHIPS)
                events.discard()
                keep_preview(transaction)
                writes.carry_orphans(context, applied)
                return
            if failure:
                raise FileFailed(failure)
            if held:
                result.status = FileStatus.HELD
                result.reason = held
                # The report lists the pending links it counts, as a held parents file's does.
                result.pending = [add.report_line() for add in link_plan.pending_adds]
                events.stamp(connection, self.clock.now())
                events.add(
                    audit.FILE_HELD,
                    level="warning",
                    name=job.name,
                    kind=Kind.RELATIONSHIPS.value,
                    reason=held,
                )
                assert result.file_id is not None
                self.finish_ledger(connection, result.file_id, result)
                events.write(connection)
                transaction.commit()
                events.emit()
                return
            applied = writes.Applied()
            writes.apply_links(connection, link_plan, context, events, applied, {}, names)
            writes.settle_parents(connection, context, events, applied)
            applied.counts.rows = counts.rows
            applied.counts.rejected = counts.rejected
            # A relationships file's row updated a link when it changed its type.
            applied.counts.updated = applied.links_retyped
            applied.counts.unchanged = _unchanged_link_rows(applied.counts, removed_by_rows=by_rows)
            result.counts = applied.counts
            result.pending = applied.pending
            if source.mode_for(Kind.RELATIONSHIPS) is Mode.FULL:
                self.report_waiting(connection, job, result, Kind.RELATIONSHIPS)
            result.status = FileStatus.APPLIED
            events.stamp(connection, self.clock.now())
            events.add(
                audit.FILE_APPLIED,
                name=job.name,
                kind=Kind.RELATIONSHIPS.value,
                counts=result.counts.as_dict(),
            )
            assert result.file_id is not None
            self.finish_ledger(connection, result.file_id, result, run_id=job.run_id)
            events.write(connection)
            transaction.commit()
            writes.carry_orphans(context, applied)
        except BaseException:
            events.discard()
            if transaction.is_active:
                transaction.rollback()
            raise
        finally:
            connection.close()
        events.emit()

    @staticmethod
    def _verdict(
        connection: sa.Connection, job: Job, counts: Counts, link_plan: LinkPlan
    ) -> tuple[str | None, str | None]:
        """Return (why the file fails: max_reject, why it is held: a safety threshold)."""
        source = job.source
        kind = Kind.RELATIONSHIPS
        failure = too_many_rejected(counts.rows, counts.rejected, source.max_reject)
        if job.force:
            return failure, None
        # The links threshold compares removed *active* links with the site's active links;
        # dropping a pending link (no student yet) removes none of those.
        judged = dataclasses.replace(counts, links_removed=link_plan.removed)
        mode = source.mode_for(kind)
        header_only = mode is Mode.FULL and counts.rows == 0
        if not (header_only or judged.deactivated or judged.links_removed or judged.updated):
            return failure, None  # nothing a threshold weighs: skip counting the site
        thresholds = Thresholds(source.max_deactivate, source.max_update, source.max_reject)
        site = store.site_counts(connection, source.site, kind, job.source_name)
        dropped = len(link_plan.pending_drops)
        return failure, hold_reason(kind, mode, counts.rows, judged, site, thresholds, dropped)

    def _plan_links(
        self,
        connection: sa.Connection,
        job: Job,
        opened: OpenedFile,
        errors: ErrorList,
        result: FileResult,
    ) -> LinkPlan:
        """Read the file; return its link plan (with the sync keys of the persons in its
        changes: the audit lines name them, and read again they cost a query per 900)."""
        source = job.source
        mode = source.mode_for(Kind.RELATIONSHIPS)
        columns = opened.columns
        labels = {
            f"parent_{by}": columns.column_name(f"parent_{by}")
            for by in ("email", "sync_key", "username")
        }
        labels["parent_sync_key"] = columns.column_name("parent_key")
        labels["student_email"] = columns.column_name("student_email")
        labels["student_id"] = columns.column_name("student_id")
        # Only the indexes the file's columns can ask (each is a few hundred MB at a
        # district's million persons).
        fields = columns.fields
        parents_by = [by for by, name in _PARENT_COLUMNS.items() if name in fields]
        counter = [0]
        rows = counting(without_empty_links(opened.table.rows, opened.cols), counter, job.progress)
        resolved = resolve_links(
            validate_links(rows, opened.cols, opened.rules, errors),
            store.parent_index(connection, source.site, parents_by),
            store.student_index(connection, source.site, source.child_field)
            if "student_id" in fields
            else {},
            store.student_index(connection, source.site, "email")
            if "student_email" in fields
            else {},
            source.child_field,
            errors,
            labels,
            link_child_label(opened.cols),
        )
        result.counts.rows = counter[0]
        result.unresolved_children = sum(1 for item in resolved if item.child is None)
        parent_ids = {item.parent.person_id for item in resolved}
        full = mode is Mode.FULL and job.source_name is not None
        existing = store.links_to_plan(
            connection, source.site, parent_ids, job.source_name if full else None
        )
        pending = store.pending_to_plan(
            connection, source.site, parent_ids, job.source_name if full else None
        )
        return plan_relationship_links(
            drained(resolved),
            mode,
            job.source_name or "",
            existing,
            pending,
            store.unlinked_values(connection, source.site),
        )

    @staticmethod
    def plan_password_changes(
        connection: sa.Connection,
        plan: PersonPlan,
        records: Sequence[PersonRecord],
        snapshot: Mapping[str, ExistingPerson],
        errors: ErrorList,
        checkpoint: Callable[[], None] = writes.no_checkpoint,
    ) -> None:
        """Add the rows whose only change is a new password (`update_passwords = true`).

        The fingerprint leaves passwords out (a fast digest of one would undo argon2), so an
        otherwise unchanged row's password is checked against its stored hash here.
        """
        planned = {upsert.record.fields.sync_key for upsert in plan.upserts}
        planned |= {gone.sync_key for gone in plan.deactivations}
        candidates = [
            (snapshot[record.fields.sync_key], record)
            for record in records
            if record.password
            and not record.deleted
            and record.line not in errors.rejected_lines
            and record.fields.sync_key in snapshot
            and record.fields.sync_key not in planned
        ]
        if not candidates:
            return
        stored = store.password_hashes(connection, [person.person_id for person, _ in candidates])
        differ = writes.passwords_differ(
            [stored.get(person.person_id) for person, _ in candidates],
            [record.password or "" for _, record in candidates],
            checkpoint,
        )
        for (person, record), changed in zip(candidates, differ, strict=True):
            if changed:
                plan.upserts.append(
                    PersonUpsert(person.person_id, record, person.fingerprint, False, False)
                )
                plan.passwords_changed.add(person.person_id)
                plan.unchanged -= 1

    @staticmethod
    def describe(
        connection: sa.Connection,
        person_plan: PersonPlan | None,
        link_plan: LinkPlan | None,
        old: dict[int, PersonFields],
    ) -> list[dict[str, Any]]:
        """Return the plan as the dry run prints it: one entry per change."""
        changes: list[dict[str, Any]] = []
        if person_plan is not None:
            kind = person_plan.kind.person_kind.value
            for upsert in person_plan.upserts:
                entry: dict[str, Any] = {
                    "row": upsert.record.line,
                    "kind": kind,
                    "sync_key": upsert.record.fields.sync_key,
                }
                fields: dict[str, tuple[str | None, str | None]] = {}
                stored = old.get(upsert.person_id) if upsert.person_id is not None else None
                if stored is not None:
                    # What the apply writes: the file's columns, the rest as stored.
                    completed = complete_upsert(upsert, stored, person_plan.columns)
                    fields = changed_fields(stored, (completed or upsert).record.fields)
                if upsert.person_id is None:
                    entry["action"] = "create"
                elif fields:
                    entry["action"] = "update"
                    entry["changes"] = {
                        name: {"old": before, "new": after}
                        for name, (before, after) in fields.items()
                    }
                    if upsert.reactivate:
                        entry["reactivate"] = True
                elif upsert.reactivate:
                    entry["action"] = "reactivate"
                elif _password_only(upsert):
                    entry["action"] = "update"
                    entry["changes"] = {"password": {"changed": True}}
                else:
                    continue  # only its child cell changed: the link entries say what
                changes.append(entry)
            for gone in person_plan.deactivations:
                changes.append({"action": "deactivate", "kind": kind, "sync_key": gone.sync_key})
        if link_plan is not None:
            changes.extend(Pipeline._describe_links(connection, link_plan))
        return changes

    @staticmethod
    def _describe_links(connection: sa.Connection, link_plan: LinkPlan) -> list[dict[str, Any]]:
        """Return the link changes of a plan, parents and children named by sync key."""
        sets = [change for change in link_plan.sets if change.becomes_active]
        retypes = [change for change in link_plan.sets if writes.is_retype(change)]
        clears = [clear.link for clear in link_plan.clears if clear.becomes_inactive]
        keys = store.sync_keys(
            connection,
            [change.child_id for change in sets + retypes]
            + [link.parent_id for link in clears]
            + [link.child_id for link in clears]
            + [pending.parent_id for pending in link_plan.pending_drops]
            + [pending.parent_id for pending, _ in link_plan.pending_retypes],
        )
        changes: list[dict[str, Any]] = [
            {
                "action": "link",
                "parent": change.parent_key,
                "child": keys.get(change.child_id),
                "type": change.type.value,
            }
            for change in sets
        ]
        changes += [
            {
                "action": "retype",
                "parent": change.parent_key,
                "child": keys.get(change.child_id),
                "type": change.type.value,
                "previous_type": change.existing.type.value if change.existing else None,
            }
            for change in retypes
        ]
        changes += [
            {
                "action": "unlink",
                "parent": keys.get(link.parent_id),
                "child": keys.get(link.child_id),
            }
            for link in clears
        ]
        changes += [
            {"action": "pending", "parent": add.parent_key, "child": add.child_value}
            for add in link_plan.pending_adds
        ]
        changes += [
            {
                "action": "pending",
                "parent": keys.get(pending.parent_id),
                "child": pending.child_value,
                "type": rel_type.value,
                "previous_type": pending.type.value,
            }
            for pending, rel_type in link_plan.pending_retypes
        ]
        # A pending link the file no longer names goes (counted in links_removed): the child
        # as written, as the pending entry named it.
        changes += [
            {
                "action": "unlink",
                "parent": keys.get(pending.parent_id),
                "child": pending.child_value,
                "pending": True,
            }
            for pending in link_plan.pending_drops
        ]
        return changes
