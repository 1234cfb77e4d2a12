"""One pickup pass over a drop folder (SPEC §3.2): ready files, claimed, applied in kind order."""

from __future__ import annotations

import posixpath
import tempfile
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from syncd import audit, reports
from syncd.clock import Clock
from syncd.config import SourceConfig
from syncd.db import store
from syncd.db.apply import OrphanCarry, expire_pending
from syncd.errors import FileFailed, FileUnreadable, Stopped, SyncdError
from syncd.formats.headers import detect_kind
from syncd.formats.readers import open_table
from syncd.model import Counts, FileStatus, Kind, RowError
from syncd.pipeline import FileResult, Job, Pipeline, kind_by_name, sha256_of
from syncd.reading import open_file
from syncd.sources.base import MARKER_SUFFIXES, Entry, Source, is_candidate_name, is_upload_name

UNKNOWN_RANK = len(Kind)


# How often a pass waiting for young files asks whether it should stop (SIGTERM).
STOP_CHECK_SECONDS = 0.2


@dataclass(slots=True)
class PassResult:
    applied: int = 0
    failed: int = 0
    held: int = 0
    duplicate: int = 0
    waiting: int = 0
    young: int = 0  # of the waiting: not yet min_age old (not waiting for another file)
    # Of the waiting: claimed files a stop left in processing/ (the one rolled back, those
    # not begun), taken up by the next pass.
    stopped: int = 0
    results: list[FileResult] = field(default_factory=list)


def peek_kind(path: Path, source: SourceConfig, name: str) -> Kind | None:
    """Return a file's kind from its name or header, None when unknown or unreadable."""
    kind = kind_by_name(name, source)
    if kind is not None:
        return kind
    try:
        with open_table(path, source.limits) as table:
            return detect_kind(name, table.header, source.globs, source.child_column)
    except (FileFailed, OSError):
        return None


def archive_folder(now: datetime, status: FileStatus) -> str:
    """Return where a finished file goes: archive/YYYY/MM/DD, failed or held."""
    if status in (FileStatus.APPLIED, FileStatus.DUPLICATE):
        return f"archive/{now:%Y/%m/%d}"
    if status is FileStatus.HELD:
        return "held"
    return "failed"


@dataclass(slots=True)
class _Seen:
    """How a file looked when this syncd first saw it this way (own monotonic clock)."""

    size: int
    mtime: float
    since: float


@dataclass(slots=True)
class _Claimed:
    processing_name: str
    name: str
    mtime: float
    size: int
    local: Path | None = None
    kind: Kind | None = None
    # Why it could not be read from the source (its permissions), if so: it fails alone.
    unreadable: str | None = None


# How long after a file was applied syncd still looks whether its archived copy grew (its
# sender wrote on after a pause longer than min_age): Pickup._recall_grown.
RECALL_WINDOW = timedelta(days=1)


# How a file put back into the drop folder (its upload still under way) goes on.
_TAKEN_AGAIN = (
    ", and is taken again once unchanged for min_age (a sender that pauses during an upload "
    "needs a longer min_age, or done markers)"
)


# A file syncd died with in hand (killed while applying it: out of memory, say) is taken
# up again at each restart (SPEC §3.2), up to this many times; then it fails, so that a
# file that kills its worker does not stop its source for good.
MAX_TAKE_UPS = 2


def _died_with_it(taken_up: int) -> str:
    return (
        f"syncd stopped {taken_up} times while applying it (killed: out of memory, or a stop "
        "that timed out?); nothing of it was applied, and it is failed so that it no longer "
        "holds up its source: check it, then send it again"
    )


