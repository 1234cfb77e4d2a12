"""syncd.core.validate: step 1 of SPEC §2.5, each raw row to a valid record or row errors.

Rows and column maps are built by hand: `columns("sync_key", "first_name", ...)` puts each
canonical field in that position, and `rows(...)` numbers data rows from line 2 (header = 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.core.validate import (
    Columns,
    PersonRows,
    RowRules,
    _link_records,
    link_identity,
    parse_relationship_type,
    split_child_values,
    validate_links,
    validate_persons,
)
from syncd.model import (
    ChildBy,
    ErrorList,
    Kind,
    LinkRecord,
    ParentBy,
    PersonRecord,
    RawRow,
    RelType,
)

# Header labels as a file would spell them, so that errors can be checked to name the column.
LABELS = {
    "sync_key": "SyncID",
    "username": "User name",
    "email": "E-mail",
    "first_name": "First name",
    "last_name": "Last name",
    "password": "Password",
    "status": "Status",
    "student_number": "Student number",
    "child_key": "ChildID",
    "relationship_type": "Relationship Type",
    "parent_email": "Parent Email",
    "parent_key": "Parent ID",
    "parent_username": "Parent username",
    "student_email": "Student Email",
    "student_id": "Student ID",
}

PERSON = ("sync_key", "username", "email", "first_name", "last_name")
PARENT = (*PERSON, "child_key")
RELATIONSHIP = ("parent_email", "parent_key", "student_id", "student_email", "relationship_type")


def columns(*fields: str, attributes: Sequence[str] = ()) -> Columns:
    """Return a column map with `fields` in order, then the attribute columns."""
    return Columns(
        fields={name: index for index, name in enumerate(fields)},
        names={name: LABELS.get(name, name) for name in fields},
        attributes=tuple((name, len(fields) + index) for index, name in enumerate(attributes)),
    )


def rows(*values: Sequence[str]) -> list[RawRow]:
    """Return data rows numbered as in a file whose header is line 1."""
    return [RawRow(line, tuple(cells)) for line, cells in enumerate(values, start=2)]


def persons(
    kind: Kind,
    cols: Columns,
    *values: Sequence[str],
    rules: RowRules | None = None,
) -> tuple[list[PersonRecord], ErrorList]:
    errors = ErrorList()
    records = list(validate_persons(rows(*values), kind, cols, rules or RowRules(), errors))
    return records, errors


def links(
    cols: Columns, *values: Sequence[str], rules: RowRules | None = None
) -> tuple[list[LinkRecord], ErrorList]:
    errors = ErrorList()
    records = list(validate_links(rows(*values), cols, rules or RowRules(), errors))
    return records, errors


def students(*values: Sequence[str]) -> tuple[list[PersonRecord], ErrorList]:
    return persons(Kind.STUDENTS, columns(*PERSON), *values)


def parents(
    *values: Sequence[str], rules: RowRules | None = None
) -> tuple[list[PersonRecord], ErrorList]:
    return persons(Kind.PARENTS, columns(*PARENT, "relationship_type"), *values, rules=rules)


# --- required fields ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [Kind.STUDENTS, Kind.PARENTS])
@pytest.mark.parametrize(
    ("first", "last", "column", "message"),
    [
        ("", "Smith", "First name", "missing first name"),
        ("Ann", "", "Last name", "missing last name"),
        ("  ", "Smith", "First name", "missing first name"),
    ],
)
def test_missing_first_or_last_name_rejects_row(
    kind: Kind, first: str, last: str, column: str, message: str
) -> None:
    records, errors = persons(
        kind,
        columns(*PERSON),
        ("S1", "", "", "Bob", "Jones"),
        ("S2", "", "", first, last),
    )
    assert [record.fields.sync_key for record in records] == ["S1"]
    assert [(error.row, error.column, error.error) for error in errors.errors] == [
        (3, column, message)
    ]
    assert errors.rejected_lines == {3}


def test_delete_row_needs_only_an_identifier() -> None:
    records, errors = persons(
        Kind.STUDENTS,
        columns("sync_key", "first_name", "last_name", "status"),
        ("S1", "", "", "Deleted"),
    )
    assert errors.errors == []
    assert [(record.fields.sync_key, record.deleted) for record in records] == [("S1", True)]


def test_row_missing_both_names_is_one_rejected_row_with_two_errors() -> None:
    records, errors = students(("S1", "", "", "", ""))
    assert records == []
    assert sorted(error.error for error in errors.errors) == [
        "missing first name",
        "missing last name",
    ]
    assert errors.rejected_lines == {2}


@pytest.mark.parametrize(
    "email",
    [
        "ann",
        "ann@",
        "@example.org",
        "ann@example",
        "ann smith@example.org",
        "ann@@example.org",
        "Ann <ann@example.org>",
        "ann@example.org.",
        "ann@example..org",
        "ann@.example.org",
        ".ann@example.org",
        "ann.@example.org",
        "ann..smith@example.org",
        "ann@-example.org",
        "ann@example-.org",
        "ann,smith@example.org",
    ],
)
def test_invalid_email_rejects_row(email: str) -> None:
    records, errors = students(("S1", "", email, "Ann", "Smith"))
    assert records == []
    [error] = errors.errors
    assert (error.row, error.column, error.value, error.error) == (
        2,
        "E-mail",
        email,
        "invalid email",
    )


def test_invalid_email_rejects_row_even_when_a_sync_key_identifies_it() -> None:
    records, errors = parents(("P1", "ann", "not-an-email", "Ann", "Smith", "S1", ""))
    assert records == []
    assert errors.rejected_lines == {2}


@pytest.mark.parametrize(
    "email",
    [
        "ann@example.org",
        "ann.smith+school@mail.example.co.uk",
        "o'brien@example.ie",
        "ann_smith@my-school.example",
        "zoë@école.example",
        "a@b.io",
    ],
)
def test_valid_email_is_accepted(email: str) -> None:
    records, errors = students(("S1", "", email, "Ann", "Smith"))
    assert errors.errors == []
    assert records[0].fields.email == email


def test_email_compared_case_insensitively() -> None:
    """Emails are stored trimmed and case-folded, so that they compare case-insensitively."""
    records, errors = students(("S1", "", "  Ann.Smith@Example.ORG ", "Ann", "Smith"))
    assert errors.errors == []
    assert records[0].fields.email == "ann.smith@example.org"


def test_missing_email_is_allowed() -> None:
    records, errors = students(("S1", "", "", "Ann", "Smith"))
    assert errors.errors == []
    assert records[0].fields.email is None


# --- identifiers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sync_key", "username", "email", "identifier"),
    [
        ("S1", "asmith", "ann@example.org", "S1"),
        ("", "asmith", "ann@example.org", "asmith"),
        ("", " A.Smith ", "ann@example.org", "A.Smith"),  # trimmed, as written
        ("", "", "Ann@Example.org", "ann@example.org"),
        ("  S1 ", "", "", "S1"),
    ],
)
def test_identifier_falls_back_to_username_then_lowercased_email(
    sync_key: str, username: str, email: str, identifier: str
) -> None:
    records, errors = students((sync_key, username, email, "Ann", "Smith"))
    assert errors.errors == []
    assert records[0].fields.sync_key == identifier


def test_file_without_sync_key_column_is_keyed_by_username_then_email() -> None:
    cols = columns("username", "email", "first_name", "last_name")
    records, errors = persons(
        Kind.STUDENTS,
        cols,
        ("asmith", "ann@example.org", "Ann", "Smith"),
        ("", "BOB@example.org", "Bob", "Jones"),
    )
    assert errors.errors == []
    assert [record.fields.sync_key for record in records] == ["asmith", "bob@example.org"]


def test_sync_key_is_trimmed_and_compared_exactly() -> None:
    records, errors = students((" ab1 ", "", "", "Ann", "Smith"), ("AB1", "", "", "Bob", "Jones"))
    assert errors.errors == []
    assert [record.fields.sync_key for record in records] == ["ab1", "AB1"]


def test_a_username_named_twice_as_identifier_is_a_duplicate() -> None:
    # The username is the sync key as first written (SPEC §9).
    records, errors = students(
        ("", "ASmith", "", "Ann", "Smith"), (" ", "ASmith ", "", "Ann", "Smith")
    )
    assert [record.fields.sync_key for record in records] == ["ASmith"]
    assert [(error.row, error.error) for error in errors.errors] == [(3, "duplicate of row 2")]


def test_a_username_as_identifier_compares_case_insensitively_in_the_file() -> None:
    # SPEC §2.2: every spelling of a username in the file is its first.
    records, errors = students(
        ("", "ASmith", "", "Ann", "Smith"),
        ("", "asmith", "", "Ann", "Smith"),
        ("S9", "ASMITH", "", "Bob", "Smith"),  # a sync key: the username is only a field
    )
    assert [(r.fields.sync_key, r.fields.username) for r in records] == [
        ("ASmith", "ASmith"),
        ("S9", "ASMITH"),
    ]
    assert [(e.row, e.column, e.value, e.error) for e in errors.errors] == [
        (3, "User name", "asmith", "duplicate of row 2")
    ]


def test_a_username_first_in_lower_case_then_in_another_is_one_person() -> None:
    records, errors = students(
        ("", "asmith", "", "Ann", "Smith"), ("", "ASmith", "", "Ann", "Smith")
    )
    assert [(r.fields.sync_key, r.fields.username) for r in records] == [("asmith", "asmith")]
    assert [(e.row, e.value, e.error) for e in errors.errors] == [
        (3, "ASmith", "duplicate of row 2")
    ]


def test_a_username_as_identifier_takes_the_key_stored_in_another_case() -> None:
    stored = {"asmith": "ASmith"}
    errors = ErrorList()
    person_rows = PersonRows(
        Kind.PARENTS,
        columns("username", "first_name", "last_name", "child_key"),
        RowRules(),
        errors,
        lambda username: stored.get(username.casefold()),
    )
    records = list(
        person_rows.read(
            rows(
                ("asmith", "Ann", "Smith", "1"),
                ("ASMITH", "Ann", "Smith", "2"),
                ("new", "N", "W", ""),
            )
        )
    )
    assert errors.errors == []
    assert [(r.fields.sync_key, r.fields.username, r.child_values) for r in records] == [
        ("ASmith", "ASmith", ("1",)),
        ("ASmith", "ASmith", ("2",)),  # one parent on two rows, to be merged
        ("new", "new", ()),
    ]
    assert person_rows.repeated == {"ASmith"}


def test_row_without_any_identifier_is_rejected() -> None:
    records, errors = students(("", "", "", "Ann", "Smith"))
    assert records == []
    [error] = errors.errors
    assert error.column == "SyncID"
    assert "no identifier" in error.error


def test_rejected_row_reports_its_identifier() -> None:
    """A full file uses it not to deactivate a person whose row was only malformed this time."""
    _, errors = students(("S1", "", "bad-email", "Ann", "Smith"), ("", "bsmith", "", "", "Smith"))
    assert errors.rejected_keys == {"S1", "bsmith"}


# --- duplicates inside a file ---------------------------------------------------------------------


def test_duplicate_student_in_file_is_rejected() -> None:
    records, errors = students(
        ("S1", "", "", "Ann", "Smith"),
        ("S2", "", "", "Bob", "Jones"),
        ("S1", "", "", "Ann", "Smith"),
    )
    assert [record.line for record in records] == [2, 3]
    [error] = errors.errors
    assert (error.row, error.column, error.value, error.error) == (
        4,
        "SyncID",
        "S1",
        "duplicate of row 2",
    )


def test_duplicate_student_with_other_fields_is_rejected() -> None:
    records, errors = students(("S1", "", "", "Ann", "Smith"), ("S1", "", "", "Anne", "Smith"))
    assert [record.fields.first_name for record in records] == ["Ann"]
    assert errors.rejected_lines == {3}


# --- plain blocks (a first night read column by column, then row by row) --------------------


def student_rows() -> tuple[PersonRows, ErrorList]:
    errors = ErrorList()
    return PersonRows(Kind.STUDENTS, columns(*PERSON), RowRules(), errors), errors


def test_plain_blocks_take_new_keys_and_refuse_a_key_named_again() -> None:
    person_rows, _ = student_rows()
    assert person_rows.take_plain(["S1", "S2"], 2)
    assert person_rows.take_plain(["S3"], 4)
    # A block naming an earlier block's key, or one key twice, counts nothing...
    assert not person_rows.take_plain(["S4", "S2"], 5)
    assert not person_rows.take_plain(["S5", "S6", "S5"], 5)
    # ...so its other keys are still new.
    assert person_rows.take_plain(["S4", "S5", "S6"], 5)
    # No rows read after them: the blocks' keys stay taken.
    assert list(person_rows.read([])) == []
    assert not person_rows.take_plain(["S9", "S6"], 8)


def test_rows_after_plain_blocks_name_the_line_of_the_blocks_key() -> None:
    person_rows, errors = student_rows()
    assert person_rows.take_plain(["S1", "S2"], 2)
    assert not person_rows.take_plain(["S3", "S3"], 4)
    assert person_rows.take_plain(["S3", "S4"], 4)
    later = [
        RawRow(6, ("S4", "", "", "Ann", "Smith")),
        RawRow(7, ("S7", "", "", "Bob", "Jones")),
        RawRow(8, ("S2", "", "", "Cy", "Brown")),
        RawRow(9, ("S7", "", "", "Bob", "Jones")),
    ]
    records = list(person_rows.read(later))
    assert [record.line for record in records] == [7]
    assert [(error.row, error.value, error.error) for error in errors.errors] == [
        (6, "S4", "duplicate of row 5"),
        (8, "S2", "duplicate of row 3"),
        (9, "S7", "duplicate of row 7"),
    ]
    # Rows read: a plain block may no longer name their keys.
    assert not person_rows.take_plain(["S7"], 10)


def test_parent_on_several_rows_merges_children() -> None:
    records, errors = parents(
        ("P1", "", "", "Ann", "Smith", "S1", ""),
        ("P2", "", "", "Bob", "Jones", "S3", ""),
        ("P1", "", "", "Ann", "Smith", "S2", ""),
        ("P1", "", "", "Ann", "Smith", "S1", ""),
    )
    assert errors.errors == []
    by_key = {record.fields.sync_key: record for record in records}
    assert by_key["P1"].child_values == ("S1", "S2")
    assert by_key["P1"].line == 2
    assert by_key["P2"].child_values == ("S3",)


def test_parent_on_several_rows_with_different_fields_is_a_duplicate() -> None:
    records, errors = parents(
        ("P1", "", "", "Ann", "Smith", "S1", ""),
        ("P1", "", "", "Anne", "Smith", "S2", ""),
    )
    assert [record.child_values for record in records] == [("S1",)]
    assert [(e.row, e.column, e.value, e.error) for e in errors.errors] == [
        (3, "First name", "Anne", "duplicate of row 2 with another First name ('Ann' there)")
    ]
    # The parent is only partly listed: the plan must not take S2's link away for it.
    assert errors.rejected_keys == {"P1"}


def test_parent_on_several_rows_fills_a_cell_left_empty_on_one_of_them() -> None:
    # SPEC §2.3: one row per child gives what one row with both children gives; a phone
    # (or email) written on one row only is not another person.
    cols = columns(*PARENT, "relationship_type", attributes=["phone"])
    [record], errors = persons(
        Kind.PARENTS,
        cols,
        ("P1", "ann", "", "Ann", "Smith", "S1", "", "111"),
        ("P1", "ANN", "ann@home.example", "Ann", "Smith", "S2", "", ""),
        ("P1", "", "", "Ann", "Smith", "S3", "", "111"),
    )
    assert errors.errors == []
    fields = record.fields
    assert (fields.username, fields.email, fields.attributes) == (
        "ann",
        "ann@home.example",
        (("phone", "111"),),
    )
    assert record.child_values == ("S1", "S2", "S3")


def test_parent_on_several_rows_keeps_each_childs_relationship_type() -> None:
    """SPEC §2.3: one row per child never has to be split: a Parent of one child and a
    Guardian of another, one row each, is one record with each child's own type."""
    [record], errors = parents(
        ("P1", "", "", "Ann", "Smith", "S1", "Parent"),
        ("P1", "", "", "Ann", "Smith", "S2", "guardian"),
        ("P1", "", "", "Ann", "Smith", "S3", ""),
    )
    assert errors.errors == []
    assert list(record.typed_children()) == [
        ("S1", RelType.PARENT),
        ("S2", RelType.GUARDIAN),
        ("S3", RelType.PARENT),
    ]


