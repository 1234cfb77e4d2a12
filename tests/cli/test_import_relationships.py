"""SPEC §2.3: an admin's relationships spreadsheet (XLSX or CSV) links existing parents."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Sequence

import pytest

from syncd.db import apply as writes
from syncd.db import store
from tests.cli.conftest import Syncd
from tests.cli.rosters import (
    STUDENTS,
    active_links,
    errors_rows,
    event_names,
    file_id,
    files,
    imported,
    parents_csv,
    report,
    run_import,
    students_csv,
    table,
    xlsx,
)

HEADER = ("Parent Email", "Student Email", "Student ID", "Relationship Type")
# Parents without a child column: persons only; relationships come from the spreadsheet.
PARENTS_ONLY = (
    ("First name", "Last name", "User name", "E-mail"),
    [
        ("Katrin", "Müller", "katrin.mueller", "Katrin.Mueller@home.example"),
        ("Peter", "Sørensen", "peter.sorensen", "peter.sorensen@home.example"),
        ("Sean", "O'Brien", "sean.obrien", "sean.obrien@home.example"),
    ],
)


def _sheet(kind: str) -> Callable[[Sequence[Sequence[str]]], bytes | str]:
    if kind == "xlsx":
        return lambda rows: xlsx(HEADER, rows)
    return lambda rows: table(HEADER, rows)


@pytest.fixture(params=["xlsx", "csv"])
def name(request: pytest.FixtureRequest) -> str:
    return f"relationships.{request.param}"


def _roster(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    header, rows = PARENTS_ONLY
    imported(syncd, "parents.csv", parents_csv(rows, header))


def _import_sheet(syncd: Syncd, name: str, rows: Sequence[Sequence[str]]) -> None:
    content = _sheet(name.rsplit(".", 1)[1])(rows)
    imported(syncd, name, content)


def test_spreadsheet_links_by_student_email_or_id_with_mixed_case_types(
    syncd: Syncd, name: str
) -> None:
    _roster(syncd)
    rows = [
        ("katrin.mueller@home.example", "LENA.MUELLER@school.example", "", "parent"),
        ("Peter.Sorensen@Home.Example", "", "S2", "GUARDIAN"),
        ("sean.obrien@home.example", "", "S4", "Relative"),
        ("sean.obrien@home.example", "zoe.martin@school.example", "", ""),
    ]
    _import_sheet(syncd, name, rows)
    links = {
        (link["parent"], link["child"], link["type"]) for link in syncd.export("relationships")
    }
    assert links == {
        ("katrin.mueller", "S1", "Parent"),
        ("peter.sorensen", "S2", "Guardian"),
        ("sean.obrien", "S4", "Relative"),
        ("sean.obrien", "S5", "Parent"),
    }
    document = report(syncd, name)
    assert document["kind"] == "relationships"
    assert document["counts"]["links_created"] == 4
    assert document["counts"]["rejected"] == 0


def test_unknown_parent_is_a_row_error(syncd: Syncd, name: str) -> None:
    _roster(syncd)
    rows = [
        ("katrin.mueller@home.example", "", "S1", "Parent"),
        ("nobody@home.example", "", "S2", "Parent"),
    ]
    _import_sheet(syncd, name, rows)
    assert active_links(syncd) == {("katrin.mueller", "S1")}
    errors = errors_rows(syncd, name)
    assert [(e["row"], e["column"], e["value"]) for e in errors] == [
        ("3", "Parent Email", "nobody@home.example")
    ]
    assert "unknown parent" in errors[0]["error"]


def test_a_templates_required_marks_in_the_header_are_read_past(syncd: Syncd) -> None:
    _roster(syncd)
    header = ("Parent Email*", "Student ID (required)", "Relationship Type *")
    rows = [("katrin.mueller@home.example", "S1", "Guardian")]
    imported(syncd, "relationships.csv", table(header, rows))
    assert syncd.links() == {("katrin.mueller", "S1", "active")}
    assert report(syncd, "relationships.csv")["ignored_columns"] == []


def test_template_rows_left_with_only_a_type_are_empty_rows(syncd: Syncd, name: str) -> None:
    # A downloaded template's Relationship Type dropdown dragged down past the filled rows:
    # no parent, no child. Empty rows, not errors (seven of them failed a two-link file by
    # max_reject); a row with a child and no parent is still one.
    _roster(syncd)
    rows = [
        ("katrin.mueller@home.example", "", "S1", "Parent"),
        *[("", "", "", "Parent")] * 7,
        ("", "", "S3", "Parent"),
        ("peter.sorensen@home.example", "", "S2", "Guardian"),
    ]
    _import_sheet(syncd, name, rows)
    assert syncd.links() == {
        ("katrin.mueller", "S1", "active"),
        ("peter.sorensen", "S2", "active"),
    }
    counts = report(syncd, name)["counts"]
    assert (counts["rows"], counts["rejected"], counts["links_created"]) == (3, 1, 2)
    assert [(e["row"], e["error"]) for e in errors_rows(syncd, name)] == [("10", "missing parent")]


def test_a_cell_naming_several_children_links_each_as_rows_would(syncd: Syncd, name: str) -> None:
    # SPEC §2.3: `1;2`, `1,2` or `1|2` name both children, so no file has to be split.
    _roster(syncd)
    two_emails = "LENA.MUELLER@school.example, zoe.martin@school.example"
    rows = [
        ("katrin.mueller@home.example", "", "S1;S2", "Parent"),
        ("peter.sorensen@home.example", "", "S3 | S9", "Guardian"),
        ("sean.obrien@home.example", two_emails, "", ""),
        ("nobody@home.example", "", "S1;S2", "Parent"),
    ]
    _import_sheet(syncd, name, rows)
    assert syncd.links() == {
        ("katrin.mueller", "S1", "active"),
        ("katrin.mueller", "S2", "active"),
        ("peter.sorensen", "S3", "active"),
        ("peter.sorensen", "S9", "pending"),
        ("sean.obrien", "S1", "active"),
        ("sean.obrien", "S5", "active"),
    }
    counts = report(syncd, name)["counts"]
    assert (counts["rows"], counts["links_created"], counts["pending"]) == (4, 5, 1)
    # The unknown parent is one error of its row, not one per child it names.
    errors = errors_rows(syncd, name)
    assert [(e["row"], e["value"]) for e in errors] == [("5", "nobody@home.example")]


def test_unknown_child_is_pending_and_resolved_when_its_student_arrives(
    syncd: Syncd, name: str
) -> None:
    _roster(syncd)
    rows = [
        ("katrin.mueller@home.example", "", "S1", "Parent"),
        ("katrin.mueller@home.example", "", "S9", "Guardian"),
    ]
    _import_sheet(syncd, name, rows)
    exported = syncd.export("relationships")
    pending = [link for link in exported if link["status"] == "pending"]
    assert pending == [
        {"site": "district-a", "parent": "katrin.mueller", "child": "S9", "type": "Guardian",
         "status": "pending", "origin": "file"}
    ]  # fmt: skip
    document = report(syncd, name)
    assert document["counts"]["pending"] == 1
    assert [(p["parent"], p["child"]) for p in document["pending"]] == [("katrin.mueller", "S9")]
    status = syncd("status", "--json").json()
    assert status[0]["pending_links"] == 1
    # Sent again (other bytes, same rows): the link still waits, and the report says so.
    again = [("katrin.mueller@home.example", "", "S1", "parent"), rows[1]]
    _import_sheet(syncd, "again-" + name, again)
    document = report(syncd, "again-" + name)
    assert [(p["parent"], p["child"]) for p in document["pending"]] == [("katrin.mueller", "S9")]
    assert document["counts"]["pending"] == 1

    new_pupil = ("S9", "noah.mueller", "Noah", "Müller", "noah@school.example", "1009", "1")
    imported(syncd, "students-2.csv", students_csv([*STUDENTS, new_pupil]))
    links = {
        (link["parent"], link["child"], link["type"], link["status"])
        for link in syncd.export("relationships")
    }
    assert ("katrin.mueller", "S9", "Guardian", "active") in links
    assert not [link for link in links if link[3] == "pending"]
    assert event_names(syncd).count("relationship.resolved") == 1
    # The students file's arrival made the link: its report counts it.
    assert report(syncd, "students-2.csv")["counts"]["links_created"] == 1
    resolved = syncd.events("relationship.resolved")[0]
    assert (resolved["parent"], resolved["child"]) == ("katrin.mueller", "S9")


def test_relationship_type_mapping_from_the_source(syncd: Syncd, name: str) -> None:
    syncd.configure(relationship_types={"Mother": "Parent", "Grandma": "Relative"})
    _roster(syncd)
    rows = [
        ("katrin.mueller@home.example", "", "S1", "mother"),
        ("peter.sorensen@home.example", "", "S2", "Grandma"),
    ]
    _import_sheet(syncd, name, rows)
    links = {
        (link["parent"], link["child"], link["type"]) for link in syncd.export("relationships")
    }
    assert links == {("katrin.mueller", "S1", "Parent"), ("peter.sorensen", "S2", "Relative")}


def test_unknown_relationship_type_rejects_the_row(syncd: Syncd, name: str) -> None:
    _roster(syncd)
    rows = [
        ("katrin.mueller@home.example", "", "S1", "Parent"),
        ("peter.sorensen@home.example", "", "S2", "Uncle"),
    ]
    _import_sheet(syncd, name, rows)
    assert active_links(syncd) == {("katrin.mueller", "S1")}
    errors = errors_rows(syncd, name)
    assert [(e["row"], e["column"], e["value"]) for e in errors] == [
        ("3", "Relationship Type", "Uncle")
    ]
    assert "relationship type" in errors[0]["error"]


def test_same_link_from_parents_and_relationships_files_changes_nothing(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    imported(
        syncd,
        "parents.csv",
        parents_csv([("Claire", "Martin", "claire.martin", "S5", "claire.martin@home.example")]),
    )
    before = len(event_names(syncd))
    imported(syncd, "relationships.xlsx", xlsx(HEADER, [
        ("claire.martin@home.example", "zoe.martin@school.example", "", "Parent"),
    ]))  # fmt: skip
    assert active_links(syncd) == {("claire.martin", "S5")}
    assert len(event_names(syncd)) == before
    assert report(syncd, "relationships.xlsx")["counts"]["links_created"] == 0


def test_two_parents_sharing_an_email_make_the_email_ambiguous(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    header = ("SyncID", "First name", "Last name", "E-mail")
    rows = [("P1", "Ana", "Nuñez", "family@home.example"),
            ("P2", "José", "Nuñez", "family@home.example")]  # fmt: skip
    imported(syncd, "parents.csv", parents_csv(rows, header))
    links = [
        ("", "family@home.example", "", "S3", ""),
        ("P2", "", "", "S4", "Parent"),
        ("P1", "", "", "S1", ""),
    ]
    imported(syncd, "relationships.csv", table(("Parent ID", *HEADER), links))
    assert active_links(syncd) == {("P2", "S4"), ("P1", "S1")}
    errors = errors_rows(syncd, "relationships.csv")
    assert [(e["row"], e["column"]) for e in errors] == [("2", "Parent Email")]
    assert "P1" in errors[0]["error"] and "P2" in errors[0]["error"]


def test_pending_link_expires_after_pending_ttl(syncd: Syncd) -> None:
    syncd.configure(pending_ttl="1s")
    _roster(syncd)
    _import_sheet(syncd, "relationships.csv", [("katrin.mueller@home.example", "", "S9", "")])
    assert syncd.links() == {("katrin.mueller", "S9", "pending")}
    time.sleep(1.1)
    # Past its time it is no longer shown, though nothing ran since (a daily cron's source).
    assert syncd.links() == set()
    assert syncd("status", "--json").json()[0]["pending_links"] == 0
    # The next run (any import or pickup pass) expires it, with an audit event.
    imported(syncd, "students-2.csv", students_csv(STUDENTS[::-1]))
    assert syncd.links() == set()
    [expired] = syncd.events("relationship.expired")
    assert (expired["parent"], expired["child"]) == ("katrin.mueller", "S9")


def test_a_lowered_pending_ttl_applies_to_the_pending_links_already_there(
    syncd: Syncd,
) -> None:
    # An operator lowers it to clear out links waiting for students who will not come.
    _roster(syncd)
    _import_sheet(syncd, "relationships.csv", [("katrin.mueller@home.example", "", "S9", "")])
    assert syncd.links() == {("katrin.mueller", "S9", "pending")}
    syncd.configure(pending_ttl="1s")
    time.sleep(1.1)
    imported(syncd, "students-2.csv", students_csv(STUDENTS[::-1]))  # the next run
    assert syncd.links() == set()
    [expired] = syncd.events("relationship.expired")
    assert (expired["parent"], expired["child"]) == ("katrin.mueller", "S9")
    # A longer one again keeps a new pending link that long.
    syncd.configure(pending_ttl="14d")
    _import_sheet(syncd, "relationships-2.csv", [("katrin.mueller@home.example", "", "S8", "")])
    imported(syncd, "students-3.csv", students_csv(STUDENTS))
    assert syncd.links() == {("katrin.mueller", "S8", "pending")}


def test_xlsx_numbers_match_student_numbers_as_written(syncd: Syncd) -> None:
    syncd.configure(child_field="student_number")
    _roster(syncd)
    content = xlsx(("Parent Email", "Student number", "Relationship"), [
        ("katrin.mueller@home.example", 1001, "Parent"),
        ("peter.sorensen@home.example", 1002, "aide"),
    ])  # fmt: skip
    imported(syncd, "relationships.xlsx", content)
    links = {
        (link["parent"], link["child"], link["type"]) for link in syncd.export("relationships")
    }
    assert links == {("katrin.mueller", "S1", "Parent"), ("peter.sorensen", "S2", "Aide")}


def test_relationships_file_found_by_its_header_and_parent_by_key_or_username(
    syncd: Syncd,
) -> None:
    _roster(syncd)
    content = table(
        ("Parent username", "Parent ID", "Student ID", "Role"),
        [("Sean.OBrien", "", "S4", "Other"), ("", "katrin.mueller", "S1", "")],
    )
    imported(syncd, "upload-2026.csv", content)
    assert report(syncd, "upload-2026.csv")["kind"] == "relationships"
    assert active_links(syncd) == {("sean.obrien", "S4"), ("katrin.mueller", "S1")}


def test_students_xlsx_keeps_what_the_user_sees(syncd: Syncd) -> None:
    import datetime

    content = xlsx(
        ("SyncID", "First name", "Last name", "Birthday", "Locker"),
        [(1001, "Zoë", "Martin", datetime.date(2012, 5, 13), 42)],
    )
    imported(syncd, "students.xlsx", content)
    [zoe] = syncd.export()
    assert zoe["sync_key"] == "1001"
    assert zoe["attributes"] == {"birthday": "2012-05-13", "locker": "42"}
    assert report(syncd, "students.xlsx")["encoding"] == "xlsx"


def test_students_xlsx_keeps_values_in_a_last_column_without_a_heading(syncd: Syncd) -> None:
    # An admin's notes column with no title: kept as a column without a header (SPEC §2.2:
    # "not dropped"), as one in the middle of the sheet is; formatting alone is no column.
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    sheet = book.active
    sheet.append(["SyncID", "First name", "Last name"])
    sheet.append(["S1", "Zoë", "Martin", "allergic to nuts"])
    sheet.append(["S2", "Liam", "O'Brien"])
    sheet["H3"].font = Font(bold=True)  # a styled, empty cell far to the right
    buffer = io.BytesIO()
    book.save(buffer)
    imported(syncd, "students.xlsx", buffer.getvalue())
    attributes = {p["sync_key"]: p["attributes"] for p in syncd.export()}
    assert attributes == {"S1": {"column": "allergic to nuts"}, "S2": {}}
    document = report(syncd, "students.xlsx")
    assert document["attribute_columns"] == ["(column 4, no header)"]


def test_students_xlsx_whose_table_starts_in_column_b_reports_no_empty_column(
    syncd: Syncd,
) -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    for row, values in enumerate([("SyncID", "First name", "Last name", "Grade"),
                                  ("S1", "Zoë", "Martin", "5")], start=1):  # fmt: skip
        for column, value in enumerate(values, start=2):
            sheet.cell(row=row, column=column, value=value)
    buffer = io.BytesIO()
    book.save(buffer)
    imported(syncd, "students.xlsx", buffer.getvalue())
    [zoe] = syncd.export()
    assert (zoe["sync_key"], zoe["attributes"]) == ("S1", {"grade": "5"})
    document = report(syncd, "students.xlsx")
    assert (document["ignored_columns"], document["attribute_columns"]) == (["Grade"], ["Grade"])


def test_duplicate_relationship_rows_in_one_file_are_reported(syncd: Syncd) -> None:
    _roster(syncd)
    rows = [
        ("katrin.mueller@home.example", "", "S1", ""),
        ("katrin.mueller@home.example", "", "S2", ""),
        ("katrin.mueller@home.example", "", "S1", "Guardian"),
    ]
    _import_sheet(syncd, "relationships.csv", rows)
    errors = errors_rows(syncd, "relationships.csv")
    assert [(e["row"], e["error"]) for e in errors] == [("4", "duplicate of row 2")]


def _retype_roster(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    header = ("SyncID", "First name", "Last name")
    imported(syncd, "parents.csv", parents_csv([("P1", "Ana", "Nuñez")], header))
    imported(syncd, "relationships.csv", "Parent ID,Student ID,Relationship\nP1,S1,Parent\n")


def test_changing_a_link_type_is_audited_and_counted(syncd: Syncd) -> None:
    _retype_roster(syncd)
    imported(syncd, "relationships-2.csv", "Parent ID,Student ID,Relationship\nP1,S1,Guardian\n")
    [link] = syncd.export("relationships")
    assert link["type"] == "Guardian"
    counts = report(syncd, "relationships-2.csv")["counts"]
    assert (counts["updated"], counts["unchanged"], counts["links_created"]) == (1, 0, 0)
    retyped = syncd.events("relationship.created")[-1]
    assert (retyped["parent"], retyped["child"]) == ("P1", "S1")
    assert (retyped["type"], retyped["previous_type"]) == ("Guardian", "Parent")


def test_unchanged_rows_of_a_relationships_file_are_counted_alike_in_preview_and_apply(
    syncd: Syncd,
) -> None:
    # A full file's removed links are those it no longer lists: its rows are all unchanged.
    syncd.configure(max_deactivate=1.0)
    imported(syncd, "students.csv", students_csv())
    header = ("SyncID", "First name", "Last name")
    imported(syncd, "parents.csv", parents_csv([("P1", "Ana", "Nuñez")], header))
    rows = "Parent ID,Student ID,Relationship\nP1,S1,Parent\nP1,S2,Parent\n"
    imported(syncd, "relationships.csv", rows)
    path = syncd.write("relationships-2.csv", "Parent ID,Student ID,Relationship\nP1,S1,Parent\n")
    preview = syncd("import", "--dry-run", "--json", str(path))
    applied = syncd("import", "--json", str(path))
    assert (preview.exit_code, applied.exit_code) == (0, 0)
    for outcome in (preview, applied):
        counts = json.loads(outcome.stdout)["counts"]
        assert (counts["rows"], counts["unchanged"], counts["links_removed"]) == (1, 1, 1)


def test_revert_restores_a_changed_link_type(syncd: Syncd) -> None:
    _retype_roster(syncd)
    imported(syncd, "relationships-2.csv", "Parent ID,Student ID,Relationship\nP1,S1,Guardian\n")
    reverted = syncd("files", "revert", str(files(syncd)[-1]["id"]))
    assert reverted.exit_code == 0, reverted.stderr
    [link] = syncd.export("relationships")
    assert (link["type"], link["status"]) == ("Parent", "active")


def test_a_file_does_not_change_the_type_of_a_manual_link(syncd: Syncd) -> None:
    _retype_roster(syncd)
    assert syncd("link", "--parent", "P1", "--child", "S2", "--type", "Aide").exit_code == 0
    imported(
        syncd,
        "relationships-2.csv",
        "Parent ID,Student ID,Relationship\nP1,S1,Parent\nP1,S2,Guardian\n",
    )
    types = {link["child"]: link["type"] for link in syncd.export("relationships")}
    assert types == {"S1": "Parent", "S2": "Aide"}


def test_student_id_holds_the_child_field_chosen_per_source(syncd: Syncd) -> None:
    syncd.configure(child_field="username")
    _roster(syncd)
    _import_sheet(
        syncd, "relationships.csv", [("peter.sorensen@home.example", "", "Jonas.Sorensen", "")]
    )
    assert active_links(syncd) == {("peter.sorensen", "S2")}


def test_pending_link_by_student_email_keeps_the_value_as_written(syncd: Syncd) -> None:
    _roster(syncd)
    _import_sheet(
        syncd,
        "relationships.csv",
        [("katrin.mueller@home.example", " Noah.M@School.example ", "", "")],
    )
    assert syncd.links() == {("katrin.mueller", "Noah.M@School.example", "pending")}
    assert [p["child"] for p in report(syncd, "relationships.csv")["pending"]] == [
        "Noah.M@School.example"
    ]
    # The same link in another case the next night is the same pending link: no events.
    before = len(event_names(syncd))
    rows = [("katrin.mueller@home.example", "noah.m@school.example", "", "")]
    _import_sheet(syncd, "relationships-2.csv", rows)
    assert len(event_names(syncd)) == before
    assert report(syncd, "relationships-2.csv")["counts"]["unchanged"] == 1
    # It resolves when the student arrives, matched case-insensitively.
    new_pupil = ("S9", "noah.m", "Noah", "Müller", "NOAH.M@school.example", "1009", "1")
    imported(syncd, "students-2.csv", students_csv([*STUDENTS, new_pupil]))
    assert ("katrin.mueller", "S9", "active") in syncd.links()


@pytest.mark.parametrize("whole_site", [False, True], ids=["by-parent", "whole-site"])
def test_a_full_file_removes_only_its_own_links_however_they_are_read(
    syncd: Syncd, monkeypatch: pytest.MonkeyPatch, whole_site: bool
) -> None:
    """A district's file names so many parents that their links are read in one pass over
    the site's; made tiny, that pass must plan what reading by parent does."""
    if whole_site:
        monkeypatch.setattr(store, "WHOLE_SITE_LINKS", 1)
    syncd.configure(max_deactivate=1.0, mode={"parents": "delta"})
    _roster(syncd)
    katrin, peter, sean = (row[3].lower() for row in PARENTS_ONLY[1])
    first = [
        (katrin, "", "S1", "Parent"),
        (katrin, "", "S9", "Parent"),  # pending
        (peter, "", "S2", "Parent"),
        (sean, "", "S4", "Parent"),
        (sean, "", "S8", "Parent"),  # pending
    ]
    _import_sheet(syncd, "relationships.csv", first)
    assert syncd("link", "--parent", "peter.sorensen", "--child", "S3").exit_code == 0
    imported(syncd, "parents-2.csv", parents_csv([("Sean", "O'Brien", "sean.obrien", "S5")]))
    # Katrin now names S2 only; Sean is not in the file (his parents-file link stays).
    _import_sheet(syncd, "relationships-2.csv", [(katrin, "", "S2", "Parent"), first[2]])
    assert active_links(syncd) == {
        ("katrin.mueller", "S2"),
        ("peter.sorensen", "S2"),
        ("peter.sorensen", "S3"),  # manual
        ("sean.obrien", "S5"),  # a parents file's
    }
    assert [link for link in syncd.export("relationships") if link["status"] == "pending"] == []
    counts = report(syncd, "relationships-2.csv")["counts"]
    # Katrin → S1 and Sean → S4 removed, Katrin → S9 and Sean → S8 no longer pending.
    assert (counts["links_created"], counts["links_removed"]) == (1, 4)


