"""Reads of a whole site's persons give the same answer whatever order their rows were
written in: on SQLite a site whose keys did not come in key order (an export sorted by name)
is read along its stretch of rows instead of by key, unless it is a few rows among another
site's many."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from syncd.core.plan import ORPHAN, ParentBy
from syncd.db import store
from syncd.db.database import open_database
from syncd.db.schema import persons
from syncd.model import PersonKind

NOW = datetime(2026, 12, 2, tzinfo=UTC)
STUDENT = PersonKind.STUDENT


@pytest.fixture
def engine(database_url: str) -> sa.Engine:
    return open_database(database_url)


def _add(
    connection: sa.Connection, site: str, keys: Iterable[int], kind: PersonKind = STUDENT
) -> None:
    """Add a person per key, in the order given (ids ascending in that order). Every
    seventh is inactive, every eleventh has no row digest, one in thirteen is an orphan;
    a key from 100 on shares its e-mail address and username with the key below 100 that
    ends in the same two digits."""
    rows = []
    for key in keys:
        inactive = key % 7 == 0
        rows.append(
            {
                "site": site, "kind": kind.value, "sync_key": f"K{key:05d}",
                "email": f"e{key % 100 if key >= 100 else key}@school.example",
                "username": f"U{key % 100 if key >= 100 else key}",
                "first_name": "A", "last_name": "B", "attributes": {},
                "active": not inactive,
                "inactive_reason": (ORPHAN if key % 13 == 0 else "file") if inactive else None,
                "had_link": False, "fingerprint": "f",
                "row_digest": None if key % 11 == 0 else 1_000_000 * len(site) + key,
                "created_at": NOW, "updated_at": NOW,
            }
        )  # fmt: skip
    connection.execute(sa.insert(persons), rows)


def _expected(connection: sa.Connection, site: str) -> tuple[set[int], list[int]]:
    """The snapshot and the inactive students, worked out row by row in Python."""
    snapshot, inactive = set(), []
    query = sa.select(
        persons.c.id, persons.c.row_digest, persons.c.active, persons.c.inactive_reason
    ).where(persons.c.site == site, persons.c.kind == STUDENT.value)
    for person_id, digest, active, reason in connection.execute(query):
        if digest is not None:
            snapshot.add(digest)
        elif active or reason == ORPHAN:
            snapshot.add(-person_id)
        if not active:
            inactive.append(person_id)
    return snapshot, sorted(inactive)


def _reads_agree(connection: sa.Connection, site: str) -> None:
    snapshot, inactive = _expected(connection, site)
    assert sorted(store.row_digest_snapshot(connection, site, STUDENT)) == sorted(snapshot)
    assert sorted(store.inactive_students(connection, site)) == inactive
    digests = sorted(d for d in snapshot if d >= 0)
    by_digest = {
        digest: person_id
        for person_id, digest in connection.execute(
            sa.select(persons.c.id, persons.c.row_digest).where(persons.c.site == site)
        )
    }
    for wanted in (digests[:3], digests):  # a few: by chunks; many: one pass
        found = store.persons_with_digests(connection, site, STUDENT, wanted)
        assert sorted(found) == sorted(by_digest[d] for d in wanted)


def _read_by_stretch(connection: sa.Connection, site: str) -> bool:
    sql_from, _ = store.site_persons(connection, site, STUDENT)
    return "NOT INDEXED" in sql_from


def test_keys_in_key_order_are_read_by_key(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        _add(connection, "district", range(3_000))
        assert not _read_by_stretch(connection, "district")
        _reads_agree(connection, "district")


def test_keys_out_of_key_order_are_read_by_their_stretch_of_rows_on_sqlite(
    engine: sa.Engine,
) -> None:
    with engine.begin() as connection:
        _add(connection, "other", range(0, 3_000, 2))  # rows before and after the district's
        _add(connection, "district", reversed(range(3_000)))
        _add(connection, "other", range(1, 3_000, 2))
        assert _read_by_stretch(connection, "district") == (engine.dialect.name == "sqlite")
        _reads_agree(connection, "district")
        _reads_agree(connection, "other")


def test_the_snapshot_of_a_site_written_by_key_keeps_key_order_after_updates(
    engine: sa.Engine,
) -> None:
    # KnownRows finds a file sent again in the order of its snapshot: on PostgreSQL an
    # updated row's new version lands elsewhere in the table, and must not move there.
    with engine.begin() as connection:
        _add(connection, "district", range(3_000))
    with engine.begin() as connection:
        changed = persons.c.id % 3 == 0
        connection.execute(
            sa.update(persons)
            .where(changed)
            .values(last_name="Changed " * 20, row_digest=persons.c.row_digest + 7)
        )
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:  # as autovacuum would: the planner sees the site
            connection.execute(sa.text("ANALYZE persons"))
            connection.commit()
    with engine.begin() as connection:
        expected = [
            digest if digest is not None else -person_id
            for person_id, digest, active, reason in connection.execute(
                sa.select(
                    persons.c.id, persons.c.row_digest, persons.c.active, persons.c.inactive_reason
                )
                .where(persons.c.site == "district")
                .order_by(persons.c.sync_key)
            )
            if digest is not None or active or reason == ORPHAN
        ]
        assert store.row_digest_snapshot(connection, "district", STUDENT) == expected


def test_a_small_site_among_a_big_one_is_read_by_key(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        for start in range(0, 3_000, 1_000):
            _add(connection, "small", [9_000 - start, 8_500 - start])  # out of key order
            _add(connection, "district", range(start, start + 1_000))
        assert not _read_by_stretch(connection, "small")  # 6 rows spread over 3,006
        _reads_agree(connection, "small")
        _reads_agree(connection, "district")


def _by_value(
    connection: sa.Connection, site: str, kind: PersonKind, column: str
) -> dict[str, list[tuple[int, str]]]:
    """Each value of `column` with the (id, sync key) of the persons holding it, by key."""
    found: dict[str, list[tuple[int, str]]] = {}
    query = sa.select(persons.c[column], persons.c.id, persons.c.sync_key).where(
        persons.c.site == site, persons.c.kind == kind.value
    )
    for value, person_id, key in connection.execute(query):
        found.setdefault(value.casefold(), []).append((person_id, key))
    return {value: sorted(pairs, key=lambda pair: pair[1]) for value, pairs in found.items()}


def test_the_indexes_by_email_and_username_list_who_shares_a_value_by_key(
    engine: sa.Engine,
) -> None:
    with engine.begin() as connection:
        _add(connection, "district", reversed(range(1_500)))
        _add(connection, "district", reversed(range(1_500)), PersonKind.PARENT)
        assert _read_by_stretch(connection, "district") == (engine.dialect.name == "sqlite")
        emails = _by_value(connection, "district", STUDENT, "email")
        index = store.student_index(connection, "district", "email")
        assert {value: [tuple(ref) for ref in refs] for value, refs in index.items()} == emails
        lookup = store.StudentLookup(connection, "district", "email")
        lookup.load_all()
        for value in ("e7@school.example", "e1234@school.example"):
            assert list(lookup.get(value)) == list(index.get(value, ()))
        parents = store.parent_index(connection, "district", (ParentBy.EMAIL, ParentBy.USERNAME))
        for by, column in ((parents.by_email, "email"), (parents.by_username, "username")):
            expected = _by_value(connection, "district", PersonKind.PARENT, column)
            assert {
                value: [(ref.person_id, ref.sync_key) for ref in refs] for value, refs in by.items()
            } == expected


class _Recording(store.StudentLookup):
    """A student lookup that notes how many values the test had asked for whenever it read
    the whole index."""

    asked = 0
    read_whole_at: list[int]

    def load_all(self) -> None:
        self.read_whole_at.append(self.asked)
        super().load_all()


@pytest.mark.parametrize(
    ("students", "whole_from", "share", "batch"),
    [
        (100, 10, 0.5, 10),  # counted at most 43 at 10 asked, then all at 50
        (60, 10, 0.5, 5),  # at most 43 at 10, so asked again at 21 (25), all at 30
        (100, 0, 0.5, 7),
        (100, 20, 0.25, 3),
        (30, 4, 1.0, 5),
        (1, 0, 0.5, 1),
    ],
)
def test_the_student_index_is_read_whole_once_the_share_of_the_site_was_asked_for(
    engine: sa.Engine, students: int, whole_from: int, share: float, batch: int
) -> None:
    # Whatever the count's limit, the decision is the one from the site's whole count:
    # from max(whole_from, share of the students) values asked on.
    with engine.begin() as connection:
        _add(connection, "district", range(students))
        lookup = _Recording(connection, "district", "sync_key", whole_from, share)
        lookup.read_whole_at = []
        keys = [f"K{key:05d}" for key in range(students)]
        for start in range(0, students, batch):
            lookup.asked = min(start + batch, students)
            lookup.prepare(keys[start : start + batch])
        threshold = max(whole_from, int(students * share))
        points = [min(start + batch, students) for start in range(0, students, batch)]
        assert lookup.read_whole_at == [next(p for p in points if p >= threshold)]
        assert lookup.students_named(keys)[0] == sorted(lookup.students_named(keys)[0])
