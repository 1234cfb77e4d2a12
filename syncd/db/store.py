"""Every read the pipeline and the CLI need, in bulk: one query per kind, never one per row."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from itertools import chain
from operator import attrgetter, itemgetter
from typing import Any, overload

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from syncd.audit import ROW_REJECTED
from syncd.core.plan import (
    ORPHAN,
    ExistingLink,
    ExistingPending,
    ExistingPerson,
    LinkTable,
    ParentIndex,
    ParentRef,
    SiteCounts,
    StudentRef,
    child_lookup_value,
)
from syncd.db.bulk import finish_copy
from syncd.db.schema import (
    audit_events,
    files,
    links,
    pending_links,
    pending_unlinks,
    persons,
    seen_files,
    sites,
    source_state,
)
from syncd.model import (
    ChildField,
    FileStatus,
    Kind,
    ParentBy,
    PersonFields,
    PersonKind,
    RelType,
    RowError,
)

# SQLite before 3.32 allowed 999 bound parameters; stay under it everywhere.
CHUNK = 900


def chunked(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@overload
def aware(moment: datetime) -> datetime: ...
@overload
def aware(moment: None) -> None: ...
@overload
def aware(moment: datetime | None) -> datetime | None: ...
def aware(moment: datetime | None) -> datetime | None:
    """Return `moment` as aware UTC (SQLite hands back naive datetimes)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def ensure_site(connection: sa.Connection, site: str, now: datetime) -> None:
    exists = connection.execute(sa.select(sites.c.name).where(sites.c.name == site)).first()
    if exists is None:
        # Two syncd processes may make the same new site at once (ON CONFLICT: both dialects).
        dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
        insert = dialect.insert(sites).values(name=site, created_at=now)
        connection.execute(insert.on_conflict_do_nothing())


# --- persons -------------------------------------------------------------------------------


def person_snapshot(
    connection: sa.Connection, site: str, kind: PersonKind
) -> dict[str, ExistingPerson]:
    """Return the site's persons of `kind` by sync key, with fingerprint and status."""
    query = sa.select(persons.c.sync_key, persons.c.id, persons.c.fingerprint, persons.c.active)
    query = query.where(persons.c.site == site, persons.c.kind == kind.value)
    # Tuple unpacking, not attribute access: this runs once per person of the site.
    return {
        sync_key: ExistingPerson(person_id, fingerprint, bool(active))
        for sync_key, person_id, fingerprint, active in connection.execute(query).tuples()
    }


def driver_rows(
    connection: sa.Connection, sql: str, parameters: Sequence[Any] = (), binary: bool = False
) -> Any:
    """Return a DB-API cursor over `sql` (qmark placeholders `?`): plain tuples, no
    SQLAlchemy row processing, for reads of a whole site. `binary`: PostgreSQL sends the
    results in its binary format (cheaper to load for arrays)."""
    finish_copy(connection)
    driver = connection.connection.driver_connection
    if connection.dialect.name == "postgresql":
        cursor = driver.cursor(binary=binary)  # type: ignore[union-attr]
        sql = sql.replace("?", "%s")
    else:
        cursor = driver.cursor()  # type: ignore[union-attr]
    cursor.execute(sql, tuple(parameters))
    return cursor


def driver_rows_in(
    connection: sa.Connection, sql: str, parameters: Sequence[Any], values: Sequence[Any]
) -> Iterator[tuple[Any, ...]]:
    """Yield the rows of `sql`, which ends in `IN`, for all of `values`: one statement per
    CHUNK of them (driver_rows; `parameters` bind the placeholders before the IN list)."""
    for cursor in _driver_in(connection, sql, parameters, values):
        try:
            rows = cursor.fetchall()
        finally:
            cursor.close()
        yield from rows


def driver_execute_in(
    connection: sa.Connection, sql: str, parameters: Sequence[Any], values: Sequence[Any]
) -> None:
    """Run `sql` (an UPDATE or DELETE ending in `IN`) for all of `values`, as driver_rows_in
    reads: no SQLAlchemy expansion of a thousand statements' IN lists."""
    for cursor in _driver_in(connection, sql, parameters, values):
        cursor.close()


def _driver_in(
    connection: sa.Connection, sql: str, parameters: Sequence[Any], values: Sequence[Any]
) -> Iterator[Any]:
    for chunk in chunked(values):
        marks = ", ".join("?" for _ in chunk)
        yield driver_rows(connection, f"{sql} ({marks})", (*parameters, *chunk))


def count_persons(
    connection: sa.Connection, site: str, kind: PersonKind, at_most: int | None = None
) -> int:
    """Return how many persons of `kind` the site has; `at_most`: no more than that many
    are counted (the index is walked no further)."""
    where = (persons.c.site == site, persons.c.kind == kind.value)
    if at_most is None:
        query = sa.select(sa.func.count()).where(*where)
    else:
        some = sa.select(persons.c.id).where(*where).limit(at_most).subquery()
        query = sa.select(sa.func.count()).select_from(some)
    return int(connection.execute(query).scalar_one())


def site_sync_keys(
    connection: sa.Connection, site: str, kind: PersonKind, at_most: int
) -> set[str] | None:
    """Return the sync keys of the site's persons of `kind`, whatever their state, or None
    when it has more than `at_most` (the index is walked no further)."""
    sql_from, parameters = _by_index(site, kind)
    cursor = driver_rows(
        connection, f"SELECT sync_key {sql_from} LIMIT {int(at_most) + 1}", parameters
    )
    try:
        keys = {key for (key,) in cursor}
    finally:
        cursor.close()
    return keys if len(keys) <= at_most else None


def has_persons(connection: sa.Connection, site: str, kind: PersonKind) -> bool:
    """Return whether the site has any person of `kind` (one index probe; a count of a
    district's million persons walks the whole index)."""
    query = sa.select(persons.c.id).where(persons.c.site == site, persons.c.kind == kind.value)
    return connection.execute(query.limit(1)).first() is not None


def newest_person_id(connection: sa.Connection) -> int:
    """Return the highest person id (0 for none): the persons a file creates get higher
    ones (bulk.IdAllocator), so the file need not keep its new persons' ids."""
    newest = sa.select(sa.func.coalesce(sa.func.max(persons.c.id), 0))
    return int(connection.execute(newest).scalar_one())


