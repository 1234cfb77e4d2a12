"""One pickup pass over a drop folder (SPEC §3.2): ready files, claimed, applied in kind order."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from syncd import audit, reports
from syncd.clock import Clock
from syncd.config import SourceConfig
from syncd.db import store
from syncd.db.apply import expire_pending
from syncd.errors import FileFailed
from syncd.formats.headers import detect_kind
from syncd.formats.readers import open_table
from syncd.model import FileStatus, Kind
from syncd.pipeline import FileResult, Job, Pipeline
from syncd.sources.base import MARKER_SUFFIXES, Entry, Source, is_candidate_name

UNKNOWN_RANK = len(Kind)


@dataclass(slots=True)
class PassResult:
    applied: int = 0
    failed: int = 0
    held: int = 0
    duplicate: int = 0
    waiting: int = 0
    results: list[FileResult] = field(default_factory=list)


def peek_kind(path: Path, source: SourceConfig, name: str) -> Kind | None:
    """Return a file's kind from its name or header, None when unknown or unreadable."""
    kind = detect_kind(name, (), source.globs, source.child_column)
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


class Pickup:
    """Runs pickup passes for one source."""

    def __init__(
        self, config: SourceConfig, source: Source, pipeline: Pipeline, clock: Clock
    ) -> None:
        self.config = config
        self.source = source
        self.pipeline = pipeline
        self.clock = clock

    def ready_entries(self, entries: list[Entry]) -> tuple[list[Entry], list[Entry]]:
        """Split candidate files into (ready, not yet ready)."""
        names = {entry.name for entry in entries}
        ready: list[Entry] = []
        young: list[Entry] = []
        now = self.clock.now().timestamp()
        min_age = self.config.min_age.total_seconds()
        for entry in entries:
            if not is_candidate_name(entry.name) or entry.name.casefold().endswith(MARKER_SUFFIXES):
                continue
            if self.config.done_marker:
                if not any(entry.name + suffix in names for suffix in MARKER_SUFFIXES):
                    young.append(entry)
                    continue
            elif now - entry.mtime < min_age:
                young.append(entry)
                continue
            ready.append(entry)
        return ready, young

    def run_once(self, run_id: str, wait_for_young: bool = True) -> PassResult:
        """Process every ready file (and files left in processing/); return what happened."""
        outcome = PassResult()
        self._expire(run_id)
        for entry in self.source.list_processing():
            self._process(entry.name, entry.name, run_id, outcome, recovered=True)
        entries = self.source.list_entries()
        ready, young = self.ready_entries(entries)
        if young and wait_for_young and not self.config.done_marker:
            # `run --once` waits for files that become old enough within min_age.
            self.clock.sleep(self.config.min_age.total_seconds())
            ready, young = self.ready_entries(self.source.list_entries())
        outcome.waiting = len(young)
        self._process_batch(ready, young, entries, run_id, outcome)
        return outcome

    def _process_batch(
        self,
        ready: list[Entry],
        young: list[Entry],
        entries: list[Entry],
        run_id: str,
        outcome: PassResult,
    ) -> None:
        root = Path(self.config.path) if not self.config.is_sftp else None
        kinds: dict[str, Kind | None] = {}
        for entry in ready:
            kinds[entry.name] = (
                peek_kind(root / entry.name, self.config, entry.name)
                if root
                else (detect_kind(entry.name, (), self.config.globs, self.config.child_column))
            )
        arriving = [
            detect_kind(
                entry.name.rsplit(".", 1)[0] if not is_candidate_name(entry.name) else entry.name,
                (),
                self.config.globs,
                self.config.child_column,
            )
            for entry in young + [e for e in entries if not is_candidate_name(e.name)]
        ]
        ranks_arriving = {kind.rank for kind in arriving if kind is not None}

        def order(entry: Entry) -> tuple[int, float, str]:
            kind = kinds.get(entry.name)
            return (kind.rank if kind else UNKNOWN_RANK, entry.mtime, entry.name)

        now = self.clock.now().timestamp()
        for entry in sorted(ready, key=order):
            kind = kinds.get(entry.name)
            if kind is not None and any(rank < kind.rank for rank in ranks_arriving):
                waited = now - entry.mtime
                if waited < self.config.dependency_wait.total_seconds():
                    outcome.waiting += 1
                    audit.emit(
                        audit.FILE_WAITING,
                        source=self.config.name,
                        site=self.config.site,
                        run_id=run_id,
                        name=entry.name,
                        kind=kind.value,
                        reason="an earlier kind of file is still arriving",
                    )
                    continue
            claimed = self.source.claim(entry.name)
            if claimed is None:
                continue
            self._process(claimed, entry.name, run_id, outcome, kind=kind)

    def _expire(self, run_id: str) -> None:
        now = self.clock.now()
        events = audit.EventBuffer(
            context={"source": self.config.name, "site": self.config.site, "run_id": run_id},
            now=now,
        )
        with self.pipeline.engine.begin() as connection:
            expire_pending(connection, self.config.site, now, events)
            events.write(connection)
        events.emit()

    def _process(
        self,
        processing_name: str,
        original_name: str,
        run_id: str,
        outcome: PassResult,
        recovered: bool = False,
        kind: Kind | None = None,
    ) -> None:
        location = f"processing/{processing_name}"
        file_id = None
        if recovered:
            with self.pipeline.engine.connect() as connection:
                row = store.file_in_processing(connection, self.config.name, location)
            if row is not None:
                file_id = row.id
                original_name = row.name
        with tempfile.TemporaryDirectory(prefix="syncd-") as temp:
            local = self.source.fetch(processing_name, Path(temp))
            job = Job(
                path=local,
                name=original_name,
                source=self.config,
                source_name=self.config.name,
                kind=kind,
                file_id=file_id,
                run_id=run_id,
                location=location,
            )
            result = self.pipeline.process(job)
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

    def deliver(self, result: FileResult, processing_name: str) -> None:
        """Move the file where its outcome says, with its marker, and write its reports."""
        folder = archive_folder(self.clock.now(), result.status)
        where = self.source.finish(processing_name, folder, result.name)
        if self.config.done_marker:
            for suffix in MARKER_SUFFIXES:
                self.source.remove_marker(result.name + suffix, folder)
        if result.file_id is not None:
            self.pipeline.set_location(result.file_id, where)
        write_reports(self.source, result)


def write_reports(source: Source, result: FileResult) -> None:
    source.write_report(reports.report_name(result.name), reports.report_json(result))
    if result.errors:
        source.write_report(reports.errors_name(result.name), reports.errors_csv(result))
