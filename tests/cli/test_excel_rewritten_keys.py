"""A sync key that Excel rewrote as a number in its General format (123456789012 saved as
1.23457E+11, the last digits lost) is a row error saying so, never a new person that no
later file can match."""

from __future__ import annotations

import pytest

from tests.cli.conftest import Syncd
from tests.cli.rosters import errors_rows, imported, report, students_csv, table, xlsx

REWRITTEN = "1.23457E+11"
MESSAGE = "a number Excel rewrote, its last digits lost"


def _students(bad_rows: int) -> list[tuple[str, ...]]:
    rows = [(f"12345678{n:04d}", f"kid{n}", "Kid", f"Lee {n}", "", "", "5") for n in range(8)]
    for n in range(bad_rows):
        rows[2 + n] = (REWRITTEN, *rows[2 + n][1:])
    return rows


@pytest.mark.parametrize("bad_rows", [1, 2])
def test_a_key_excel_rewrote_is_a_row_error_naming_the_cause(syncd: Syncd, bad_rows: int) -> None:
    # An otherwise plain file: the column reader would take it, and leaves it to the row
    # reader for that row's error.
    imported(syncd, "students.csv", students_csv(_students(bad_rows)))
    errors = errors_rows(syncd, "students.csv")
    assert [(e["row"], e["column"], e["value"]) for e in errors] == [
        (str(4 + n), "SyncID", REWRITTEN) for n in range(bad_rows)
    ]
    assert all(e["error"].startswith(MESSAGE) for e in errors)
    assert report(syncd, "students.csv")["counts"]["created"] == 8 - bad_rows
    assert REWRITTEN not in {p["sync_key"] for p in syncd.export()}


def test_a_parents_key_excel_rewrote_is_a_row_error_too(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv(_students(0)))
    parents = table(
        ("Parent ID", "First name", "Last name", "Child ID"),
        [("P1", "Ann", "Lee", "123456780000"), ("9.87654E+11", "Bo", "Lee", "123456780001"),
         ("P3", "Cy", "Lee", "123456780002")],
    )  # fmt: skip
    imported(syncd, "parents.csv", parents)
    errors = errors_rows(syncd, "parents.csv")
    assert [(e["row"], e["value"], e["error"][: len(MESSAGE)]) for e in errors] == [
        ("3", "9.87654E+11", MESSAGE)
    ]


def test_an_xlsx_keeps_a_whole_number_key_and_rejects_a_rewritten_one(syncd: Syncd) -> None:
    header = ("SyncID", "First name", "Last name")
    rows = [(123456789012, "Ann", "Lee"), (REWRITTEN, "Bo", "Lee"), ("S3", "Cy", "Lee")]
    imported(syncd, "students.xlsx", xlsx(header, rows))
    assert sorted(p["sync_key"] for p in syncd.export()) == ["123456789012", "S3"]
    assert [e["value"] for e in errors_rows(syncd, "students.xlsx")] == [REWRITTEN]