def test_parent_naming_a_child_again_with_another_type_is_rejected_not_guessed() -> None:
    [record], errors = parents(
        ("P1", "", "", "Ann", "Smith", "S1;S2", "Parent"),
        ("P1", "", "", "Ann", "Smith", "S2;S3", "guardian"),
    )
    assert record.child_values == ("S1", "S2")  # the rejected row's S3 is not taken either
    assert record.child_types is None
    [error] = errors.errors
    assert (error.row, error.column, error.value) == (3, "Relationship Type", "Guardian")
    assert "differs from Parent" in error.error and "S2 on row 2" in error.error
    assert errors.rejected_keys == {"P1"}


def test_parent_rows_giving_two_passwords_reject_the_later_without_showing_either() -> None:
    cols = columns(*PARENT, "password")
    rules = RowRules(keep_passwords=True)
    [record], errors = persons(
        Kind.PARENTS,
        cols,
        ("P1", "", "", "Ann", "Smith", "S1", ""),
        ("P1", "", "", "Ann", "Smith", "S2", "Secret-1"),  # given once: taken, as a phone is
        ("P1", "", "", "Ann", "Smith", "S3", "Secret-2"),
        rules=rules,
    )
    assert (record.password, record.child_values) == ("Secret-1", ("S1", "S2"))
    [error] = errors.errors
    assert (error.row, error.value) == (4, "")
    assert "another password" in error.error and "Secret" not in error.error