class Pickup:
    """Runs pickup passes for one source; remembers what it saw between passes."""

    def __init__(
        self, config: SourceConfig, source: Source, pipeline: Pipeline, clock: Clock
    ) -> None:
        self.config = config
        self.source = source
        self.pipeline = pipeline
        self.clock = clock
        self._seen: dict[str, _Seen] = {}
        # When this syncd first listed each file as it is now, kept in the database so that
        # a cron-driven `run --once` (a new process each time) ages files too.
        self._first_seen: dict[str, datetime] = {}
        # Files a preview found naming someone not there yet (name, size, mtime): the
        # daemon's next polls let them wait without reading them again.
        self._must_wait: set[tuple[str, int, float]] = set()
        # Files in processing/ that are not this database's claims, said once (file.waiting).
        self._not_ours: set[str] = set()
        # Told how long a pass that waits for its young files waits, and for which (`run
        # --once` on a terminal says so, where it would sit silent for min_age).
        self.tell_wait: Callable[[float, list[str]], None] | None = None
        # Files waiting for an earlier kind (name, size, mtime): file.waiting is said once
        # while they wait, not at each of the daemon's polls (a line a second at poll = 1s).
        self._waiting_said: set[tuple[str, int, float]] = set()

    def _list_entries(self) -> list[Entry]:
        """List the drop folder, remembering each file's first-seen time across runs."""
        entries = self.source.list_entries()
        listing = [(entry.name, entry.size, entry.mtime) for entry in entries]
        with self.pipeline.engine.begin() as connection:
            self._first_seen = store.remember_listing(
                connection, self.config.name, listing, self.clock.now()
            )
        return entries

    def _unchanged_for(self, entry: Entry) -> float:
        """Return for how long (our clock) a file has had its current size and mtime."""
        now = self.clock.monotonic()
        seen = self._seen.get(entry.name)
        if seen is None or (seen.size, seen.mtime) != (entry.size, entry.mtime):
            self._seen[entry.name] = _Seen(entry.size, entry.mtime, now)
            return 0.0
        return now - seen.since

    def _listed_for(self, entry: Entry) -> float:
        """Return how long syncd's own listings have shown a file as it is now (this
        process's and earlier ones', recorded in the database); never the file's mtime."""
        stable_for = self._unchanged_for(entry)
        first_seen = self._first_seen.get(entry.name)
        if first_seen is None:
            return stable_for
        return max(stable_for, (self.clock.now() - first_seen).total_seconds())

    def _age(self, entry: Entry) -> float:
        """Return how long a file is known to have been as it is now."""
        if self.config.is_sftp:
            return self._listed_for(entry)  # never the server's clock against ours
        # A local file's mtime is on this host's clock, so its age may serve (SPEC §3.2).
        return max(self._listed_for(entry), self.clock.now().timestamp() - entry.mtime)

    def _is_complete(self, entry: Entry) -> bool:
        min_age = self.config.min_age.total_seconds()
        return self._age(entry) >= min_age if min_age > 0 else True

    def _until_complete(self, young: list[Entry]) -> float:
        """Return how long until every young file may be min_age old, if unchanged: what is
        left of min_age after its age so far (a local file's mtime counts), not all of it."""
        min_age = self.config.min_age.total_seconds()
        return max(0.0, min(min_age, max(min_age - self._age(entry) for entry in young)))

    def ready_entries(self, entries: list[Entry]) -> tuple[list[Entry], list[Entry]]:
        """Split candidate files into (ready, not yet ready)."""
        names = {entry.name for entry in entries}
        ready: list[Entry] = []
        young: list[Entry] = []
        for entry in entries:
            if not is_candidate_name(entry.name) or entry.name.casefold().endswith(MARKER_SUFFIXES):
                continue
            if self.config.done_marker:
                marked = any(entry.name + suffix in names for suffix in MARKER_SUFFIXES)
                (ready if marked else young).append(entry)
            elif self._is_complete(entry):
                ready.append(entry)
            else:
                young.append(entry)
        current = {entry.name for entry in entries}
        self._seen = {name: seen for name, seen in self._seen.items() if name in current}
        return ready, young

    def run_once(
        self,
        run_id: str,
        wait_for_young: bool = True,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> PassResult:
        """Process every ready file (and files left in processing/); return what happened.

        With `wait_for_young`, files not yet complete are listed again after `min_age`.
        `should_stop` is asked between files and while waiting: a stop leaves claimed files
        in processing/, where the next pass takes them up again.
        """
        outcome = PassResult()
        self._expire(run_id)
        self._recall_grown(run_id)
        claimed = self._left_in_processing(run_id)
        entries = self._list_entries()
        ready, young = self.ready_entries(entries)
        if young and wait_for_young and not self.config.done_marker:
            seconds = self._until_complete(young)
            if self.tell_wait is not None and seconds > 0:
                self.tell_wait(seconds, [entry.name for entry in young])
            if not self._wait(seconds, should_stop):
                outcome.young = len(young)
                outcome.stopped = len(claimed)  # nothing claimed yet but what a crash left
                outcome.waiting = outcome.young + outcome.stopped
                return outcome
            entries = self._list_entries()
            ready, young = self.ready_entries(entries)
        outcome.waiting = outcome.young = len(young)
        held_back: dict[str, Kind] = {}  # later kinds waiting for an earlier one, by name
        claimed += self._claim_ready(ready, young, entries, run_id, outcome, held_back)
        self._record_waiting(outcome.waiting)
        with tempfile.TemporaryDirectory(prefix="syncd-") as temp:
            orphans = OrphanCarry()  # judged at the end of the batch (SPEC §2.4)
            while claimed:
                self._fetch(claimed, Path(temp))
                claimed.sort(
                    key=lambda c: (c.kind.rank if c.kind else UNKNOWN_RANK, c.mtime, c.name)
                )
                results_before = len(outcome.results)
                for index, item in enumerate(claimed):
                    if should_stop():
                        outcome.stopped = len(claimed) - index
                        break
                    # With files held back, a further round may follow: its last file (or
                    # the batch's end) judges the orphans.
                    defer = index < len(claimed) - 1 or bool(held_back)
                    try:
                        self._process(item, run_id, outcome, orphans, defer, should_stop)
                    except Stopped:  # rolled back mid-file: it waits in processing/
                        outcome.stopped = len(claimed) - index
                        break
                latest = max((kind.rank for kind in held_back.values()), default=0)
                if should_stop() or not any(
                    result.status is FileStatus.APPLIED and result.kind.rank < latest
                    for result in outcome.results[results_before:]
                    if result.kind is not None
                ):
                    break
                # A file held back while an earlier kind arrives may apply now that this pass
                # applied an earlier kind's file (the persons it names may be there): another
                # round, in the same batch.
                self._must_wait.clear()
                entries = self._list_entries()
                ready, young = self.ready_entries(entries)
                outcome.waiting = outcome.young = len(young)
                claimed = self._claim_ready(ready, young, entries, run_id, outcome, held_back)
                self._record_waiting(outcome.waiting)
            self.pipeline.settle_orphans(orphans, self.config.site, self.config.name, run_id)
        outcome.waiting += outcome.stopped
        # Those no longer waiting are forgotten: should they wait again, it is said again.
        self._waiting_said = {key for key in self._waiting_said if key[0] in held_back}
        if outcome.applied:
            self._must_wait.clear()  # the persons a waiting file names may be there now
        return outcome

    def _record_waiting(self, waiting: int) -> None:
        """Record how many of an SFTP folder's files wait unclaimed, as soon as the pass has
        claimed the others: `status` does not list the folder, and adds the claimed files
        from the ledger (a count left from the last pass, while that pass's file was still
        young, counted the file in hand twice)."""
        if self.config.is_sftp:
            with self.pipeline.engine.begin() as connection:
                store.set_source_state(
                    connection, self.config.name, self.config.site, waiting=waiting
                )

    def _fetch(self, claimed: list[_Claimed], into: Path) -> None:
        """Download each claimed file (an SFTP source's) and find its kind."""
        for item in claimed:
            if item.size > self.config.limits.max_file_size:
                continue  # never downloaded: failed with the limit named
            try:
                item.local = self.source.fetch(item.processing_name, into)
            except FileUnreadable as error:
                item.unreadable = str(error)
                continue
            item.kind = peek_kind(item.local, self.config, item.name)

    def _wait(self, seconds: float, should_stop: Callable[[], bool]) -> bool:
        """Sleep `seconds` in short steps; return False as soon as `should_stop` says so."""
        end = self.clock.monotonic() + seconds
        while (left := end - self.clock.monotonic()) > 0:
            if should_stop():
                return False
            self.clock.sleep(min(left, STOP_CHECK_SECONDS))
        return not should_stop()

    def _claim_ready(
        self,
        ready: list[Entry],
        young: list[Entry],
        entries: list[Entry],
        run_id: str,
        outcome: PassResult,
        held_back: dict[str, Kind],
    ) -> list[_Claimed]:
        """Claim the ready files, except later kinds while an earlier kind is arriving
        (those go into `held_back` by name, their file.waiting said once while they wait)."""
        held_back.clear()
        root = None if self.config.is_sftp else Path(self.config.path)
        arriving: dict[str, int] = {  # by name: the operator is told which file it is
            entry.name: kind.rank
            for entry in young + [e for e in entries if is_upload_name(e.name)]
            if (kind := kind_by_name(entry.name, self.config)) is not None
        }
        claimed: list[_Claimed] = []
        # Oldest first, as they are applied within a kind: the ledger's ids and times then
        # follow the files' age, not the order the folder happened to list them in.
        for entry in sorted(ready, key=lambda entry: (entry.mtime, entry.name)):
            kind = kind_by_name(entry.name, self.config)
            if kind is None and root is not None:
                kind = peek_kind(root / entry.name, self.config, entry.name)
            earlier = (
                sorted(name for name, rank in arriving.items() if rank < kind.rank)
                if kind is not None
                else []
            )
            if (
                kind is not None
                and earlier
                # Counted from when syncd first saw the file, not from its mtime: a client
                # that keeps a file's old timestamp (sftp -p, WinSCP) must wait too.
                and self._listed_for(entry) < self.config.dependency_wait.total_seconds()
                and not self._applies_without_them(entry, kind)
            ):
                outcome.waiting += 1
                held_back[entry.name] = kind
                if (said := (entry.name, entry.size, entry.mtime)) not in self._waiting_said:
                    self._waiting_said.add(said)
                    audit.emit(
                        audit.FILE_WAITING,
                        source=self.config.name,
                        site=self.config.site,
                        run_id=run_id,
                        name=entry.name,
                        kind=kind.value,
                        reason=f"an earlier kind of file is still arriving: {', '.join(earlier)}",
                        waiting_for=earlier,
                    )
                continue
            # In the ledger first: what this syncd finds in processing/ is its own only if so.
            claim_id = self.pipeline.register_claim(
                self.config, entry.name, f"processing/{entry.name}"
            )
            try:
                processing_name = self.source.claim(entry.name)
            except (SyncdError, OSError):
                self._forget_claim_not_made(claim_id, entry.name)
                raise
            if processing_name is None:  # another syncd took it first
                self.pipeline.forget_claim(claim_id)
                continue
            if processing_name != entry.name:  # a name already in processing/
                self.pipeline.set_location(claim_id, f"processing/{processing_name}")
            claimed.append(_Claimed(processing_name, entry.name, entry.mtime, entry.size))
        return claimed

    def _forget_claim_not_made(self, claim_id: int, name: str) -> None:
        """Forget the ledger entry of a claim the server refused (a read-only account): the
        file still in the drop folder was never moved. When that cannot be seen (the
        connection is gone), the next pass finds out (`_left_in_processing`)."""
        with suppress(SyncdError, OSError):
            if self.source.holds(name):
                self.pipeline.forget_claim(claim_id)

    def _left_in_processing(self, run_id: str) -> list[_Claimed]:
        """Return the files in processing/ that this database's ledger claimed and did not
        deliver (a crash, a connection lost before the file moved on), to take up again.

        Any other file there is not syncd's to take (SPEC §3.2: claimed by another syncd
        with its own database, mid-file; or put there by hand): it stays, said once by
        file.waiting (hidden and temporary names, never picked up anyway, are not).
        """
        left = self.source.list_processing()
        paths = [f"processing/{entry.name}" for entry in left]
        with self.pipeline.engine.begin() as connection:
            unread = store.unread_claims_not_at(connection, self.config.name, paths)
            ours = store.paths_in_processing(connection, self.config.name, paths)
            gone = store.claims_gone_from(connection, self.config.name, paths)
        if unread:
            waiting = {entry.name for entry in self.source.list_entries()}
            for row in unread:
                if row.name in waiting:  # its move never happened (the connection lost)
                    self.pipeline.forget_claim(row.id)
                else:  # moved, then taken away before it was read (its download failed)
                    gone.append(row)
        for row in gone:
            self._fail_gone(row, run_id)
        # Imports are run by hand, but no entry of this source stays processing either.
        self.pipeline.fail_abandoned_imports(source=self.config.name)
        claimed = []
        for entry in left:
            if f"processing/{entry.name}" in ours:
                claimed.append(_Claimed(entry.name, entry.name, entry.mtime, entry.size))
            elif entry.name not in self._not_ours and is_candidate_name(entry.name):
                self._not_ours.add(entry.name)
                self._warn_waiting(
                    run_id,
                    entry.name,
                    "in processing/ but not claimed by this syncd's database (another syncd's "
                    "file, or put there by hand): left alone; move it back to the drop folder "
                    "to have it picked up",
                )
        return claimed

    def _fail_gone(self, row: Any, run_id: str) -> None:
        """Close the ledger entry of a file a crash left in processing/ that someone took
        away before it was taken up again: failed (nothing of it was applied), said by
        file.failed and a report, so that no entry stays `processing` for ever."""
        reason = (
            f"{row.path} was taken away (by hand?) before it was applied after an interruption; "
            "nothing of it was applied: send it again"
        )
        failed = self.pipeline.fail_left(row, reason, run_id)
        if failed is not None:
            write_reports(self.source, ledger_result(failed, []))

    def _applies_without_them(self, entry: Entry, kind: Kind) -> bool:
        """Whether a later kind's file applies whole while an earlier kind is still arriving
        (SPEC §2.3: it waits for a child value that matches no student yet): a preview in
        which every row applies and every person it names exists. Anything else waits (a
        row rejected may be a parent the arriving parents file brings)."""
        if (entry.name, entry.size, entry.mtime) in self._must_wait:
            return False
        location = entry.name if self.config.is_sftp else str(Path(self.config.path) / entry.name)
        with tempfile.TemporaryDirectory(prefix="syncd-preview-") as folder:
            try:
                path = self.source.fetch_location(location, Path(folder))
            except FileUnreadable:
                return True  # claimed at once, to fail alone (nothing to wait for)
            job = Job(
                path=path,
                name=entry.name,
                source=self.config,
                source_name=self.config.name,
                kind=kind,
                dry_run=True,
            )
            result = self.pipeline.process(job)
        applies = (
            result.status is FileStatus.APPLIED
            and result.would is None  # neither failed nor held, were it applied
            and result.counts.rejected == 0
            and result.unresolved_children == 0
        )
        if not applies:
            self._must_wait.add((entry.name, entry.size, entry.mtime))
        return applies

    def _expire(self, run_id: str) -> None:
        now = self.clock.now()
        events = audit.EventBuffer(
            context={"source": self.config.name, "site": self.config.site, "run_id": run_id},
            now=now,
        )
        with self.pipeline.engine.begin() as connection:
            expire_pending_of(connection, self.config, self.config.name, now, events)
            events.write(connection)
        events.emit()

    def _process(
        self,
        item: _Claimed,
        run_id: str,
        outcome: PassResult,
        orphans: OrphanCarry | None = None,
        defer_orphans: bool = False,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        location = f"processing/{item.processing_name}"
        file_id = None
        with self.pipeline.engine.connect() as connection:
            row = store.file_in_processing(connection, self.config.name, location)
        if row is not None and row.status != FileStatus.PROCESSING.value:
            if item.local is not None and row.sha256 == sha256_of(item.local):
                # A crash after its transaction committed, before it moved on: its outcome is
                # in the ledger. Deliver that under its entry, never as a "duplicate" of itself.
                with self.pipeline.engine.connect() as connection:
                    result = ledger_result(row, store.row_errors(connection, row.id))
                self._note_columns(item, result)
                self._count(result, item.processing_name, outcome)
                return
            row = None  # an entry whose delivery was cut short later; this is another file
        claim_id = None
        if row is not None and row.size is None:  # claimed, not read yet (register_claim)
            claim_id, item.name, row = row.id, row.name, None
        taken_up = 0
        if row is not None:  # taken up again after a crash: same ledger entry
            file_id = row.id
            item.name = row.name
            taken_up = self.pipeline.take_up_again(file_id)
        job = Job(
            path=item.local or Path(item.processing_name),
            name=item.name,
            source=self.config,
            source_name=self.config.name,
            kind=item.kind,
            file_id=file_id,
            claim_id=claim_id,
            run_id=run_id,
            location=location,
            orphans=orphans,
            defer_orphans=defer_orphans,
            checkpoint=partial(_stop_if_asked, should_stop),
        )
        limit = self.config.limits.max_file_size
        if item.unreadable is not None:
            result = self.pipeline.fail_unread(job, item.size, item.unreadable)
        elif taken_up > MAX_TAKE_UPS:
            result = self.pipeline.fail_unread(job, item.size, _died_with_it(taken_up))
        elif item.local is None:
            result = self.pipeline.fail_unread(
                job, item.size, f"file is larger than max_file_size ({limit} bytes)"
            )
        else:
            result = self.pipeline.process(job)
        self._count(result, item.processing_name, outcome, listed=item, run_id=run_id)

    def _note_columns(self, item: _Claimed, result: FileResult) -> None:
        """Note in `result` the columns its report lists (ignored, kept as attributes),
        which the ledger does not keep, from the file's header read again."""
        assert item.local is not None
        job = Job(
            path=item.local,
            name=result.name,
            source=self.config,
            source_name=self.config.name,
            kind=result.kind,
            dry_run=True,
        )
        noted = FileResult(name=result.name)
        with suppress(FileFailed, OSError), open_file(job, noted):
            pass  # the header is read on opening
        result.ignored_columns = noted.ignored_columns
        result.attribute_columns = noted.attribute_columns

    def _count(
        self,
        result: FileResult,
        processing_name: str,
        outcome: PassResult,
        listed: _Claimed | None = None,
        run_id: str | None = None,
    ) -> None:
        """Deliver a processed file and count it in the pass's outcome; `listed`: the file
        as it was when claimed, to see whether it changed since."""
        if listed is None or not self._put_back_if_changed(result, listed, run_id):
            self.deliver(result, processing_name)
        outcome.results.append(result)
        if result.status is FileStatus.APPLIED:
            outcome.applied += 1
        elif result.status is FileStatus.HELD:
            outcome.held += 1
        elif result.status is FileStatus.DUPLICATE:
            outcome.duplicate += 1
        else:
            outcome.failed += 1

    def _put_back_if_changed(
        self, result: FileResult, claimed: _Claimed, run_id: str | None
    ) -> bool:
        """Put an applied file that changed since it was claimed back into the drop folder,
        and say so (file.waiting, its report's reason); return whether it was.

        Such a file was still being written: its sender paused longer than min_age (SPEC
        §3.2), and what syncd read was only part of it. Archived, it would hold rows that
        were never applied (a full file's missing rows deactivated). Put back, it is taken
        again once unchanged for min_age, and applied whole. A held or failed file goes
        where it would (a release compares its content with what was held).
        """
        if (
            self.config.done_marker  # its sender said it was whole
            or result.status not in (FileStatus.APPLIED, FileStatus.DUPLICATE)
        ):
            return False
        now = next(
            (e for e in self.source.list_processing() if e.name == claimed.processing_name), None
        )
        if now is None or (now.size, now.mtime) == (claimed.size, claimed.mtime):
            return False
        change = (
            f"{claimed.size:,} bytes when it was taken, {now.size:,} now"
            if now.size != claimed.size
            else "written again at the same size"
        )
        reason = (
            f"it changed after syncd took it ({change}): its upload was still under way. "
            f"What was read is {result.status.value}; the file is back in the drop folder"
            f"{_TAKEN_AGAIN}"
        )
        result.reason = f"{result.reason}; {reason}" if result.reason else reason
        write_reports(self.source, result)  # first, as deliver does
        location = posixpath.join(self.source.work_folder("processing"), claimed.processing_name)
        where = self.source.restore(location, result.name)
        if result.file_id is not None:
            self.pipeline.set_location(result.file_id, where)
        self._warn_waiting(run_id, result.name, reason, result.file_id)
        return True

    def _recall_grown(self, run_id: str) -> None:
        """Put back into the drop folder each file applied in the last RECALL_WINDOW whose
        archived copy has grown since it was read, and say so (file.waiting).

        Its sender paused longer than min_age mid-upload, and wrote on after syncd had
        applied and archived what was there (an open handle follows a rename): a small file
        is read, applied and archived in milliseconds. What was read stays applied; taken
        again, the whole file applies (a full file's late rows reactivated). Only the size
        is compared: the ledger keeps no mtime, and an upload that resumes appends.
        """
        if self.config.done_marker:  # its sender said it was whole
            return
        since = self.clock.now() - RECALL_WINDOW
        with self.pipeline.engine.connect() as connection:
            rows = store.archived_since(
                connection, self.config.name, self.source.work_folder("archive"), since
            )
        for row in rows:
            size = self.source.size_at(row.path)
            if size is None or row.size is None or size == row.size:
                continue
            where = self.source.restore(row.path, row.name)
            self.pipeline.set_location(row.id, where)
            self._warn_waiting(
                run_id,
                row.name,
                f"it grew after syncd had read and archived it ({row.size:,} bytes then, "
                f"{size:,} now): its upload was still under way. What was read stays in "
                f"effect; the file is back in the drop folder, from the archive{_TAKEN_AGAIN}",
                row.id,
            )

    def _warn_waiting(
        self, run_id: str | None, name: str, reason: str, file_id: int | None = None
    ) -> None:
        """Say that a file waits for something an operator should know of (file.waiting)."""
        audit.emit(
            audit.FILE_WAITING,
            level="warning",
            source=self.config.name,
            site=self.config.site,
            run_id=run_id,
            file_id=file_id,
            name=name,
            reason=reason,
        )

    def deliver(self, result: FileResult, processing_name: str) -> None:
        """Write the file's reports, then move it where its outcome says, with its marker.

        Reports first: a connection lost between the two leaves the file in processing/,
        and the next pass delivers it again (a second report, never none)."""
        write_reports(self.source, result)
        folder = archive_folder(self.clock.now(), result.status)
        where = self.source.finish(processing_name, folder, result.name)
        if self.config.done_marker:
            for suffix in MARKER_SUFFIXES:
                self.source.remove_marker(
                    result.name + suffix, folder, posixpath.basename(where) + suffix
                )
        if result.file_id is not None:
            self.pipeline.set_location(result.file_id, where)


def ledger_result(row: Any, errors: list[RowError]) -> FileResult:
    """Return what the ledger entry `row` of a processed file says, with its row `errors`
    (store.row_errors); its duration is from its receipt to its outcome."""
    took = row.finished_at - row.received_at if row.finished_at and row.received_at else None
    return FileResult(
        name=row.name,
        file_id=row.id,
        kind=Kind(row.kind) if row.kind else None,
        status=FileStatus(row.status),
        reason=row.reason,
        sha256=row.sha256,
        encoding=row.encoding,
        delimiter=row.delimiter,
        counts=Counts(**row.counts) if row.counts else Counts(),
        errors=errors,
        duration_s=round(took.total_seconds(), 3) if took is not None else 0.0,
    )


def expire_pending_of(
    connection: sa.Connection,
    source: SourceConfig,
    source_name: str | None,
    now: datetime,
    events: audit.EventBuffer,
) -> None:
    """Expire the pending links of `source`'s site past their time, by its settings (its
    pending_ttl for its own links, whether an orphaned parent is deactivated): what every
    pass and every import does first."""
    expire_pending(
        connection,
        source.site,
        now,
        events,
        source.deactivate_orphan_parents,
        ttl=(source_name, source.pending_ttl),
    )


def _stop_if_asked(should_stop: Callable[[], bool]) -> None:
    """A file's checkpoint in a pass: a stop asked while its passwords are hashed (hours for
    a district's first parents file) rolls it back rather than keep systemd waiting."""
    if should_stop():
        raise Stopped("asked to stop: the file rolls back and waits in processing/")


def write_reports(source: Source, result: FileResult) -> None:
    reports.write_reports_with(source.write_report, result)
