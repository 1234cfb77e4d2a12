"""SPEC §2.2: keys, emails and usernames are trimmed, of the invisible marks editors and
joined exports leave at a cell's edge as of whitespace: a byte order mark (a second file's,
inside the first), a zero-width space, a word joiner. The person is the one without them."""

from __future__ import annotations

import pytest

from tests.cli.conftest import Syncd
from tests.cli.rosters import (
    PARENT_HEADER,
    STUDENT_HEADER,
    STUDENTS,
    active_links,
    errors_rows,
    imported,
    person,
    report,
    students_csv,
    table,
    xlsx,
)

BOM, ZERO_WIDTH_SPACE, WORD_JOINER = "\ufeff", "\u200b", "\u2060"
MARKS = (BOM, ZERO_WIDTH_SPACE, WORD_JOINER)


def _marked(rows: tuple[tuple[str, ...], ...]) -> list[tuple[str, ...]]:
    """The rows with a mark at an edge of each key, username and email, in turn."""
    marked = []
    for index, row in enumerate(rows):
        mark = MARKS[index % len(MARKS)]
        key, username, first, last, email, *rest = row
        marked.append((mark + key, f" {username}{mark}", first, last, f"{mark} {email}", *rest))
    return marked


@pytest.mark.parametrize("ascii_names", [False, True], ids=["non-ASCII names", "ASCII names"])
def test_a_mark_at_a_cells_edge_is_trimmed_off_the_key_username_and_email(
    syncd: Syncd, ascii_names: bool
) -> None:
    rows = STUDENTS
    if ascii_names:  # lines that are ASCII but for the mark
        rows = tuple((*row[:2], "Ann", "Smith", *row[4:]) for row in STUDENTS)
    imported(syncd, "students.csv", students_csv(_marked(rows)))
    stored = {(p["sync_key"], p["username"], p["email"]) for p in syncd.export()}
    assert stored == {(row[0], row[1], row[4]) for row in rows}
    # The same students without the marks are the same persons, unchanged.
    imported(syncd, "students-2.csv", students_csv(rows))
    counts = report(syncd, "students-2.csv")["counts"]
    assert (counts["created"], counts["unchanged"]) == (0, len(rows))


def test_a_file_whose_only_marks_are_on_keys_and_usernames_stores_them_trimmed(
    syncd: Syncd,
) -> None:
    # Every row otherwise plain: the column reader would take it, and leaves such a block
    # to the row reader's trimming.
    rows = [
        (f"{MARKS[n % 3]}{key}", f"{name}{MARKS[n % 3]}", *rest)
        for n, (key, name, *rest) in enumerate(STUDENTS)
    ]
    imported(syncd, "students.csv", students_csv(rows))
    stored = {(p["sync_key"], p["username"]) for p in syncd.export()}
    assert stored == {(row[0], row[1]) for row in STUDENTS}


def test_a_second_files_header_with_its_byte_order_mark_is_the_header_again(
    syncd: Syncd,
) -> None:
    """Two exports joined with `cat`: the second one's header line starts with its BOM."""
    first, second = students_csv(STUDENTS[:2]), students_csv(STUDENTS[2:])
    imported(syncd, "students.csv", BOM + first + BOM + second)
    errors = errors_rows(syncd, "students.csv")
    assert [(e["row"], e["error"].split(":")[0]) for e in errors] == [("4", "the header row again")]
    assert sorted(p["sync_key"] for p in syncd.export()) == [row[0] for row in STUDENTS]


def test_child_values_and_relationship_cells_are_trimmed_of_marks(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    parents = table(
        PARENT_HEADER,
        [("Katrin", "Müller", "katrin.mueller", f"S1;{ZERO_WIDTH_SPACE}S2{WORD_JOINER}", "")],
    )
    imported(syncd, "parents.csv", parents)
    relationships = table(
        ("Parent ID", "Student ID", "Relationship"),
        [(f"{BOM}katrin.mueller", f"S3{ZERO_WIDTH_SPACE}", "Guardian")],
    )
    imported(syncd, "relationships.csv", relationships)
    assert active_links(syncd) == {("katrin.mueller", child) for child in ("S1", "S2", "S3")}
    assert report(syncd, "parents.csv")["counts"]["pending"] == 0


def test_an_xlsx_cell_is_trimmed_of_marks(syncd: Syncd) -> None:
    marked = [
        (f"{ZERO_WIDTH_SPACE}{row[0]}", *row[1:4], f"{row[4]}{BOM}", *row[5:]) for row in STUDENTS
    ]
    imported(syncd, "students.xlsx", xlsx(STUDENT_HEADER, marked))
    assert person(syncd, "S1")["email"] == STUDENTS[0][4]
    assert len(syncd.export()) == len(STUDENTS)