def test_parent_rows_without_child_column_merge_silently() -> None:
    records, errors = persons(
        Kind.PARENTS,
        columns(*PERSON),
        ("P1", "", "", "Ann", "Smith"),
        ("P1", "", "", "Ann", "Smith"),
    )
    assert errors.errors == []
    assert len(records) == 1
    assert records[0].child_values is None


# --- child cells ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cell", ["S1;S2", "S1,S2", "S1|S2", " S1 ; S2 ", "S1;;S2;", "S1;S2;S1", "S1\nS2", "S1\r\nS2\n"]
)
def test_multi_child_cell_splits_on_any_separator(cell: str) -> None:
    assert split_child_values(cell) == ("S1", "S2")


def test_multi_child_cell_mixing_separators_splits_on_each() -> None:
    assert split_child_values("S1;S2,S3|S4") == ("S1", "S2", "S3", "S4")


def test_parent_row_with_empty_child_cell_names_no_children() -> None:
    records, errors = parents(("P1", "", "", "Ann", "Smith", "", ""))
    assert errors.errors == []
    assert records[0].child_values == ()


def test_parents_file_without_child_column_manages_no_links() -> None:
    records, _ = persons(Kind.PARENTS, columns(*PERSON), ("P1", "", "", "Ann", "Smith"))
    assert records[0].child_values is None