def test_a_row_whose_student_id_and_email_name_different_students_is_rejected(
    syncd: Syncd, name: str
) -> None:
    # Never a guess which one the admin meant (SPEC §2.3).
    _roster(syncd)
    rows = [
        ("katrin.mueller@home.example", "jonas.sorensen@school.example", "S1", "Parent"),
        ("peter.sorensen@home.example", "JONAS.sorensen@school.example", "S2", "Parent"),
    ]
    _import_sheet(syncd, name, rows)
    assert active_links(syncd) == {("peter.sorensen", "S2")}
    [error] = errors_rows(syncd, name)
    assert (error["row"], error["column"], error["value"]) == ("2", "Student ID", "S1")
    assert error["error"] == (
        "names S1, but its student email jonas.sorensen@school.example is S2's; correct one of them"
    )


def test_a_row_whose_parent_key_and_email_name_different_parents_is_rejected(
    syncd: Syncd,
) -> None:
    # As for a child: never a guess which parent the admin meant (SPEC §2.3). An email that
    # names no parent yet (a new address) is no contradiction: the key decides.
    _roster(syncd)
    header = ("Parent ID", "Parent Email", "Student ID")
    rows = [
        ("katrin.mueller", "peter.sorensen@home.example", "S1"),
        ("peter.sorensen", "PETER.sorensen@home.example", "S2"),
        ("sean.obrien", "new.address@home.example", "S4"),
    ]
    imported(syncd, "relationships.csv", table(header, rows))
    assert active_links(syncd) == {("peter.sorensen", "S2"), ("sean.obrien", "S4")}
    [error] = errors_rows(syncd, "relationships.csv")
    assert (error["row"], error["column"], error["value"]) == (
        "2",
        "Parent Email",
        "peter.sorensen@home.example",
    )
    assert error["error"] == (
        "names katrin.mueller, but its parent email peter.sorensen@home.example is "
        "peter.sorensen's; correct one of them"
    )


