"""The audit trail (SPEC §6): stable event names, JSON lines via structlog, database rows."""

from __future__ import annotations

import functools
import json
import sys
import threading
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import sqlalchemy as sa
import structlog

from syncd.db.bulk import insert_rows
from syncd.db.schema import audit_events

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

log = structlog.get_logger("syncd")


def redact(value: Any) -> Any:
    """Return `value` with the values of secret-named keys replaced, recursively."""
    if isinstance(value, dict) and not any(
        _is_secret_key(key) or isinstance(item, Mapping | list | tuple)
        for key, item in value.items()
    ):
        return value  # the common flat, secret-free event: nothing to copy
    if isinstance(value, Mapping):
        return {
            key: REDACTED if _is_secret_key(key) and item not in (None, "") else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value


@functools.lru_cache(maxsize=4096)
def _is_secret_key(key: Any) -> bool:
    text = str(key).casefold()
    return any(secret in text for secret in SECRET_KEYS) and not text.endswith("_env")


def _redact_processor(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> Mapping[str, Any]:
    return redact(event_dict)  # type: ignore[no-any-return]


class _ReopenableFile:
    """A line sink that SIGHUP can reopen (logrotate moves the file away)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stream: TextIO = self._open()

    def _open(self) -> TextIO:
        if self.path == "-":
            return sys.stdout
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        return open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open on purpose

    def write_line(self, line: str) -> None:
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()

    def write_lines(self, lines: list[str]) -> None:
        with self._lock:
            self._stream.write("".join(line + "\n" for line in lines))
            self._stream.flush()

    def reopen(self) -> None:
        with self._lock:
            if self._stream is not sys.stdout:
                self._stream.close()
            self._stream = self._open()

    def close(self) -> None:
        with self._lock:
            if self._stream is not sys.stdout:
                self._stream.close()


class _SinkLogger:
    def __init__(self, sink: _ReopenableFile) -> None:
        self._sink = sink

    def msg(self, message: str) -> None:
        self._sink.write_line(message)

    info = debug = warning = warn = error = critical = exception = fatal = msg


_sink: _ReopenableFile | None = None


def configure(path: str) -> None:
    """Send audit events as JSON lines to `path` ("-" = stdout)."""
    global _sink
    if _sink is not None:
        _sink.close()
    _sink = _ReopenableFile(path)
    sink = _sink
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            _redact_processor,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(ensure_ascii=False, default=str),
        ],
        logger_factory=lambda *args: _SinkLogger(sink),
        cache_logger_on_first_use=False,
    )


def reopen() -> None:
    if _sink is not None:
        _sink.reopen()


AUDIT_COLUMNS = ("level", "event", "person_id", "data")  # the rest are constant per file


def iso_utc(moment: datetime) -> str:
    """Return `moment` as structlog's TimeStamper(fmt="iso", utc=True) writes it."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"


# A file's events are held in memory up to this many, then written into its transaction
# and read back for the log after commit (a million-row file must not hold them all).
SPILL_EVENTS = 20_000
LINES_PER_WRITE = 10_000


@dataclass(slots=True)
class EventBuffer:
    """Events of one file's transaction: written to the database in it, logged after commit.

    A file can carry a million per-row events, so they bypass structlog's per-event
    processor chain: each is redacted once and rendered as the same JSON line.
    """

    context: dict[str, Any]
    now: datetime
    events: list[tuple[str, str, int | None, dict[str, Any]]] = field(default_factory=list)
    _connection: sa.Connection | None = None
    _engine: sa.Engine | None = None
    _spilled_after: int | None = None  # the newest audit id before this buffer's first spill

    def spill_into(self, connection: sa.Connection, engine: sa.Engine) -> None:
        """Let large batches go to the database as they grow (needs a file_id to read back)."""
        if self.context.get("file_id") is not None:
            self._connection, self._engine = connection, engine

    def add(
        self, event: str, *, level: str = "info", person_id: int | None = None, **data: Any
    ) -> None:
        assert event in EVENT_NAMES, event
        self.events.append((event, level, person_id, redact(data)))
        if self._connection is not None and len(self.events) >= SPILL_EVENTS:
            if self._spilled_after is None:
                newest = sa.select(sa.func.coalesce(sa.func.max(audit_events.c.id), 0))
                self._spilled_after = int(self._connection.execute(newest).scalar_one())
            self.write(self._connection)
            self.events.clear()

    def write(self, connection: sa.Connection) -> None:
        """Insert the events as audit rows (in the caller's transaction)."""
        context = self.context
        insert_rows(
            connection,
            audit_events,
            AUDIT_COLUMNS,
            ((level, event, person_id, data) for event, level, person_id, data in self.events),
            constants={
                "ts": self.now,
                "source": context.get("source"),
                "site": context.get("site"),
                "file_id": context.get("file_id"),
                "run_id": context.get("run_id"),
            },
        )

    def emit(self) -> None:
        """Log the events as JSON lines (after the transaction committed)."""
        if self._spilled_after is not None and self._engine is not None:
            self.events.clear()  # all of them are in the database: log them from there
            self._emit_from_database(self._engine, self._spilled_after)
            self._spilled_after = None
            return
        if not self.events:
            return
        if _sink is None:  # audit not configured (library use): structlog's defaults
            for event, level, person_id, data in self.events:
                fields = {**self.context, **data, "person_id": person_id}
                getattr(log, level)(event, **{k: v for k, v in fields.items() if v is not None})
            self.events.clear()
            return
        context = {key: value for key, value in redact(self.context).items() if value is not None}
        ts = iso_utc(self.now)
        lines = []
        for event, level, person_id, data in self.events:
            line = {**context, **{k: v for k, v in data.items() if v is not None}}
            if person_id is not None:
                line["person_id"] = person_id
            line["event"], line["level"], line["ts"] = event, level, ts
            lines.append(json.dumps(line, ensure_ascii=False, default=str))
            if len(lines) >= LINES_PER_WRITE:
                _sink.write_lines(lines)
                lines.clear()
        _sink.write_lines(lines)
        self.events.clear()

    def _emit_from_database(self, engine: sa.Engine, after: int) -> None:
        query = (
            sa.select(audit_events)
            .where(audit_events.c.file_id == self.context["file_id"], audit_events.c.id > after)
            .order_by(audit_events.c.id)
        )
        with engine.connect() as connection:
            result = connection.execution_options(yield_per=LINES_PER_WRITE).execute(query)
            for rows in result.partitions():
                lines = [
                    json.dumps(event_as_dict(row), ensure_ascii=False, default=str) for row in rows
                ]
                if _sink is not None:
                    _sink.write_lines(lines)


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
    document.update(data)
    return document