def test_students_file_never_has_child_values() -> None:
    records, _ = persons(
        Kind.STUDENTS, columns(*PERSON, "child_key"), ("S1", "", "", "Ann", "Smith", "S9")
    )
    assert records[0].child_values is None


# --- relationship types -----------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["Mother", "Parent/Guardian", "Teacher", "1"])
def test_unknown_relationship_type_rejects_row(cell: str) -> None:
    records, errors = parents(("P1", "", "", "Ann", "Smith", "S1", cell))
    assert records == []
    [error] = errors.errors
    assert (error.row, error.column, error.value) == (2, "Relationship Type", cell)
    assert "unknown relationship type" in error.error


def test_unknown_relationship_type_rejects_relationships_row() -> None:
    records, errors = links(columns(*RELATIONSHIP), ("ann@example.org", "", "S1", "", "Stepmother"))
    assert records == []
    assert [(error.row, error.column) for error in errors.errors] == [(2, "Relationship Type")]


def test_relationship_type_synonym_maps() -> None:
    rules = RowRules(relationship_types={"mother": RelType.PARENT, "nanny": RelType.AIDE})
    records, errors = parents(
        ("P1", "", "", "Ann", "Smith", "S1", "Mother"),
        ("P2", "", "", "Nia", "Jones", "S2", "NANNY"),
        rules=rules,
    )
    assert errors.errors == []
    assert [record.relationship_type for record in records] == [RelType.PARENT, RelType.AIDE]
    link_records, errors = links(
        columns(*RELATIONSHIP), ("ann@example.org", "", "S1", "", "mother"), rules=rules
    )
    assert errors.errors == []
    assert link_records[0].type is RelType.PARENT