def test_a_file_that_cannot_be_read_to_its_end_applies_none_of_its_rows(syncd: Syncd) -> None:
    # Rows are resolved while the file is read, inside its transaction: a quote never
    # closed (it takes the lines after it) fails the file whole, the rows before it too.
    _roster(syncd)
    good = table(HEADER, [("katrin.mueller@home.example", "", "S1", "Parent")])
    broken = '"peter.sorensen@home.example,,S2,Parent\nsean.obrien@home.example,,S4,Parent\n'
    outcome = syncd("import", str(syncd.write("relationships.csv", good + broken)))
    assert outcome.exit_code == 1
    assert "never closed" in outcome.stderr
    assert active_links(syncd) == set()
    document = report(syncd, "relationships.csv")
    assert document["status"] == "failed"
    assert [f["status"] for f in files(syncd) if f["name"] == "relationships.csv"] == ["failed"]
    assert "relationship.created" not in event_names(syncd)


def test_a_relationships_file_retypes_a_pending_link_as_a_live_one(syncd: Syncd) -> None:
    # The SIS says Relative now for a child not there yet: the link waits with that type, is
    # made so, and the change is counted and said (as a live link's retype is).
    imported(syncd, "students.csv", students_csv(STUDENTS[:4]))
    imported(syncd, "parents.csv", parents_csv())
    header = ("Parent Email", "Student ID", "Relationship")
    rows = [("katrin.mueller@home.example", "S9", "Aide")]
    imported(syncd, "relationships.csv", table(header, rows))
    rows = [("katrin.mueller@home.example", "S9", "Relative")]
    preview = run_import(syncd, "relationships-2.csv", table(header, rows), "--dry-run", "--json")
    assert preview.json()["counts"]["updated"] == 1
    imported(syncd, "relationships-2.csv", table(header, rows))
    counts = report(syncd, "relationships-2.csv")["counts"]  # (pending: still waiting)
    assert (counts["updated"], counts["unchanged"], counts["pending"]) == (1, 0, 1)
    [pending] = [e for e in syncd.events("relationship.pending") if e.get("previous_type")]
    assert (pending["type"], pending["previous_type"]) == ("Relative", "Aide")
    exported = [link for link in syncd.export("relationships") if link["child"] == "S9"]
    assert [link["type"] for link in exported] == ["Relative"]
    # Reverted, it waits as Aide again.
    assert syncd("files", "revert", str(file_id(syncd, "relationships-2.csv"))).exit_code == 0
    exported = [link for link in syncd.export("relationships") if link["child"] == "S9"]
    assert [link["type"] for link in exported] == ["Aide"]


