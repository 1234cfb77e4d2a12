"""Step 1 of SPEC §2.5: each raw row becomes a valid record or row errors (pure, no I/O)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from syncd.model import (
    DELETE_WORDS,
    ChildBy,
    ErrorList,
    Kind,
    LinkRecord,
    ParentBy,
    PersonFields,
    PersonRecord,
    RawRow,
    RelType,
    RowError,
)

# Deliberately simple: one @, no spaces, a dot in the domain. Stricter rules reject real addresses.
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")
# Cells naming several children: `1;2`, `1,2` or `1|2` (SPEC §2.3).
CHILD_SEPARATORS = re.compile(r"[;,|]")


@dataclass(frozen=True, slots=True)
class Columns:
    """Where each canonical field sits in a row, and how to name it in an error."""

    fields: Mapping[str, int]
    names: Mapping[str, str]
    attributes: tuple[tuple[str, int], ...] = ()

    def get(self, values: Sequence[str], name: str) -> str:
        """Return the trimmed cell of field `name`, or "" when the file has no such column."""
        index = self.fields.get(name)
        if index is None or index >= len(values):
            return ""
        return values[index].strip()

    def has(self, name: str) -> bool:
        return name in self.fields

    def label(self, name: str) -> str:
        return self.names.get(name, name)


@dataclass(frozen=True, slots=True)
class RowRules:
    """The per-source settings validation needs."""

    keep_passwords: bool = False
    relationship_types: Mapping[str, RelType] = field(default_factory=dict)


def normalize_email(value: str) -> str:
    return value.strip().casefold()


def parse_relationship_type(value: str, synonyms: Mapping[str, RelType]) -> RelType | None:
    """Return the type a cell names (missing means Parent), or None when unknown."""
    text = value.strip()
    if not text:
        return RelType.PARENT
    folded = text.casefold()
    if folded in synonyms:
        return synonyms[folded]
    for rel_type in RelType:
        if rel_type.value.casefold() == folded:
            return rel_type
    return None


def split_child_values(cell: str) -> tuple[str, ...]:
    """Return the distinct child values of a cell, in order."""
    values = (part.strip() for part in CHILD_SEPARATORS.split(cell))
    return tuple(dict.fromkeys(value for value in values if value))


def _relationship_type(
    row: RawRow, columns: Columns, rules: RowRules, problems: list[RowError]
) -> RelType | None:
    """Return the row's relationship type, or None after adding the row error."""
    cell = columns.get(row.values, "relationship_type")
    parsed = parse_relationship_type(cell, rules.relationship_types)
    if parsed is None:
        problems.append(
            RowError(
                row.line,
                columns.label("relationship_type"),
                cell,
                "unknown relationship type (Parent, Aide, Guardian, Relative, Other)",
            )
        )
    return parsed


def is_delete(values: Sequence[str], columns: Columns) -> bool:
    return columns.get(values, "status").casefold() in DELETE_WORDS


def validate_persons(
    rows: Iterable[RawRow], kind: Kind, columns: Columns, rules: RowRules, errors: ErrorList
) -> Iterator[PersonRecord]:
    """Yield a record for each valid students/parents row; add the others' errors to `errors`.

    Rows repeating a person merge their child values (a parent on one row per child);
    a repeated student, or a repeat whose fields differ, is a duplicate error.
    """
    first_line_of: dict[str, int] = {}
    fields_of: dict[str, PersonFields] = {}
    pending: dict[str, PersonRecord] = {}
    has_children = kind is Kind.PARENTS and columns.has("child_key")
    for row in rows:
        record = _person_record(row, kind, columns, rules, errors, has_children)
        if record is None:
            continue
        key = record.fields.sync_key
        if key not in first_line_of:
            first_line_of[key] = row.line
            fields_of[key] = record.fields
            if kind is Kind.PARENTS:
                pending[key] = record
            else:
                yield record
            continue
        same_person = fields_of[key] == record.fields and kind is Kind.PARENTS
        if not same_person:
            errors.add(
                RowError(
                    row.line,
                    columns.label(_identifier_field(columns)),
                    key,
                    f"duplicate of row {first_line_of[key]}",
                )
            )
            errors.rejected_keys.add(key)
            continue
        earlier = pending[key]
        if has_children and record.relationship_type is not earlier.relationship_type:
            # A record has one type for all its children; taking either would be a guess.
            errors.add(
                RowError(
                    row.line,
                    columns.label("relationship_type"),
                    columns.get(row.values, "relationship_type"),
                    f"relationship type {record.relationship_type.value} differs from "
                    f"{earlier.relationship_type.value} on row {first_line_of[key]}: name this "
                    "child in a relationships file",
                )
            )
            errors.rejected_keys.add(key)
            continue
        merged = tuple(dict.fromkeys((earlier.child_values or ()) + (record.child_values or ())))
        pending[key] = PersonRecord(
            line=earlier.line,
            fields=earlier.fields,
            password=earlier.password,
            deleted=earlier.deleted and record.deleted,
            child_values=merged if has_children else None,
            relationship_type=earlier.relationship_type,
        )
    yield from pending.values()


def _identifier_field(columns: Columns) -> str:
    for name in ("sync_key", "username", "email"):
        if columns.has(name):
            return name
    return "sync_key"