# How many of a site's persons, first in key order, tell whether key order is row order.
_ORDER_SAMPLE = 1_000
# A site's persons are read by their stretch of rows while at least one row in this many
# of that stretch is theirs (a district in a database of its own: all or about half).
_STRETCH_SHARE = 4


def site_persons(
    connection: sa.Connection, site: str, kind: PersonKind
) -> tuple[str, tuple[Any, ...]]:
    """Return `FROM persons … WHERE …` (qmark placeholders; more conditions may follow with
    AND) and its parameters, selecting the site's persons of `kind` for a read of them all.

    SQLite reads them along the unique index, in key order, and then each person's row: in
    the order the rows were written only when the keys came in key order. A district's
    export sorted by name has its keys all over the table, so that each row read is a jump
    (1M students: 1.6 s against 0.25 s). Then the stretch of rows from the site's first to
    its last is scanned instead, as long as the site's persons fill a good part of it.
    PostgreSQL's planner weighs the order itself (its statistics keep the correlation).
    """
    by_index = _by_index(site, kind)
    if connection.dialect.name != "sqlite":
        return by_index
    if _keys_in_row_order(connection, site, kind):
        return by_index  # the index walks the table in order
    count, first, last = connection.exec_driver_sql(
        f"SELECT count(*), min(id), max(id) {by_index[0]}", by_index[1]
    ).one()
    if last - first + 1 > _STRETCH_SHARE * count:
        return by_index  # a few among many (a small site beside a district): by key
    # NOT INDEXED: SQLite still reads the id range by the table's own B-tree.
    return (
        "FROM persons NOT INDEXED WHERE id BETWEEN ? AND ? AND site = ? AND kind = ?",
        (first, last, site, kind.value),
    )


def _by_index(site: str, kind: PersonKind) -> tuple[str, tuple[Any, ...]]:
    """site_persons's `FROM … WHERE …` along the unique index (by site, kind and key)."""
    return "FROM persons WHERE site = ? AND kind = ?", (site, kind.value)


def _keys_in_row_order(connection: sa.Connection, site: str, kind: PersonKind) -> bool:
    """Whether the site's persons, in key order, were written in that order (their first
    _ORDER_SAMPLE ids ascending): the files that made them listed them by key."""
    sql_from, parameters = _by_index(site, kind)
    cursor = driver_rows(
        connection, f"SELECT id {sql_from} ORDER BY sync_key LIMIT {_ORDER_SAMPLE}", parameters
    )
    try:
        sample = [person_id for (person_id,) in cursor]
    finally:
        cursor.close()
    return sample == sorted(sample)


def inactive_students(
    connection: sa.Connection, site: str, among: Collection[int] | None = None
) -> list[int]:
    """Return the ids of the site's inactive students; of those in `among` only, if given."""
    if among is None:
        sql_from, parameters = site_persons(connection, site, PersonKind.STUDENT)
        return integer_array(connection, "id", f"{sql_from} AND active = ?", (*parameters, False))
    sql = "SELECT id FROM persons WHERE kind = ? AND active = ? AND id IN"
    values = sorted(among)
    return [
        pid for (pid,) in driver_rows_in(connection, sql, (PersonKind.STUDENT.value, False), values)
    ]


def row_digest_snapshot(connection: sa.Connection, site: str, kind: PersonKind) -> list[int]:
    """Return the row digests of the site's persons whose row, sent again, changes nothing
    (the digest is NULL for any other: schema.py), and -id of its active persons and orphaned
    parents without a digest: the snapshot a file is read against (KnownRows), in the order
    the site's rows are read (site_persons), which is mostly the order of the file again.

    Digests are never negative, so no line matches the second kind; what a full file leaves
    in the snapshot is whom it did not list (persons_with_digests finds them). Digests only,
    no ids: a district has millions, one int each.
    """
    sql_from, parameters = site_persons(connection, site, kind)
    # PostgreSQL reads a site in its heap's order, where an updated row's new version goes
    # elsewhere: the day after a change the rows changed no longer come where the file
    # lists them, and KnownRows turns into a set. Along the unique index they keep their
    # place (1.5M parents: 0.78-0.80 s against 0.63-0.66 s; 1M students 0.56-0.58 s
    # against 0.59-0.61 s).
    by_key = connection.dialect.name == "postgresql" and _keys_in_row_order(connection, site, kind)
    return integer_array(
        connection,
        "coalesce(row_digest, -id)",
        f"{sql_from} AND (row_digest IS NOT NULL OR active = ? OR inactive_reason = ?)",
        (*parameters, True, ORPHAN),
        order_by="sync_key" if by_key else None,
    )


def integer_array(
    connection: sa.Connection,
    expression: str,
    sql_from: str,
    parameters: Sequence[Any],
    order_by: str | None = None,
) -> list[int]:
    """Return the integer `expression` of every row `sql_from` (FROM … WHERE …, qmark
    placeholders) selects, as one array the database builds: JSON text parsed in C on
    SQLite, a binary array on PostgreSQL. For a whole site that is half the time of a
    Python row per value (1.5M parents: 0.7 s against 1.0 s on SQLite, 0.75 s against
    1.46 s on PostgreSQL), for a transient array the size of the result.

    `order_by`: the rows are read in that order, and the array almost always keeps it (an
    aggregate's own ORDER BY would sort them again); a matter of speed, never of what the
    array holds."""
    sqlite = connection.dialect.name == "sqlite"
    aggregate = "json_group_array" if sqlite else "array_agg"
    sql = f"SELECT {aggregate}({expression}) {sql_from}"
    if order_by is not None:
        ordered = f"SELECT {expression} AS v {sql_from} ORDER BY {order_by}"
        sql = f"SELECT {aggregate}(v) FROM ({ordered}) s"
    cursor = driver_rows(connection, sql, parameters, binary=True)
    try:
        (found,) = cursor.fetchone()
    finally:
        cursor.close()
    if sqlite:
        return json.loads(found)  # type: ignore[no-any-return]
    return found or []  # array_agg of no rows is NULL


