"""The audit trail (SPEC §6): stable event names, JSON lines via structlog, database rows."""

from __future__ import annotations

import fcntl
import functools
import json
import marshal
import os
import stat
import struct
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO, NamedTuple

import sqlalchemy as sa
import structlog

from syncd.db.bulk import insert_rows
from syncd.db.schema import audit_events
from syncd.errors import AuditUnwritable, ConfigError

DAEMON_STARTED = "daemon.started"
DAEMON_STOPPED = "daemon.stopped"
CONFIG_RELOADED = "config.reloaded"
SOURCE_POLLED = "source.polled"
SOURCE_ERROR = "source.error"
SOURCE_RECOVERED = "source.recovered"
SOURCE_ACQUIRED = "source.acquired"
SOURCE_RELEASED = "source.released"
FILE_RECEIVED = "file.received"
FILE_DUPLICATE = "file.duplicate"
FILE_WAITING = "file.waiting"
FILE_VALIDATED = "file.validated"
FILE_HELD = "file.held"
FILE_RELEASED = "file.released"
FILE_REJECTED = "file.rejected"
FILE_APPLIED = "file.applied"
FILE_REVERTED = "file.reverted"
FILE_FAILED = "file.failed"
ROW_REJECTED = "row.rejected"
PERSON_CREATED = "person.created"
PERSON_UPDATED = "person.updated"
PERSON_DEACTIVATED = "person.deactivated"
PERSON_REACTIVATED = "person.reactivated"
RELATIONSHIP_CREATED = "relationship.created"
RELATIONSHIP_REMOVED = "relationship.removed"
RELATIONSHIP_PENDING = "relationship.pending"
RELATIONSHIP_RESOLVED = "relationship.resolved"
RELATIONSHIP_EXPIRED = "relationship.expired"

EVENT_NAMES = frozenset(
    {
        DAEMON_STARTED, DAEMON_STOPPED, CONFIG_RELOADED, SOURCE_POLLED, SOURCE_ERROR,
        SOURCE_RECOVERED, SOURCE_ACQUIRED, SOURCE_RELEASED, FILE_RECEIVED, FILE_DUPLICATE,
        FILE_WAITING, FILE_VALIDATED, FILE_HELD, FILE_RELEASED, FILE_REJECTED, FILE_APPLIED,
        FILE_REVERTED, FILE_FAILED, ROW_REJECTED, PERSON_CREATED, PERSON_UPDATED,
        PERSON_DEACTIVATED, PERSON_REACTIVATED, RELATIONSHIP_CREATED, RELATIONSHIP_REMOVED,
        RELATIONSHIP_PENDING, RELATIONSHIP_RESOLVED, RELATIONSHIP_EXPIRED,
    }
)  # fmt: skip

# Keys whose values are secrets wherever they appear (SPEC §6); a backstop, never bind them.
SECRET_KEYS = frozenset(
    {"password", "passwd", "passphrase", "private_key_passphrase", "secret", "token"}
)
REDACTED = "[redacted]"
# The members every audit line ends with (EventBuffer.line_parts).
_LINE_KEYS = frozenset({"person_id", "event", "level", "ts"})
# Events as compact JSON, the same in the audit rows, the log lines and their templates.
_json = functools.partial(json.dumps, ensure_ascii=False, default=str, separators=(",", ":"))

log = structlog.get_logger("syncd")


