"""Opening the database: engine settings per dialect, schema creation and the version check."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from syncd.db.bulk import abort_copy, finish_copy
from syncd.db.schema import metadata
from syncd.errors import ConfigError, DatabaseUnreachable, SchemaOutdated

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest migration in migrations/versions (tests/integration/test_schema.py checks it
# against Alembic's head): every command checks it, Alembic is imported only to migrate.
HEAD_REVISION = "0007"
SQLITE_CACHE_KIB = 128 * 1024  # per connection, allocated only as pages are used


def _alembic_config(connection: sa.Connection) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """Return the newest schema revision this syncd knows."""
    return HEAD_REVISION


def _upgrade(connection: sa.Connection) -> None:
    from alembic import command

    command.upgrade(_alembic_config(connection), "head")


def current_revision(connection: sa.Connection) -> str | None:
    """Return the database's schema revision (Alembic's version table), None if it has none."""
    if not sa.inspect(connection).has_table("alembic_version"):
        return None
    versions = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalars()
    return next(iter(versions), None)


def create_engine(url: str) -> Engine:
    """Return an engine for `url`: SQLite in WAL mode with write transactions taken up front."""
    if url.startswith("sqlite"):
        database = sa.engine.make_url(url).database
        if database and database != ":memory:":
            try:
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise DatabaseUnreachable(
                    f"database {describe(url)} cannot be reached: cannot make its folder "
                    f"{error.filename}: {error.strerror or error}"
                ) from error
        engine = sa.create_engine(url, connect_args={"timeout": 30})
        sa.event.listen(engine, "connect", _sqlite_on_connect)
        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine
    engine = sa.create_engine(
        url,
        pool_pre_ping=True,
        connect_args={"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 30},
    )
    # A COPY left open by a bulk insert (bulk.insert_rows) ends before anything else runs.
    sa.event.listen(engine, "before_cursor_execute", lambda conn, *_: finish_copy(conn))
    sa.event.listen(engine, "commit", finish_copy)
    sa.event.listen(engine, "rollback", abort_copy)
    sa.event.listen(engine, "connect", _postgres_on_connect)
    return engine


def _postgres_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # psycopg prepares a query run five times on a connection, and PostgreSQL may then plan
    # it once for all parameters, from the table as it was: a file's lookups by key, planned
    # as scans while the site held 200 persons, scanned the 100,000 the same file was adding
    # (100k students onto a site of 200: 250 s; planned each time, 19 s). A plan per run
    # costs a fraction of a millisecond.
    # (PostgreSQL 12 and later; an older server plans as it always did.)
    try:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET plan_cache_mode = force_custom_plan")
    except dbapi_connection.DatabaseError:
        dbapi_connection.rollback()
    else:
        dbapi_connection.commit()


# PostgreSQL plans each query from its tables' statistics, which autovacuum refreshes a
# minute or more after a bulk load (never, where it is off). A parents file applied right
# after a district's first students file then read its children with a plan made for an
# empty table, a scan of the site's persons per lookup (116 s for 1.5M parents against
# 1M students, where the whole apply took 28 s). So a file that created this many rows
# of a table has its statistics taken at once.
ANALYZE_AFTER_ROWS = 10_000


def refresh_statistics(engine: Engine, tables: Sequence[str]) -> None:
    """Take PostgreSQL's statistics of `tables` after a bulk load (SQLite needs none)."""
    if engine.dialect.name != "postgresql" or not tables:
        return
    with engine.begin() as connection:
        analyze(connection, tables)


def analyze(connection: sa.Connection, tables: Sequence[str]) -> None:
    """Take PostgreSQL's statistics of `tables` on `connection`; inside a transaction they
    count its own new rows (SQLite needs none)."""
    if connection.dialect.name != "postgresql":
        return
    for table in tables:
        connection.exec_driver_sql(f"ANALYZE {table}")


# The execution option of a connection that only reads (`reader`).
READ_ONLY = "syncd_read_only"


def reader(engine: Engine) -> Engine:
    """Return `engine` for connections that only read: on SQLite they begin a deferred
    transaction, a WAL reader that a writer's long transaction (a district's first load)
    never makes wait."""
    return engine.execution_options(**{READ_ONLY: True})


def _sqlite_begin(connection: sa.Connection) -> None:
    # BEGIN IMMEDIATE for any transaction that may write: a deferred one that later writes
    # gets SQLITE_BUSY without waiting for busy_timeout when another writer is active.
    read_only = connection.get_execution_options().get(READ_ONLY)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own BEGIN is deferred).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # Only a new, empty database takes a page size: 16 KiB pages make bulk inserts and the
    # WAL writes of a big file a fifth cheaper than the default 4 KiB.
    cursor.execute("PRAGMA page_size=16384")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # A big file's index inserts (links by child, persons by key) land all over their
    # B-trees; with SQLite's default 2 MiB cache each one reads and writes pages again.
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    cursor.close()


# libpq also takes secrets as URL parameters (?password=…, ?sslpassword=…).
_SECRET_PARAMETERS = frozenset({"password", "sslpassword"})


def database_problem(error: sa.exc.DBAPIError) -> str:
    """Return the one line a database error is told by: "database error: " and the first
    line of what the driver said (SQLAlchemy adds the statement, its parameters and a link)."""
    said = str(error.orig).strip().splitlines()
    return f"database error: {said[0] if said else type(error.orig).__name__}"


