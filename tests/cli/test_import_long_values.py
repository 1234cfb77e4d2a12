"""A cell longer than syncd keeps (a name, identifier or child value over 500 characters,
far below max_field_chars) is a row error on either database, never a crash that leaves the
file in processing/ (SPEC §2.5: rows with errors are skipped and reported, the rest apply).
And two syncd processes applying the same rows at once end each with an outcome."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from syncd.model import STORED_TEXT_MAX
from tests.cli.conftest import Syncd

LONG = "A" * (STORED_TEXT_MAX + 1)
SAID = f"longer than {STORED_TEXT_MAX} characters, the most syncd keeps in this column"


def _errors(syncd: Syncd, name: str) -> list[tuple[str, str, str]]:
    with (syncd.root / f"{name}.errors.csv").open(newline="") as report:
        return [(row["row"], row["column"], row["error"]) for row in csv.DictReader(report)]


def test_a_cell_longer_than_syncd_keeps_is_a_row_error_and_the_rest_apply(syncd: Syncd) -> None:
    students = syncd.write(
        "students.csv",
        "SyncID,Username,First name,Last name,E-mail\n"
        f"S1,u1,{LONG},Lee,s1@example.org\n"
        f"{LONG},u2,Bo,Lee,s2@example.org\n"
        f"S3,{LONG},Cy,Lee,s3@example.org\n"
        "S4,u4,Di,Lee,s4@example.org\n"
        "S5,u5,Ed,Lee,s5@example.org\n"
        "S6,u6,Fi,Lee,s6@example.org\n",
    )
    parents = syncd.write(
        "parents.csv", f"SyncID,First name,Last name,ChildID\nP1,Al,Lee,S4;{LONG}\nP2,Al,Lee,S4\n"
    )
    relationships = syncd.write("relationships.csv", f"Parent ID,Student ID\nP2,{LONG}\nP2,S4\n")
    outcome = syncd("import", str(students), str(parents), str(relationships))
    assert outcome.exit_code == 0, outcome.stderr
    assert _errors(syncd, "students.csv") == [
        ("2", "First name", SAID),
        ("3", "SyncID", SAID),
        ("4", "Username", SAID),
    ]
    assert _errors(syncd, "parents.csv") == [("2", "ChildID", SAID)]
    assert _errors(syncd, "relationships.csv") == [("2", "Student ID", SAID)]
    assert {(p["kind"], p["sync_key"]) for p in syncd.export()} == {
        ("parent", "P2"),
        ("student", "S4"),
        ("student", "S5"),
        ("student", "S6"),
    }
    assert syncd.links() == {("P2", "S4", "active")}


def test_a_long_cell_in_a_delta_file_read_row_by_row_is_a_row_error(syncd: Syncd) -> None:
    syncd.configure(mode="delta")
    students = syncd.write(
        "students.csv", f"SyncID,First name,Last name,Status\nS1,Ann,{LONG},active\nS2,Bo,Lee,\n"
    )
    outcome = syncd("import", str(students))
    assert outcome.exit_code == 0, outcome.stderr
    assert _errors(syncd, "students.csv") == [("2", "Last name", SAID)]
    assert [p["sync_key"] for p in syncd.export()] == ["S2"]


def test_two_imports_of_the_same_rows_at_once_each_end_with_an_outcome(
    tmp_path: Path, database_url: str
) -> None:
    """Whichever wins, the other is a duplicate, changes nothing (it read the ledger before
    the first committed), or fails naming the database's refusal; no ledger entry is left
    processing, nothing is applied twice."""
    config = tmp_path / "config.toml"
    config.write_text(
        f'[database]\nurl = "{database_url}"\n[[sources]]\nname = "district"\nurl = "file:drop"\n'
    )
    students = tmp_path / "students.csv"
    students.write_text(
        "SyncID,First name,Last name\n" + "".join(f"S{n},F{n},L{n}\n" for n in range(40_000))
    )
    command = [sys.executable, "-m", "syncd", "--config", str(config), "import", str(students)]
    subprocess.run([*command[:5], "db", "upgrade"], check=True, capture_output=True)
    runs = [subprocess.Popen(command, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = [(run.wait(timeout=120), run.stderr.read() if run.stderr else "") for run in runs]
    for code, errors in outcomes:
        assert "unexpected error" not in errors and "Traceback" not in errors, errors
        assert code == 0 or "the database refused it" in errors, errors
    engine = sa.create_engine(database_url)
    with engine.connect() as connection:
        statuses = sorted(connection.execute(sa.text("SELECT status FROM files")).scalars())
        persons = connection.execute(sa.text("SELECT count(*) FROM persons")).scalar_one()
        # Each person's creation is its file's (db/trail.py): all of one file.
        creators = connection.execute(
            sa.text("SELECT count(DISTINCT created_file_id) FROM persons")
        ).scalar_one()
    engine.dispose()
    assert statuses in (["applied", "applied"], ["applied", "duplicate"], ["applied", "failed"])
    assert (persons, creators) == (40_000, 1)


def test_an_email_longer_than_syncd_keeps_once_casefolded_is_a_row_error(syncd: Syncd) -> None:
    """Emails are stored casefolded: "İ" is two characters then (SPEC §2.2)."""
    email = "İ" * 490 + "@x.org"  # 496 characters as written, 986 stored
    students = syncd.write(
        "students.csv",
        "SyncID,First name,Last name,E-mail\n"
        f"S1,Ann,Lee,{email}\nS2,Bo,Lee,bo@x.org\nS3,Cy,Lee,cy@x.org\n",
    )
    outcome = syncd("import", str(students))
    assert outcome.exit_code == 0, outcome.stderr
    assert _errors(syncd, "students.csv") == [("2", "E-mail", SAID)]
    assert sorted(p["sync_key"] for p in syncd.export()) == ["S2", "S3"]
