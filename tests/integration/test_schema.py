"""SPEC §4: migrations build exactly the schema the code uses; a new database gets it on
first use; an older one is refused (exit 2) until `syncd db upgrade`, which is idempotent."""

from __future__ import annotations

import ast
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from syncd.db.database import (
    MIGRATIONS,
    _alembic_config,
    create_engine,
    head_revision,
    open_database,
)
from syncd.db.schema import metadata
from tests.cli.conftest import Syncd


def test_migrations_build_exactly_the_schema(database_url: str) -> None:
    engine = open_database(database_url)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    engine.dispose()
    assert differences == []


def test_the_revision_syncd_checks_is_the_newest_migration() -> None:
    scripts = ScriptDirectory(str(MIGRATIONS))
    assert scripts.get_heads() == [head_revision()]


def test_new_database_is_created_at_the_newest_schema(database_url: str) -> None:
    engine = open_database(database_url)
    with engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == head_revision()
    engine.dispose()


def test_older_schema_is_refused_until_db_upgrade(tmp_path: Path, database_url: str) -> None:
    engine = create_engine(database_url)
    with engine.begin() as connection:
        command.upgrade(_alembic_config(connection), "0001")
    engine.dispose()
    syncd = Syncd(tmp_path, database_url)
    refused = syncd("export", "persons", "--json")
    assert refused.exit_code == 2
    assert "run syncd db upgrade" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    upgraded = syncd("db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.stderr
    assert syncd("db", "upgrade").exit_code == 0  # idempotent
    assert syncd("export", "persons", "--json").json() == []


def test_db_upgrade_keeps_the_roster_of_an_older_schema(tmp_path: Path, database_url: str) -> None:
    # 0005 rebuilds persons and links without their foreign keys; on SQLite that copies the
    # tables, which failed ("FOREIGN KEY constraint failed") while a pending link named a
    # parent: a district with links could not upgrade at all.
    engine = create_engine(database_url)
    values = {"now": "2026-01-01 00:00:00", "later": "2099-01-01 00:00:00", "site": "district-a"}
    with engine.begin() as connection:
        command.upgrade(_alembic_config(connection), "0004")
        connection.execute(
            sa.text("INSERT INTO sites (name, created_at) VALUES (:site, :now)"), values
        )
        connection.execute(
            sa.text(
                "INSERT INTO persons (id, site, kind, sync_key, first_name, last_name, "
                "attributes, active, had_link, fingerprint, created_at, updated_at) VALUES "
                "(1, :site, 'student', 'S1', 'Ann', 'Kid', '{}', TRUE, FALSE, 'f1', :now, :now), "
                "(2, :site, 'parent', 'P1', 'Pat', 'Lee', '{}', TRUE, TRUE, 'f2', :now, :now)"
            ),
            values,
        )
        connection.execute(
            sa.text(
                "INSERT INTO links (site, parent_id, child_id, type, by_parents, "
                "by_relationships, created_at, updated_at) VALUES "
                "(:site, 2, 1, 'Parent', TRUE, FALSE, :now, :now)"
            ),
            values,
        )
        connection.execute(
            sa.text(
                "INSERT INTO pending_links (site, parent_id, child_field, child_value, type, "
                "origin, created_at, expires_at) VALUES "
                "(:site, 2, 'sync_key', 'S9', 'Parent', 'parents', :now, :later)"
            ),
            values,
        )
    engine.dispose()
    syncd = Syncd(tmp_path, database_url)
    upgraded = syncd("db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.stderr
    assert "upgraded from 0004 to" in upgraded.stdout
    links = {
        (link["parent"], link["child"], link["status"]) for link in syncd.export("relationships")
    }
    assert links == {("P1", "S1", "active"), ("P1", "S9", "pending")}
    assert syncd("db", "upgrade").exit_code == 0


def test_core_imports_no_io() -> None:
    """The pure core (rows in, plan out) touches no database, network, files or logging."""
    forbidden = {"sqlalchemy", "paramiko", "structlog", "watchdog", "apscheduler", "psycopg"}
    forbidden_own = {"syncd.db", "syncd.sources", "syncd.audit", "syncd.pipeline", "syncd.cli"}
    core = Path(__file__).resolve().parents[2] / "syncd" / "core"
    for path in core.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path.name} imports {name}"
                assert not any(name.startswith(own) for own in forbidden_own), (path.name, name)


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'wal.db'}")
    with engine.connect() as connection:
        assert connection.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(sa.text("PRAGMA foreign_keys")).scalar() == 1
    engine.dispose()


def _beside_another_program(tmp_path: Path, database_url: str, table: str) -> Syncd:
    """Return syncd on a database where another program made `table` first."""
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(sa.text(f"CREATE TABLE {table} (x INTEGER)"))
    engine.dispose()
    return Syncd(tmp_path, database_url)


def test_database_with_other_tables_is_refused_until_db_upgrade_adds_ours(
    tmp_path: Path, database_url: str
) -> None:
    syncd = _beside_another_program(tmp_path, database_url, "other_app")
    refused = syncd("export", "persons", "--json")
    assert refused.exit_code == 2
    assert "run syncd db upgrade" in refused.stderr
    assert syncd("db", "upgrade").exit_code == 0
    assert syncd("export", "persons", "--json").json() == []


def test_a_table_of_another_program_named_like_ours_is_a_config_error(
    tmp_path: Path, database_url: str
) -> None:
    syncd = _beside_another_program(tmp_path, database_url, "links")
    for args in (("status",), ("db", "upgrade")):
        outcome = syncd(*args)
        assert outcome.exit_code == 2, args
        assert "has a table links that is not syncd's" in outcome.stderr


def test_commands_that_only_read_do_not_wait_for_a_writer(tmp_path: Path) -> None:
    # SQLite in WAL mode: a file being applied (a long write transaction) never makes
    # status, files, history or export wait.
    syncd = Syncd(tmp_path, f"sqlite:///{tmp_path / 'syncd.db'}")
    assert syncd("status").exit_code == 0  # the schema
    writer = sqlite3.connect(tmp_path / "syncd.db", isolation_level=None, timeout=0)
    writer.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        for args in (
            ("status", "--json"),
            ("files", "--json"),
            ("export", "persons"),
            ("history", "--file", "1"),
        ):
            outcome = syncd(*args)
            assert outcome.exit_code in (0, 2), (args, outcome.stderr)  # 2: no file 1
            assert "locked" not in outcome.stderr
        assert time.monotonic() - started < 10
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_commands_on_a_new_postgresql_database_at_once_make_one_schema(
    tmp_path: Path, postgres_url: str
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[database]\nurl = "{postgres_url}"\n[audit]\npath = "{tmp_path / "audit.jsonl"}"\n'
    )
    argv = [sys.executable, "-m", "syncd", "--config", str(config), "status"]
    processes = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(4)
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr.decode()