@pytest.mark.parametrize("cell", ["", "   "])
def test_missing_relationship_type_means_parent(cell: str) -> None:
    records, errors = parents(("P1", "", "", "Ann", "Smith", "S1", cell))
    assert errors.errors == []
    assert records[0].relationship_type is RelType.PARENT
    link_records, _ = links(columns(*RELATIONSHIP), ("ann@example.org", "", "S1", "", cell))
    assert link_records[0].type is RelType.PARENT


def test_missing_relationship_type_column_means_parent() -> None:
    records, _ = persons(Kind.PARENTS, columns(*PARENT), ("P1", "", "", "Ann", "Smith", "S1"))
    assert records[0].relationship_type is RelType.PARENT
    link_records, _ = links(columns("parent_email", "student_id"), ("ann@example.org", "S1"))
    assert link_records[0].type is RelType.PARENT


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("parent", RelType.PARENT),
        ("AIDE", RelType.AIDE),
        ("gUaRdIaN", RelType.GUARDIAN),
        (" Relative ", RelType.RELATIVE),
        ("other", RelType.OTHER),
    ],
)
def test_relationship_type_is_case_insensitive(cell: str, expected: RelType) -> None:
    assert parse_relationship_type(cell, {}) is expected
    link_records, errors = links(columns(*RELATIONSHIP), ("ann@example.org", "", "S1", "", cell))
    assert errors.errors == []
    assert link_records[0].type is expected