def _person_record(
    row: RawRow,
    kind: Kind,
    columns: Columns,
    rules: RowRules,
    errors: ErrorList,
    has_children: bool,
) -> PersonRecord | None:
    values = row.values
    problems: list[RowError] = []
    sync_key = columns.get(values, "sync_key")
    username = columns.get(values, "username") or None
    email_cell = columns.get(values, "email")
    email = normalize_email(email_cell) if email_cell else None
    first_name = columns.get(values, "first_name")
    last_name = columns.get(values, "last_name")

    if email is not None and not EMAIL_PATTERN.match(email):
        problems.append(RowError(row.line, columns.label("email"), email_cell, "invalid email"))
        email = None
    identifier = sync_key or (username.casefold() if username else None) or email
    if not identifier:
        problems.append(
            RowError(
                row.line,
                columns.label(_identifier_field(columns)),
                "",
                "no identifier: needs a sync key, username or email",
            )
        )
    deleted = is_delete(values, columns)
    # A delete row only has to say who goes: SIS exports of removals often carry the key alone.
    if not first_name and not deleted:
        problems.append(RowError(row.line, columns.label("first_name"), "", "missing first name"))
    if not last_name and not deleted:
        problems.append(RowError(row.line, columns.label("last_name"), "", "missing last name"))

    relationship_type = RelType.PARENT
    if has_children and columns.has("relationship_type"):
        relationship_type = _relationship_type(row, columns, rules, problems) or relationship_type

    if problems:
        for problem in problems:
            errors.add(problem)
        if identifier:
            errors.rejected_keys.add(identifier)
        return None

    attributes = tuple(
        sorted(
            (name, values[index].strip())
            for name, index in columns.attributes
            if index < len(values) and values[index].strip()
        )
    )
    fields = PersonFields(
        sync_key=identifier or "",
        username=username,
        email=email,
        first_name=first_name,
        last_name=last_name,
        student_number=(columns.get(values, "student_number") or None)
        if kind is Kind.STUDENTS
        else None,
        attributes=attributes,
    )
    password = columns.get(values, "password") or None if rules.keep_passwords else None
    child_values = split_child_values(columns.get(values, "child_key")) if has_children else None
    return PersonRecord(
        line=row.line,
        fields=fields,
        password=password,
        deleted=deleted,
        child_values=child_values,
        relationship_type=relationship_type,
    )


def validate_links(
    rows: Iterable[RawRow], columns: Columns, rules: RowRules, errors: ErrorList
) -> Iterator[LinkRecord]:
    """Yield a record for each valid relationships row; add the others' errors to `errors`."""
    first_line_of: dict[tuple[str, str, str, str], int] = {}
    for row in rows:
        record = _link_record(row, columns, rules, errors)
        if record is None:
            continue
        key = (record.parent_by, record.parent_value, record.child_by, record.child_value)
        if key in first_line_of:
            errors.add(
                RowError(
                    row.line,
                    columns.label(_child_field(columns)),
                    record.child_value,
                    f"duplicate of row {first_line_of[key]}",
                )
            )
            continue
        first_line_of[key] = row.line
        yield record


def _child_field(columns: Columns) -> str:
    return "student_id" if columns.has("student_id") else "student_email"


def _link_record(
    row: RawRow, columns: Columns, rules: RowRules, errors: ErrorList
) -> LinkRecord | None:
    values = row.values
    problems: list[RowError] = []

    # Every parent identifier the row gives, most precise first.
    parent_ids: list[tuple[ParentBy, str]] = []
    if key := columns.get(values, "parent_key"):
        parent_ids.append((ParentBy.SYNC_KEY, key))
    if username := columns.get(values, "parent_username"):
        parent_ids.append((ParentBy.USERNAME, username.casefold()))
    if parent_email := columns.get(values, "parent_email"):
        if EMAIL_PATTERN.match(normalize_email(parent_email)):
            parent_ids.append((ParentBy.EMAIL, normalize_email(parent_email)))
        else:
            problems.append(
                RowError(row.line, columns.label("parent_email"), parent_email, "invalid email")
            )
    parent = parent_ids[0] if parent_ids else None
    if parent is None and not problems:
        label = "parent_email" if columns.has("parent_email") else "parent_key"
        problems.append(RowError(row.line, columns.label(label), "", "missing parent"))

    child: tuple[ChildBy, str] | None = None
    if student_id := columns.get(values, "student_id"):
        child = (ChildBy.FIELD, student_id)
    elif student_email := columns.get(values, "student_email"):
        if EMAIL_PATTERN.match(normalize_email(student_email)):
            child = (ChildBy.EMAIL, normalize_email(student_email))
        else:
            problems.append(
                RowError(row.line, columns.label("student_email"), student_email, "invalid email")
            )
    else:
        problems.append(
            RowError(row.line, columns.label(_child_field(columns)), "", "missing child")
        )

    rel_type = _relationship_type(row, columns, rules, problems)

    if problems or parent is None or child is None or rel_type is None:
        for problem in problems:
            errors.add(problem)
        return None
    return LinkRecord(
        line=row.line,
        parent_by=parent[0],
        parent_value=parent[1],
        child_by=child[0],
        child_value=child[1],
        type=rel_type,
        deleted=is_delete(values, columns),
        other_parent_ids=tuple(parent_ids[1:]),
    )
