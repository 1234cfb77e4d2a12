"""SPEC §3.3 reports back to the sender, §2.5 dry run (preview before anything changes)."""

from __future__ import annotations

import csv
import io
import json
import subprocess

from syncd import pipeline
from tests.cli.conftest import Syncd
from tests.cli.mounts import fill, mounted_tmpfs
from tests.cli.rosters import (
    PARENT_LINKS,
    STUDENT_HEADER,
    STUDENTS,
    errors_rows,
    files,
    imported,
    parents_csv,
    person,
    report,
    run_import,
    students_csv,
    table,
    xlsx,
)

COUNT_KEYS = {
    "rows", "created", "updated", "unchanged", "deactivated", "reactivated",
    "orphans_deactivated", "orphans_reactivated", "links_created", "links_removed",
    "pending", "rejected",
}  # fmt: skip
REPORT_KEYS = {
    "file", "file_id", "kind", "status", "encoding", "delimiter", "counts", "pending",
    "ignored_columns", "duration_s",
}  # fmt: skip


def test_report_json_has_the_documented_keys(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    document = report(syncd, "students.csv")
    assert set(document) >= REPORT_KEYS
    assert set(document["counts"]) == COUNT_KEYS
    assert document["file"] == "students.csv"
    assert document["file_id"] == files(syncd)[0]["id"]
    assert (document["kind"], document["status"]) == ("students", "applied")
    assert document["encoding"] == "utf-8"
    assert document["delimiter"] == ","
    assert document["counts"]["rows"] == 5
    assert document["counts"]["created"] == 5
    assert isinstance(document["duration_s"], float | int)
    assert document["pending"] == []
    assert "reason" not in document or document["reason"] is None


def test_report_of_a_failed_file_says_why(syncd: Syncd) -> None:
    outcome = run_import(syncd, "students.csv", b"")
    assert outcome.exit_code == 1
    document = report(syncd, "students.csv")
    assert set(document) >= REPORT_KEYS
    assert document["status"] == "failed"
    assert document["reason"] == "empty file"
    assert document["kind"] == "students"  # from the name: the file has no header to read


def test_a_file_failed_at_its_header_reports_how_it_was_read(syncd: Syncd) -> None:
    syncd.configure(max_columns=5)
    header = ";".join(f"Column {n}" for n in range(8))
    outcome = run_import(syncd, "students.csv", f"{header}\nS1;Ann;Lee\n")
    assert outcome.exit_code == 1
    document = report(syncd, "students.csv")
    assert document["reason"] == "line 1: row has more than max_columns (5) cells"
    assert (document["encoding"], document["delimiter"]) == ("utf-8", ";")


def test_report_names_the_encoding_found(syncd: Syncd) -> None:
    syncd.configure(mode={"students": "delta"})
    content = students_csv(STUDENTS[:2])
    imported(syncd, "students-bom.csv", "\ufeff" + content)
    imported(syncd, "students-1252.csv", content.replace("S1", "T1").encode("cp1252"))
    imported(syncd, "students-16.csv", content.replace("S1", "U1").encode("utf-16"))
    assert report(syncd, "students-bom.csv")["encoding"].startswith("utf-8")
    assert report(syncd, "students-1252.csv")["encoding"] == "cp1252"
    assert report(syncd, "students-16.csv")["encoding"].startswith("utf-16")
    last_names = {p["sync_key"]: p["last_name"] for p in syncd.export()}
    assert last_names["T1"] == last_names["U1"] == "Müller"


def test_a_utf8_file_with_a_row_in_cp1252_keeps_both_rows_names(syncd: Syncd) -> None:
    utf8 = students_csv(STUDENTS[:2]).encode()
    typed_in_cp1252 = "S9,zoe.x,Zoë,Nuñez,zoe.x@school.example,1009,5\n".encode("cp1252")
    imported(syncd, "students.csv", utf8 + typed_in_cp1252)
    assert report(syncd, "students.csv")["encoding"] == "utf-8+cp1252"
    last_names = {p["sync_key"]: p["last_name"] for p in syncd.export()}
    assert (last_names["S1"], last_names["S2"], last_names["S9"]) == (
        "Müller",
        "Sørensen",
        "Nuñez",
    )


def test_a_big_files_encoding_and_format_are_found_while_its_digest_is_taken(
    syncd_sqlite: Syncd,
) -> None:
    # From SIDE_BY_SIDE_BYTES the format is found beside the sha256 (pipeline.py): the
    # same encoding, the same failures, as a small file's.
    header = "SyncID,First name,Last name\n"
    rows = "".join(f"S{n},Zoë,Müller-Lüdenscheidt-{n:06d}\n" for n in range(120_000))
    late = "X9,Zoë,Nuñez\n".encode("cp1252")
    content = (header + rows).encode() + late
    assert len(content) > pipeline.SIDE_BY_SIDE_BYTES
    imported(syncd_sqlite, "students.csv", content)
    assert report(syncd_sqlite, "students.csv")["encoding"] == "utf-8+cp1252"
    assert person(syncd_sqlite, "X9")["last_name"] == "Nuñez"
    binary = bytes(range(256)) * (pipeline.SIDE_BY_SIDE_BYTES // 256 + 1)
    outcome = syncd_sqlite("import", str(syncd_sqlite.write("pupils.csv", binary)))
    assert outcome.exit_code == 1
    assert "binary content (NUL bytes)" in report(syncd_sqlite, "pupils.csv")["reason"]


def test_unrecognised_columns_are_attributes_listed_once_and_passwords_ignored(
    syncd: Syncd,
) -> None:
    imported(syncd, "students.csv", students_csv())
    header = ("First name", "Last name", "User name", "Password", "Pupil sync key", "Role")
    rows = [("Katrin", "Müller", "katrin.mueller", "Geheim-1", "S1", "Mother")]
    imported(syncd, "parents-2.csv", parents_csv(rows, header))
    document = report(syncd, "parents-2.csv")
    # Every column that sets no field, once; attribute_columns: those kept.
    assert document["ignored_columns"] == ["Password", "Role"]
    assert document["attribute_columns"] == ["Role"]
    katrin = [p for p in syncd.export() if p["sync_key"] == "katrin.mueller"][0]
    assert katrin["attributes"] == {"role": "Mother"}


def test_a_column_without_a_header_is_reported_by_its_position(syncd: Syncd) -> None:
    imported(syncd, "students.csv", "SyncID,First name,,Last name\nS1,Ann,note,Lee\n")
    assert report(syncd, "students.csv")["attribute_columns"] == ["(column 3, no header)"]
    assert report(syncd, "students.csv")["ignored_columns"] == ["(column 3, no header)"]
    assert syncd.export()[0]["attributes"] == {"column": "note"}


def test_errors_csv_rows_are_file_line_numbers_with_the_header_as_line_1(syncd: Syncd) -> None:
    content = (
        "SyncID,First name,Last name,E-mail,Notes\n"
        'S1,Lena,Müller,lena@school.example,"two\nlines"\n'  # lines 2-3
        "S2,Jonas,,jonas@school.example,\n"  # line 4: no last name
        "S3,María,Nuñez,maria@school.example,\n"
        "S4,Liam,O'Brien,liam@@school,\n"  # line 6: bad email
        "S5,Zoë,Martin,zoe@school.example,\n"
    )
    imported(syncd, "students.csv", content)
    errors = errors_rows(syncd, "students.csv")
    assert [(e["row"], e["column"], e["value"]) for e in errors] == [
        ("4", "Last name", ""),
        ("6", "E-mail", "liam@@school"),
    ]
    assert "last name" in errors[0]["error"]
    assert "email" in errors[1]["error"]
    assert report(syncd, "students.csv")["counts"]["rejected"] == 2
    assert {p["sync_key"] for p in syncd.export()} == {"S1", "S3", "S5"}


def test_errors_csv_header_and_formula_values_made_inert(syncd: Syncd) -> None:
    rows = [
        *STUDENTS,
        ("S6", "x1", '=HYPERLINK("http://evil")', "", "=1+2", "", ""),
        ("S7", "x2", "Ann", "Lee", "+49 1234", "", ""),
        ("S8", "x3", "Bo", "Ek", "-2", "", ""),
        ("S9", "x4", "Cy", "Ng", "@SUM(A1)", "", ""),
    ]
    imported(syncd, "students.csv", table(STUDENT_HEADER, rows))
    path = syncd.root / "students.csv.errors.csv"
    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[0] == "row,column,value,error"
    for line in csv.reader(io.StringIO(text)):
        assert not any(cell.startswith(("=", "+", "-", "@")) for cell in line), line
    values = [e["value"] for e in errors_rows(syncd, "students.csv")]
    assert "'=1+2" in values and "'+49 1234" in values and "'-2" in values
    assert "'@SUM(A1)" in values


def test_no_errors_csv_when_no_row_was_rejected(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    assert not (syncd.root / "students.csv.errors.csv").exists()


def test_report_dir_option_puts_reports_there(syncd: Syncd) -> None:
    target = syncd.root / "out"
    rows = [*STUDENTS, ("S6", "x", "", "", "", "", "")]
    outcome = run_import(syncd, "students.csv", table(STUDENT_HEADER, rows), "--report-dir",
                         str(target))  # fmt: skip
    assert outcome.exit_code == 0, outcome.stderr
    assert sorted(p.name for p in target.iterdir()) == [
        "students.csv.errors.csv",
        "students.csv.report.json",
    ]
    assert not (syncd.root / "students.csv.report.json").exists()
    assert report(syncd, "students.csv", target)["status"] == "applied"


def test_import_says_where_each_report_went(syncd: Syncd) -> None:
    # A name already taken gets a numeric suffix (SPEC §3.2): the admin who runs a fixed
    # file again is told which report is the new one, not left reading the old.
    rows = [*STUDENTS, ("S6", "x", "", "", "", "", "")]
    first = run_import(syncd, "students.csv", table(STUDENT_HEADER, rows))
    assert f"  errors: {syncd.root / 'students.csv.errors.csv'}\n" in first.stdout
    assert f"  report: {syncd.root / 'students.csv.report.json'}\n" in first.stdout
    again = run_import(syncd, "students.csv", students_csv())
    assert f"  report: {syncd.root / 'students.csv.report.1.json'}\n" in again.stdout
    assert "errors:" not in again.stdout
    newer = json.loads((syncd.root / "students.csv.report.1.json").read_text(encoding="utf-8"))
    assert (newer["status"], newer["errors"]) == ("applied", 0)
    assert report(syncd, "students.csv")["errors"] == 2  # the first run's, left as it was


def test_a_file_whose_reports_cannot_be_written_beside_it_is_refused_before_it_applies(
    syncd: Syncd,
) -> None:
    with mounted_tmpfs(syncd.root / "share", "1m") as share:
        path = share / "students.csv"
        path.write_text(students_csv(), encoding="utf-8")
        subprocess.run(["mount", "-o", "remount,ro", str(share)], check=True)
        outcome = syncd("import", str(path))
        assert outcome.exit_code == 2
        assert outcome.stderr == (
            f"syncd: {share}: reports cannot be written next to the files there (Read-only "
            "file system); give --report-dir DIR\n"
        )
        assert files(syncd) == []  # nothing taken in
        given = syncd("import", "--report-dir", str(syncd.root / "out"), str(path))
        assert given.exit_code == 0, given.stderr


def test_a_report_that_cannot_be_written_after_the_file_applied_is_said_so(
    syncd: Syncd,
) -> None:
    # The folder takes the check's hidden folder, not the report: a disk that is full.
    with mounted_tmpfs(syncd.root / "full", "64k") as full:
        path = full / "students.csv"
        path.write_text(students_csv(), encoding="utf-8")
        fill(full)
        outcome = syncd("import", str(path))
        assert outcome.exit_code == 1
        assert "students.csv: applied (students): rows 5, created 5" in outcome.stdout
        assert outcome.stderr == (
            f"syncd: students.csv: applied, but its report could not be written in {full}: "
            "No space left on device\n"
        )
        assert [entry["status"] for entry in files(syncd)] == ["applied"]


def test_import_leaves_the_file_where_it_is(syncd: Syncd) -> None:
    path = syncd.write("students.csv", students_csv())
    assert syncd("import", str(path)).exit_code == 0
    assert path.read_text(encoding="utf-8") == students_csv()


def test_dry_run_changes_nothing(syncd: Syncd) -> None:
    syncd.configure(max_deactivate=0.5)  # the file would apply (and deactivate S1)
    imported(syncd, "students.csv", students_csv(STUDENTS[:3]))
    before = (syncd.export(), files(syncd), len(syncd.events()))
    outcome = run_import(syncd, "students-2.csv", students_csv(STUDENTS[1:]), "--dry-run")
    assert outcome.exit_code == 0, outcome.stderr
    assert "planned" in outcome.stdout
    assert (syncd.export(), files(syncd)) == before[:2]
    assert not [e for e in syncd.events()[before[2] :] if e["event"] != "source.polled"]
    assert not (syncd.root / "students-2.csv.report.json").exists()


def test_dry_run_json_prints_the_plan(syncd: Syncd) -> None:
    syncd.configure(max_deactivate=0.5)
    imported(syncd, "students.csv", students_csv(STUDENTS[:3]))
    rows = [
        ("S2", "jonas.sorensen", "Jonas", "Sørensen", "jonas@school.example", "1002", "6"),
        STUDENTS[2],
        STUDENTS[3],
        ("S6", "", "", "Nobody", "", "", ""),
    ]
    outcome = run_import(syncd, "students-2.csv", table(STUDENT_HEADER, rows), "--dry-run",
                         "--json")  # fmt: skip
    assert outcome.exit_code == 0, outcome.stderr
    plan = outcome.json()
    assert {"file", "kind", "counts", "changes", "errors"} <= set(plan)
    assert (plan["file"], plan["kind"]) == ("students-2.csv", "students")
    assert set(plan["counts"]) == COUNT_KEYS
    counts = plan["counts"]
    assert (counts["created"], counts["updated"], counts["deactivated"]) == (1, 1, 1)
    assert (counts["unchanged"], counts["rejected"]) == (1, 1)
    actions = {(c["action"], c["sync_key"]) for c in plan["changes"]}
    assert actions == {("create", "S4"), ("update", "S2"), ("deactivate", "S1")}
    update = [c for c in plan["changes"] if c["action"] == "update"][0]
    assert update["changes"]["email"] == {
        "old": "jonas.sorensen@school.example",
        "new": "jonas@school.example",
    }
    assert plan["errors"] == [
        {"row": 5, "column": "First name", "value": "", "error": "missing first name"}
    ]
    assert {p["sync_key"]: p["active"] for p in syncd.export()} == {
        "S1": True, "S2": True, "S3": True
    }  # fmt: skip


def test_dry_run_of_several_files_prints_one_plan_each(syncd: Syncd) -> None:
    students = syncd.write("students.csv", students_csv())
    parents = syncd.write("parents.csv", parents_csv())
    outcome = syncd("import", "--dry-run", "--json", str(parents), str(students))
    assert outcome.exit_code == 0, outcome.stderr
    plans = outcome.json()
    assert [p["kind"] for p in plans] == ["students", "parents"]
    # The parents are planned after the students, as the real batch applies them: links to
    # the students the batch creates, not pending links.
    assert plans[1]["counts"]["links_created"] == len(PARENT_LINKS)
    assert plans[1]["counts"]["pending"] == 0
    assert {c["action"] for c in plans[1]["changes"]} == {"create", "link"}
    assert syncd.export() == []  # and all of it rolled back
    assert files(syncd) == []
    real = syncd("import", "--json", str(parents), str(students)).json()
    assert [r["counts"] for r in real] == [p["counts"] for p in plans]


def test_dry_run_batch_plans_a_file_after_a_failing_one_without_it(syncd: Syncd) -> None:
    rows = [(f"X{n}", "", "", "", "", "", "") for n in range(6)]  # every row rejected
    students = syncd.write("students.csv", table(STUDENT_HEADER, rows))
    parents = syncd.write("parents.csv", parents_csv())
    plans = syncd("import", "--dry-run", "--json", str(students), str(parents)).json()
    assert "would fail" in plans[0]["reason"]
    assert plans[1]["counts"]["links_created"] == 0  # its students would not be there
    assert plans[1]["counts"]["pending"] == len(PARENT_LINKS)


def test_dry_run_plan_names_links_by_sync_keys(syncd: Syncd) -> None:
    syncd.configure(max_deactivate=1.0)
    imported(syncd, "students.csv", students_csv())
    header = ("SyncID", "First name", "Last name", "Pupil sync key")
    imported(syncd, "parents.csv", parents_csv([("P1", "Sean", "O'Brien", "S4;S5")], header))
    rows = [("P1", "Sean", "O'Brien", "S1;S5;S9")]
    outcome = run_import(syncd, "parents-2.csv", parents_csv(rows, header), "--dry-run", "--json")
    assert outcome.exit_code == 0, outcome.stderr
    links = [
        {k: c.get(k) for k in ("action", "parent", "child")}
        for c in outcome.json()["changes"]
        if c["action"] in ("link", "unlink", "pending")
    ]
    assert sorted(links, key=lambda c: c["action"]) == [
        {"action": "link", "parent": "P1", "child": "S1"},
        {"action": "pending", "parent": "P1", "child": "S9"},
        {"action": "unlink", "parent": "P1", "child": "S4"},
    ]


def test_dry_run_says_when_the_file_would_be_held_or_fail(syncd: Syncd) -> None:
    # And exits as the real run would (1), so that a script can check a file before it
    # sends it; the plan is printed all the same.
    imported(syncd, "students.csv", students_csv())
    held = run_import(syncd, "students-2.csv", students_csv(STUDENTS[:2]), "--dry-run", "--json")
    assert held.exit_code == 1, held.stderr
    # Its status is the real run's, as a file that would fail at its header says "failed".
    assert held.json()["status"] == "held"
    assert "would be held" in held.json()["reason"]
    assert "max_deactivate" in held.json()["reason"]
    assert held.stderr.strip().splitlines() == [f"syncd: students-2.csv: {held.json()['reason']}"]
    rows = [*STUDENTS, *[(f"X{n}", "", "", "", "", "", "") for n in range(6)]]
    failing = run_import(syncd, "students-3.csv", table(STUDENT_HEADER, rows), "--dry-run")
    assert failing.exit_code == 1, failing.stderr
    assert failing.stdout.startswith("students-3.csv: failed (students): ")
    assert "would fail" in failing.stdout and "max_reject" in failing.stdout
    assert "would fail" in failing.stderr and "Traceback" not in failing.stderr
    assert files(syncd) == files(syncd, "--status", "applied")
    # A file that would apply (rows rejected under max_reject included) exits 0.
    rows = [*STUDENTS, ("X0", "", "", "", "", "", "")]
    fine = run_import(syncd, "students-4.csv", table(STUDENT_HEADER, rows), "--dry-run")
    assert fine.exit_code == 0, fine.stderr


def test_dry_run_batch_plans_a_relationships_file_after_another(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    header = ("First name", "Last name", "User name", "E-mail")
    imported(syncd, "parents.csv", parents_csv([("Sean", "O'Brien", "sean", "sean@home.example")],
                                               header))  # fmt: skip
    links = ("Parent Email", "Student ID", "Relationship Type")
    first = syncd.write("relationships-1.csv", table(links, [("sean@home.example", "S1", "")]))
    again = [("sean@home.example", "S1", "Guardian"), ("sean@home.example", "S2", "")]
    second = syncd.write("relationships-2.csv", table(links, again))
    plans = syncd("import", "--dry-run", "--json", str(first), str(second)).json()
    # The second file finds the first one's link: a new type for it, one new link.
    assert plans[0]["counts"]["links_created"] == 1
    assert (plans[1]["counts"]["links_created"], plans[1]["counts"]["updated"]) == (1, 1)
    assert syncd("export", "relationships", "--json").json() == []  # all rolled back
    real = syncd("import", "--json", str(first), str(second)).json()
    assert [r["counts"] for r in real] == [p["counts"] for p in plans]


def test_unrecognised_columns_kept_as_attributes_are_listed_in_ignored_columns(
    syncd: Syncd,
) -> None:
    imported(syncd, "students.csv", students_csv())  # SyncID, ..., Student number, Grade
    document = report(syncd, "students.csv")
    assert document["ignored_columns"] == document["attribute_columns"] == ["Grade"]


def test_a_column_named_twice_is_listed_once(syncd: Syncd) -> None:
    imported(syncd, "students.csv", "SyncID,First name,Last name,Phone,Phone\nS1,A,B,1,2\n")
    assert report(syncd, "students.csv")["ignored_columns"] == ["Phone"]


def test_a_quote_never_closed_on_the_last_line_fails_the_file_and_stores_nothing(
    syncd: Syncd,
) -> None:
    content = students_csv(STUDENTS[:2]) + 'S9,zoe.x,Zoë,"Nuñez\n'
    outcome = run_import(syncd, "students.csv", content)
    assert outcome.exit_code == 1
    document = report(syncd, "students.csv")
    assert document["status"] == "failed"
    assert document["reason"].startswith("line 4: a quoted field is never closed")
    assert syncd.export() == []


def test_a_sheet_with_a_title_above_its_header_fails_saying_so(syncd: Syncd) -> None:
    # A hand-made sheet's first non-empty row is its header (SPEC §2.2): a title there is
    # named, so the admin sees why no column was found.
    content = xlsx(["Students of Lincoln, 2026"], [STUDENT_HEADER, *STUDENTS[:1]])
    assert run_import(syncd, "students.xlsx", content).exit_code == 1
    assert report(syncd, "students.xlsx")["reason"] == (
        "no identifier column: needs a sync key, username or email column; the header row "
        "is one cell, 'Students of Lincoln, 2026': a title? the header must come first"
    )
    # A file without a header row is not quoted: its first row is data, a password perhaps.
    assert run_import(syncd, "parents.csv", "Katrin,Müller,Secret-Pass-42\n").exit_code == 1
    reason = report(syncd, "parents.csv")["reason"]
    assert reason.startswith("no identifier column") and "Secret" not in reason


def test_an_import_whose_audit_lines_cannot_all_be_written_reports_and_exits_3(
    syncd: Syncd,
) -> None:
    # A full disk under the log after the file's transaction committed: the persons are
    # there, its report and summary are written, and the exit code and one line say that
    # the log lacks lines (their events are in the database).
    with mounted_tmpfs(syncd.root / "logs", "64k") as logs:
        syncd.audit_path = logs / "audit.jsonl"
        syncd.configure()
        fill(logs, 60 << 10)  # room for a line or two, not for 300
        rows = [(f"S{n}", "", "First", f"Last{n}", "", "", "") for n in range(300)]
        outcome = run_import(syncd, "students.csv", table(STUDENT_HEADER, rows))
        assert outcome.exit_code == 3, outcome.stderr
        assert "students.csv: applied (students): rows 300, created 300" in outcome.stdout
        [line] = outcome.stderr.splitlines()
        assert line.startswith(f"syncd: audit log {logs / 'audit.jsonl'} cannot be written: ")
        assert report(syncd, "students.csv")["status"] == "applied"
        assert len(syncd.export()) == 300
        written = (logs / "audit.jsonl").read_text(encoding="utf-8")
        assert all(json.loads(text) for text in written.splitlines())  # whole lines
