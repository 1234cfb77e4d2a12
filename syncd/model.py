"""Plain data that crosses the arrows of the spine: rows, records, errors, plans."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import repeat
from json.encoder import encode_basestring
from typing import NamedTuple


class Kind(StrEnum):
    """A file's kind; the enum order is the order kinds are applied in a batch."""

    STUDENTS = "students"
    PARENTS = "parents"
    RELATIONSHIPS = "relationships"

    @property
    def rank(self) -> int:
        return KIND_ORDER.index(self)

    @property
    def person_kind(self) -> PersonKind:
        """Return the kind of person a students or parents file holds."""
        return PersonKind.STUDENT if self is Kind.STUDENTS else PersonKind.PARENT


KIND_ORDER: tuple[Kind, ...] = (Kind.STUDENTS, Kind.PARENTS, Kind.RELATIONSHIPS)


class PersonKind(StrEnum):
    STUDENT = "student"
    PARENT = "parent"


class Mode(StrEnum):
    FULL = "full"
    DELTA = "delta"


class ChildField(StrEnum):
    """Which student field a parents file's child column (or a Student ID column) holds."""

    SYNC_KEY = "sync_key"
    USERNAME = "username"
    INTERNAL_ID = "internal_id"
    EMAIL = "email"
    STUDENT_NUMBER = "student_number"


class RelType(StrEnum):
    PARENT = "Parent"
    AIDE = "Aide"
    GUARDIAN = "Guardian"
    RELATIVE = "Relative"
    OTHER = "Other"


class FileStatus(StrEnum):
    PROCESSING = "processing"
    HELD = "held"
    APPLIED = "applied"
    FAILED = "failed"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    REVERTED = "reverted"


class LinkStatus(StrEnum):
    ACTIVE = "active"
    PENDING = "pending"


class PasswordPolicy(StrEnum):
    DROP = "drop"
    HASH = "hash"


# The longest name, key, email, username, student number or child value syncd keeps: the
# width of their columns (db/schema.py). A longer cell is a row error (core/validate.py).
STORED_TEXT_MAX = 500

# Invisible marks that editors and joined exports leave at a cell's edges: a byte order mark
# (one file's, inside another), a zero-width space, a word joiner. The readers trim a cell of
# them as of whitespace (formats/readers.py), so a key or an email that carries one is the
# one without it.
INVISIBLE_MARKS = "\ufeff\u200b\u2060"
# What `trim_visible` takes off a text's edges: whitespace (as str.strip) and those marks.
EDGE_CHARS = "".join(c for c in map(chr, range(0x3001)) if c.isspace()) + INVISIBLE_MARKS


# The marks one by one: three `in` tests are the fast way to ask about a text.
_MARK_1, _MARK_2, _MARK_3 = tuple(INVISIBLE_MARKS)


def has_invisible_mark(text: str) -> bool:
    """Whether `text` holds one of INVISIBLE_MARKS anywhere."""
    return _MARK_1 in text or _MARK_2 in text or _MARK_3 in text


def trim_visible(text: str) -> str:
    """`text` without whitespace and invisible marks at its edges."""
    return text.strip(EDGE_CHARS)


# Values of a `status`/`action` column that mean "remove this person or link" (SPEC §2.4).
DELETE_WORDS = frozenset({"delete", "deleted", "inactive", "tobedeleted"})


class RawRow(NamedTuple):
    """One data row as read: `line` is the file line it starts on (header = 1).

    `digest` identifies the row's bytes and how they were read (CSV only; see RowDigests).
    A NamedTuple: a million-row file makes a million of them, and a frozen dataclass takes
    twice as long to build.
    """

    line: int
    values: tuple[str, ...]
    digest: int | None = None


@dataclass(frozen=True, slots=True)
class RowError:
    """A rejected row: `row` is the line number, `column` the header name (may be empty)."""

    row: int
    column: str
    value: str
    error: str


class PersonFields(NamedTuple):
    """What syncd stores about a person; `attributes` are (name, value) pairs sorted by name.

    A NamedTuple rather than a dataclass: a district file makes millions of these, and a
    tuple is built, hashed and marshalled (see spill.py) at C speed.
    """

    sync_key: str
    username: str | None
    email: str | None
    first_name: str
    last_name: str
    student_number: str | None = None
    attributes: tuple[tuple[str, str], ...] = ()

    def as_dict(self) -> dict[str, str | None]:
        """Return the fields flattened as in the export (`attributes.grade`)."""
        flat: dict[str, str | None] = {
            "sync_key": self.sync_key,
            "username": self.username,
            "email": self.email,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "student_number": self.student_number,
        }
        for name, value in self.attributes:
            flat[f"attributes.{name}"] = value
        return flat


def attributes_text(attributes: tuple[tuple[str, str], ...]) -> str:
    """Return a person's attributes as the JSON text the attributes column stores: the same
    document as json.dumps of them as a dict, in a fraction of its time."""
    members = (
        f"{encode_basestring(name)}:{encode_basestring(value)}" for name, value in attributes
    )
    return "{" + ",".join(members) + "}"