def persons_with_digests(
    connection: sa.Connection, site: str, kind: PersonKind, digests: Collection[int]
) -> list[int]:
    """Return the ids of the site's persons whose row digest is one of `digests`.

    Row digests have no index (it would slow every insert): a few are looked for with one
    scan per chunk, many with one pass over the site's digests.
    """
    if not digests:
        return []
    where, parameters = site_persons(connection, site, kind)
    if len(digests) <= 2 * CHUNK:
        sql = f"SELECT id {where} AND row_digest IN"
        return [pid for (pid,) in driver_rows_in(connection, sql, parameters, sorted(digests))]
    wanted = set(digests)
    cursor = driver_rows(
        connection, f"SELECT row_digest, id {where} AND row_digest IS NOT NULL", parameters
    )
    try:
        return [person_id for digest, person_id in cursor if digest in wanted]
    finally:
        cursor.close()


def persons_by_keys(
    connection: sa.Connection,
    site: str,
    kind: PersonKind,
    keys: Sequence[str],
    with_fields: bool = False,
) -> dict[str, ExistingPerson]:
    """Return the given persons of the site (those that exist) by sync key; `with_fields`:
    with their stored fields too (ExistingPerson.fields), for rows that are likely changes
    (a file whose unchanged rows were skipped unread), so that their update reads them once."""
    columns = "sync_key, id, fingerprint, active, inactive_reason, row_digest"
    rows = driver_rows_in(
        connection,
        f"SELECT {columns}{', ' + _FIELD_COLUMNS if with_fields else ''} FROM persons "
        "WHERE site = ? AND kind = ? AND sync_key IN",
        (site, kind.value),
        # In key order, each statement's keys lie in one stretch of the index, not all over
        # it (a district's 25,000 changed keys in batches of 5,000: 0.20 s against 0.24-0.29 s).
        sorted(keys),
    )
    if with_fields:
        return {
            row[0]: ExistingPerson(row[1], row[2], bool(row[3]), row[4], row[5], _fields(row[6:]))
            for row in rows
        }
    return {
        key: ExistingPerson(person_id, digest, bool(active), reason, row_digest)
        for key, person_id, digest, active, reason, row_digest in rows
    }


class UsernameKeys:
    """The sync keys of a site's persons keyed by their username, for a file's rows that
    name one in another case (SPEC §2.2: usernames compare case-insensitively; the key
    keeps its first spelling). The keys not all in lower case are read once, at the first
    call (few, as usernames go); a lower-case key is looked up by itself where it must."""

    def __init__(self, connection: sa.Connection, site: str, kind: PersonKind) -> None:
        self._connection, self._site, self._kind = connection, site, kind
        self._other_case: dict[str, list[str]] | None = None  # by the casefolded key

    def __call__(self, username: str) -> str | None:
        """Return the key of the person `username` names, as stored, or None: no such
        person, or none in another case."""
        folded = username.casefold()
        spellings = self._keys_not_in_lower_case().get(folded, ())
        if username in spellings:
            return username
        if (folded != username or spellings) and self._is_username_key(folded):
            return folded
        return spellings[0] if len(spellings) == 1 else None  # several: legacy, none taken

    def _keys_not_in_lower_case(self) -> dict[str, list[str]]:
        if self._other_case is None:
            # SQLite's lower() knows ASCII only: keys with other characters are read too.
            others = (
                "sync_key GLOB '*[^ -~]*'"
                if self._connection.dialect.name == "sqlite"
                else "sync_key ~ '[^ -~]'"
            )
            cursor = driver_rows(
                self._connection,
                "SELECT sync_key, username FROM persons WHERE site = ? AND kind = ? "
                f"AND username IS NOT NULL AND (sync_key <> lower(sync_key) OR {others})",
                (self._site, self._kind.value),
            )
            self._other_case = defaultdict(list)
            for key, username in cursor:
                folded = key.casefold()
                if key != folded and username.casefold() == folded:
                    self._other_case[folded].append(key)
            cursor.close()
        return self._other_case

    def _is_username_key(self, key: str) -> bool:
        cursor = driver_rows(
            self._connection,
            "SELECT username FROM persons WHERE site = ? AND kind = ? AND sync_key = ?",
            (self._site, self._kind.value, key),
        )
        found = cursor.fetchone()
        cursor.close()
        return found is not None and (found[0] or "").casefold() == key


def keys_by_state(
    connection: sa.Connection, person_ids: Iterable[int]
) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """Return (id, sync key) of the given persons, by id: the active ones, the others."""
    active: list[tuple[int, str]] = []
    inactive: list[tuple[int, str]] = []
    for chunk in chunked(sorted(set(person_ids))):
        query = sa.select(persons.c.id, persons.c.sync_key, persons.c.active).where(
            persons.c.id.in_(chunk)
        )
        for row in connection.execute(query):
            (active if row.active else inactive).append((row.id, row.sync_key))
    return active, inactive


# The persons column behind each child field (ChildField's values).
_CHILD_FIELD_COLUMNS = {
    "sync_key": "sync_key",
    "username": "username",
    "email": "email",
    "student_number": "student_number",
    "internal_id": "id",
}


# From this many child values to resolve, a site's student index is read whole. While
# unchanged rows are skipped (most of them, usually), or pending links resolved, only from
# this share of the site's students on too: a value looked up by key costs about twice a
# student read whole, so reading whole then costs at most twice the better choice, whatever
# the rest of the file holds.
WHOLE_STUDENT_INDEX = 20_000
WHOLE_STUDENT_SHARE = 0.5