def test_relationship_type_column_is_ignored_without_a_child_column() -> None:
    """A parents file without children makes no links, so its type cell means nothing."""
    records, errors = persons(
        Kind.PARENTS,
        columns(*PERSON, "relationship_type"),
        ("P1", "", "", "Ann", "Smith", "Teacher"),
    )
    assert errors.errors == []
    assert len(records) == 1


# --- delete rows and other columns -------------------------------------------------------------


@pytest.mark.parametrize(
    "status", ["delete", "Deleted", "INACTIVE", "tobedeleted", " TobeDeleted "]
)
def test_delete_words_in_status_column_mark_row_deleted(status: str) -> None:
    records, _ = persons(
        Kind.STUDENTS, columns(*PERSON, "status"), ("S1", "", "", "Ann", "Smith", status)
    )
    assert records[0].deleted is True
    link_records, _ = links(
        columns(*RELATIONSHIP, "status"), ("ann@example.org", "", "S1", "", "", status)
    )
    assert link_records[0].deleted is True


@pytest.mark.parametrize("status", ["", "active", "new", "update", "undelete"])
def test_other_status_values_are_not_deletes(status: str) -> None:
    records, _ = persons(
        Kind.STUDENTS, columns(*PERSON, "status"), ("S1", "", "", "Ann", "Smith", status)
    )
    assert records[0].deleted is False