@dataclass(frozen=True, slots=True)
class FileColumns:
    """What a students or parents file says about its persons: the fields it has columns for.

    A file manages only those (SPEC §2.4 "delta: only upserts", as itslearning and Moodle
    uploads do): a column absent from its header leaves an existing person's stored value
    alone, so an admin's file of names does not blank emails. A present column with an empty
    cell does empty the field. First and last name are required, so never absent; the sync
    key is what a row is matched by, so an update never changes it.
    """

    # Of username, email and student_number: the fields the file has no column for.
    absent: tuple[str, ...] = ()
    # The attributes the file has columns for (the others are kept).
    attributes: frozenset[str] = frozenset()
    # A parents file without a child column: its rows say nothing about links.
    leaves_links: bool = False
    # A parents file with a child column but no relationship type column: its new links are
    # Parent links; it leaves the type of an existing link alone (a relationships file may
    # have made it a Guardian: the nightly parents file must not turn it back every night).
    leaves_types: bool = False

    def describes(self, stored: PersonFields) -> bool:
        """Return whether a row of the file says all there is about a person stored so: no
        field it leaves alone holds a value, and its links are said too."""
        if self.leaves_links:
            return False
        for name in self.absent:
            if getattr(stored, name) is not None:
                return False
        attributes = self.attributes
        return all(name in attributes for name, _ in stored.attributes)

    def merged(self, stored: PersonFields, given: PersonFields) -> PersonFields:
        """Return the fields a person stored as `stored` gets from a row that says `given`:
        `given`, but for the fields and attributes the file has no column for."""
        fields = given
        kept = {
            name: getattr(stored, name) for name in self.absent if getattr(stored, name) is not None
        }
        if kept:
            fields = fields._replace(**kept)
        attributes = self.attributes
        others = [pair for pair in stored.attributes if pair[0] not in attributes]
        if others:
            # Attribute names are unique: sorting the pairs sorts by name, as stored.
            fields = fields._replace(attributes=tuple(sorted([*given.attributes, *others])))
        return fields


class PersonRecord(NamedTuple):
    """A valid students or parents row (a NamedTuple, as PersonFields).

    `child_values` is None when the file has no child column (it then manages no links),
    else the child values the row names (maybe none).
    """

    line: int
    fields: PersonFields
    password: str | None = None
    deleted: bool = False
    child_values: tuple[str, ...] | None = None
    relationship_type: RelType = RelType.PARENT
    # The digest of the one row this record came from (RawRow.digest), if there is one.
    digest: int | None = None
    # The type of each of `child_values`, where they differ (a parent on one row per child,
    # a Parent of one and a Guardian of another: merge_person_records); else None, and
    # `relationship_type` is every child's.
    child_types: tuple[RelType, ...] | None = None

    def typed_children(self) -> Iterator[tuple[str, RelType]]:
        """Yield (child value, its relationship type) for each of `child_values`."""
        if self.child_types is None:
            return zip(self.child_values or (), repeat(self.relationship_type))
        return zip(self.child_values or (), self.child_types, strict=True)  # one type a value


class ParentBy(StrEnum):
    EMAIL = "email"
    SYNC_KEY = "sync_key"
    USERNAME = "username"


class ChildBy(StrEnum):
    FIELD = "field"  # the source's child_field
    EMAIL = "email"


class LinkRecord(NamedTuple):
    """A valid relationships row (a NamedTuple: a district's file makes millions)."""

    line: int
    parent_by: ParentBy
    parent_value: str
    child_by: ChildBy
    child_value: str
    type: RelType
    deleted: bool = False
    # Further identifiers the row gives for the same parent, tried when the first one is
    # unknown or ambiguous (families share emails; a key is unique).
    other_parent_ids: tuple[tuple[ParentBy, str], ...] = ()
    # The row's Student Email where its Student ID names the child (lookup form): naming
    # another student, it rejects the row (never a guess which one is meant).
    child_email: str = ""


@dataclass(slots=True)
class Counts:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deactivated: int = 0
    reactivated: int = 0
    # SPEC §2.4's follow-ons: parents deactivated because their last child left, or
    # reactivated because a child came back (not counted in deactivated/reactivated, which
    # are what the file's own rows and listing did; nor against max_deactivate).
    orphans_deactivated: int = 0
    orphans_reactivated: int = 0
    links_created: int = 0
    links_removed: int = 0
    pending: int = 0
    rejected: int = 0

    def read_only(self) -> Counts:
        """Return what a file that applied nothing counts: its rows read and rejected, none
        of the changes its plan would have made (a failed or rejected file)."""
        return Counts(rows=self.rows, rejected=self.rejected)

    def as_dict(self) -> dict[str, int]:
        return {
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "deactivated": self.deactivated,
            "reactivated": self.reactivated,
            "orphans_deactivated": self.orphans_deactivated,
            "orphans_reactivated": self.orphans_reactivated,
            "links_created": self.links_created,
            "links_removed": self.links_removed,
            "pending": self.pending,
            "rejected": self.rejected,
        }


@dataclass(frozen=True, slots=True)
class Limits:
    max_file_size: int = 2 * 1024**3
    max_field_chars: int = 100_000
    max_columns: int = 1_000


@dataclass(slots=True)
class ErrorList:
    """Row errors in file order, with the set of rejected lines (a row is rejected whole)."""

    errors: list[RowError] = field(default_factory=list)
    rejected_lines: set[int] = field(default_factory=set)
    # Identifiers of rejected rows: a full file must not deactivate a person whose row was
    # only malformed this time.
    rejected_keys: set[str] = field(default_factory=set)

    def add(self, error: RowError) -> None:
        # The links of one relationships row (a cell naming two children) come one after
        # the other: an error of the row they share (an unknown parent) is listed once.
        if self.errors and self.errors[-1] == error:
            return
        self.errors.append(error)
        self.rejected_lines.add(error.row)