class StudentLookup:
    """The site's students by the value of a child field, for a parents file's child cells.

    For sync keys (unique per site, indexed) a file with few rows to resolve asks for just
    the values it needs (`prepare`); otherwise the whole index is read once, into a dict
    of plain values: a million students must not cost a million objects.
    """

    def __init__(
        self,
        connection: sa.Connection,
        site: str,
        child_field: ChildField | str,
        whole_from: int | None = None,
        whole_share: float | None = None,
    ) -> None:
        """`whole_from`: read the whole index once this many values were asked for; with
        `whole_share`, not before that share of the site's students either (counted only
        once `whole_from` values were asked for)."""
        self._whole_from = whole_from
        self._whole_share = whole_share
        self._asked = 0
        self._connection = connection
        self._site = site
        self._field = str(child_field)
        self._complete = False
        # value -> student id, or a list of (id, sync key) when several students share it.
        self._index: dict[str, Any] = {}
        # The values several students share: their lists are found without looking at every
        # entry (a million ids, each a cache miss).
        self._shared: set[str] = set()
        self._keys: dict[int, str] = {}  # sync keys of students with a non-key child field

    def load_all(self) -> None:
        """Read the whole index now (a file that names many children)."""
        if self._complete:
            return
        cursor = _student_values(self._connection, self._site, self._field)
        self._index.clear()
        self._shared.clear()
        try:
            while batch := cursor.fetchmany(50_000):
                self._add(batch)
        finally:
            cursor.close()
        for value in self._shared:
            self._index[value].sort(key=itemgetter(1))  # students sharing a value, by key
        self._complete = True

    def _add(self, rows: Iterable[tuple[Any, int, str]]) -> None:
        index, field = self._index, self._field
        by_key = field == "sync_key"
        for value, person_id, sync_key in rows:
            lookup = value if by_key else child_lookup_value(field, str(value))
            if not by_key:
                self._keys[person_id] = sync_key
            found = index.get(lookup)
            if found is None:
                index[lookup] = person_id
            elif isinstance(found, list):
                found.append((person_id, sync_key))
            elif found != person_id:
                index[lookup] = [(found, self.sync_key(found, lookup)), (person_id, sync_key)]
                self._shared.add(lookup)

    def prepare(self, values: Iterable[str]) -> None:
        """Make sure the given child values can be looked up (reads the ones not known yet)."""
        if self._complete:
            return
        if self._field != "sync_key":
            self.load_all()
            return
        wanted = sorted({value.strip() for value in values} - self._index.keys())
        self._asked += len(wanted)
        if self._whole_from is not None and self._asked >= self._whole_from:
            if self._whole_share is not None:
                # Counted only as far as decides for the values asked so far and as many
                # again (a district's million students is not walked for 20,000 values).
                enough = math.ceil((2 * self._asked + 1) / self._whole_share) + 1
                students = count_persons(
                    self._connection, self._site, PersonKind.STUDENT, at_most=enough
                )
                if students < enough:  # all of them
                    self._whole_from = max(self._whole_from, int(students * self._whole_share))
                    self._whole_share = None
                else:  # at least that many: counted again once twice as many were asked
                    self._whole_from = int(enough * self._whole_share)
            if self._asked >= self._whole_from:
                self.load_all()
                return
        self._add(
            driver_rows_in(
                self._connection,
                "SELECT sync_key, id, sync_key FROM persons WHERE site = ? AND kind = ? "
                "AND sync_key IN",
                (self._site, PersonKind.STUDENT.value),
                wanted,
            )
        )

    def students_named(
        self, values: Sequence[str]
    ) -> tuple[list[int | None], list[str | None]] | None:
        """Return the id and sync key of the student each of `values` (stripped, after
        `prepare`) names, the id None for a value naming no student yet (a pending link;
        its key is not to be used); or None when any names several (the row path's row
        error). Looked up over the whole list at once: a first parents file names millions
        of children."""
        lookups: Sequence[str] = values
        if self._field in ("email", "username"):
            lookups = list(map(str.casefold, values))
        shared = self._shared
        if shared and not shared.isdisjoint(lookups):
            return None
        found: list[Any] = list(map(self._index.get, lookups))
        if self._field == "sync_key":
            return found, list(lookups)
        return found, list(map(self._keys.get, found))

    def sync_key(self, person_id: int, value: str) -> str:
        """Return the sync key of the student `value` (its lookup form) found as `person_id`."""
        return value if self._field == "sync_key" else self._keys[person_id]

    def get(self, value: str, default: Sequence[StudentRef] = ()) -> Sequence[StudentRef]:
        """Return the students whose child field is `value` (in lookup form)."""
        found = self._index.get(value)
        if found is None:
            return default
        if isinstance(found, list):
            return [StudentRef(person_id, sync_key) for person_id, sync_key in found]
        if self._field == "sync_key":
            return (_student_ref((found, value)),)
        return (_student_ref((found, self._keys[found])),)


_student_ref = StudentRef._make


def student_index(
    connection: sa.Connection, site: str, child_field: ChildField | str
) -> dict[str, tuple[StudentRef, ...]]:
    """Return the site's students by the value of `child_field` (lookup form): one read of
    plain rows, a tuple of one StudentRef for most values."""
    cursor = _student_values(connection, site, str(child_field))
    index: dict[str, tuple[StudentRef, ...]] = {}
    get = index.get
    shared: set[str] = set()  # values of more than one student
    try:
        while batch := cursor.fetchmany(50_000):
            for value, person_id, sync_key in batch:
                lookup = child_lookup_value(child_field, str(value))
                if lookup == sync_key:  # child_field = "sync_key": one string, not two
                    sync_key = lookup
                found = get(lookup)
                if found is None:
                    index[lookup] = (_student_ref((person_id, sync_key)),)
                else:
                    index[lookup] = (*found, _student_ref((person_id, sync_key)))
                    shared.add(lookup)
    finally:
        cursor.close()
    for lookup in shared:  # students sharing a value, by key
        index[lookup] = tuple(sorted(index[lookup], key=itemgetter(1)))
    return index


def _student_values(connection: sa.Connection, site: str, child_field: str) -> Any:
    """Return a DB-API cursor over (value of `child_field`, id, sync key) of each of the
    site's students that has the value (StudentLookup and student_index read it whole)."""
    column = _CHILD_FIELD_COLUMNS[child_field]
    sql_from, parameters = _site_read(
        connection, site, PersonKind.STUDENT, keys_only=column == "sync_key"
    )
    return driver_rows(
        connection,
        f"SELECT {column}, id, sync_key {sql_from} AND {column} IS NOT NULL",
        parameters,
    )


def _site_read(
    connection: sa.Connection, site: str, kind: PersonKind, keys_only: bool
) -> tuple[str, tuple[Any, ...]]:
    """`FROM … WHERE …` of a read of all the site's persons of `kind`: by the unique index
    alone when only their ids and sync keys are read (it holds them), else as
    site_persons reads their rows."""
    if keys_only:
        return _by_index(site, kind)
    return site_persons(connection, site, kind)


# The identifiers parent_index reads, in the order it unpacks them.
_PARENT_IDS = (ParentBy.SYNC_KEY, ParentBy.EMAIL, ParentBy.USERNAME)