def test_unrecognised_columns_are_kept_as_sorted_attributes() -> None:
    cols = columns(*PERSON, attributes=("school", "grade", "homeroom"))
    records, _ = persons(Kind.STUDENTS, cols, ("S1", "", "", "Ann", "Smith", "North", " 5 ", ""))
    assert records[0].fields.attributes == (("grade", "5"), ("school", "North"))


def test_student_number_is_kept_for_students_only() -> None:
    cols = columns(*PERSON, "student_number")
    records, _ = persons(Kind.STUDENTS, cols, ("S1", "", "", "Ann", "Smith", "1234"))
    assert records[0].fields.student_number == "1234"
    records, _ = persons(Kind.PARENTS, cols, ("P1", "", "", "Ann", "Smith", "1234"))
    assert records[0].fields.student_number is None


def test_password_is_dropped_unless_kept() -> None:
    cols = columns(*PERSON, "password")
    row = ("S1", "", "", "Ann", "Smith", "hunter2")
    records, _ = persons(Kind.STUDENTS, cols, row)
    assert records[0].password is None
    records, _ = persons(Kind.STUDENTS, cols, row, rules=RowRules(keep_passwords=True))
    assert records[0].password == "hunter2"


def test_short_row_reads_missing_cells_as_empty() -> None:
    records, errors = students(("S1", "", "", "Ann"))
    assert records == []
    assert [error.error for error in errors.errors] == ["missing last name"]


# --- relationships rows -----------------------------------------------------------------------


def test_relationships_parent_found_by_email_key_or_username() -> None:
    cols = columns("parent_email", "parent_key", "parent_username", "student_id")
    records, errors = links(
        cols,
        (" Ann@Example.org ", "", "", "S1"),
        ("", " P2 ", "", "S1"),
        ("", "", "BJones", "S1"),
    )
    assert errors.errors == []
    assert [(record.parent_by, record.parent_value) for record in records] == [
        (ParentBy.EMAIL, "ann@example.org"),
        (ParentBy.SYNC_KEY, "P2"),
        (ParentBy.USERNAME, "bjones"),
    ]


def test_relationships_cell_naming_several_children_gives_a_link_each() -> None:
    records, errors = links(
        columns(*RELATIONSHIP),
        ("ann@example.org", "", "S1; S2|S1", "", ""),
        ("bob@example.org", "", "", "a@example.org,b@example.org", ""),
        ("cy@example.org", "", "", "a@example.org;not-an-email", ""),
        ("di@example.org", "", ";", "", ""),
    )
    assert [(r.line, r.parent_value, r.child_value) for r in records] == [
        (2, "ann@example.org", "S1"),
        (2, "ann@example.org", "S2"),
        (3, "bob@example.org", "a@example.org"),
        (3, "bob@example.org", "b@example.org"),
    ]
    # One bad value rejects the whole row; a cell of separators names no child.
    assert [(e.row, e.value, e.error) for e in errors.errors] == [
        (4, "not-an-email", "invalid email"),
        (5, "", "missing child"),
    ]


def test_relationships_child_is_the_child_field_value_else_email() -> None:
    records, errors = links(
        columns(*RELATIONSHIP),
        ("ann@example.org", "", " S1 ", "kid@example.org", ""),
        ("ann@example.org", "", "", "Kid2@Example.org", ""),
    )
    assert errors.errors == []
    assert [(record.child_by, record.child_value) for record in records] == [
        (ChildBy.FIELD, "S1"),
        (ChildBy.EMAIL, "Kid2@Example.org"),  # as written; matching casefolds it
    ]


