"""Bulk inserts below the SQL expression layer: executemany on SQLite, COPY on PostgreSQL.

SQLAlchemy Core compiles and processes every parameter set of an executemany in Python;
for the millions of rows of a district's nightly files that costs more than the database
work itself. Rows come as tuples of plain values (JSON columns as JSON text, see
`model.attributes_text`); values that need one are converted with the column's own bind
processor, so what lands in the database is what Core would have written. On SQLite the
constant columns are written into the statement as literals, so they are bound once, not
per row.
"""

from __future__ import annotations

import operator
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from itertools import repeat
from typing import Any

import sqlalchemy as sa

CHUNK_ROWS = 10_000


def insert_rows(
    connection: sa.Connection,
    table: sa.Table,
    columns: Sequence[str],
    rows: Iterable[tuple[Any, ...]],
    constants: Mapping[str, Any] | None = None,
    leave_open: bool = False,
) -> None:
    """Insert `rows` (tuples in `columns` order) into `table`.

    JSON columns take JSON text. `constants` are columns with the same value in every row.
    `leave_open`: on PostgreSQL the COPY is left open, so that the server takes the rows in
    while the caller prepares the next ones; the next statement on the connection (or
    `finish_copy`) ends it first.
    """
    constants = constants or {}
    if connection.dialect.name == "postgresql":
        _copy(connection, table, columns, rows, constants, leave_open)
    else:
        _executemany(connection, table, columns, rows, constants)


# Where a connection keeps the COPY `insert_rows(leave_open=True)` left open.
_OPEN_COPY = "syncd_open_copy"


def _take_open_copy(connection: sa.Connection) -> tuple[Any, Any] | None:
    """Return (and forget) the COPY left open on `connection`'s current session."""
    if connection.closed or connection.invalidated:
        return None  # a lost session took its COPY with it
    held = connection.info.pop(_OPEN_COPY, None)
    if held is None or held[1].connection is not connection.connection.driver_connection:
        return None
    return held  # type: ignore[no-any-return]


def finish_copy(connection: sa.Connection) -> None:
    """End the COPY left open on `connection`, if any: wait for the server to take in its
    rows (raising what it found wrong with them)."""
    held = _take_open_copy(connection)
    if held is not None:
        manager, cursor = held
        try:
            manager.__exit__(None, None, None)
        finally:
            cursor.close()


def abort_copy(connection: sa.Connection) -> None:
    """Give up the COPY left open on `connection`, if any (the transaction rolls back)."""
    held = _take_open_copy(connection)
    if held is not None:
        manager, cursor = held
        failure = RuntimeError("the transaction rolled back")
        try:
            manager.__exit__(type(failure), failure, None)
        except Exception:  # noqa: BLE001, S110 - the rollback that follows reports the state
            pass
        finally:
            cursor.close()


def _processor(connection: sa.Connection, column: sa.Column[Any]) -> Callable[[Any], Any] | None:
    """Return the column's bind processor for values not already what the driver takes."""
    if isinstance(column.type, sa.JSON):
        return None  # JSON columns are given as JSON text
    dialect = connection.dialect
    # The dialect's own type: a generic DateTime has no bind processor, SQLite's has.
    return column.type.dialect_impl(dialect).bind_processor(dialect)