def parent_index(connection: sa.Connection, site: str, by: Collection[ParentBy]) -> ParentIndex:
    """Return the site's parents by each identifier in `by` (the others stay empty: a
    district's relationships file names its parents one way, and each map costs a few
    hundred MB at a million parents)."""
    keys, emails, usernames = (by_what in by for by_what in _PARENT_IDS)
    sql_from, parameters = _site_read(
        connection, site, PersonKind.PARENT, keys_only=not (emails or usernames)
    )
    cursor = driver_rows(
        connection,
        f"SELECT id, sync_key, {'email' if emails else 'NULL'}, "
        f"{'username' if usernames else 'NULL'} {sql_from}",
        parameters,
    )
    by_email: dict[str, list[ParentRef]] = defaultdict(list)
    by_username: dict[str, list[ParentRef]] = defaultdict(list)
    by_sync_key: dict[str, ParentRef] = {}
    try:
        while batch := cursor.fetchmany(50_000):
            for person_id, sync_key, email, username in batch:
                ref = ParentRef(person_id, sync_key)
                if keys:
                    by_sync_key[sync_key] = ref
                if email:
                    by_email[email.casefold()].append(ref)
                if username:
                    by_username[username.casefold()].append(ref)
    finally:
        cursor.close()
    for refs in chain(by_email.values(), by_username.values()):
        if len(refs) > 1:
            refs.sort(key=attrgetter("sync_key"))  # parents sharing a value, by key
    return ParentIndex(by_email, by_sync_key, by_username)


def person_fields(connection: sa.Connection, person_ids: Sequence[int]) -> dict[int, PersonFields]:
    """Return the stored fields of the given persons (for change events and reverts)."""
    found: dict[int, PersonFields] = {}
    for chunk in chunked(list(person_ids)):
        for row in connection.execute(sa.select(persons).where(persons.c.id.in_(chunk))):
            found[row.id] = row_to_fields(row)
    return found


# The columns of PersonFields, in its order (_fields).
_FIELD_COLUMNS = "sync_key, username, email, first_name, last_name, student_number, attributes"


def _fields(row: Sequence[Any]) -> PersonFields:
    """Return the PersonFields of a row of _FIELD_COLUMNS, as the driver returns them."""
    key, username, email, first, last, number, attributes = row
    if isinstance(attributes, str):
        attributes = json.loads(attributes)
    return PersonFields(
        key, username, email, first, last, number, tuple(sorted((attributes or {}).items()))
    )


def persons_for_update(
    connection: sa.Connection, person_ids: Sequence[int]
) -> dict[int, tuple[PersonFields, str | None]]:
    """Return (stored fields, inactive reason) of the given persons, read in bulk."""
    rows = driver_rows_in(
        connection,
        f"SELECT id, inactive_reason, {_FIELD_COLUMNS} FROM persons WHERE id IN",
        (),
        sorted(set(person_ids)),
    )
    return {row[0]: (_fields(row[2:]), row[1]) for row in rows}


def row_to_fields(row: Any) -> PersonFields:
    return PersonFields(
        sync_key=row.sync_key,
        username=row.username,
        email=row.email,
        first_name=row.first_name,
        last_name=row.last_name,
        student_number=row.student_number,
        attributes=tuple(sorted((row.attributes or {}).items())),
    )


def sync_keys(connection: sa.Connection, person_ids: Iterable[int]) -> dict[int, str]:
    """Return the sync key of each of the given persons."""
    found: dict[int, str] = {}
    for chunk in chunked(sorted(set(person_ids))):
        query = sa.select(persons.c.id, persons.c.sync_key).where(persons.c.id.in_(chunk))
        found.update({row.id: row.sync_key for row in connection.execute(query)})
    return found


def password_hashes(connection: sa.Connection, person_ids: Sequence[int]) -> dict[int, str | None]:
    """Return the stored password hash of each of the given persons."""
    found: dict[int, str | None] = {}
    for chunk in chunked(sorted(set(person_ids))):
        query = sa.select(persons.c.id, persons.c.password_hash).where(persons.c.id.in_(chunk))
        found.update({row.id: row.password_hash for row in connection.execute(query)})
    return found


def in_code_point_order(connection: sa.Connection, column: Any) -> Any:
    """`column` to sort by code point, as SQLite does, whatever the PostgreSQL database's
    collation (en_US would put "_5" before "10", "ä0" before "Ab"): an export reads alike
    from either database and from any server."""
    return column.collate("C") if connection.dialect.name == "postgresql" else column


def find_person(
    connection: sa.Connection, site: str, key: str, kind: PersonKind | None = None
) -> Any:
    """Return the person row a sync key (else username or email) names, or None."""
    rows = find_persons(connection, site, key, kind)
    return rows[0] if len(rows) == 1 else None


def find_persons(
    connection: sa.Connection, site: str, key: str, kind: PersonKind | None = None
) -> list[Any]:
    """Return the person rows a sync key names, else those a username names, else those an
    email names (two parents may share one): one row, several (ambiguous), or none."""
    base = sa.select(persons).where(persons.c.site == site)
    if kind is not None:
        base = base.where(persons.c.kind == kind.value)
    base = base.order_by(persons.c.sync_key)
    for found in (
        lambda: connection.execute(base.where(persons.c.sync_key == key)).all(),
        lambda: persons_by_username(connection, base, key),
        lambda: connection.execute(base.where(persons.c.email == key.casefold())).all(),
    ):
        if rows := found():
            return list(rows)
    return []


def students_named(
    connection: sa.Connection, site: str, key: str, child_fields: Collection[str]
) -> list[tuple[Any, str]]:
    """Return each student `key` names, with how: by sync key, username or email, and by
    the child fields of `child_fields` among student_number and internal_id (the site's
    sources' own): a value may name one student by one field and another by another."""
    base = (
        sa.select(persons)
        .where(persons.c.site == site, persons.c.kind == PersonKind.STUDENT.value)
        .order_by(persons.c.sync_key)
    )
    found: dict[int, tuple[Any, str]] = {}

    def add(how: str, rows: Iterable[Any]) -> None:
        for row in rows:
            found.setdefault(row.id, (row, how))

    add("sync key", connection.execute(base.where(persons.c.sync_key == key)))
    add("username", persons_by_username(connection, base, key))
    add("email", connection.execute(base.where(persons.c.email == key.casefold())))
    if ChildField.STUDENT_NUMBER.value in child_fields:
        add("student number", connection.execute(base.where(persons.c.student_number == key)))
    # An id is a BIGINT: ASCII digits, fewer than 19.
    is_id = key.isascii() and key.isdigit() and len(key) < 19
    if ChildField.INTERNAL_ID.value in child_fields and is_id:
        add("internal id", connection.execute(base.where(persons.c.id == int(key))))
    return list(found.values())