def test_new_links_are_written_in_batches_as_the_plan_is_taken(
    syncd: Syncd, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A district's file makes millions of links: they are written a batch at a time (here
    # three) while its retypes write their events between, and every one lands with its
    # relationship.created line and goes again with a revert.
    monkeypatch.setattr(writes, "LINK_WRITE_ROWS", 3)
    _roster(syncd)
    header = ("Parent Email", "Student ID", "Relationship")
    parents = [row[3].lower() for row in PARENTS_ONLY[1]]
    imported(syncd, "relationships.csv", table(header, [(parents[0], "S1", "Parent")]))
    rows = [(email, f"S{n}", "Parent") for email in parents for n in range(1, 6)]
    rows[0] = (parents[0], "S1", "Guardian")  # the one link there is: retyped
    imported(syncd, "relationships-2.csv", table(header, rows))
    counts = report(syncd, "relationships-2.csv")["counts"]
    assert (counts["links_created"], counts["updated"]) == (14, 1)
    keys = ("katrin.mueller", "peter.sorensen", "sean.obrien")
    assert active_links(syncd) == {(key, f"S{n}") for key in keys for n in range(1, 6)}
    second = file_id(syncd, "relationships-2.csv")
    created = [e for e in syncd.events("relationship.created") if e["file_id"] == second]
    assert sorted((e["parent"], e["child"]) for e in created) == sorted(
        (key, f"S{n}") for key in keys for n in range(1, 6)
    )  # 14 new links and the retype
    assert syncd("files", "revert", str(second)).exit_code == 0
    assert active_links(syncd) == {("katrin.mueller", "S1")}
