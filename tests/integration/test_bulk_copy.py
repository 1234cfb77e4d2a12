"""Bulk inserts that leave PostgreSQL's COPY open (bulk.insert_rows(leave_open=True)): the
server takes the rows in while syncd reads the next block; whatever runs next on the
connection ends the COPY first, a commit keeps its rows and a rollback drops them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from syncd.db.bulk import finish_copy, insert_rows
from syncd.db.database import open_database
from syncd.db.schema import sites

NOW = datetime(2026, 12, 2, tzinfo=UTC)


def _insert(connection: sa.Connection, names: list[str]) -> None:
    rows = [(name, NOW) for name in names]
    insert_rows(connection, sites, ("name", "created_at"), rows, leave_open=True)


def _names(connection: sa.Connection) -> list[str]:
    return sorted(connection.execute(sa.select(sites.c.name)).scalars())


@pytest.fixture
def engine(database_url: str) -> sa.Engine:
    return open_database(database_url)


def test_the_next_statement_sees_the_rows_of_a_copy_left_open(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        _insert(connection, ["a", "b"])
        assert _names(connection) == ["a", "b"]  # the SELECT ended the COPY first
        _insert(connection, ["c"])
        _insert(connection, ["d"])  # a second bulk insert ends the first one's COPY
    with engine.connect() as connection:
        assert _names(connection) == ["a", "b", "c", "d"]


def test_a_commit_keeps_and_a_rollback_drops_the_rows_of_a_copy_left_open(
    engine: sa.Engine,
) -> None:
    with engine.begin() as connection:
        _insert(connection, ["kept"])
    with pytest.raises(RuntimeError), engine.begin() as connection:
        _insert(connection, ["dropped"])
        raise RuntimeError("the file failed")
    with engine.connect() as connection:  # the pooled connection is usable again
        assert _names(connection) == ["kept"]


def test_rows_the_server_refuses_fail_where_the_copy_is_ended(engine: sa.Engine) -> None:
    with engine.connect() as connection:
        transaction = connection.begin()
        with pytest.raises(Exception, match="twice|UNIQUE|unique"):
            # The primary key: SQLite refuses at the insert, PostgreSQL at the COPY's end.
            _insert(connection, ["twice", "twice"])
            finish_copy(connection)
        transaction.rollback()
        assert _names(connection) == []