def persons_by_username(connection: sa.Connection, query: sa.Select[Any], key: str) -> list[Any]:
    """Return the rows of `query` (of persons) whose username is `key` in any case (SPEC
    §2.2), compared casefolded as files' usernames are. SQLite's lower() folds ASCII only:
    usernames with other characters are read and folded here."""
    folded = key.casefold()
    username = persons.c.username
    other_letters = (
        username.op("GLOB")("*[^ -~]*")
        if connection.dialect.name == "sqlite"
        else username.op("~")("[^ -~]")
    )
    rows = connection.execute(query.where(sa.or_(sa.func.lower(username) == folded, other_letters)))
    return [row for row in rows if row.username.casefold() == folded]


def site_counts(
    connection: sa.Connection,
    site: str,
    kind: Kind,
    source: str | None,
    with_persons: bool = True,
    with_links: bool = True,
) -> SiteCounts:
    """Return the sizes the safety thresholds compare a file against (those asked for:
    each is a scan of the site's persons or links)."""
    person_kind = PersonKind.PARENT if kind is Kind.RELATIONSHIPS else kind.person_kind
    existing = active = active_links = 0
    if with_persons and kind is not Kind.RELATIONSHIPS:
        counted = sa.select(
            sa.func.count(), sa.func.coalesce(sa.func.sum(sa.cast(persons.c.active, sa.Integer)), 0)
        ).where(persons.c.site == site, persons.c.kind == person_kind.value)
        existing, active = connection.execute(counted).one()
    if with_links:
        active_links = connection.execute(
            sa.select(sa.func.count()).where(links.c.site == site, active_link_clause())
        ).scalar_one()
    file_links = 0
    if kind is Kind.RELATIONSHIPS:
        file_links = connection.execute(
            sa.select(sa.func.count()).where(
                links.c.site == site,
                links.c.by_relationships.is_(True),
                links.c.source == source,
                active_link_clause(),  # a link unlinked by hand is not the file's to remove
            )
        ).scalar_one()
    return SiteCounts(
        active_persons=active if kind is not Kind.RELATIONSHIPS else 0,
        existing_persons=existing if kind is not Kind.RELATIONSHIPS else 0,
        active_links=active_links,
        active_file_links=file_links,
    )


# Stored as a parent's fingerprint where the links its row names must be planned again: no
# file row has it, so the next row for the parent is compared field by field and its links
# diffed (a person whose fields did not change gets no event).
REPLAN_FINGERPRINT = "reverted"


def replan_parents(connection: sa.Connection, parent_ids: Iterable[int]) -> None:
    """Make the next row of each given parent be read (no row digest to skip it) and its
    links planned again: what its child cell names changed, though the row did not."""
    for chunk in chunked(sorted(set(parent_ids))):
        connection.execute(
            persons.update()
            .where(persons.c.id.in_(chunk))
            .values(row_digest=None, fingerprint=REPLAN_FINGERPRINT)
        )


def active_link_clause() -> sa.ColumnElement[bool]:
    """SQL for `link_is_active`: manual link, or no manual edit and a file naming it."""
    return sa.or_(
        links.c.manual == "link",
        sa.and_(
            links.c.manual.is_(None),
            sa.or_(links.c.by_parents.is_(True), links.c.by_relationships.is_(True)),
        ),
    )


# --- links ---------------------------------------------------------------------------------


def _existing_pending(row: Any) -> ExistingPending:
    return ExistingPending(
        pending_id=row.id,
        parent_id=row.parent_id,
        child_field=row.child_field,
        child_value=row.child_value,
        type=RelType(row.type),
        origin=Kind(row.origin),
    )


_REL_TYPES = {rel_type.value: rel_type for rel_type in RelType}


_LINK_COLUMNS = "id, parent_id, child_id, type, by_parents, by_relationships, manual, source"


def links_of_parents(connection: sa.Connection, parent_ids: Iterable[int]) -> list[ExistingLink]:
    """Return the links of the given parents (through the driver: a changed parents file of
    a district asks for tens of thousands)."""
    rows = driver_rows_in(
        connection,
        f"SELECT {_LINK_COLUMNS} FROM links WHERE parent_id IN",
        (),
        sorted(set(parent_ids)),
    )
    return _existing_links(rows)


def relationship_links_of_source(
    connection: sa.Connection, site: str, source: str, besides: Collection[int] = ()
) -> list[ExistingLink]:
    """Return the relationships-file links of `source`, but for those of the parents in
    `besides` (the caller has them already)."""
    cursor = driver_rows(
        connection,
        f"SELECT {_LINK_COLUMNS} FROM links WHERE site = ? AND by_relationships = ? AND source = ?",
        (site, True, source),
    )
    try:
        return _existing_links(row for row in cursor if row[1] not in besides)
    finally:
        cursor.close()


# From this many parents a relationships file's links are read in one pass over the site's
# links rather than by parent (900 a query): a district's file names a million parents.
WHOLE_SITE_LINKS = 20_000


def links_to_plan(
    connection: sa.Connection, site: str, parent_ids: Collection[int], source: str | None
) -> LinkTable:
    """Return the links of the given parents and, for a full relationships file of `source`,
    every relationships-file link of that source."""
    if len(parent_ids) < WHOLE_SITE_LINKS:
        found = links_of_parents(connection, parent_ids)
        if source is not None:
            found += relationship_links_of_source(connection, site, source, besides=parent_ids)
        return LinkTable.of(found)
    table = LinkTable()
    cursor = driver_rows(connection, f"SELECT {_LINK_COLUMNS} FROM links WHERE site = ?", (site,))
    try:
        table.add_rows(
            row
            for row in cursor
            if row[1] in parent_ids or (source is not None and row[5] and row[7] == source)
        )
    finally:
        cursor.close()
    return table


