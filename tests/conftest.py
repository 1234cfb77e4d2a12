"""Shared fixtures: a database URL per backend (SQLite and PostgreSQL), config writers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa

PG_URL = os.environ.get(
    "SYNCD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REQUIRE_PG = os.environ.get("SYNCD_REQUIRE_PG") == "1"
SHARED = Path(__file__).resolve().parents[2] / "shared"
if not SHARED.is_dir():  # a clone laid out as <dir>/<repo> beside <dir>/shared
    SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def _postgres_problem() -> str | None:
    try:
        engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as error:  # noqa: BLE001 - any failure means "not available"
        return str(error).splitlines()[0]
    return None


_PG_PROBLEM: list[str | None] = []


def postgres_problem() -> str | None:
    if not _PG_PROBLEM:
        _PG_PROBLEM.append(_postgres_problem())
    return _PG_PROBLEM[0]


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    problem = postgres_problem()
    if problem:
        message = (
            f"PostgreSQL at {PG_URL} is not reachable ({problem}); set SYNCD_TEST_POSTGRES_URL"
        )
        if REQUIRE_PG:
            pytest.fail(f"SYNCD_REQUIRE_PG=1 but {message}")
        pytest.skip(message)
    schema = f"syncd_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{separator}options={quote(f'-csearch_path={schema}')}"
    with admin.begin() as connection:
        connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each storage test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'syncd.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"the shared folder with samples is not at {SHARED}")
    return SHARED
