"""Bulk loads on both databases: PostgreSQL's COPY left open (bulk.insert_rows(leave_open=True))
takes the rows in while syncd reads the next block, and whatever runs next on the connection
ends it first (a commit keeps its rows, a rollback drops them); after a bulk load PostgreSQL's
statistics are taken at once; SQLite's index of links by child is built after a first load
of links, not during it, and is there after the file whatever happened to it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from syncd import person_files, pipeline
from syncd.db.bulk import finish_copy, index_built_after, insert_rows
from syncd.db.database import open_database
from syncd.db.schema import LINKS_BY_CHILD, links, sites
from tests.cli.conftest import Syncd

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


def _persons_estimate(postgres_url: str) -> float:
    """Return how many persons PostgreSQL's statistics say there are."""
    engine = sa.create_engine(postgres_url)
    with engine.connect() as connection:
        estimate = connection.execute(
            sa.text("SELECT reltuples FROM pg_class WHERE oid = 'persons'::regclass")
        ).scalar_one()
    engine.dispose()
    return float(estimate)


def test_postgresql_statistics_are_taken_after_a_bulk_load(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A parents file applied right after a first students file must not be planned for an
    # empty persons table (autovacuum comes a minute later, or never where it is off).
    monkeypatch.setattr(pipeline, "ANALYZE_AFTER_ROWS", 3)
    syncd = Syncd(tmp_path, postgres_url)
    rows = "".join(f"S{n},First{n},Last{n}\n" for n in range(5))
    syncd.write("students.csv", "SyncID,First name,Last name\n" + rows)
    assert syncd("import", str(tmp_path / "students.csv")).exit_code == 0
    assert _persons_estimate(postgres_url) == 5


def test_postgresql_plans_each_query_for_the_table_as_it_is_now(postgres_url: str) -> None:
    # A file's lookups by key run hundreds of times in one transaction while the same file
    # adds rows: a plan made once (psycopg prepares a query run five times) for a site of
    # 200 persons scanned the 100,000 the file was adding (250 s instead of 19 s).
    engine = open_database(postgres_url)
    with engine.connect() as connection:
        for _ in range(2):  # and again on a connection the pool hands out once more
            mode = connection.exec_driver_sql("SHOW plan_cache_mode").scalar_one()
            assert mode == "force_custom_plan"
            connection.rollback()
    engine.dispose()


def test_postgresql_statistics_follow_a_file_that_grows_a_small_site(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A file of new students onto a site of two: its lookups by key were planned from the
    # statistics of the two (an index scan by site that filtered every row the file had
    # added: 1M students onto 200 took 168 s). They are taken again within the file as it
    # grows the table (here: past 3 rows; the statistics after the commit are off).
    monkeypatch.setattr(person_files, "ANALYZE_AFTER_ROWS", 3, raising=False)
    monkeypatch.setattr(pipeline, "ANALYZE_AFTER_ROWS", 10**9)
    syncd = Syncd(tmp_path, postgres_url)
    header = "SyncID,First name,Last name\n"
    syncd.write("students.csv", header + "S0,First0,Last0\nS1,First1,Last1\n")
    assert syncd("import", str(tmp_path / "students.csv")).exit_code == 0
    rows = "".join(f"S{n},First{n},Last{n}\n" for n in range(20))
    syncd.write("students-2.csv", header + rows)
    assert syncd("import", str(tmp_path / "students-2.csv")).exit_code == 0
    assert _persons_estimate(postgres_url) == 20


@contextmanager
def _statements() -> Iterator[list[str]]:
    """Collect the SQL statements every engine runs in the block."""
    seen: list[str] = []

    def collect(*args: Any) -> None:
        seen.append(args[2])

    sa.event.listen(sa.Engine, "before_cursor_execute", collect)
    try:
        yield seen
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", collect)


def _uses_links_by_child(connection: sa.Connection) -> bool:
    if connection.dialect.name == "sqlite":
        plan = connection.exec_driver_sql(
            "EXPLAIN QUERY PLAN SELECT parent_id FROM links WHERE child_id = 1"
        ).all()
        return any("ix_links_child_id" in str(step) for step in plan)
    names = connection.exec_driver_sql(
        "SELECT indexname FROM pg_indexes WHERE tablename = 'links'"
    ).scalars()
    return "ix_links_child_id" in set(names)


def test_the_first_load_of_links_builds_their_index_by_child_after_the_rows(
    tmp_path: Path, database_url: str
) -> None:
    syncd = Syncd(tmp_path, database_url)
    students = "".join(f"S{n},Kid{n},Lee\n" for n in range(6))
    syncd.write("students.csv", "SyncID,First name,Last name\n" + students)
    parents = "".join(f'P{n},Ann{n},Lee,"S{n};S{5 - n}"\n' for n in range(6))
    syncd.write("parents.csv", "SyncID,First name,Last name,Child ID\n" + parents)
    assert syncd("db", "upgrade").exit_code == 0  # the schema's own DDL before the watch
    with _statements() as seen:
        outcome = syncd("import", str(tmp_path / "students.csv"), str(tmp_path / "parents.csv"))
    assert outcome.exit_code == 0, outcome.stderr
    ddl = [statement for statement in seen if "INDEX" in statement]
    if database_url.startswith("sqlite"):
        # Dropped while the links table was empty, built again once the rows were in.
        assert ddl == [
            "DROP INDEX ix_links_child_id",
            "CREATE INDEX ix_links_child_id ON links (child_id)",
        ]
    else:
        assert ddl == []  # PostgreSQL's DROP INDEX would lock readers out of the table
    engine = open_database(database_url)
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(links)).scalar() == 12
        assert _uses_links_by_child(connection)
        if connection.dialect.name == "sqlite":
            assert connection.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        # And once there are links, a new site's first load leaves the index alone.
    engine.dispose()
    syncd.configure(site="district-b")
    with _statements() as seen:
        outcome = syncd("import", str(tmp_path / "students.csv"), str(tmp_path / "parents.csv"))
    assert outcome.exit_code == 0, outcome.stderr
    assert not [statement for statement in seen if "INDEX" in statement]


def test_a_first_load_of_links_that_fails_keeps_their_index_by_child(database_url: str) -> None:
    engine = open_database(database_url)
    with (
        pytest.raises(RuntimeError),
        engine.begin() as connection,
        index_built_after(connection, LINKS_BY_CHILD),
    ):
        raise RuntimeError("the file failed")  # the rollback brings the index back
    with engine.connect() as connection:
        assert _uses_links_by_child(connection)
    engine.dispose()