def _existing_links(rows: Iterable[tuple[Any, ...]]) -> list[ExistingLink]:
    types = _REL_TYPES
    # One str per source name, not one per link (a district's site holds millions).
    sources: dict[str | None, str | None] = {}
    return [
        ExistingLink(link_id, parent_id, child_id, types[type_], bool(by_parents),
                     bool(by_relationships), manual, sources.setdefault(source, source))
        for link_id, parent_id, child_id, type_, by_parents, by_relationships, manual, source
        in rows
    ]  # fmt: skip


def pending_of_parents(
    connection: sa.Connection, parent_ids: Iterable[int]
) -> list[ExistingPending]:
    ids = sorted(set(parent_ids))
    found: list[ExistingPending] = []
    for chunk in chunked(ids):
        query = sa.select(pending_links).where(pending_links.c.parent_id.in_(chunk))
        found.extend(_existing_pending(row) for row in connection.execute(query))
    return found


def pending_to_plan(
    connection: sa.Connection, site: str, parent_ids: Collection[int], source: str | None
) -> list[ExistingPending]:
    """Return the pending links of the given parents and, for a full relationships file of
    `source`, every pending link such files of it made (as links_to_plan)."""
    if len(parent_ids) < WHOLE_SITE_LINKS:
        found = pending_of_parents(connection, parent_ids)
        if source is not None:
            found += pending_of_source(connection, site, source, Kind.RELATIONSHIPS)
        return found
    query = sa.select(pending_links).where(pending_links.c.site == site)
    return [
        _existing_pending(row)
        for row in connection.execute(query)
        if row.parent_id in parent_ids
        or (source is not None and row.source == source and row.origin == Kind.RELATIONSHIPS.value)
    ]


def pending_of_source(
    connection: sa.Connection, site: str, source: str, origin: Kind
) -> list[ExistingPending]:
    query = sa.select(pending_links).where(
        pending_links.c.site == site,
        pending_links.c.source == source,
        pending_links.c.origin == origin.value,
    )
    return [_existing_pending(row) for row in connection.execute(query)]


def waiting_links(
    connection: sa.Connection, site: str, source: str | None, origin: Kind
) -> list[dict[str, str]]:
    """Return the pending links that files of this kind from this source made and that
    still wait for their student, as a report lists them (by parent, then child value)."""
    query = (
        sa.select(persons.c.sync_key, pending_links.c.child_value, pending_links.c.child_field)
        .join(persons, persons.c.id == pending_links.c.parent_id)
        .where(
            pending_links.c.site == site,
            pending_links.c.source.is_(None)
            if source is None
            else pending_links.c.source == source,
            pending_links.c.origin == origin.value,
        )
        .order_by(persons.c.sync_key, pending_links.c.child_value)
    )
    return [
        {"parent": parent, "child": child, "child_field": field}
        for parent, child, field in connection.execute(query)
    ]


def unlinked_values(connection: sa.Connection, site: str) -> set[tuple[int, str, str]]:
    """Return the site's manual unlinks of child values no student had: (parent id, child
    field, the value as its field compares it)."""
    query = sa.select(
        pending_unlinks.c.parent_id, pending_unlinks.c.child_field, pending_unlinks.c.child_value
    ).where(pending_unlinks.c.site == site)
    return {
        (parent_id, field, child_lookup_value(field, value))
        for parent_id, field, value in connection.execute(query)
    }


def mark_unlinked(
    connection: sa.Connection,
    site: str,
    parent_id: int,
    values: Iterable[tuple[str, str]],
    now: datetime,
) -> None:
    """Keep `parent_id` apart from each (child field, value) no student has yet."""
    marked = {
        (field, value)
        for pid, field, value in unlinked_values(connection, site)
        if pid == parent_id
    }
    rows = []
    for field, value in values:
        lookup = (field, child_lookup_value(field, value))
        if lookup in marked:
            continue
        marked.add(lookup)
        rows.append(
            {
                "site": site,
                "parent_id": parent_id,
                "child_field": field,
                "child_value": value,
                "created_at": now,
            }
        )
    if rows:
        connection.execute(pending_unlinks.insert(), rows)


def count_pending(connection: sa.Connection, site: str | None = None) -> int:
    query = sa.select(sa.func.count()).select_from(pending_links)
    if site is not None:
        query = query.where(pending_links.c.site == site)
    return int(connection.execute(query).scalar_one())


# --- files ledger ----------------------------------------------------------------------------


def file_row(connection: sa.Connection, file_id: int) -> Any:
    return connection.execute(sa.select(files).where(files.c.id == file_id)).first()


def applied_sha256(connection: sa.Connection, source: str | None, site: str, sha256: str) -> Any:
    """Return the ledger row of this content if it is what this source last applied, or None.

    Content counts as a duplicate only while it is the newest applied file of its kind: a
    full file that returns to an earlier state (Monday's bytes again on Wednesday, after a
    different Tuesday) must apply, or a student who came back would stay deactivated.
    """
    same_source = files.c.source == source if source else files.c.source.is_(None)
    query = sa.select(files).where(
        files.c.sha256 == sha256, files.c.status == "applied", files.c.site == site, same_source
    )
    earlier = connection.execute(query.order_by(files.c.id.desc()).limit(1)).first()
    if earlier is None:
        return None
    newer = connection.execute(
        sa.select(files.c.id)
        .where(
            files.c.id > earlier.id,
            files.c.status == "applied",
            files.c.site == site,
            files.c.kind == earlier.kind,
            same_source,
        )
        .limit(1)
    ).first()
    return earlier if newer is None else None


def archived_since(
    connection: sa.Connection, source: str, archive: str, since: datetime
) -> list[Any]:
    """Return the entries of `source` applied (or found duplicate) since `since` whose file
    is in the folder `archive`, where syncd put it, and after which no other file of their
    kind was applied (taken again, one would undo it: `files release` refuses so too)."""
    newer = files.alias("newer")
    superseded = sa.exists().where(
        newer.c.source == source,
        newer.c.kind == files.c.kind,
        newer.c.status == FileStatus.APPLIED.value,
        newer.c.id > files.c.id,
    )
    return list(
        connection.execute(
            sa.select(files.c.id, files.c.name, files.c.path, files.c.size, files.c.status).where(
                files.c.source == source,
                files.c.status.in_([FileStatus.APPLIED.value, FileStatus.DUPLICATE.value]),
                files.c.finished_at >= since,
                files.c.path.startswith(archive.rstrip("/") + "/", autoescape=True),
                ~superseded,
            )
        )
    )


