"""Bulk inserts below the SQL expression layer: executemany on SQLite, COPY on PostgreSQL.

SQLAlchemy Core compiles and processes every parameter set of an executemany in Python;
for the hundreds of thousands of rows of a nightly file that costs more than the database
work itself. Values are converted with the columns' own bind processors, so what lands in
the database is exactly what Core would have written.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

CHUNK_ROWS = 10_000


def insert_rows(
    connection: sa.Connection,
    table: sa.Table,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    constants: Mapping[str, Any] | None = None,
) -> int:
    """Insert `rows` (tuples in `columns` order) into `table`; return how many were written.

    `constants` are columns with the same value in every row (converted once).
    """
    constants = constants or {}
    if connection.dialect.name == "postgresql":
        return _copy(connection, table, columns, rows, constants)
    return _executemany(connection, table, columns, rows, constants)


def _converters(
    connection: sa.Connection, table: sa.Table, columns: Sequence[str]
) -> list[Callable[[Any], Any] | None]:
    return [table.c[name].type.bind_processor(connection.dialect) for name in columns]


def _executemany(
    connection: sa.Connection,
    table: sa.Table,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    constants: Mapping[str, Any],
) -> int:
    converters = _converters(connection, table, columns)
    fixed = tuple(
        value if convert is None or value is None else convert(value)
        for convert, value in zip(
            _converters(connection, table, list(constants)), constants.values(), strict=True
        )
    )
    names = [*columns, *constants]
    marks = ", ".join("?" for _ in names)
    statement = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({marks})"
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    written = 0
    batch: list[tuple[Any, ...]] = []
    try:
        for row in rows:
            batch.append(
                tuple(
                    value if convert is None or value is None else convert(value)
                    for convert, value in zip(converters, row, strict=True)
                )
                + fixed
            )
            if len(batch) >= CHUNK_ROWS:
                cursor.executemany(statement, batch)
                written += len(batch)
                batch.clear()
        if batch:
            cursor.executemany(statement, batch)
            written += len(batch)
    finally:
        cursor.close()
    return written


def _copy(
    connection: sa.Connection,
    table: sa.Table,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    constants: Mapping[str, Any],
) -> int:
    # COPY takes Python values as they are; only JSON documents need turning into text.
    names = [*columns, *constants]
    is_json = [isinstance(table.c[name].type, sa.JSON) for name in names]
    fixed = list(constants.values())
    statement = f"COPY {table.name} ({', '.join(names)}) FROM STDIN"
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    written = 0
    try:
        with cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(
                    [
                        json.dumps(value, ensure_ascii=False)
                        if json_column and value is not None
                        else value
                        for json_column, value in zip(is_json, [*row, *fixed], strict=True)
                    ]
                )
                written += 1
    finally:
        cursor.close()
    return written


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
