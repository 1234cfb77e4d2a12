"""SPEC §2.5: applying the same content twice changes nothing; changes are audited precisely."""

from __future__ import annotations

from tests.cli.conftest import Syncd
from tests.cli.rosters import (
    PARENTS,
    STUDENTS,
    event_names,
    files,
    imported,
    parents_csv,
    report,
    students_csv,
    xlsx,
)

REL_HEADER = ("Parent Email", "Student ID", "Relationship Type")


def _roster(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", parents_csv())
    rows = [("katrin.mueller@home.example", "S2", "Guardian")]
    imported(syncd, "relationships.xlsx", xlsx(REL_HEADER, rows))


def test_same_content_under_another_name_changes_nothing_and_emits_no_events(
    syncd: Syncd,
) -> None:
    _roster(syncd)
    before_export = (syncd.export(), syncd.export("relationships"))
    before_events = len(event_names(syncd))
    # The same rows in other bytes (identical bytes would be a sha256 duplicate).
    imported(syncd, "students-again.csv", students_csv(STUDENTS[::-1]))
    imported(syncd, "parents-again.csv", parents_csv(PARENTS[::-1]))
    rows = [("katrin.mueller@home.example", "S2", "Guardian")]
    imported(syncd, "relationships-again.csv", "\n".join(",".join(r) for r in [REL_HEADER, *rows]))
    assert (syncd.export(), syncd.export("relationships")) == before_export
    assert len(event_names(syncd)) == before_events
    counts = report(syncd, "students-again.csv")["counts"]
    assert counts["unchanged"] == 5
    assert sum(counts[k] for k in ("created", "updated", "deactivated", "reactivated")) == 0
    parents = report(syncd, "parents-again.csv")["counts"]
    assert (parents["unchanged"], parents["links_created"], parents["links_removed"]) == (4, 0, 0)


def test_same_bytes_again_are_a_duplicate_whatever_the_name(syncd: Syncd) -> None:
    path = syncd.write("students.csv", students_csv())
    assert syncd("import", str(path)).exit_code == 0
    before_events = len(event_names(syncd))
    outcome = syncd("import", str(path))
    assert outcome.exit_code == 0
    assert "duplicate" in outcome.stdout
    renamed = syncd.write("students-copy.csv", path.read_bytes())
    assert syncd("import", str(renamed)).exit_code == 0
    assert report(syncd, "students-copy.csv")["status"] == "duplicate"
    assert len(event_names(syncd)) == before_events
    assert [f["status"] for f in files(syncd)] == ["applied", "duplicate", "duplicate"]
    first = files(syncd)[0]["id"]
    duplicates = syncd.events("file.duplicate")
    assert len(duplicates) == 2 and f"file {first}" in duplicates[0]["reason"]


def test_earlier_content_after_a_different_file_applies_again(syncd: Syncd) -> None:
    # Monday: five students; Tuesday: S5 has left; Wednesday: Monday's bytes again (S5 back).
    monday = syncd.write("students-mon.csv", students_csv())
    assert syncd("import", str(monday)).exit_code == 0
    syncd.configure(max_deactivate=1.0)
    imported(syncd, "students-tue.csv", students_csv(STUDENTS[:4]))
    wednesday = syncd.write("students-wed.csv", monday.read_bytes())
    assert syncd("import", str(wednesday)).exit_code == 0
    assert report(syncd, "students-wed.csv")["status"] == "applied"
    assert all(person["active"] for person in syncd.export())


def test_changed_row_emits_person_updated_with_field_names_and_old_new_values(
    syncd: Syncd,
) -> None:
    imported(syncd, "students.csv", students_csv())
    changed = [
        ("S1", "lena.mueller", "Léna", "Müller", "lena.mueller@school.example", "1001", "6"),
        *STUDENTS[1:],
    ]
    imported(syncd, "students-2.csv", students_csv(changed))
    [updated] = syncd.events("person.updated")
    assert updated["sync_key"] == "S1"
    assert sorted(updated["fields"]) == ["attributes.grade", "first_name"]
    assert updated["changes"]["attributes.grade"] == {"old": "5", "new": "6"}
    assert updated["changes"]["first_name"] == {"old": "Lena", "new": "Léna"}
    assert event_names(syncd).count("person.created") == 5
    assert event_names(syncd)[5:] == ["person.updated"]
    counts = report(syncd, "students-2.csv")["counts"]
    assert (counts["updated"], counts["unchanged"]) == (1, 4)


def test_new_attribute_column_is_an_update_of_each_person(syncd: Syncd) -> None:
    syncd.configure(max_update=1.0)
    imported(syncd, "students.csv", students_csv(STUDENTS[:2]))
    header = ("SyncID", "Username", "First name", "Last name", "E-mail", "Student number",
              "Grade", "School")  # fmt: skip
    rows = [(*row, "North Primary") for row in STUDENTS[:2]]
    imported(syncd, "students-2.csv", "\n".join(",".join(r) for r in [header, *rows]) + "\n")
    changes = [e["changes"] for e in syncd.events("person.updated")]
    assert changes == [{"attributes.school": {"old": None, "new": "North Primary"}}] * 2


def test_whitespace_and_case_of_emails_do_not_count_as_changes(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv(STUDENTS[:2]))
    noisy = [
        (" S1 ", "lena.mueller", " Lena ", "Müller", "LENA.MUELLER@SCHOOL.EXAMPLE ", "1001", "5"),
        STUDENTS[1],
    ]
    imported(syncd, "students-2.csv", students_csv(noisy))
    assert syncd.events("person.updated") == []