def redact(value: Any) -> Any:
    """Return `value` with the values of secret-named keys replaced, recursively."""
    if _secret_free(value):
        return value  # the common event: nothing to copy
    if isinstance(value, Mapping):
        return {
            key: REDACTED if _is_secret_key(key) and item not in (None, "") else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _secret_free(value: Any) -> bool:
    """Whether no key of `value`, at any depth, names a secret (checked without copying:
    an update's event nests its changes)."""
    kind = type(value)
    if kind in _SCALARS:
        return True
    if kind is dict or isinstance(value, Mapping):
        for key, item in value.items():
            if _is_secret_key(key) or not (type(item) in _SCALARS or _secret_free(item)):
                return False
        return True
    if kind is list or kind is tuple:
        return all(type(item) in _SCALARS or _secret_free(item) for item in value)
    return True


@functools.lru_cache(maxsize=4096)
def _is_secret_key(key: Any) -> bool:
    text = str(key).casefold()
    return any(secret in text for secret in SECRET_KEYS) and not text.endswith("_env")


def _redact_processor(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> Mapping[str, Any]:
    return redact(event_dict)  # type: ignore[no-any-return]


class _ReopenableFile:
    """A line sink that SIGHUP can reopen (logrotate moves the file away).

    Lines reach a file in whole-line writes, so lines of different writers never interleave;
    a reader tailing the log while a big file's events are appended may still catch a write
    half done, and takes a line when its newline has arrived (as log shippers do).
    """

    # Bytes appended between two calls of _write_out.
    WRITE_OUT_BYTES = 32 << 20

    def __init__(self, path: str, stdout_taken: bool = False) -> None:
        self.path = path
        # "-" is stdout, unless the command prints its own JSON document there.
        self._to_stderr = stdout_taken
        self._lock = threading.Lock()
        self._file: BinaryIO | None = None
        self._unadvised = 0  # bytes appended since _write_out last ran
        self._advise_from = 0  # where _write_out's next call starts (see there)
        self._last_end = 0  # where the file ended at its last call
        self._open()

    def _open(self) -> None:
        if self.path == "-":
            self._file = None
            return
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - kept open on purpose
        self._mend_tail()
        self._unadvised = 0
        self._advise_from = self._last_end = self._file.tell()

    def _mend_tail(self) -> None:
        """End a line that a writer killed mid-write left unfinished, so that this
        process's first event starts a line of its own rather than being glued onto it
        (SPEC §6: one object a line). The unfinished line stays, ended: a log shipper
        tailing the file would read a truncated one again from its start."""
        assert self._file is not None
        with self._flocked():
            descriptor = self._file.fileno()
            info = os.fstat(descriptor)
            if not stat.S_ISREG(info.st_mode) or info.st_size == 0:
                return
            try:
                with open(self.path, "rb") as reader:  # the log is opened to append only
                    reader.seek(info.st_size - 1)
                    unfinished = reader.read(1) != b"\n"
            except OSError:  # not readable by this account: nothing to mend by
                return
            if unfinished:
                os.write(descriptor, b"\n")  # appended: the file is opened so

    @contextmanager
    def _flocked(self) -> Iterator[None]:
        """Hold an flock on the log file while appending or mending: each syncd process
        writes whole lines under it, so a line another process finds unfinished is a dead
        writer's (_mend_tail), never one being written. Where the file system has no
        flock, lines are written all the same."""
        descriptor = self._file.fileno() if self._file is not None else None
        locked = False
        if descriptor is not None:
            with suppress(OSError):
                fcntl.flock(descriptor, fcntl.LOCK_EX)
                locked = True
        try:
            yield
        finally:
            if locked:
                assert descriptor is not None
                with suppress(OSError):
                    fcntl.flock(descriptor, fcntl.LOCK_UN)

    def _write(self, text: str) -> None:
        text = _one_line(text)
        if self._file is None:
            stream = sys.stderr if self._to_stderr else sys.stdout
            stream.write(text)
            stream.flush()
            return
        self._write_bytes(text.encode("utf-8", "surrogatepass"))

    def _write_bytes(self, encoded: bytes) -> None:
        if self._file is None:
            self._write(encoded.decode("utf-8", "surrogatepass"))
            return
        data = memoryview(encoded)
        while data:
            written = self._file.write(data) or 0
            data = data[written:]
        self._unadvised += len(encoded)
        if self._unadvised >= self.WRITE_OUT_BYTES:
            self._write_out()

    def _write_out(self) -> None:
        """Have the kernel write what was appended to disk now and forget it once written.

        syncd never reads the log back while it writes, but a district's first load appends
        a gigabyte: left dirty in the page cache, it pushed the machine past its dirty-page
        limit, where every write got slow, the database's too (a first load of 1M students
        and 1.5M parents took 45-47 s, 42 s with this). Each call covers the window before
        it too: pages still being written at the last call are dropped now.
        """
        assert self._file is not None
        self._unadvised = 0
        if hasattr(os, "posix_fadvise"):  # Linux; not macOS
            with suppress(OSError):  # advice only
                os.posix_fadvise(self._file.fileno(), self._advise_from, 0, os.POSIX_FADV_DONTNEED)
        self._advise_from, self._last_end = self._last_end, self._file.tell()

    def write_line(self, line: str) -> None:
        with self._lock, self._flocked(), self._unwritable_said():
            self._write(line + "\n")

    def write_text(self, text: str) -> None:
        """Append `text` (whole lines, each ending in a newline)."""
        with self._lock, self._flocked(), self._unwritable_said():
            self._write(text)

    def write_all(self, texts: Iterable[bytes]) -> None:
        """Append each of `texts` (UTF-8, whole lines) in turn."""
        with self._lock, self._flocked(), self._unwritable_said():
            for text in texts:
                self._write_bytes(text)

    @contextmanager
    def _unwritable_said(self) -> Iterator[None]:
        """Turn a failed write (a full disk) into an error that names the log, the lines
        written in part taken back: the next write starts a line of its own."""
        descriptor = self._file.fileno() if self._file is not None else None
        end = os.fstat(descriptor).st_size if descriptor is not None else 0
        try:
            yield
        except OSError as error:
            if descriptor is not None:
                with suppress(OSError):
                    os.ftruncate(descriptor, end)
            where = "standard output" if self.path == "-" else self.path
            raise AuditUnwritable(
                f"audit log {where} cannot be written: {error.strerror or error}"
            ) from error

    def reopen(self) -> None:
        with self._lock:
            old = self._file
            self._open()  # raises OSError with the old file still in place
            if old is not None:
                old.close()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()


# Characters JSON leaves unescaped that other line splitters than "\n" end a line at (Python's
# str.splitlines, JavaScript's older parsers): a name holding one would cut its audit line
# in two for them. In JSON text they occur only inside strings, so their escapes read the
# same. (The other such characters, \x0b, \x0c and \x1c-\x1e, JSON always escapes.) Escaped
# in text, not in bytes: a text without characters past U+00FF rules out two at once, and
# a district's first night writes a gigabyte of lines.
_LINE_BREAKS = (("\u2028", "\\u2028"), ("\u2029", "\\u2029"), ("\x85", "\\u0085"))


def _one_line(text: str) -> str:
    """Return JSON lines `text` with the line breaks of other splitters escaped."""
    for character, escape in _LINE_BREAKS:
        if character in text:
            text = text.replace(character, escape)
    return text


class _SinkLogger:
    def __init__(self, sink: _ReopenableFile) -> None:
        self._sink = sink

    def msg(self, message: str) -> None:
        self._sink.write_line(message)

    info = debug = warning = warn = error = critical = exception = fatal = msg


_sink: _ReopenableFile | None = None


def configure(path: str, stdout_taken: bool = False) -> None:
    """Send audit events as JSON lines to `path` ("-" = stdout, or stderr while the command
    prints a JSON document on stdout: `stdout_taken`); raise OSError if it fails."""
    global _sink
    # Open the new file first: when it cannot be opened (SIGHUP with a wrong audit.path)
    # the events keep going to the old one.
    sink = _ReopenableFile(path, stdout_taken)
    if _sink is not None:
        _sink.close()
    _sink = sink
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            _redact_processor,
            structlog.processors.format_exc_info,
            # Compact, as the lines of a file's events (one format for whoever parses the log).
            structlog.processors.JSONRenderer(
                ensure_ascii=False, default=str, separators=(",", ":")
            ),
        ],
        logger_factory=lambda *args: _SinkLogger(sink),
        cache_logger_on_first_use=False,
    )


