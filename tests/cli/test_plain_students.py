"""A plain students file of a new site is read column by column (syncd.core.columns): the
same database rows, report and audit trail as the row reader gives it, or the row reader.

Each example imports one generated file twice into fresh installations, once as syncd does
and once with the column reader switched off, and compares everything the import left.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncd import person_files
from tests.cli.conftest import Syncd

# Cells mix what trimming, case folding and the email pattern treat specially: Unicode
# spaces (no-break, line separator, ideographic), ß and ſ (casefold changes them), İ.
LETTERS = "abzXYZüøßİſ'-. \u00a0\u2028\u3000"
NAME = st.text(alphabet=LETTERS, min_size=0, max_size=8)
EMAIL = st.one_of(
    st.just(""),
    st.builds(
        lambda user, host, pad: f"{pad}{user}@{host}.Example{pad}",
        st.text(alphabet="abcXYZß.", min_size=1, max_size=6),
        st.text(alphabet="abcDEF", min_size=1, max_size=5),
        st.sampled_from(["", " ", "\u00a0"]),
    ),
)
# Columns besides SyncID, First name and Last name; a file has any of them.
OPTIONAL = ("Username", "E-mail", "Student number", "Grade", "School")
# What a file may hold that a plain split would read differently: the row reader gets it.
UNUSUAL = st.sampled_from(
    [None] * 8 + ["quote", "blank", "x1c", "duplicate", "bad email", "no last name"]
)


@st.composite
def students_file(draw: st.DrawFn) -> bytes:
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    optional = [name for name in OPTIONAL if draw(st.booleans())]
    header = ["SyncID", "First name", "Last name", *optional]
    count = draw(st.integers(min_value=1, max_value=12))
    rows = []
    for number in range(count):
        pad = draw(st.sampled_from(["", " ", "\u3000"]))
        cells = {
            "SyncID": f"{pad}S{number}{pad}",
            "First name": pad + (draw(NAME).strip() or "Ann"),
            "Last name": (draw(NAME).strip() or "Lee") + pad,
            "Username": draw(NAME),
            "E-mail": draw(EMAIL),
            "Student number": draw(st.sampled_from(["", "0042", " 7 "])),
            "Grade": draw(st.sampled_from(["", "5", " 10 "])),
            "School": draw(NAME),
        }
        rows.append([cells[name].replace("\t", " ") for name in header])
    unusual = draw(UNUSUAL)
    if unusual == "quote":
        rows[0][1] = '"' + rows[0][1] + '"'
    elif unusual == "x1c":
        rows[-1][2] += "\x1c"
    elif unusual == "duplicate":
        rows.append(list(rows[0]))
    elif unusual == "bad email" and "E-mail" in header:
        rows[-1][header.index("E-mail")] = "not an email"
    elif unusual == "no last name":
        rows[-1][2] = "\u3000"
    lines = [delimiter.join(header)] + [delimiter.join(row) for row in rows]
    if unusual == "blank":
        lines.insert(2, "")
    text = newline.join(lines) + (newline if draw(st.booleans()) else "")
    return text.encode("utf-8")


def _import(content: bytes, row_by_row: bool) -> dict[str, Any]:
    """Import `content` into a fresh installation; return everything it left."""
    root = Path(tempfile.mkdtemp(prefix="syncd-plain-"))
    installation = Syncd(root, f"sqlite:///{root / 'syncd.db'}")
    path = installation.write("students.csv", content)
    if row_by_row:
        with mock.patch.object(person_files, "student_columns", lambda *_, **__: None):
            outcome = installation("import", "--json", str(path))
    else:
        outcome = installation("import", "--json", str(path))
    report = json.loads(outcome.stdout)
    report.pop("duration_s", None)
    with sqlite3.connect(root / "syncd.db") as connection:
        persons = connection.execute(
            "SELECT id, site, kind, sync_key, username, email, first_name, last_name, "
            "student_number, attributes, password_hash, active, inactive_reason, had_link, "
            "fingerprint, source, file_id, created_file_id, row_digest FROM persons ORDER BY id"
        ).fetchall()
    errors = root / "students.csv.errors.csv"
    return {
        "exit": outcome.exit_code,
        "report": report,
        "persons": persons,
        "events": [
            {k: v for k, v in event.items() if k not in ("ts", "run_id")}
            for event in installation.events()
        ],
        "errors": errors.read_text("utf-8") if errors.exists() else None,
    }


@settings(
    max_examples=int(os.environ.get("SYNCD_PLAIN_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(content=students_file())
def test_a_plain_file_reads_as_the_row_reader_reads_it(content: bytes) -> None:
    by_columns = _import(content, row_by_row=False)
    by_rows = _import(content, row_by_row=True)
    assert by_columns == by_rows


def _import_watched(root: Path, content: str) -> tuple[Syncd, Any, list[Any]]:
    """Import `content` as students.csv; return the installation, the outcome and what
    each call of the column reader returned (None: the block went to the row reader)."""
    installation = Syncd(root, f"sqlite:///{root / 'syncd.db'}")
    path = installation.write("students.csv", content)
    results: list[Any] = []
    real = person_files.student_columns

    def spy(*args: Any, **kwargs: Any) -> Any:
        results.append(real(*args, **kwargs))
        return results[-1]

    with mock.patch.object(person_files, "student_columns", spy):
        outcome = installation("import", "--json", str(path))
    assert outcome.exit_code == 0, outcome.stderr
    return installation, outcome, results


def test_a_plain_file_is_read_column_by_column(tmp_path: Path) -> None:
    # The comparison above must not pass because both imports read row by row.
    lines = ["SyncID;First name;Last name;E-mail;Grade"]
    lines += [f"S{n};Zoë;Nuñez {n};Zoe.{n}@School.Example;{n % 12}" for n in range(3000)]
    installation, outcome, results = _import_watched(tmp_path, "\r\n".join(lines) + "\r\n")
    assert results and all(result is not None for result in results)
    assert json.loads(outcome.stdout)["counts"]["created"] == 3000
    assert [e["event"] for e in installation.events()].count("person.created") == 3000
    assert installation.export()[0]["email"] == "zoe.0@school.example"


def test_a_file_with_a_quote_is_read_row_by_row(tmp_path: Path) -> None:
    content = 'SyncID,First name,Last name\nS1,"Ann",Lee\n'
    installation, _, results = _import_watched(tmp_path, content)
    assert results == [None]
    assert installation.export()[0]["first_name"] == "Ann"