def describe(url: str) -> str:
    """Return the URL without its password (user:***@ or ?password=***), for messages."""
    parsed = sa.engine.make_url(url)
    hidden = {name for name in parsed.query if name.casefold() in _SECRET_PARAMETERS}
    if hidden:
        parsed = parsed.update_query_dict({name: "HIDDEN" for name in hidden})
    # The placeholder goes in as a plain word: "***" would be rendered percent-encoded.
    return parsed.render_as_string(hide_password=True).replace("=HIDDEN", "=***")


def open_database(url: str) -> Engine:
    """Return a ready engine; a new empty database gets the schema.

    Raises DatabaseUnreachable when it cannot connect, SchemaOutdated when the schema is older.
    """
    engine = create_engine(url)
    try:
        # Read first, as a reader: a database in use is not made to wait for a writer.
        with reader(engine).connect() as connection:
            current = current_revision(connection)
        if current is None:
            with engine.begin() as connection:
                _lock_schema(connection)
                # Another command may have made it meanwhile (two daemons starting).
                current = current_revision(connection)
                if current is None:
                    if sa.inspect(connection).get_table_names():
                        _refuse_clash(connection, url)
                        raise SchemaOutdated(
                            f"database {describe(url)} has tables but no syncd schema "
                            "version: run syncd db upgrade to add syncd's tables beside them"
                        )
                    _upgrade(connection)
                    return engine
    except sa.exc.DatabaseError as error:
        engine.dispose()
        raise _unusable(url, error) from error
    if current != head_revision():
        engine.dispose()
        _refuse_newer(current)
        raise SchemaOutdated(
            f"database schema is at {current}, this syncd needs {head_revision()}: "
            "run syncd db upgrade"
        )
    return engine


# A fixed advisory-lock key: one syncd process at a time creates or migrates the schema.
_SCHEMA_LOCK_KEY = 0x73796E6364_5343  # "syncd" "SC"


def _lock_schema(connection: sa.Connection) -> None:
    """Make the other syncd processes wait until this transaction has made the schema
    (PostgreSQL; SQLite's BEGIN IMMEDIATE is one writer already)."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK_KEY})")


def _refuse_clash(connection: sa.Connection, url: str) -> None:
    """Raise ConfigError when a database without syncd's schema has a table of one of
    syncd's names (another program's): syncd's tables can go beside others, not over them."""
    theirs = set(sa.inspect(connection).get_table_names()) & set(metadata.tables)
    if theirs:
        raise ConfigError(
            f"database {describe(url)} has a table {sorted(theirs)[0]} that is not syncd's: "
            "give syncd a database (or a PostgreSQL schema) of its own"
        )


def _refuse_newer(current: str) -> None:
    """Raise SchemaOutdated when the database was migrated by a newer syncd than this one."""
    # Revisions are numbered ("0005"), so a later one sorts after the head. Without this
    # a rolled-back syncd says "run syncd db upgrade", which then fails on the revision.
    if current > head_revision():
        raise SchemaOutdated(
            f"database schema is at {current}, newer than this syncd knows "
            f"({head_revision()}): run the syncd version that upgraded it"
        )


def upgrade_database(url: str) -> tuple[str | None, str]:
    """Migrate to the newest schema; return (revision before, revision after). Idempotent."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                # SQLite rebuilds a table to alter it (batch mode): dropping the old persons
                # table with foreign keys on fails while pending_links refers to it. The
                # pragma works outside a transaction only; the keys are checked before commit.
                connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
            with connection.begin():
                _lock_schema(connection)
                before = current_revision(connection)
                if before is not None:
                    _refuse_newer(before)
                else:
                    _refuse_clash(connection, url)
                _upgrade(connection)
                if sqlite:
                    _check_foreign_keys(connection)
    except sa.exc.DatabaseError as error:
        raise _unusable(url, error) from error
    finally:
        engine.dispose()
    return before, head_revision()


def _check_foreign_keys(connection: sa.Connection) -> None:
    """Raise (rolling the migration back) if a SQLite migration left a row whose foreign key
    names no row: what SQLite would have refused with its checks on."""
    violation = connection.exec_driver_sql("PRAGMA foreign_key_check").first()
    if violation is not None:
        table, rowid, parent, _ = violation
        raise sa.exc.IntegrityError(
            "PRAGMA foreign_key_check",
            None,
            Exception(f"FOREIGN KEY constraint failed: row {rowid} of {table} names no {parent}"),
        )


def _unusable(url: str, error: sa.exc.DatabaseError) -> DatabaseUnreachable:
    """The one-line error of a database that cannot be connected to, or cannot be used once
    it is (a SQLite path holding another file: "file is not a database"; a read-only or
    full one)."""
    how = "reached" if _not_reached(url, error) else "used"
    return DatabaseUnreachable(f"database {describe(url)} cannot be {how}: {_first_line(error)}")


# PostgreSQL's refusals of a connection: its classes 08 (connection), 28 (authorization) and
# 3D (no such database), 57P0x (shutting down, starting up) and too many connections.
_PG_NOT_REACHED = ("08", "28", "3D", "57P", "53300")


def _not_reached(url: str, error: sa.exc.DatabaseError) -> bool:
    """Whether `error` says the database could not be reached at all. SQLite reaches its
    file by opening it: any other error (read-only, full, locked) is one of using it.
    PostgreSQL: libpq's own failures (no server, refused, timed out) have no SQLSTATE; any
    other error of a connected server (a disk full, a lock or statement timeout) is one of
    using it."""
    if not isinstance(error, sa.exc.OperationalError):
        return False
    if url.startswith("sqlite"):
        return "unable to open" in _first_line(error)
    state = getattr(error.orig, "sqlstate", None)
    return state is None or str(state).startswith(_PG_NOT_REACHED)


def _first_line(error: Exception) -> str:
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__