def open_log(config_path: Path, audit_path: str, stdout_taken: bool = False) -> None:
    """configure(audit_path); raise ConfigError naming the key when it cannot be opened (a
    folder, a missing permission: exit 2, which systemd does not restart into)."""
    try:
        configure(audit_path, stdout_taken)
    except OSError as error:
        raise ConfigError(
            f"{config_path}: audit.path: cannot open {audit_path}: {error.strerror or error}"
        ) from error


def reopen() -> None:
    if _sink is not None:
        _sink.reopen()


AUDIT_COLUMNS = ("level", "event", "person_id", "data")  # the rest are constant per file


def iso_utc(moment: datetime) -> str:
    """Return `moment` as structlog's TimeStamper(fmt="iso", utc=True) writes it."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"


# A bound buffer writes its events into the transaction in batches of this many, and keeps
# at most this many JSON lines in memory before it spools them to a temporary file.
FLUSH_EVENTS = 20_000
SPOOL_LINES = 20_000


class LineRun(NamedTuple):
    """JSON lines in a row: `start + member + end` for each of `members`, or, when `start`
    is None, whole lines (`members` each ending in a newline)."""

    start: str | None
    end: str
    members: list[str]


# A spooled run: its kind (0: whole lines, 1: members), then the byte lengths of start, end
# and the members (joined by newlines, which JSON members never hold).
_RUN_HEADER = struct.Struct("<BIIQ")


def _write_run(spool: IO[bytes], run: LineRun) -> None:
    encode = functools.partial(str.encode, encoding="utf-8", errors="surrogatepass")
    if run.start is None:
        start = end = b""
        payload = encode(_one_line("".join(run.members)))
    else:
        start, end = encode(_one_line(run.start)), encode(_one_line(run.end))
        payload = encode(_one_line("\n".join(run.members)))
    spool.write(
        _RUN_HEADER.pack(run.start is not None, len(start), len(end), len(payload))
        + start
        + end
        + payload
    )


def _expanded(start: bytes, end: bytes, members: bytes) -> bytes:
    """Return the lines of members joined by newlines: one pass in C."""
    return start + members.replace(b"\n", end + start) + end


def _read_runs(spool: IO[bytes]) -> Iterator[bytes]:
    """Yield the lines of each run in `spool` (from where it stands), as bytes."""
    while header := spool.read(_RUN_HEADER.size):
        has_members, start_size, end_size, size = _RUN_HEADER.unpack(header)
        start, end = spool.read(start_size), spool.read(end_size)
        payload = spool.read(size)
        yield _expanded(start, end, payload) if has_members else payload


def _run_lines(run: LineRun) -> str:
    if run.start is None:
        return "".join(run.members)
    return run.start + (run.end + run.start).join(run.members) + run.end


class EventSegment:
    """Events in the order they were added: audit rows (event, level, person_id, data as
    JSON text) and JSON lines, each spooled to a temporary file once there are many.

    Lines that differ only in their middle (a file's person.created lines: the context
    before, event, level and time after) are kept as runs of their members (LineRun) and
    spooled so: a district's first load spools 0.45 GB instead of 1.1 GB of lines. The
    spooled runs are a chain of temporary files, in order: another segment's spool is
    appended by taking its file into the chain, not by copying it.
    """

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, int | None, str]] = []
        self.runs: list[LineRun] = []
        self._lines = 0  # in self.runs
        self._row_spool: IO[bytes] | None = None
        self._line_spools: list[IO[bytes]] = []
        self._open_spool: IO[bytes] | None = None  # the last of the chain, taking new lines

    def add_line(self, line: str) -> None:
        """Add a whole line (ending in a newline)."""
        self.add_run(LineRun(None, "", [line]))

    def add_members(self, start: str, end: str, members: list[str]) -> None:
        """Add the lines `start + member + end` of `members` (without newlines)."""
        self.add_run(LineRun(start, end, members))

    def add_run(self, run: LineRun) -> None:
        """Add `run`'s lines: to the last run when it has the same start and end."""
        if not run.members:
            return
        runs = self.runs
        if runs and runs[-1].start == run.start and runs[-1].end == run.end:
            runs[-1].members.extend(run.members)
        else:
            runs.append(LineRun(run.start, run.end, list(run.members)))
        self._lines += len(run.members)
        if self._lines >= SPOOL_LINES:
            self.spool_lines()

    def spool_lines(self) -> None:
        if not self.runs:
            return
        if self._open_spool is None:
            self._open_spool = tempfile.TemporaryFile()  # noqa: SIM115
            self._line_spools.append(self._open_spool)
        for run in self.runs:
            _write_run(self._open_spool, run)
        self.runs = []
        self._lines = 0

    def spool_rows(self) -> None:
        if self._row_spool is None:
            self._row_spool = tempfile.TemporaryFile()  # noqa: SIM115
        data = marshal.dumps(self.rows)
        self._row_spool.write(len(data).to_bytes(8, "little") + data)
        self.rows.clear()

    def take_rows(self) -> Iterator[tuple[str, str, int | None, str]]:
        """Yield every row, in order, and forget them."""
        if self._row_spool is not None:
            spool, self._row_spool = self._row_spool, None
            spool.seek(0)
            while size := spool.read(8):
                yield from marshal.loads(spool.read(int.from_bytes(size, "little")))
            spool.close()
        rows, self.rows = self.rows, []
        yield from rows

    def take_lines(self) -> tuple[list[IO[bytes]], list[LineRun]]:
        """Return (the spooled runs: files to read in order with _read_runs, each from its
        start; the runs after them) and forget them."""
        spools, self._line_spools, self._open_spool = self._line_spools, [], None
        runs, self.runs, self._lines = self.runs, [], 0
        for spool in spools:
            spool.seek(0)
        return spools, runs

    def append_spooled(self, spools: list[IO[bytes]]) -> None:
        """Append the spooled lines of another segment (after the lines added so far)."""
        self.spool_lines()
        self._line_spools.extend(spools)
        self._open_spool = None

    def clear(self) -> None:
        spools = [self._row_spool, *self._line_spools]
        for spool in spools:
            if spool is not None:
                spool.close()
        self._row_spool = self._open_spool = None
        self._line_spools = []
        self.rows.clear()
        self.runs, self._lines = [], 0