def _sqlite_literal(value: Any) -> str:
    """Return `value` (str, int, bool or None, as bound) as an SQLite literal."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def _executemany(
    connection: sa.Connection,
    table: sa.Table,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    constants: Mapping[str, Any],
) -> None:
    literals = []
    for name, value in constants.items():
        process = _processor(connection, table.c[name])
        literals.append(_sqlite_literal(process(value) if process and value is not None else value))
    # Per-row conversions only where a value is not bound as it is (datetimes).
    converted = [
        (index, process)
        for index, name in enumerate(columns)
        if (process := _processor(connection, table.c[name])) is not None
        and isinstance(table.c[name].type, sa.DateTime)
    ]
    names = ", ".join([*columns, *constants])
    values = ", ".join(["?"] * len(columns) + literals)
    statement = f"INSERT INTO {table.name} ({names}) VALUES ({values})"
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    if not converted:
        # The driver takes the rows as they come: no Python loop over a million of them.
        try:
            cursor.executemany(statement, rows)
        finally:
            cursor.close()
        return
    batch: list[Sequence[Any]] = []
    try:
        for row in rows:
            row = list(row)
            for index, process in converted:
                if isinstance(row[index], datetime):
                    row[index] = process(row[index])
            batch.append(row)
            if len(batch) >= CHUNK_ROWS:
                cursor.executemany(statement, batch)
                batch.clear()
        if batch:
            cursor.executemany(statement, batch)
    finally:
        cursor.close()


def update_rows(
    connection: sa.Connection,
    table: sa.Table,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    constants: Mapping[str, Any] | None = None,
) -> None:
    """Update rows of `table` by id: each row is (id, *values in `columns` order).

    JSON columns take JSON text. `constants` are columns set to the same value in each row.
    """
    constants = constants or {}
    dialect = connection.dialect
    postgres = dialect.name == "postgresql"
    mark = "%s" if postgres else "?"
    assignments = [f"{name} = {mark}" for name in columns]
    fixed: list[Any] = []
    for name, value in constants.items():
        process = _processor(connection, table.c[name])
        value = process(value) if process and value is not None and not postgres else value
        if postgres:
            assignments.append(f"{name} = %s")
            fixed.append(value)
        else:
            assignments.append(f"{name} = {_sqlite_literal(value)}")
    statement = f"UPDATE {table.name} SET {', '.join(assignments)} WHERE id = {mark}"
    batch = [(*values, *fixed, key) for key, *values in rows]
    if not batch:
        return
    finish_copy(connection)
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        for start in range(0, len(batch), CHUNK_ROWS):
            cursor.executemany(statement, batch[start : start + CHUNK_ROWS])
    finally:
        cursor.close()


def _copy(
    connection: sa.Connection,
    table: sa.Table,
    columns: Sequence[str],
    rows: Iterable[tuple[Any, ...]],
    constants: Mapping[str, Any],
    leave_open: bool,
) -> None:
    finish_copy(connection)
    # Binary COPY with the columns' types given: a third of the text format's client time.
    names = [*columns, *constants]
    types = [_copy_type(table.c[name]) for name in names]
    fixed = tuple(constants.values())
    statement = f"COPY {table.name} ({', '.join(names)}) FROM STDIN (FORMAT BINARY)"
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    manager = cursor.copy(statement)
    try:
        copy = manager.__enter__()
        copy.set_types(types)
        # No Python loop over the rows: a million of them cost it about 0.4 s.
        whole_rows = map(operator.add, rows, repeat(fixed)) if fixed else rows
        deque(map(copy.write_row, whole_rows), maxlen=0)
    except BaseException as error:
        manager.__exit__(type(error), error, error.__traceback__)
        cursor.close()
        raise
    connection.info[_OPEN_COPY] = (manager, cursor)
    if not leave_open:
        finish_copy(connection)


def _copy_type(column: sa.Column[Any]) -> str:
    """Return the PostgreSQL type a binary COPY sends a column's values as."""
    kind = column.type
    if isinstance(kind, sa.Boolean):
        return "bool"
    if isinstance(kind, sa.DateTime):
        return "timestamptz" if kind.timezone else "timestamp"
    if isinstance(kind, sa.BigInteger):
        return "int8"
    if isinstance(kind, sa.Integer):
        return "int4"
    # Strings, and JSON given as its text: json's binary input is the text itself.
    return "text"


@contextmanager
def index_built_after(connection: sa.Connection, index: sa.Index) -> Iterator[None]:
    """Build `index` once after the block instead of entry by entry during it, on SQLite
    while the index's table is empty (a district's first night).

    A first load's links land at random places of the index by child; built from the whole
    table it is one sort instead (2.25M links: 1.3-3 s less). The row reading that may
    follow looks links up by child, so the block is the plain reading alone. SQLite's DDL
    is part of the file's transaction: when the block raises, the rollback brings the
    index back, so it is not built here (a stop at once does no database work).
    """
    table = index.table
    assert table is not None
    if (
        connection.dialect.name != "sqlite"
        or connection.execute(sa.select(sa.literal(1)).select_from(table).limit(1)).first()
    ):
        yield
        return
    definition = connection.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", (index.name,)
    ).scalar_one()  # as the migrations made it
    connection.exec_driver_sql(f"DROP INDEX {index.name}")
    yield
    connection.exec_driver_sql(definition)


# A fixed advisory-lock key: every syncd process reserves PostgreSQL id blocks under it.
_ID_LOCK_KEY = 0x73796E6364  # "syncd"


class IdAllocator:
    """Hands out ids for rows a bulk insert writes with their ids (persons, links).

    A bulk insert needs its rows' ids before the insert (links name new parents, log lines
    name new persons), and reading them back afterwards costs a second pass. On SQLite the
    file's transaction holds the write lock, so the ids after max(id) are free; on
    PostgreSQL a block is reserved from the table's sequence (setval, under an advisory
    lock that every syncd allocator takes, so two daemons never get the same block).
    """

    def __init__(self, connection: sa.Connection, table: sa.Table) -> None:
        self._connection = connection
        self._table = table
        self._next = 0

    def take(self, count: int) -> range:
        """Return `count` new ids, ascending and contiguous."""
        if count <= 0:
            return range(0)
        if self._connection.dialect.name == "postgresql":
            return self._reserve_block(count)
        newest = self._connection.exec_driver_sql(
            f"SELECT coalesce(max(id), 0) FROM {self._table.name}"
        ).scalar_one()
        start = max(int(newest) + 1, self._next)
        self._next = start + count
        return range(start, start + count)

    def _reserve_block(self, count: int) -> range:
        sequence = self._connection.exec_driver_sql(
            f"SELECT pg_get_serial_sequence('{self._table.name}', 'id')"
        ).scalar_one()
        execute = self._connection.exec_driver_sql
        execute(f"SELECT pg_advisory_lock({_ID_LOCK_KEY})")
        try:
            first = int(execute(f"SELECT nextval('{sequence}')").scalar_one())
            # setval is never rolled back: the block stays taken even if this file fails.
            execute(f"SELECT setval('{sequence}', {first + count - 1})")
        finally:
            execute(f"SELECT pg_advisory_unlock({_ID_LOCK_KEY})")
        return range(first, first + count)