def file_in_processing(connection: sa.Connection, source: str, path: str) -> Any:
    """Return the newest ledger entry still located at processing/ `path`, or None.

    Its status is "processing" after a crash before its transaction committed, or already
    decided (applied, failed, ...) after a crash before the file moved on.
    """
    query = sa.select(files).where(files.c.source == source, files.c.path == path)
    return connection.execute(query.order_by(files.c.id.desc()).limit(1)).first()


def paths_in_processing(connection: sa.Connection, source: str, paths: Sequence[str]) -> set[str]:
    """Return those of `paths` (processing/NAME) where a ledger entry of `source` is."""
    found: set[str] = set()
    for chunk in chunked(list(paths)):
        query = sa.select(files.c.path).where(files.c.source == source, files.c.path.in_(chunk))
        found.update(connection.execute(query).scalars())
    return found


def unread_claims_not_at(connection: sa.Connection, source: str, paths: Sequence[str]) -> list[Any]:
    """Return the entries of `source`'s claims never read (no size yet) whose file is at
    none of `paths` (what processing/ holds): a claim cut short before its move, or a file
    taken away after it (its download failed, say)."""
    claims = connection.execute(
        sa.select(files).where(
            files.c.source == source,
            files.c.status == FileStatus.PROCESSING.value,
            files.c.size.is_(None),
        )
    ).all()
    present = set(paths)
    return [row for row in claims if row.path not in present]


def claims_gone_from(connection: sa.Connection, source: str, paths: Sequence[str]) -> list[Any]:
    """Return the ledger entries of `source` still processing a file read from processing/
    that is at none of `paths` (what processing/ holds now). syncd moves a file on only
    after its outcome is committed, so such a file was taken away by hand before its
    transaction ended: nothing of it was applied."""
    rows = connection.execute(
        sa.select(files).where(
            files.c.source == source,
            files.c.status == FileStatus.PROCESSING.value,
            files.c.size.is_not(None),
            files.c.path.like("processing/%"),
        )
    ).all()
    present = set(paths)
    return [row for row in rows if row.path not in present]


def imports_in_processing(connection: sa.Connection, source: str | None = None) -> list[Any]:
    """Return the ledger entries of `syncd import` runs still processing (of `source`, if
    given): those naming their run outside processing/ (a drop folder's claims lie in it)."""
    query = sa.select(files).where(
        files.c.status == FileStatus.PROCESSING.value,
        files.c.run_id.is_not(None),
        sa.not_(files.c.path.like("processing/%")),
    )
    if source is not None:
        query = query.where(files.c.source == source)
    return list(connection.execute(query.order_by(files.c.id)))


def row_errors(connection: sa.Connection, file_id: int) -> list[RowError]:
    """Return the rejected rows of a file as its row.rejected events recorded them, once
    each (a released file was validated twice), without the values the events leave out:
    what a report delivered again from the ledger can say of them."""
    query = (
        sa.select(audit_events.c.data)
        .where(audit_events.c.file_id == file_id, audit_events.c.event == ROW_REJECTED)
        .order_by(audit_events.c.id)
    )
    found: dict[tuple[int, str, str], RowError] = {}
    for (data,) in connection.execute(query):
        row = int(data.get("row") or 0)
        # One event per row lists its errors; an event older than that holds one error.
        for item in data.get("errors") or [data]:
            error = RowError(row, item.get("column") or "", "", item["error"])
            found.setdefault((error.row, error.column, error.error), error)
    return sorted(found.values(), key=lambda error: error.row)


def list_files(
    connection: sa.Connection, status: str | None = None, source: str | None = None
) -> list[Any]:
    """Return ledger rows in id order (of one status: see `_statuses`)."""
    query = sa.select(files).order_by(files.c.id)
    if status:
        query = query.where(files.c.status.in_(_statuses(status)))
    if source:
        query = query.where(files.c.source == source)
    return list(connection.execute(query))


def count_files(connection: sa.Connection, source: str, status: str) -> int:
    query = sa.select(sa.func.count()).where(
        files.c.source == source, files.c.status.in_(_statuses(status))
    )
    return int(connection.execute(query).scalar_one())


def _statuses(status: str) -> list[str]:
    """The ledger statuses a filter on `status` takes in: "failed" includes the files an
    operator rejected (a rejected held file sits in failed/ and its report says failed)."""
    if status == FileStatus.FAILED.value:
        return [status, FileStatus.REJECTED.value]
    return [status]


def source_states(connection: sa.Connection) -> dict[str, Any]:
    return {row.source: row for row in connection.execute(sa.select(source_state))}


def set_source_state(connection: sa.Connection, source: str, site: str, **values: Any) -> None:
    exists = connection.execute(
        sa.select(source_state.c.source).where(source_state.c.source == source)
    ).first()
    if exists is None:
        connection.execute(
            source_state.insert().values(**{"source": source, "site": site, "waiting": 0, **values})
        )
    else:
        connection.execute(
            source_state.update().where(source_state.c.source == source).values(**values)
        )


def remember_listing(
    connection: sa.Connection,
    source: str,
    listing: Sequence[tuple[str, int, float]],
    now: datetime,
) -> dict[str, datetime]:
    """Record a listing of (name, size, mtime); return when each file was first seen as it
    is now (`now` for a new or changed one). Files no longer listed are forgotten."""
    known = {
        row.name: row
        for row in connection.execute(sa.select(seen_files).where(seen_files.c.source == source))
    }
    first_seen: dict[str, datetime] = {}
    for name, size, mtime in listing:
        row = known.pop(name, None)
        if row is not None and (row.size, row.mtime) == (size, mtime):
            first_seen[name] = aware(row.first_seen) or now
            continue
        if row is not None:
            connection.execute(
                seen_files.delete().where(seen_files.c.source == source, seen_files.c.name == name)
            )
        connection.execute(
            seen_files.insert().values(
                source=source, name=name, size=size, mtime=mtime, first_seen=now
            )
        )
        first_seen[name] = now
    for name in known:
        connection.execute(
            seen_files.delete().where(seen_files.c.source == source, seen_files.c.name == name)
        )
    return first_seen