class EventBuffer:
    """Events of one transaction: audit rows in it, JSON lines logged after it commits.

    A file can carry millions of per-row events, so they bypass structlog's per-event
    processor chain: each is redacted once and rendered as its JSON line at once; the lines
    wait in a temporary spool file until `emit` (after the commit) appends them to the log,
    so the log never shows a change that did not happen. Creation events that the created
    rows describe in full are logged with `add_members` and stored as provenance (db/trail.py).
    """

    def __init__(self, context: dict[str, Any], now: datetime) -> None:
        self.context = context
        self.now = now
        self._segment = EventSegment()
        self._connection: sa.Connection | None = None
        self._line_context = {k: v for k, v in redact(context).items() if v is not None}
        rendered = _json(self._line_context)
        self._prefix = rendered[:-1] + "," if self._line_context else "{"
        self._ts = iso_utc(now)

    def bind(self, connection: sa.Connection) -> None:
        """Write events into `connection`'s transaction as they come, in batches."""
        self._connection = connection

    def add(
        self, event: str, *, level: str = "info", person_id: int | None = None, **data: Any
    ) -> None:
        assert event in EVENT_NAMES, event
        data = redact(data)
        segment = self._segment
        text = _json(data)
        segment.rows.append((event, level, person_id, text))
        segment.add_line(self._line(event, level, person_id, data, text))
        if len(segment.rows) >= FLUSH_EVENTS:
            if self._connection is not None and segment is not self._held:
                self.write(self._connection)
            else:
                segment.spool_rows()

    def _line(
        self, event: str, level: str, person_id: int | None, data: dict[str, Any], text: str
    ) -> str:
        """Return the JSON line of an event whose data JSON is `text`: the context, the data
        but its None values, person_id, event, level, ts (the data encoded once if it can)."""
        members = text[1:-1]
        if (
            members
            and _LINE_KEYS.isdisjoint(data)
            and self._line_context.keys().isdisjoint(data)
            and None not in data.values()
        ):
            if person_id is not None:
                members += f',"person_id":{person_id}'
            start, end = self.line_parts(event, level)
            return start + members + end
        line = {**self._line_context, **{k: v for k, v in data.items() if v is not None}}
        if person_id is not None:
            line["person_id"] = person_id
        line["event"], line["level"], line["ts"] = event, level, self._ts
        return _json(line) + "\n"

    _held: EventSegment | None = None

    @contextmanager
    def held(self) -> Iterator[EventSegment]:
        """Hold back the events added in the block; `add_held` places them later.

        A file applied while it is read has its changes before its validation is known;
        this keeps the audit trail in the order a reader expects (validated, then changes).
        """
        outer = self._segment
        self._segment = self._held = EventSegment()
        try:
            yield self._segment
        finally:
            self._segment, self._held = outer, None

    def add_held(self, held: EventSegment) -> None:
        """Add the events `held` kept back, as if they were added now."""
        if self._connection is not None:
            self.write(self._connection)
            self._insert(self._connection, held.take_rows())
        else:
            for row in held.take_rows():
                self._segment.rows.append(row)
        spools, runs = held.take_lines()
        if spools:
            self._segment.append_spooled(spools)
        for run in runs:
            self._segment.add_run(run)

    def add_row_errors(self, errors: Iterable[Any]) -> None:
        """Add one row.rejected event per rejected row (a row is rejected whole, and the
        report counts rows): its first error as `column` and `error`, all of them in
        `errors`. Values stay out (a cell may hold a password)."""
        by_row: dict[int, list[Any]] = {}
        for error in errors:
            by_row.setdefault(error.row, []).append(error)
        for row, row_errors in by_row.items():
            first = row_errors[0]
            self.add(
                ROW_REJECTED,
                level="warning",
                row=row,
                column=first.column,
                error=first.error,
                errors=[{"column": error.column, "error": error.error} for error in row_errors],
            )

    def line_parts(self, event: str, level: str = "info") -> tuple[str, str]:
        """Return (start, end) of this buffer's JSON lines of `event`: the data goes between.

        The data must be JSON members (`"kind":"student",…,"person_id":5`) without secrets.
        """
        assert event in EVENT_NAMES, event
        return self._prefix, f',"event":"{event}","level":"{level}","ts":"{self._ts}"}}\n'

    def add_members(self, start: str, end: str, members: list[str]) -> None:
        """Log the JSON lines `start + member + end` (`start`, `end` from `line_parts`,
        perhaps with more members after `start`) of events stored as provenance."""
        self._segment.add_members(start, end, members)

    def write(self, connection: sa.Connection) -> None:
        """Insert the events not yet written as audit rows (in the caller's transaction)."""
        self._insert(connection, self._segment.take_rows())

    def stamp(self, connection: sa.Connection, now: datetime) -> None:
        """Write the events so far, and give the ones added after this `now`: a file's
        outcome (file.applied, file.held) says when it was decided, not when the file's
        transaction began (its changes all keep that one time)."""
        if self._held is not None:
            return  # events held back are placed later: they keep the file's one time
        self.write(connection)
        self.now, self._ts = now, iso_utc(now)

    def _insert(
        self, connection: sa.Connection, rows: Iterable[tuple[str, str, int | None, str]]
    ) -> None:
        context = self.context
        insert_rows(
            connection,
            audit_events,
            AUDIT_COLUMNS,
            ((level, event, person_id, data) for event, level, person_id, data in rows),
            constants={
                "ts": self.now,
                "source": context.get("source"),
                "site": context.get("site"),
                "file_id": context.get("file_id"),
                "run_id": context.get("run_id"),
            },
        )

    def discard(self) -> None:
        """Forget every event (the transaction was rolled back)."""
        self._segment.clear()

    def emit(self) -> None:
        """Log the events as JSON lines (after the transaction committed)."""
        segment = self._segment
        segment.rows.clear()
        spools, runs = segment.take_lines()
        segment.clear()
        if _sink is None:  # audit not configured (library use): structlog's defaults
            for line in _spooled(spools, runs):
                fields = json.loads(line)
                event, level = fields.pop("event"), fields.pop("level")
                fields.pop("ts", None)
                getattr(log, level)(event, **fields)
            return
        try:
            for spool in spools:
                _sink.write_all(_read_runs(spool))
                spool.close()
            if runs:
                _sink.write_text("".join(map(_run_lines, runs)))
        except AuditUnwritable as error:
            # The changes are committed, their events in the database: the command goes on
            # (its report, the next file) and says at its end that lines are missing.
            for spool in spools:
                spool.close()
            with _lost_lock:
                _lost.append(error)


