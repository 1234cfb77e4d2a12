"""Roster files the import tests write: students, itslearning parents, relationships sheets."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tests.cli.conftest import Outcome, Syncd

STUDENT_HEADER = ("SyncID", "Username", "First name", "Last name", "E-mail", "Student number",
                  "Grade")  # fmt: skip
# sync key, username, first, last, email, student number, grade
STUDENTS: tuple[tuple[str, ...], ...] = (
    ("S1", "lena.mueller", "Lena", "Müller", "lena.mueller@school.example", "1001", "5"),
    ("S2", "jonas.sorensen", "Jonas", "Sørensen", "jonas.sorensen@school.example", "1002", "5"),
    ("S3", "maria.nunez", "María", "Nuñez", "maria.nunez@school.example", "1003", "7"),
    ("S4", "liam.obrien", "Liam", "O'Brien", "liam.obrien@school.example", "1004", "7"),
    ("S5", "zoe.martin", "Zoë", "Martin", "zoe.martin@school.example", "1005", "9"),
)

PARENT_HEADER = ("First name", "Last name", "User name", "Pupil sync key", "E-mail")
# first, last, username (also the sync key: the file has no sync-key column), children cell
PARENTS: tuple[tuple[str, ...], ...] = (
    ("Katrin", "Müller", "katrin.mueller", "S1", "katrin.mueller@home.example"),
    ("Peter", "Sørensen", "peter.sorensen", "S2;S3", "peter.sorensen@home.example"),
    ("Sean", "O'Brien", "sean.obrien", "S4", "sean.obrien@home.example"),
    ("Sean", "O'Brien", "sean.obrien", "S5", "sean.obrien@home.example"),
    ("Claire", "Martin", "claire.martin", "S5", "claire.martin@home.example"),
)
# The links PARENTS makes (parent sync key = lower-cased username).
PARENT_LINKS = {
    ("katrin.mueller", "S1"),
    ("peter.sorensen", "S2"),
    ("peter.sorensen", "S3"),
    ("sean.obrien", "S4"),
    ("sean.obrien", "S5"),
    ("claire.martin", "S5"),
}


def table(
    header: Sequence[str], rows: Iterable[Sequence[str]], delimiter: str = ",", crlf: bool = False
) -> str:
    """Return CSV text (quoting what needs it, e.g. `S1;S2` in a `;` file)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n" if crlf else "\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def students_csv(rows: Iterable[Sequence[str]] = STUDENTS) -> str:
    return table(STUDENT_HEADER, rows)


def parents_csv(
    rows: Iterable[Sequence[str]] = PARENTS, header: Sequence[str] = PARENT_HEADER
) -> str:
    """Return an itslearning parents file: semicolon-separated, CRLF."""
    return table(header, rows, delimiter=";", crlf=True)


def xlsx(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(list(header))
    for row in rows:
        sheet.append(list(row))
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def run_import(syncd: Syncd, name: str, content: str | bytes, *args: str) -> Outcome:
    """Write `name` into the installation's root and `syncd import` it."""
    return syncd("import", *args, str(syncd.write(name, content)))


def imported(syncd: Syncd, name: str, content: str | bytes, *args: str) -> Outcome:
    """Import and insist it succeeded (exit 0)."""
    outcome = run_import(syncd, name, content, *args)
    assert outcome.exit_code == 0, (outcome.stdout, outcome.stderr)
    return outcome


def report(syncd: Syncd, name: str, folder: Path | None = None) -> dict[str, Any]:
    path = (folder or syncd.root) / f"{name}.report.json"
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def errors_rows(syncd: Syncd, name: str, folder: Path | None = None) -> list[dict[str, str]]:
    path = (folder or syncd.root) / f"{name}.errors.csv"
    with path.open(encoding="utf-8", newline="") as stream:
        return list(csv.DictReader(stream))


def active_links(syncd: Syncd) -> set[tuple[str, str]]:
    return {(parent, child) for parent, child, status in syncd.links() if status == "active"}


def person(syncd: Syncd, sync_key: str, kind: str | None = None) -> dict[str, Any]:
    found = [p for p in syncd.export() if p["sync_key"] == sync_key and kind in (None, p["kind"])]
    assert len(found) == 1, found
    return found[0]


def event_names(
    syncd: Syncd, prefixes: tuple[str, ...] = ("person.", "relationship.")
) -> list[str]:
    return [e["event"] for e in syncd.events() if e["event"].startswith(prefixes)]


def files(syncd: Syncd, *args: str) -> list[dict[str, Any]]:
    outcome = syncd("files", *args, "--json")
    assert outcome.exit_code == 0, outcome.stderr
    return outcome.json()  # type: ignore[no-any-return]


def file_id(syncd: Syncd, name: str) -> int:
    """Return the ledger id of the newest file called `name`."""
    return int([f for f in files(syncd) if f["name"] == name][-1]["id"])
