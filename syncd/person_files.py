"""A students or parents file end to end, in bounded memory (SPEC §2.5, §7).

All of it happens in the file's one transaction:

1. Read and apply: the rows stream from the file. A row whose bytes (and how they are read)
   are those of the row that last set a person is counted unchanged without being parsed
   (`RowDigests`); the other rows are validated and, chunk by chunk, planned by the pure
   core against just the persons they name (read by key) and written in bulk, a parents
   chunk with its links. Memory holds one int per person key (the duplicate check). A site's
   first file of a kind is read column by column while its lines are plain
   (`syncd.core.columns`, the same rows and events), then row by row from the first block
   that is not.
2. A parent whose rows must be merged first (named on a second row, or a later row of it
   rejected: SPEC §2.3, §2.4) makes the file start over with every record parked on disk
   (`RecordSpill`) until the last row is read; then the records are planned the same way,
   the repeated parents merged. So does a parsed row naming a person whose unchanged row was
   already counted unread (then every row is parsed).
3. Finish: a full file deactivates the persons it left out; the safety thresholds are
   weighed against what the file did (the transaction is rolled back when it must be held,
   fails or is a dry run); then pending links and orphaned parents are settled.

The change events of step 1 are held back until the file's validation events are out, so the
audit trail reads in the order of SPEC §2.5: validated, then the changes.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import TYPE_CHECKING

import sqlalchemy as sa
from xxhash import xxh3_64_intdigest

from syncd import audit
from syncd.audit import EventBuffer, EventSegment
from syncd.column_worker import prepared_ahead
from syncd.core.columns import PersonColumns, person_columns
from syncd.core.plan import (
    UNLINKED_MARK,
    ExistingPerson,
    LinkPlan,
    ParentLinks,
    PersonPlan,
    SiteCounts,
    Thresholds,
    hold_reason,
    may_be_pending,
    plan_parent_links,
    plan_person_chunk,
    plan_unlisted,
    too_many_rejected,
)
from syncd.core.validate import PersonRows, file_columns, merge_person_records
from syncd.db import apply as writes
from syncd.db import store
from syncd.db.bulk import finish_copy, index_built_after
from syncd.db.database import ANALYZE_AFTER_ROWS, analyze
from syncd.db.preview import keep_preview
from syncd.db.schema import LINKS_BY_CHILD
from syncd.errors import FileFailed
from syncd.formats.known_rows import KnownRows
from syncd.model import (
    Counts,
    ErrorList,
    FileColumns,
    FileStatus,
    Kind,
    Mode,
    PersonRecord,
    RowError,
)
from syncd.reading import OpenedFile, counting, open_file, tell_progress
from syncd.spill import RecordSpill

if TYPE_CHECKING:
    from syncd.pipeline import FileResult, Job, Pipeline

CHUNK = 5_000
# A file with at most this many records is applied in file order even when parents repeat.
IN_FILE_ORDER = 50_000
# A site that has persons of the file's kind has its file read column by column too while
# it has at most one such person per this many bytes of the file (rows take 100-120 bytes:
# at most about a quarter of the file's persons): a district's first whole file after a
# trial of a few hundred rows. The blocks naming a person the site has are read row by row;
# a nightly file of the site would be all such blocks, and its unchanged lines are cheaper
# skipped unparsed by the row reader.
PLAIN_ONTO_PERSONS_BYTES = 400
# Part of every row digest's seed: a syncd that reads rows differently changes it.
ROW_FORMAT = "syncd-rows-1"


def digest_seed(opened: OpenedFile, job: Job) -> int:
    """Return the seed of a file's row digests: everything besides a row's bytes that
    decides what the row means (header, kind, encoding, delimiter, the source's settings)."""
    source = job.source
    table = opened.table
    settings = [
        ROW_FORMAT,
        opened.kind.value,
        source.mode_for(opened.kind).value,
        table.encoding or "",
        table.delimiter or "",
        "\x1f".join(table.header),
        source.child_field.value,
        source.child_column or "",
        source.passwords.value,
        str(source.update_passwords),
        repr(sorted((name, value.value) for name, value in source.relationship_types.items())),
        repr(source.limits),
    ]
    return xxh3_64_intdigest("\x1e".join(settings).encode("utf-8", "surrogatepass"))


@dataclass(slots=True)
class _Read:
    """What reading a file gave: the parked records and what the fast path saw."""

    errors: ErrorList
    spill: RecordSpill
    repeated: set[str]
    has_children: bool
    rows: int = 0
    unchanged_unread: int = 0
    # The site's persons (store.row_digest_snapshot) less those whose row was skipped and,
    # while streaming, those a parsed row named: what is left, a full file did not list.
    snapshot: KnownRows = field(default_factory=KnownRows)
    # The snapshot's size when read: at most the site's persons before the file, and at most
    # its active ones but for parents deactivated as orphans (their digest stays).
    snapshot_size: int = 0
    # Events of changes made while the file was read, to follow its validation events.
    held: EventSegment | None = None


class PersonFile:
    """Applies one students or parents file (the caller made its ledger entry)."""

    def __init__(self, pipeline: Pipeline, job: Job, result: FileResult) -> None:
        self.pipeline = pipeline
        self.job = job
        self.result = result
        self.source = job.source
        self.kind = Kind.STUDENTS
        self.person_kind = self.kind.person_kind
        self.mode = Mode.FULL
        self.applied = writes.Applied()
        self.unchanged = 0
        self.unresolved = 0
        # Persons and links the file had added when PostgreSQL last took their statistics.
        self.analyzed_at = (0, 0)
        # Existing persons the file's records name (they are listed, whatever their fate).
        self.matched: set[int] = set()
        # The newest person id before the file: any id above it is a person the file made.
        self.newest_before = 0
        self.existing_cache: dict[str, ExistingPerson] | None = None
        self.site_had_persons = False
        self.students: store.StudentLookup | None = None
        # Parents are applied as they are read until one needs merging (see _read).
        self.park_parents = False
        # What the file's rows say about a person: an update leaves the rest as stored.
        self.columns = FileColumns()
        # A field's column as the file names it (for the errors of a repeated parent).
        self.field_label: Callable[[str], str] = str

    # --- the whole file ------------------------------------------------------------------

    def run(self, opened: OpenedFile) -> None:
        """Apply the file in one transaction; set the result (applied, held, dry run).

        Raises FileFailed for what fails the whole file.
        """
        job, result, pipeline = self.job, self.result, self.pipeline
        self.kind = opened.kind
        self.person_kind = opened.kind.person_kind
        self.mode = self.source.mode_for(opened.kind)
        now = pipeline.clock.now()
        self.context = pipeline.context_for(job, result.file_id, now)
        self.events = events = pipeline.events_for(job, result.file_id, now)
        connection = pipeline.connect(job)
        transaction = connection.begin()
        if not job.dry_run:
            events.bind(connection)
        reopened = contextlib.ExitStack()
        try:
            store.ensure_site(connection, self.source.site, now)
            self.site_had_persons = store.has_persons(
                connection, self.source.site, self.person_kind
            )
            self.newest_before = store.newest_person_id(connection)
            fast = True
            while True:
                try:
                    read = self._read(connection, opened, fast)
                    if self._fast_path_conflicts(connection, read):
                        raise _UnreadRowConflict
                    break
                except (_UnreadRowConflict, _ParkParents) as restart:
                    # A person named both by an unread row and by a parsed one (a duplicate,
                    # or a parent on a new second row): start over, every row parsed. A
                    # parent whose rows must be merged: start over, parents parked.
                    if isinstance(restart, _UnreadRowConflict):
                        fast = False
                    else:
                        self.park_parents = True
                    events.discard()
                    transaction.rollback()
                    transaction = connection.begin()
                    store.ensure_site(connection, self.source.site, now)
                    self._start_over()
                    reopened.close()
                    opened = reopened.enter_context(open_file(job, result))
            with read.spill:
                self._apply_read(connection, transaction, read, events)
        except BaseException:
            events.discard()
            if transaction.is_active:
                transaction.rollback()
            raise
        finally:
            reopened.close()
            connection.close()
        if not job.dry_run and result.status is FileStatus.APPLIED:
            events.emit()

    def _apply_read(
        self,
        connection: sa.Connection,
        transaction: sa.Transaction,
        read: _Read,
        events: EventBuffer,
    ) -> None:
        job, result, applied, errors = self.job, self.result, self.applied, read.errors
        invalid = len(errors.errors)
        _add_validation_events(
            events, job, self.kind, errors.errors, read.rows, len(errors.rejected_lines)
        )
        if read.held is not None:
            events.add_held(read.held)
        failure = too_many_rejected(read.rows, len(errors.rejected_lines), self.source.max_reject)
        held = None
        if failure is None and read.rows == 0 and self.mode is Mode.FULL and not job.force:
            held = self._hold_reason(connection, read, Counts(), None)
            if held is not None:
                # Not planned, but its report says what it would do: deactivate them all.
                applied.counts.deactivated = store.site_counts(
                    connection, self.source.site, self.kind, job.source_name, with_links=False
                ).active_persons
        if failure is None and held is None:
            self._apply_records(connection, read)
            if self.mode is Mode.FULL:
                # However early its rows were applied: as the plan says of a person a full
                # file lists only in part (its rejected row came before it was planned).
                writes.forget_row_digests(
                    connection, self.context, self.person_kind, errors.rejected_keys
                )
                if self.site_had_persons:
                    self._apply_unlisted(connection, read)
            # Step 2 (references: ambiguous children) rejects rows while the file applies.
            events.add_row_errors(errors.errors[invalid:])
            failure = too_many_rejected(
                read.rows, len(errors.rejected_lines), self.source.max_reject
            )
            if not job.force:
                held = self._hold_reason(connection, read, applied.counts, applied)
        rejected = len(errors.rejected_lines)
        result.errors = sorted(errors.errors, key=lambda error: error.row)
        counts = applied.counts
        counts.rows = read.rows
        counts.rejected = rejected
        counts.unchanged += self.unchanged + read.unchanged_unread
        result.counts = counts
        result.unresolved_children = self.unresolved
        result.pending = applied.pending
        if job.dry_run:
            # The preview says what the real run would do with the file as a whole.
            result.previewed(failure, held)
            if failure or held:
                transaction.rollback()
                return
            # The batch's later files are planned after this one's changes, as a real run
            # applies them (Pipeline.preview_batch rolls them all back at its end).
            # Its counts then say what the real run's report would (orphan parents included).
            self._settle(connection, events, applied)
            result.changes += applied.resolved_changes + applied.orphan_change_list()
            if self.mode is Mode.FULL and self.kind is Kind.PARENTS:  # as the real run reports
                self.pipeline.report_waiting(connection, job, result, Kind.PARENTS)
            events.discard()
            keep_preview(transaction)
            writes.carry_orphans(self.context, applied)
            return
        if failure:
            raise FileFailed(failure)
        if held:
            events.discard()
            transaction.rollback()
            self._record_held(read, rejected, held)
            return
        self._settle(connection, events, applied)
        if self.mode is Mode.FULL and self.kind is Kind.PARENTS:
            self.pipeline.report_waiting(connection, job, result, Kind.PARENTS)
        result.status = FileStatus.APPLIED
        events.stamp(connection, self.pipeline.clock.now())
        events.add(audit.FILE_APPLIED, name=job.name, kind=self.kind.value, counts=counts.as_dict())
        assert result.file_id is not None
        self.pipeline.finish_ledger(connection, result.file_id, result, run_id=job.run_id)
        events.write(connection)
        transaction.commit()
        writes.carry_orphans(self.context, applied)

    def _settle(
        self, connection: sa.Connection, events: EventBuffer, applied: writes.Applied
    ) -> None:
        """What an applied file changes beyond its rows: pending links its students
        resolve, and parents left without or given a child."""
        if self.kind is Kind.STUDENTS:
            writes.resolve_pending(connection, self.context, events, applied)
        writes.settle_parents(connection, self.context, events, applied)

    def _record_held(self, read: _Read, rejected: int, reason: str) -> None:
        """Write what a held file leaves: its validation, file.held and the ledger."""
        job, result = self.job, self.result
        result.status = FileStatus.HELD
        result.reason = reason
        events = self.pipeline.events_for(job, result.file_id, self.context.now)
        _add_validation_events(events, job, self.kind, result.errors, read.rows, rejected)
        with self.pipeline.engine.begin() as connection:
            events.stamp(connection, self.pipeline.clock.now())
            events.add(
                audit.FILE_HELD, level="warning", name=job.name, kind=self.kind.value, reason=reason
            )
            assert result.file_id is not None
            self.pipeline.finish_ledger(connection, result.file_id, result)
            events.write(connection)
        events.emit()

    def _start_over(self) -> None:
        """Forget what an abandoned first reading of the file applied (rolled back)."""
        self.applied = writes.Applied()
        self.unchanged = self.unresolved = 0
        self.analyzed_at = (0, 0)
        self.matched.clear()
        self.existing_cache = None
        self.result.changes.clear()

    # --- 1. read ---------------------------------------------------------------------------

    def _read(self, connection: sa.Connection, opened: OpenedFile, fast: bool) -> _Read:
        errors = ErrorList()
        site, person_kind = self.source.site, self.person_kind
        usernames = store.UsernameKeys(connection, site, person_kind)
        if self.site_had_persons:
            person_rows = PersonRows(self.kind, opened.cols, opened.rules, errors, usernames)
        else:
            person_rows = PersonRows(self.kind, opened.cols, opened.rules, errors)
        read = _Read(errors, RecordSpill(), person_rows.repeated, person_rows.has_children)
        self.label = opened.columns.column_name("child_key") or "child"
        self.field_label = opened.cols.label
        self.columns = file_columns(self.kind, opened.cols)
        if self.site_had_persons:
            read.snapshot = KnownRows(
                store.row_digest_snapshot(connection, self.source.site, self.person_kind)
            )
            read.snapshot_size = len(read.snapshot)
        digests = opened.table.digests
        if digests is not None:
            digests.seed = digest_seed(opened, self.job)
            if fast:
                digests.known = read.snapshot
        counter = [0]
        records = person_rows.read(counting(opened.table.rows, counter, self.job.progress))
        if self.kind is Kind.STUDENTS or not self.park_parents:
            # Each chunk is applied as soon as it is read, its events held back until the
            # file's validation events are out. A parent that needs merging (named again
            # later, or a later row of it rejected) makes the file start over, parked.
            # None: no row is skipped, none can conflict.
            unread = read.snapshot if fast and read.snapshot else None
            self._prepare_students(connection, read, bulk=False, skipping=unread is not None)
            with self.events.held() as read.held:
                taken = self._plain_reading(connection, opened)
                if taken is not None:
                    # Plain lines column by column; the rest, if any, row by row below.
                    counter[0] = self._apply_plain(
                        connection, opened, person_rows, taken, errors, unread
                    )
                self._apply_rows(connection, records, person_rows, errors, unread)
            if person_rows.needs_merging:
                raise _ParkParents
        else:
            for record in records:
                read.spill.add(record)
        read.unchanged_unread = digests.hits if digests is not None else 0
        read.rows = counter[0] + read.unchanged_unread
        return read

    def _apply_rows(
        self,
        connection: sa.Connection,
        records: Iterable[PersonRecord],
        person_rows: PersonRows,
        errors: ErrorList,
        unread: KnownRows | None,
    ) -> None:
        """Apply records as they are read, chunk by chunk (see _apply_chunk); a parent that
        needs merging makes the file start over, parked."""
        for chunk in _chunks(records, CHUNK):
            if person_rows.needs_merging:
                raise _ParkParents
            self._apply_chunk(connection, chunk, errors, unread)

    def _plain_reading(self, connection: sa.Connection, opened: OpenedFile) -> set[str] | None:
        """Return the keys of the site's persons of the file's kind when the file is read
        column by column while its lines are plain, else None: a students or parents file
        (CSV) applied for real (a dry run describes each change), of a site with no persons
        of its kind or few beside the file's size (PLAIN_ONTO_PERSONS_BYTES)."""
        if self.job.dry_run or opened.table.lines is None or opened.table.digests is None:
            return None
        if not self.site_had_persons:
            return set()
        most = self.job.path.stat().st_size // PLAIN_ONTO_PERSONS_BYTES
        return store.site_sync_keys(connection, self.source.site, self.person_kind, most)

    def _apply_plain(
        self,
        connection: sa.Connection,
        opened: OpenedFile,
        person_rows: PersonRows,
        taken: set[str],
        errors: ErrorList,
        unread: KnownRows | None,
    ) -> int:
        """Create the persons of the file's plain lines block by block (syncd.core.columns),
        a parents file's with their links, until a block is not plain; a block naming a
        person the site has (`taken`: their keys) is applied row by row. Return how many
        rows were read (unchanged lines skipped unread are the table's `digests.hits`).
        The table's rows then start at the block that was not plain, for the row reader."""
        table, kind = opened.table, self.kind
        lines, digests = table.lines, table.digests
        assert lines is not None and digests is not None and table.delimiter is not None
        max_field = self.source.limits.max_field_chars
        blocks = lines.blocks()
        if kind is Kind.PARENTS:
            # Blocks of CHUNK rows: each one's persons, then its links, as the row path.
            blocks = _line_groups(blocks, CHUNK)
        read_block = functools.partial(
            person_columns, kind, decode=lines.decode, delimiter=table.delimiter,
            width=len(table.header), seed=digests.seed, columns=opened.cols,
            rules=opened.rules, max_line_chars=lines.max_line_chars, max_field_chars=max_field,
        )  # fmt: skip
        with (
            # (A site with persons has links to look up by child while the file is read.)
            index_built_after(connection, LINKS_BY_CHILD)
            if person_rows.has_children and not self.site_had_persons
            else contextlib.nullcontext(),
            prepared_ahead(blocks, read_block, self.job.path.stat().st_size) as prepared,
        ):
            lines_read = 0
            rows_of = lines.rows_of
            rows = consumed = 0
            for block, people in prepared:
                if people is None:
                    break
                # (isdisjoint walks the list even for an empty set: a first load's millions.)
                if not taken or taken.isdisjoint(people.sync_keys):
                    if not self._create_plain(connection, people, person_rows, lines_read):
                        break
                    read_before, rows = rows, rows + len(people.sync_keys)
                    tell_progress(self.job.progress, read_before, rows)
                else:
                    # Lines naming persons the site has: this block as the row reader reads it.
                    counter = [rows]
                    block_rows = counting(rows_of(block, lines_read), counter, self.job.progress)
                    records = person_rows.read(block_rows)
                    self._apply_rows(connection, records, person_rows, errors, unread)
                    rows = counter[0]
                lines_read += len(people.sync_keys)  # a plain block: one row a line
                consumed += len(block)
        finish_copy(connection)
        lines.rows_after(consumed, lines_read)
        return rows

    def _create_plain(
        self,
        connection: sa.Connection,
        people: PersonColumns,
        person_rows: PersonRows,
        lines_before: int,
    ) -> bool:
        """Create the persons of a plain block after the file's first `lines_before` data
        lines, none of whom the site has; return False, creating none, when the block must
        be read row by row after all."""
        children = None
        if people.children is not None:
            assert self.students is not None
            values = list(chain.from_iterable(people.children))
            self.students.prepare(values)
            named = self.students.students_named(values)
            if named is None:  # a child value naming several students: a row error
                return False
            if None in named[0] and not may_be_pending(self.source.child_field.value):
                return False  # an internal id naming no student: a row error too
            children = writes.PlainChildren(values, *named, self.source.child_field.value)
        # The header is line 1 and every plain row one line.
        if not person_rows.take_plain(people.sync_keys, lines_before + 2):
            return False  # a key named twice
        if children is not None:
            self.unresolved += children.ids.count(None)
        writes.create_plain_persons(
            connection, people, self.person_kind, children, self.context, self.events,
            self.applied,
        )  # fmt: skip
        return True

    def _fast_path_conflicts(self, connection: sa.Connection, read: _Read) -> bool:
        """Return whether a parsed record names a person an unread row already stood for.

        The persons the parsed records name are kept for the apply (read once).
        """
        if not read.unchanged_unread or not read.spill.count:
            return False
        cache: dict[str, ExistingPerson] = {}
        conflict = False
        for batch in read.spill.batches():
            found = store.persons_by_keys(
                connection,
                self.source.site,
                self.person_kind,
                [record.fields.sync_key for record in batch],
                with_fields=True,  # the unchanged rows were skipped: these are likely changes
            )
            cache.update(found)
            conflict = conflict or any(
                person.row_digest is not None and person.row_digest not in read.snapshot
                for person in found.values()
            )
        self.existing_cache = cache
        return conflict

    # --- 2. apply ----------------------------------------------------------------------------

    def _prepare_students(
        self, connection: sa.Connection, read: _Read, bulk: bool, skipping: bool = False
    ) -> None:
        """Set up the student lookup of a parents file with a child column; `skipping`:
        the file's unchanged rows are skipped unread."""
        if read.has_children and self.kind is Kind.PARENTS:
            self.students = store.StudentLookup(
                connection,
                self.source.site,
                self.source.child_field,
                store.WHOLE_STUDENT_INDEX,
                whole_share=store.WHOLE_STUDENT_SHARE if skipping else None,
            )
            if bulk:
                self.students.load_all()

    def _apply_records(self, connection: sa.Connection, read: _Read) -> None:
        if not read.spill.count:
            return  # applied while read
        self._prepare_students(connection, read, bulk=read.spill.count >= store.WHOLE_STUDENT_INDEX)
        for chunk in _chunks(self._records_to_plan(read), CHUNK):
            self._apply_chunk(connection, chunk, read.errors, None)

    def _records_to_plan(self, read: _Read) -> Iterator[PersonRecord]:
        """Yield one record per person, in file order (a repeated parent merged)."""
        repeated, has_children = read.repeated, read.has_children
        if not repeated:
            for batch in read.spill.batches():
                yield from batch
            return
        groups: dict[str, list[PersonRecord]] = {}
        if read.spill.count <= IN_FILE_ORDER:
            for batch in read.spill.batches():
                for record in batch:
                    groups.setdefault(record.fields.sync_key, []).append(record)
        else:
            # A big file: persons on one row go at once, repeated ones are held to merge.
            for batch in read.spill.batches():
                for record in batch:
                    if record.fields.sync_key in repeated:
                        groups.setdefault(record.fields.sync_key, []).append(record)
                    else:
                        yield record
        for group in groups.values():
            yield merge_person_records(group, has_children, read.errors, self.field_label)

    def _existing(
        self, connection: sa.Connection, keys: Sequence[str], skipping: bool
    ) -> dict[str, ExistingPerson]:
        """The stored persons `keys` name; `skipping`: the file's unchanged rows are skipped
        unread, so these are likely changes, read with their fields for the update."""
        if self.existing_cache is not None:
            cache = self.existing_cache
            return {key: cache[key] for key in keys if key in cache}
        if not self.site_had_persons:
            return {}
        return store.persons_by_keys(
            connection, self.source.site, self.person_kind, keys, with_fields=skipping
        )

    def _apply_chunk(
        self,
        connection: sa.Connection,
        records: list[PersonRecord],
        errors: ErrorList,
        unread: KnownRows | None,
    ) -> None:
        """Plan and write one chunk of records; `unread`: the digests of rows the reading
        still skips, while the file is being read (a person a parsed row names is taken out:
        its unchanged row, if it comes later, is a duplicate to parse)."""
        keys = [record.fields.sync_key for record in records]
        existing = self._existing(connection, keys, skipping=unread is not None)
        self.matched.update(person.person_id for person in existing.values())
        if unread is not None:
            for person in existing.values():
                if person.row_digest is None:
                    continue
                if not unread.take(person.row_digest):
                    raise _UnreadRowConflict  # its row was read unparsed, before this one
        if self.students is not None:
            self.students.prepare(
                value for record in records for value in record.child_values or ()
            )
        plan = plan_person_chunk(
            records,
            self.kind,
            self.mode,
            existing,
            errors,
            self.source.child_field,
            self.students,
            self.label,
            self.columns,
        )
        if self.context.hash_passwords and self.source.update_passwords:
            self.pipeline.plan_password_changes(
                connection, plan, records, existing, errors, self.job.checkpoint
            )
        self.unchanged += plan.unchanged
        self.unresolved += plan.unresolved_children
        self._apply_plan(connection, plan, existing)
        self._keep_statistics(connection)

    def _keep_statistics(self, connection: sa.Connection) -> None:
        """On PostgreSQL, take the statistics of persons and links again, in the file's own
        transaction (ANALYZE counts its rows), each time the file has doubled what they had
        when last taken: the next chunks' lookups by key are planned from them. Planned
        for the 200 persons of a site before the file, they filtered every row the file
        had added (1M students onto 200: 168 s)."""
        if connection.dialect.name != "postgresql":
            return
        counts = self.applied.counts
        persons_then, links_then = self.analyzed_at
        grown = []
        if counts.created - persons_then >= max(ANALYZE_AFTER_ROWS, persons_then):
            grown.append("persons")
            persons_then = counts.created
        if counts.links_created - links_then >= max(ANALYZE_AFTER_ROWS, links_then):
            grown.append("links")
            links_then = counts.links_created
        analyze(connection, grown)  # (a COPY left open ends first: database.create_engine)
        self.analyzed_at = (persons_then, links_then)

    def _apply_plan(
        self, connection: sa.Connection, plan: PersonPlan, existing: Mapping[str, ExistingPerson]
    ) -> None:
        """Write one plan; `existing`: its snapshot (stored fields read there are reused)."""
        link_plan = None
        if plan.link_requests:
            ids = [r.parent_id for r in plan.link_requests if r.parent_id is not None]
            unknown = any(request.pending_values for request in plan.link_requests)
            link_plan = plan_parent_links(
                plan.link_requests,
                store.links_of_parents(connection, ids),
                store.pending_of_parents(connection, ids),
                self.source.child_field,
                keep_types=self.columns.leaves_types,
                kept_apart=store.unlinked_values(connection, self.source.site) if unknown else (),
            )
        if self.job.dry_run:
            self._describe(connection, plan, link_plan)
        linked = {r.parent_key for r in plan.link_requests if r.parent_id is None and r.children}
        new_ids = writes.apply_persons(
            connection, plan, self.context, self.events, self.applied, linked, existing
        )
        if link_plan is not None and not link_plan.is_empty():
            names = {
                child_id: key
                for request in plan.link_requests
                for child_id, key in request.child_keys.items()
            }
            writes.apply_links(
                connection, link_plan, self.context, self.events, self.applied, new_ids,
                names,
            )  # fmt: skip

    def _describe(
        self, connection: sa.Connection, plan: PersonPlan, link_plan: LinkPlan | None
    ) -> None:
        ids = [u.person_id for u in plan.upserts if u.person_id is not None and u.changed]
        old_fields = store.person_fields(connection, ids)
        self.result.changes.extend(self.pipeline.describe(connection, plan, link_plan, old_fields))

    # --- 3. finish ---------------------------------------------------------------------------

    def _apply_unlisted(self, connection: sa.Connection, read: _Read) -> None:
        """Deactivate the active persons a full file does not list (SPEC §2.4)."""
        rejected = store.persons_by_keys(
            connection, self.source.site, self.person_kind, sorted(read.errors.rejected_keys)
        )
        listed = self.matched | {p.person_id for p in rejected.values()}
        left = list(read.snapshot)  # whom the file did not name: -id, or the row digest
        ids = [-digest for digest in left if digest < 0]
        site, kind = self.source.site, self.person_kind
        ids += store.persons_with_digests(connection, site, kind, [d for d in left if d >= 0])
        # The file's new persons are never left out (their row digest could match a left
        # one's only by a 63-bit collision, but then they must stay).
        left_ids = (i for i in ids if i not in listed and i <= self.newest_before)
        unlisted, dropped = store.keys_by_state(connection, left_ids)
        if self.kind is Kind.PARENTS and dropped:
            # Parents deactivated as orphans are in the snapshot (their row sent again changes
            # nothing): left out, the SIS dropped them, and their parents-file links go as
            # those of the parents the file deactivates do.
            self._drop_links_of_inactive(connection, dropped)
        if not unlisted:
            return
        plan = PersonPlan(kind=self.kind)
        plan_unlisted(plan, sorted(unlisted))
        self._apply_plan(connection, plan, {})

    def _drop_links_of_inactive(
        self, connection: sa.Connection, parents: Sequence[tuple[int, str]]
    ) -> None:
        """Remove the parents-file links and pending links of inactive parents a full file
        left out. They stay orphans (a revert puts their links back as they were): without a
        link, a child's return does not revive them. Their stored fingerprint becomes one no
        row has, so that their row listed again is planned and makes its links anew (and,
        with a live link, brings them back)."""
        plan = PersonPlan(kind=self.kind)
        plan.link_requests.extend(ParentLinks(key, pid, {}, {}) for pid, key in parents)
        store.driver_execute_in(
            connection,
            "UPDATE persons SET row_digest = NULL, fingerprint = ? "
            "WHERE fingerprint <> ? AND id IN",
            (UNLINKED_MARK, UNLINKED_MARK),
            [pid for pid, _ in parents],
        )
        self._apply_plan(connection, plan, {})

    def _within(self, counts: Counts, fewest: int) -> bool:
        """Whether the file's updates and deactivations stay under the thresholds measured
        against `fewest` persons: the snapshot's size, at most the site's persons (and, for
        students, at most its active ones) before the file."""
        source = self.source
        if fewest == 0 or counts.updated / fewest > source.max_update:
            return False
        if not counts.deactivated:
            return True
        return self.kind is Kind.STUDENTS and counts.deactivated / fewest <= source.max_deactivate

    def _hold_reason(
        self, connection: sa.Connection, read: _Read, counts: Counts, applied: writes.Applied | None
    ) -> str | None:
        """Return why the file must be held (SPEC §2.4), or None.

        With `applied` the file's changes are written already: the site's size before the
        file is what it is now less what the file did.
        """
        rows = read.rows
        removed = counts.links_removed - (applied.pending_dropped if applied else 0)
        header_only = self.mode is Mode.FULL and rows == 0
        if not (header_only or counts.deactivated or removed or counts.updated):
            return None
        source = self.source
        if not (header_only or removed) and self._within(counts, read.snapshot_size):
            return None  # even against fewer persons than the site had: no count needed
        now = store.site_counts(
            connection,
            self.source.site,
            self.kind,
            self.job.source_name,
            with_persons=bool(header_only or counts.deactivated or counts.updated),
            with_links=bool(removed),
        )
        before = SiteCounts(
            active_persons=now.active_persons
            - counts.created
            - counts.reactivated
            + counts.deactivated,
            existing_persons=now.existing_persons - counts.created,
            active_links=now.active_links - counts.links_created + removed,
            active_file_links=now.active_file_links,
        )
        judged = Counts(
            updated=counts.updated, deactivated=counts.deactivated, links_removed=removed
        )
        thresholds = Thresholds(source.max_deactivate, source.max_update, source.max_reject)
        return hold_reason(self.kind, self.mode, rows, judged, before, thresholds)


class _ParkParents(Exception):
    """A parent of the file must be merged from several rows: park the records first."""


class _UnreadRowConflict(Exception):
    """A parsed row names a person whose unchanged row was already counted unread."""


def _add_validation_events(
    events: EventBuffer, job: Job, kind: Kind, errors: list[RowError], rows: int, rejected: int
) -> None:
    """Add row.rejected for each error (in line order), then file.validated."""
    events.add_row_errors(sorted(errors, key=lambda error: error.row))
    events.add(audit.FILE_VALIDATED, name=job.name, kind=kind.value, rows=rows, rejected=rejected)


def _chunks(records: Iterable[PersonRecord], size: int) -> Iterator[list[PersonRecord]]:
    chunk: list[PersonRecord] = []
    for record in records:
        chunk.append(record)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _line_groups(blocks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Re-cut blocks of whole lines into blocks of `size` lines (the last may have fewer;
    a final piece without a line end stays last, as it came)."""
    held: list[bytes] = []
    for block in blocks:
        lines = block.split(b"\n")
        tail = lines.pop()  # b"" after a final line end, else an unfinished last line
        held += lines
        while len(held) >= size:
            yield b"\n".join(held[:size]) + b"\n"
            del held[:size]
        if tail:
            held.append(tail)
            yield b"\n".join(held)
            return
    if held:
        yield b"\n".join(held) + b"\n"