# Audit log writes that failed after their changes committed (EventBuffer.emit), to be said
# once the command or the daemon's pass ends (take_lost).
_lost: list[AuditUnwritable] = []
_lost_lock = threading.Lock()


def take_lost() -> AuditUnwritable | None:
    """Return (and forget) the first failure to write a committed change's lines, if any."""
    with _lost_lock:
        first = _lost[0] if _lost else None
        _lost.clear()
    return first


def _spooled(spools: list[IO[bytes]], runs: list[LineRun]) -> Iterator[str]:
    """Yield each line (without its newline; JSON holds no other line break)."""
    for spool in spools:
        for lines in _read_runs(spool):
            yield from lines.decode("utf-8", "surrogatepass").split("\n")[:-1]
        spool.close()
    for run in runs:
        yield from _run_lines(run).split("\n")[:-1]


def emit(event: str, *, level: str = "info", **fields: Any) -> None:
    """Log one event that changes nothing in the database (daemon, source, poll events)."""
    assert event in EVENT_NAMES, event
    getattr(log, level)(event, **{k: v for k, v in fields.items() if v is not None})


def event_as_dict(row: Any) -> dict[str, Any]:
    """Return an audit row shaped as its JSON line (SPEC §6)."""
    ts = row.ts
    document: dict[str, Any] = {
        "ts": ts.isoformat().replace("+00:00", "Z") if ts.tzinfo else ts.isoformat() + "Z",
        "level": row.level,
        "event": row.event,
    }
    for key in ("source", "site", "file_id", "run_id", "person_id"):
        if getattr(row, key) is not None:
            document[key] = getattr(row, key)
    data = row.data if isinstance(row.data, dict) else json.loads(row.data or "{}")
    # As the JSON line has it: without the members whose value is null (EventBuffer._line).
    document.update((key, value) for key, value in data.items() if value is not None)
    return document
