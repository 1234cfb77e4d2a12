"""One file end to end: parse → validate → resolve → plan → apply, with its audit events.

The caller (the `import` command or the pickup pass) owns where the file lives; this module
reads it, records it in the file ledger and changes the database in one transaction.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
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
    hold_reason,
    plan_parent_links,
    plan_persons,
    plan_relationship_links,
    resolve_links,
    too_many_rejected,
)
from syncd.core.validate import Columns, RowRules, validate_links, validate_persons
from syncd.db import apply as writes
from syncd.db import store
from syncd.db.schema import files
from syncd.errors import FileFailed
from syncd.formats.headers import ColumnMap, detect_kind, map_columns
from syncd.formats.readers import open_table
from syncd.model import (
    Counts,
    ErrorList,
    FileStatus,
    Kind,
    LinkRecord,
    Mode,
    PasswordPolicy,
    PersonFields,
    PersonRecord,
    RawRow,
    RowError,
)

PERSON_IDENTIFIERS = ("sync_key", "username", "email")


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
    unresolved_children: int = 0
    duration_s: float = 0.0


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
    force: bool = False  # released by an operator: skip the safety thresholds
    run_id: str | None = None
    location: str | None = None  # where the file sits while processed, for the ledger
    progress: Callable[[int], None] | None = None  # told the rows read so far, now and then


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(slots=True)
class _Parsed:
    kind: Kind
    columns: ColumnMap
    records: list[PersonRecord] | list[LinkRecord]
    errors: ErrorList
    rows: int


PROGRESS_EVERY = 10_000


def _counting(
    rows: Iterator[RawRow], counter: list[int], progress: Callable[[int], None] | None
) -> Iterator[RawRow]:
    for row in rows:
        counter[0] += 1
        if progress is not None and counter[0] % PROGRESS_EVERY == 0:
            progress(counter[0])
        yield row


def parse_file(job: Job, result: FileResult) -> _Parsed:
    """Read and validate the whole file; raise FileFailed for what fails the whole file."""
    source = job.source
    with open_table(job.path, source.limits) as table:
        result.encoding = table.encoding if table.format == "csv" else "xlsx"
        result.delimiter = table.delimiter
        kind = job.kind or detect_kind(job.name, table.header, source.globs, source.child_column)
        if kind is None:
            raise FileFailed(
                "kind cannot be found from the file name or the header: name it like "
                "*students*, *parents* or *relationships*, or use the documented column names"
            )
        result.kind = kind
        columns = map_columns(table.header, kind, source.child_column)
        _check_required_columns(kind, columns)
        keep_passwords = source.passwords is PasswordPolicy.HASH
        result.ignored_columns = list(columns.ignored)
        if "password" in columns.fields and not keep_passwords:
            result.ignored_columns.append(columns.column_name("password"))
        result.attribute_columns = [columns.header[index] for _, index in columns.attributes]
        rules = RowRules(
            keep_passwords=keep_passwords, relationship_types=source.relationship_types
        )
        cols = Columns(
            fields=columns.fields,
            names={name: columns.column_name(name) for name in columns.fields},
            attributes=columns.attributes,
        )
        errors = ErrorList()
        counter = [0]
        rows = _counting(table.rows, counter, job.progress)
        records: list[PersonRecord] | list[LinkRecord]
        if kind is Kind.RELATIONSHIPS:
            records = list(validate_links(rows, cols, rules, errors))
        else:
            records = list(validate_persons(rows, kind, cols, rules, errors))
    return _Parsed(kind, columns, records, errors, counter[0])


def _check_required_columns(kind: Kind, columns: ColumnMap) -> None:
    if kind is Kind.RELATIONSHIPS:
        if not any(
            name in columns.fields for name in ("parent_email", "parent_key", "parent_username")
        ):
            raise FileFailed("no parent column (Parent Email, Parent ID or Parent username)")
        if not any(name in columns.fields for name in ("student_email", "student_id")):
            raise FileFailed("no child column (Student Email or Student ID)")
        return
    if not any(name in columns.fields for name in PERSON_IDENTIFIERS):
        raise FileFailed("no identifier column: needs a sync key, username or email column")


def _password_only(upsert: PersonUpsert) -> bool:
    """Return whether an upsert only sets a new password (see _plan_password_changes)."""
    return upsert.person_id is not None and not upsert.changed and not upsert.reactivate


class Pipeline:
    """Processes files against one database; holds nothing but its engine and clock."""

    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock

    # --- ledger --------------------------------------------------------------------------

    def open_ledger(self, job: Job, sha256: str, size: int) -> int:
        """Return the ledger id for the job, creating the entry (and file.received)."""
        if job.file_id is not None:
            return job.file_id
        now = self.clock.now()
        with self.engine.begin() as connection:
            store.ensure_site(connection, job.source.site, now)
            inserted = connection.execute(
                files.insert().values(
                    source=job.source_name,
                    site=job.source.site,
                    name=job.name,
                    status=FileStatus.PROCESSING.value,
                    sha256=sha256,
                    size=size,
                    path=job.location,
                    received_at=now,
                )
            ).inserted_primary_key
            assert inserted is not None
            file_id = int(inserted[0])
            events = self._events(job, file_id)
            events.add(audit.FILE_RECEIVED, name=job.name, sha256=sha256, size=size)
            events.write(connection)
        events.emit()
        return int(file_id)

    def _events(self, job: Job, file_id: int | None) -> EventBuffer:
        context = {
            "source": job.source_name,
            "site": job.source.site,
            "file_id": file_id,
            "run_id": job.run_id,
        }
        return EventBuffer(context=context, now=self.clock.now())

    def finish_ledger(
        self,
        connection: sa.Connection,
        file_id: int,
        result: FileResult,
        location: str | None = None,
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
        started = self.clock.monotonic()
        result = FileResult(name=job.name)
        size = job.path.stat().st_size
        result.sha256 = sha256_of(job.path)
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
            parsed = parse_file(job, result)
            self._plan_and_apply(job, parsed, result)
        except FileFailed as failure:
            result.status = FileStatus.FAILED
            result.reason = str(failure)
            if not job.dry_run:
                self._record_outcome(job, result, audit.FILE_FAILED, level="error")
        finally:
            result.duration_s = round(self.clock.monotonic() - started, 3)
        return result

    def fail_unread(self, job: Job, size: int, reason: str) -> FileResult:
        """Record a file as failed without reading it (e.g. too large to download)."""
        result = FileResult(name=job.name, status=FileStatus.FAILED, reason=reason)
        result.file_id = self.open_ledger(job, "", size)
        self._record_outcome(job, result, audit.FILE_FAILED, level="error")
        return result

    def _duplicate_of(self, job: Job, sha256: str) -> Any:
        with self.engine.connect() as connection:
            return store.applied_sha256(connection, job.source_name, job.source.site, sha256)

    def _record_outcome(
        self, job: Job, result: FileResult, event: str, level: str = "info"
    ) -> None:
        events = self._events(job, result.file_id)
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

    def _plan_and_apply(self, job: Job, parsed: _Parsed, result: FileResult) -> None:
        source = job.source
        kind = parsed.kind
        counts = result.counts
        counts.rows = parsed.rows
        now = self.clock.now()
        context = writes.ApplyContext(
            site=source.site,
            source=job.source_name,
            file_id=result.file_id,
            now=now,
            pending_ttl=source.pending_ttl,
            hash_passwords=source.passwords is PasswordPolicy.HASH,
            update_passwords=source.update_passwords,
            deactivate_orphan_parents=source.deactivate_orphan_parents,
        )
        events = self._events(job, result.file_id)
        connection = self.engine.connect()
        transaction = connection.begin()
        if not job.dry_run:
            events.bind(connection)
        try:
            store.ensure_site(connection, source.site, now)
            person_plan, link_plan = self._plan(connection, job, parsed, result)
            result.errors = sorted(parsed.errors.errors, key=lambda error: error.row)
            counts.rejected = len(parsed.errors.rejected_lines)
            old_fields = self._old_fields(connection, person_plan)
            self._count_plan(person_plan, link_plan, old_fields, counts)
            if job.dry_run:  # the change list is the preview; a real apply never prints it
                result.changes = self._describe(connection, person_plan, link_plan, old_fields)
            for error in result.errors:
                events.add(
                    audit.ROW_REJECTED,
                    level="warning",
                    row=error.row,
                    column=error.column,
                    error=error.error,
                )
            events.add(
                audit.FILE_VALIDATED,
                name=job.name,
                kind=kind.value,
                rows=counts.rows,
                rejected=counts.rejected,
            )
            failure, held = self._verdict(connection, job, kind, counts, link_plan)
            if job.dry_run:
                # The preview says what the real run would do with the file as a whole.
                result.status = FileStatus.APPLIED
                if failure or held:
                    result.reason = (
                        f"would fail: {failure}" if failure else f"would be held: {held}"
                    )
                events.discard()
                transaction.rollback()
                return
            if failure:
                raise FileFailed(failure)
            if held:
                result.status = FileStatus.HELD
                result.reason = held
                events.add(
                    audit.FILE_HELD, level="warning", name=job.name, kind=kind.value, reason=held
                )
                assert result.file_id is not None
                self.finish_ledger(connection, result.file_id, result)
                events.write(connection)
                transaction.commit()
                events.emit()
                return
            applied = writes.Applied()
            new_ids: dict[str, int] = {}
            if person_plan is not None:
                new_ids = writes.apply_persons(connection, person_plan, context, events, applied)
            if link_plan is not None:
                writes.apply_links(connection, link_plan, context, events, applied, new_ids)
            if kind is Kind.STUDENTS:
                writes.resolve_pending(connection, context, events, applied)
            writes.settle_parents(connection, context, events, applied)
            applied.counts.rows = counts.rows
            applied.counts.rejected = counts.rejected
            if person_plan is not None:
                applied.counts.unchanged += person_plan.unchanged
            else:  # a relationships file: its row updated a link when it changed its type
                applied.counts.updated = applied.links_retyped
                applied.counts.unchanged = max(
                    0,
                    counts.rows
                    - counts.rejected
                    - applied.counts.links_created
                    - applied.counts.links_removed
                    - applied.counts.pending
                    - applied.counts.updated,
                )
            result.counts = applied.counts
            result.pending = applied.pending
            result.status = FileStatus.APPLIED
            events.add(
                audit.FILE_APPLIED, name=job.name, kind=kind.value, counts=result.counts.as_dict()
            )
            assert result.file_id is not None
            self.finish_ledger(connection, result.file_id, result)
            events.write(connection)
            transaction.commit()
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
        connection: sa.Connection,
        job: Job,
        kind: Kind,
        counts: Counts,
        link_plan: LinkPlan | None,
    ) -> tuple[str | None, str | None]:
        """Return (why the file fails: max_reject, why it is held: a safety threshold)."""
        source = job.source
        failure = too_many_rejected(counts.rows, counts.rejected, source.max_reject)
        if job.force:
            return failure, None
        # The links threshold compares removed *active* links with the site's active links;
        # dropping a pending link (no student yet) removes none of those.
        judged = dataclasses.replace(
            counts, links_removed=link_plan.removed if link_plan is not None else 0
        )
        mode = source.mode_for(kind)
        header_only = mode is Mode.FULL and counts.rows == 0
        if not (header_only or judged.deactivated or judged.links_removed or judged.updated):
            return failure, None  # nothing a threshold weighs: skip counting the site
        thresholds = Thresholds(source.max_deactivate, source.max_update, source.max_reject)
        site = store.site_counts(connection, source.site, kind, job.source_name)
        return failure, hold_reason(kind, mode, counts.rows, judged, site, thresholds)

    def _plan(
        self, connection: sa.Connection, job: Job, parsed: _Parsed, result: FileResult
    ) -> tuple[PersonPlan | None, LinkPlan | None]:
        source = job.source
        kind = parsed.kind
        mode = source.mode_for(kind)
        if kind is Kind.RELATIONSHIPS:
            link_records = [r for r in parsed.records if isinstance(r, LinkRecord)]
            labels = {
                f"parent_{by}": parsed.columns.column_name(f"parent_{by}")
                for by in ("email", "sync_key", "username")
            }
            labels["parent_sync_key"] = parsed.columns.column_name("parent_key")
            labels["student_email"] = parsed.columns.column_name("student_email")
            labels["student_id"] = parsed.columns.column_name("student_id")
            resolved = resolve_links(
                link_records,
                store.parent_index(connection, source.site),
                store.student_index(connection, source.site, source.child_field),
                store.student_index(connection, source.site, "email"),
                source.child_field,
                parsed.errors,
                labels,
            )
            result.unresolved_children = sum(1 for item in resolved if item.child is None)
            parent_ids = {item.parent.person_id for item in resolved}
            existing = store.links_of_parents(connection, parent_ids)
            pending = store.pending_of_parents(connection, parent_ids)
            if mode.value == "full" and job.source_name is not None:
                existing += store.relationship_links_of_source(
                    connection, source.site, job.source_name
                )
                pending += store.pending_of_source(
                    connection, source.site, job.source_name, Kind.RELATIONSHIPS
                )
            return None, plan_relationship_links(
                resolved, mode, job.source_name or "", existing, pending
            )
        person_records = [r for r in parsed.records if isinstance(r, PersonRecord)]
        snapshot = store.person_snapshot(connection, source.site, kind.person_kind)
        index = None
        if kind is Kind.PARENTS and "child_key" in parsed.columns.fields:
            index = store.student_index(connection, source.site, source.child_field)
        person_plan = plan_persons(
            person_records,
            kind,
            mode,
            snapshot,
            parsed.errors,
            source.child_field,
            index,
            parsed.columns.column_name("child_key") or "child",
        )
        if source.passwords is PasswordPolicy.HASH and source.update_passwords:
            self._plan_password_changes(
                connection, person_plan, person_records, snapshot, parsed.errors
            )
        result.unresolved_children = person_plan.unresolved_children
        link_plan = None
        if kind is Kind.PARENTS and person_plan.link_requests:
            ids = [r.parent_id for r in person_plan.link_requests if r.parent_id is not None]
            link_plan = plan_parent_links(
                person_plan.link_requests,
                store.links_of_parents(connection, ids),
                store.pending_of_parents(connection, ids),
                source.child_field,
            )
        return person_plan, link_plan

    @staticmethod
    def _plan_password_changes(
        connection: sa.Connection,
        plan: PersonPlan,
        records: Sequence[PersonRecord],
        snapshot: Mapping[str, ExistingPerson],
        errors: ErrorList,
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
        )
        for (person, record), changed in zip(candidates, differ, strict=True):
            if changed:
                plan.upserts.append(
                    PersonUpsert(person.person_id, record, person.fingerprint, False, False)
                )
                plan.unchanged -= 1

    @staticmethod
    def _old_fields(
        connection: sa.Connection, person_plan: PersonPlan | None
    ) -> dict[int, PersonFields]:
        """Return the stored fields of the persons whose row differs from what the file says."""
        if person_plan is None:
            return {}
        ids = [u.person_id for u in person_plan.upserts if u.person_id is not None and u.changed]
        return store.person_fields(connection, ids)

    @staticmethod
    def _count_plan(
        person_plan: PersonPlan | None,
        link_plan: LinkPlan | None,
        old_fields: dict[int, PersonFields],
        counts: Counts,
    ) -> None:
        """Fill the planned counts (the dry-run figures and the threshold inputs)."""
        if person_plan is not None:
            counts.created = sum(1 for u in person_plan.upserts if u.person_id is None)
            # A row whose only change is its child cell changes links, not the person: it
            # is no update (nor counted against max_update), as in the applied counts.
            counts.updated = sum(
                1
                for u in person_plan.upserts
                if _password_only(u)
                or (
                    u.person_id in old_fields
                    and changed_fields(old_fields[u.person_id], u.record.fields)
                )
            )
            counts.reactivated = sum(1 for u in person_plan.upserts if u.reactivate)
            counts.deactivated = len(person_plan.deactivations)
            counts.unchanged = person_plan.unchanged
        elif link_plan is not None:
            counts.updated = sum(1 for change in link_plan.sets if writes.is_retype(change))
        if link_plan is not None:
            counts.links_created = link_plan.created
            counts.links_removed = link_plan.removed + len(link_plan.pending_drops)
            counts.pending = len(link_plan.pending_adds)

    @staticmethod
    def _describe(
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
                fields = (
                    changed_fields(old[upsert.person_id], upsert.record.fields)
                    if upsert.person_id in old
                    else {}
                )
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
            + [link.child_id for link in clears],
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
        return changes
