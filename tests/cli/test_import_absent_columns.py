"""SPEC §2.4 and §2.5: a file manages only the fields it has columns for. A column absent from
the header leaves an existing person's stored value alone (an admin's delta file with just
names must not blank emails or attributes); a present column with an empty cell empties it.
What such a file changes is exactly what the events, counts, plans and reverts say."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from tests.cli.conftest import Syncd
from tests.cli.rosters import (
    PARENT_LINKS,
    STUDENT_HEADER,
    STUDENTS,
    active_links,
    event_names,
    file_id,
    imported,
    parents_csv,
    person,
    report,
    run_import,
    students_csv,
    table,
)

NAMES = ("SyncID", "First name", "Last name")


def _stored(syncd: Syncd) -> dict[str, tuple[Any, ...]]:
    """Return what a write to a person changes besides its fields, by sync key."""
    engine = sa.create_engine(syncd.database_url)
    query = "SELECT sync_key, file_id, updated_at, fingerprint, row_digest FROM persons"
    with engine.connect() as connection:
        stored = {row[0]: tuple(row[1:]) for row in connection.execute(sa.text(query))}
    engine.dispose()
    return stored


def _crlf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\n", "\r\n")


def test_a_delta_file_of_names_keeps_username_email_number_and_attributes(syncd: Syncd) -> None:
    syncd.configure(mode={"students": "delta"})
    imported(syncd, "students.csv", students_csv())
    before = person(syncd, "S1")
    imported(syncd, "students-fix.csv", table(NAMES, [("S1", "Lena", "Muller-X")]))
    assert person(syncd, "S1") == {**before, "last_name": "Muller-X"}
    updated = syncd.events("person.updated")
    assert [(e["sync_key"], e["fields"]) for e in updated] == [("S1", ["last_name"])]
    counts = report(syncd, "students-fix.csv")["counts"]
    assert (counts["updated"], counts["unchanged"]) == (1, 0)


def test_a_full_file_without_an_attribute_column_keeps_that_attribute(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    before = syncd.export()
    header = STUDENT_HEADER[:5]  # no student number, no grade
    rows = [s[:5] for s in STUDENTS]
    rows[1] = (*rows[1][:4], "jonas@school.example")
    imported(syncd, "students-2.csv", table(header, rows))
    expected = [
        {**p, "email": "jonas@school.example"} if p["sync_key"] == "S2" else p for p in before
    ]
    assert syncd.export() == expected
    counts = report(syncd, "students-2.csv")["counts"]
    assert (counts["updated"], counts["unchanged"], counts["deactivated"]) == (1, 4, 0)
    assert [e["fields"] for e in syncd.events("person.updated")] == [["email"]]


def test_a_present_column_with_an_empty_cell_empties_the_field(syncd: Syncd) -> None:
    syncd.configure(mode={"students": "delta"})
    imported(syncd, "students.csv", students_csv())
    before = person(syncd, "S1")
    header = (*NAMES, "E-mail", "Grade")
    imported(syncd, "students-fix.csv", table(header, [("S1", "Lena", "Müller", "", "")]))
    assert person(syncd, "S1") == {**before, "email": None, "attributes": {}}
    assert [e["fields"] for e in syncd.events("person.updated")] == [["attributes.grade", "email"]]


def test_the_same_partial_file_again_writes_nothing_and_emits_nothing(syncd: Syncd) -> None:
    syncd.configure(mode={"students": "delta"})
    imported(syncd, "students.csv", students_csv())
    partial = table(NAMES, [("S1", "Lena", "Muller-X"), ("S2", "Jonas", "Sørensen")])
    imported(syncd, "students-fix.csv", partial)
    stored, events = _stored(syncd), len(event_names(syncd))
    # Other bytes (a duplicate file would not even be read), and the same rows in a new file.
    imported(syncd, "students-fix-2.csv", _crlf(partial))
    imported(syncd, "students-fix-3.csv", partial + "S3,María,Nuñez\n")
    assert (_stored(syncd), len(event_names(syncd))) == (stored, events)
    for name in ("students-fix-2.csv", "students-fix-3.csv"):
        counts = report(syncd, name)["counts"]
        assert (counts["updated"], counts["unchanged"]) == (0, counts["rows"])


def test_the_full_file_after_a_partial_one_is_unchanged_when_the_values_match(
    syncd: Syncd,
) -> None:
    syncd.configure(mode={"students": "delta"})
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "students-fix.csv", table(NAMES, [("S1", "Lena", "Muller-X")]))
    stored, events = _stored(syncd), len(event_names(syncd))
    renamed = [(*STUDENTS[0][:3], "Muller-X", *STUDENTS[0][4:]), *STUDENTS[1:]]
    imported(syncd, "students-2.csv", _crlf(students_csv(renamed)))
    imported(syncd, "students-3.csv", students_csv(renamed[::-1]))
    for name in ("students-2.csv", "students-3.csv"):
        counts = report(syncd, name)["counts"]
        assert (counts["updated"], counts["unchanged"]) == (0, len(STUDENTS))
    assert (_stored(syncd), len(event_names(syncd))) == (stored, events)


def test_a_full_file_after_a_partial_one_still_applies_its_changes(syncd: Syncd) -> None:
    syncd.configure(mode={"students": "delta"})
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "students-fix.csv", table(NAMES, [("S1", "Lena", "Muller-X")]))
    imported(syncd, "students-2.csv", _crlf(students_csv()))  # the old name again
    assert person(syncd, "S1")["last_name"] == "Müller"
    assert report(syncd, "students-2.csv")["counts"]["updated"] == 1


def test_dry_run_of_a_partial_file_lists_only_real_changes(syncd: Syncd) -> None:
    syncd.configure(mode={"students": "delta"})
    imported(syncd, "students.csv", students_csv())
    before = syncd.export()
    rows = [("S1", "Lena", "Muller-X"), ("S2", "Jonas", "Sørensen")]
    outcome = run_import(syncd, "students-fix.csv", table(NAMES, rows), "--dry-run", "--json")
    assert outcome.exit_code == 0, outcome.stderr
    plan = outcome.json()
    assert plan["changes"] == [
        {
            "row": 2,
            "kind": "student",
            "sync_key": "S1",
            "action": "update",
            "changes": {"last_name": {"old": "Müller", "new": "Muller-X"}},
        }
    ]
    assert (plan["counts"]["updated"], plan["counts"]["unchanged"]) == (1, 1)
    assert syncd.export() == before


def test_revert_of_a_partial_file_restores_exactly_the_old_values(syncd: Syncd) -> None:
    syncd.configure(mode={"students": "delta"})
    imported(syncd, "students.csv", students_csv())
    before = syncd.export()
    header = (*NAMES, "Grade")
    rows = [("S1", "Lena", "Muller-X", "5"), ("S2", "Jonas", "Sørensen", "6")]
    imported(syncd, "students-fix.csv", table(header, rows))
    assert person(syncd, "S2")["email"] == "jonas.sorensen@school.example"
    reverted = syncd("files", "revert", str(file_id(syncd, "students-fix.csv")))
    assert reverted.exit_code == 0, reverted.stderr
    assert syncd.export() == before


def test_a_parents_file_without_child_or_email_column_keeps_both(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", parents_csv())
    before = syncd.export()
    header = ("First name", "Last name", "User name")
    rows = [("Katrin", "Müller-Berg", "katrin.mueller"), ("Peter", "Sørensen", "peter.sorensen"),
            ("Sean", "O'Brien", "sean.obrien"), ("Claire", "Martin", "claire.martin")]  # fmt: skip
    imported(syncd, "parents-2.csv", parents_csv(rows, header))
    expected = [
        {**p, "last_name": "Müller-Berg"} if p["sync_key"] == "katrin.mueller" else p
        for p in before
    ]
    assert syncd.export() == expected
    assert active_links(syncd) == PARENT_LINKS
    counts = report(syncd, "parents-2.csv")["counts"]
    assert (counts["updated"], counts["unchanged"]) == (1, 3)
    stored, events = _stored(syncd), len(event_names(syncd))
    imported(syncd, "parents-3.csv", _crlf(parents_csv(rows, header)).replace(";", ","))
    assert (_stored(syncd), len(event_names(syncd))) == (stored, events)


def test_a_student_back_in_a_file_of_names_is_reactivated_with_its_fields(syncd: Syncd) -> None:
    syncd.configure(max_deactivate=0.5)
    imported(syncd, "students.csv", students_csv())
    before = person(syncd, "S5")
    imported(syncd, "students-2.csv", students_csv(STUDENTS[:4]))
    rows = [(s[0], s[2], s[3]) for s in STUDENTS]
    imported(syncd, "students-3.csv", table(NAMES, rows))
    assert person(syncd, "S5") == before
    counts = report(syncd, "students-3.csv")["counts"]
    assert (counts["reactivated"], counts["updated"], counts["unchanged"]) == (1, 0, 4)
    assert "person.updated" not in event_names(syncd)