def test_relationships_row_without_parent_is_rejected() -> None:
    records, errors = links(columns(*RELATIONSHIP), ("", "", "S1", "", "Parent"))
    assert records == []
    [error] = errors.errors
    assert (error.row, error.column, error.error) == (2, "Parent Email", "missing parent")


def test_relationships_row_without_child_is_rejected() -> None:
    records, errors = links(columns(*RELATIONSHIP), ("ann@example.org", "", "", "", "Parent"))
    assert records == []
    [error] = errors.errors
    assert (error.row, error.column, error.error) == (2, "Student ID", "missing child")


@pytest.mark.parametrize(
    ("row", "column"),
    [
        (("ann@", "P1", "S1", "", ""), "Parent Email"),
        (("ann@example.org", "", "", "kid@", ""), "Student Email"),
    ],
)
def test_relationships_row_with_invalid_email_is_rejected(
    row: tuple[str, ...], column: str
) -> None:
    records, errors = links(columns(*RELATIONSHIP), row)
    assert records == []
    assert [(error.column, error.error) for error in errors.errors] == [(column, "invalid email")]


def test_relationships_row_with_several_problems_is_one_rejected_row() -> None:
    records, errors = links(columns(*RELATIONSHIP), ("", "", "", "", "Boss"))
    assert records == []
    assert len(errors.errors) == 3
    assert errors.rejected_lines == {2}


def test_relationships_rows_naming_one_link_twice_are_left_to_resolution() -> None:
    # Whether two rows name the same link is known once their persons are (resolve_links
    # rejects the second: tests/unit/test_plan.py); both rows are valid.
    records, errors = links(
        columns(*RELATIONSHIP),
        ("ann@example.org", "", "S1", "", "Parent"),
        ("ANN@example.org", "", "S1", "", "Guardian"),
    )
    assert [record.line for record in records] == [2, 3]
    assert errors.errors == []
    assert link_identity(records[0]) == link_identity(records[1])


def test_link_identity_reads_back_one_way_only() -> None:
    # A parent value holding what looks like the child part does not make two rows alike.
    first, second = links(
        columns(*RELATIONSHIP),
        ("", "P1 field S", "S1", "", ""),
        ("", "P1", "S field S1", "", ""),
    )[0]
    assert link_identity(first) != link_identity(second)


# --- the plain-row path of relationships files ----------------------------------------------

_LINK_FIELDS = ("parent_key", "parent_email", "student_id", "student_email",
                "relationship_type", "status")  # fmt: skip
_LINK_CELLS = st.sampled_from(
    ["", " ", "P1", " P2 ", "S1", "S1;S2", "S3,S4", "S5|S5", "a@home.example", "A@Home.Example ",
     "bad@", "@x.org", "Parent", "guardian ", "Mother", "mum", "deleted", "INACTIVE", "x"]
)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_plain_relationships_rows_are_read_as_every_rule_reads_them(data: st.DataObject) -> None:
    # validate_links takes plain rows by a short path: it must give what _link_records does.
    fields = data.draw(st.lists(st.sampled_from(_LINK_FIELDS), min_size=1, max_size=6, unique=True))
    width = len(fields)
    lengths = st.sampled_from([width, width, width, width, width - 1, width + 1])
    cells = data.draw(
        st.lists(
            lengths.flatmap(lambda n: st.lists(_LINK_CELLS, min_size=n, max_size=n)), max_size=8
        )
    )
    cols = Columns(
        fields={name: index for index, name in enumerate(fields)},
        names={name: LABELS.get(name, name) for name in fields},
        width=width,
    )
    rules = RowRules(relationship_types={"mother": RelType.PARENT})
    numbered = rows(*cells)
    fast_errors, slow_errors = ErrorList(), ErrorList()
    fast = list(validate_links(numbered, cols, rules, fast_errors))
    slow = [record for row in numbered for record in _link_records(row, cols, rules, slow_errors)]
    assert fast == slow
    assert fast_errors.errors == slow_errors.errors
    assert fast_errors.rejected_lines == slow_errors.rejected_lines
