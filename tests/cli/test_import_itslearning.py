"""SPEC §2.3: itslearning-style parents files link parents to children by one child field."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import openpyxl
import pytest
import sqlalchemy as sa

from syncd.db.schema import pending_links
from tests.cli.conftest import Syncd
from tests.cli.rosters import (
    PARENT_HEADER,
    PARENT_LINKS,
    PARENTS,
    STUDENTS,
    active_links,
    errors_rows,
    event_names,
    file_id,
    imported,
    parents_csv,
    person,
    report,
    run_import,
    students_csv,
)


def test_students_then_parents_file_links_each_parent_to_its_children(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", parents_csv())
    assert active_links(syncd) == PARENT_LINKS
    parents = [p for p in syncd.export() if p["kind"] == "parent"]
    assert {p["sync_key"] for p in parents} == {
        "katrin.mueller", "peter.sorensen", "sean.obrien", "claire.martin"
    }  # fmt: skip
    assert person(syncd, "sean.obrien")["last_name"] == "O'Brien"
    counts = report(syncd, "parents.csv")["counts"]
    assert counts["created"] == 4
    assert counts["links_created"] == 6
    assert counts["rejected"] == 0


def test_parents_file_is_found_by_its_name_and_read_as_semicolon_crlf(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", parents_csv())
    document = report(syncd, "parents.csv")
    assert document["kind"] == "parents"
    assert document["delimiter"] == ";"


def test_child_may_have_several_parents(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", parents_csv())
    assert {p for p, c in active_links(syncd) if c == "S5"} == {"sean.obrien", "claire.martin"}


def test_one_cell_naming_two_children_equals_one_row_per_child(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    one_cell = [("Peter", "Sørensen", "peter.sorensen", "S2;S3", "peter@home.example")]
    two_rows = [
        ("Peter", "Sørensen", "peter.sorensen", "S2", "peter@home.example"),
        ("Peter", "Sørensen", "peter.sorensen", "S3", "peter@home.example"),
    ]
    imported(syncd, "parents-a.csv", parents_csv(one_cell))
    assert active_links(syncd) == {("peter.sorensen", "S2"), ("peter.sorensen", "S3")}
    before = len(syncd.events())
    imported(syncd, "parents-b.csv", parents_csv(two_rows))
    assert active_links(syncd) == {("peter.sorensen", "S2"), ("peter.sorensen", "S3")}
    later = [e["event"] for e in syncd.events()[before:]]
    assert not [name for name in later if name.startswith(("person.", "relationship."))]


def test_the_seeds_two_files_pasted_into_one_link_both_children(syncd: Syncd) -> None:
    # The itslearning page's example C, its two files one after the other in one file: the
    # second header row is rejected as such (no parent "First name Last name" with sync key
    # "SyncID"), and each parent gets both children (SPEC §2.3: no file has to be split).
    imported(syncd, "students.csv", "SyncID,First name,Last name\n1,Ann,Dickinson\n2,Bo,D\n")
    header = "SyncID,User name,First name,Last name,ChildID\n"
    first = "222,mom,Elizabeth,Dickinson,1\n333,dad,Robert,Dickinson,1\n"
    second = "222,mom,Elizabeth,Dickinson,2\n333,dad,Robert,Dickinson,2\n"
    for name, text in (("parents.csv", header + first + header + second),
                       ("parents-2.csv", header + first + header.upper() + second)):  # fmt: skip
        imported(syncd, name, text)
        document = report(syncd, name)
        assert (document["counts"]["rejected"], document["pending"]) == (1, [])
        assert [(e["row"], e["error"]) for e in errors_rows(syncd, name)] == [
            ("4", "the header row again: a file has one header (delete this row, or split the "
             "file here)")
        ]  # fmt: skip
        assert active_links(syncd) == {("222", "1"), ("222", "2"), ("333", "1"), ("333", "2")}
        assert sorted(p["sync_key"] for p in syncd.export() if p["kind"] == "parent") == [
            "222",
            "333",
        ]


def test_a_students_file_with_its_header_again_creates_no_student_of_it(syncd: Syncd) -> None:
    header = "SyncID,First name,Last name,Grade\n"  # no email: read column by column
    rows = [f"S{n},Ann,Lee{n},{n}\n" for n in range(1, 5)]
    imported(syncd, "students.csv", header + "".join(rows[:2]) + header + "".join(rows[2:]))
    assert report(syncd, "students.csv")["counts"]["rejected"] == 1
    assert sorted(p["sync_key"] for p in syncd.export()) == ["S1", "S2", "S3", "S4"]


@pytest.mark.parametrize(
    "header", ["Child ID,Child ID", "Student ID,Pupil sync key", "ChildID,Child ID,ChildID"]
)
def test_children_in_several_child_columns_are_all_linked(syncd: Syncd, header: str) -> None:
    # SPEC §2.3: one parent row may name several children; a column each is one more form
    # of it (the second column was ignored, its children lost).
    imported(syncd, "students.csv", students_csv())
    columns = header.count(",") + 1
    rows = [
        "P1,Ann,Lee," + ",".join(["S1", "S2", "S3"][:columns]),
        "P2,Bo,Lee,S4" + "," * (columns - 1),
    ]
    imported(
        syncd, "parents.csv", f"SyncID,First name,Last name,{header}\n" + "\n".join(rows) + "\n"
    )
    expected = {("P1", f"S{n}") for n in range(1, columns + 1)} | {("P2", "S4")}
    assert active_links(syncd) == expected
    document = report(syncd, "parents.csv")
    assert document["ignored_columns"] == []
    assert document["counts"]["links_created"] == len(expected)


def test_children_on_lines_of_one_spreadsheet_cell_are_all_linked(syncd: Syncd) -> None:
    # Alt+Enter in a cell: the admin's way to list several children in a spreadsheet.
    imported(syncd, "students.csv", students_csv())
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["SyncID", "First name", "Last name", "ChildID"])
    sheet.append(["P1", "Ann", "Lee", "S1\nS2"])
    path = syncd.root / "parents.xlsx"
    workbook.save(path)
    assert syncd("import", str(path)).exit_code == 0
    assert active_links(syncd) == {("P1", "S1"), ("P1", "S2")}
    # A quoted CSV cell over two lines, as a spreadsheet saves that cell.
    csv_text = 'SyncID,First name,Last name,ChildID\nP1,Ann,Lee,S1;S2\nP2,Bo,Lee,"S3\r\nS4"\n'
    imported(syncd, "parents.csv", csv_text)
    assert active_links(syncd) == {("P1", "S1"), ("P1", "S2"), ("P2", "S3"), ("P2", "S4")}


@pytest.mark.parametrize("cell", ["S2,S3", "S2|S3", "S2; S3"])
def test_child_cell_separators_comma_pipe_and_semicolon_all_link_both(
    syncd: Syncd, cell: str
) -> None:
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", parents_csv([("Ana", "Nuñez", "ana.nunez", cell, "")]))
    assert active_links(syncd) == {("ana.nunez", "S2"), ("ana.nunez", "S3")}


STUDENT_KEYS = [row[0] for row in STUDENTS]


def _students_with_ids(syncd: Syncd, keys: Iterable[str] = STUDENT_KEYS) -> dict[str, int]:
    """Return the internal person id of each student (from the audit trail)."""
    ids = {}
    for key in keys:
        outcome = syncd("history", "--person", key, "--json")
        assert outcome.exit_code == 0, outcome.stderr
        created = [e for e in outcome.json() if e["event"] == "person.created"]
        ids[key] = int(created[0]["person_id"])
    return ids


@pytest.mark.parametrize(
    ("child_field", "cells"),
    [
        ("username", {"S1": "LENA.MUELLER ", "S3": "maria.nunez"}),
        ("email", {"S1": "Lena.Mueller@School.example", "S3": "maria.nunez@school.example"}),
        ("student_number", {"S1": "1001", "S3": "1003"}),
        ("sync_key", {"S1": "S1", "S3": "S3"}),
    ],
)
def test_child_field_chosen_per_source_selects_the_student_field(
    syncd: Syncd, child_field: str, cells: dict[str, str]
) -> None:
    syncd.configure(child_field=child_field)
    imported(syncd, "students.csv", students_csv())
    rows = [
        ("Katrin", "Müller", "katrin.mueller", cells["S1"], ""),
        ("Ana", "Nuñez", "ana.nunez", cells["S3"], ""),
    ]
    imported(syncd, "parents.csv", parents_csv(rows))
    assert active_links(syncd) == {("katrin.mueller", "S1"), ("ana.nunez", "S3")}


def test_child_field_internal_id_uses_syncds_own_person_id(syncd: Syncd) -> None:
    syncd.configure(child_field="internal_id")
    imported(syncd, "students.csv", students_csv())
    ids = _students_with_ids(syncd)
    rows = [("Katrin", "Müller", "katrin.mueller", f"{ids['S1']};{ids['S4']}", "")]
    imported(syncd, "parents.csv", parents_csv(rows))
    assert active_links(syncd) == {("katrin.mueller", "S1"), ("katrin.mueller", "S4")}
    # The admin may name the child by the same id (syncd unlink/link).
    outcome = syncd("unlink", "--parent", "katrin.mueller", "--child", str(ids["S4"]), "--json")
    assert (outcome.exit_code, outcome.json()["child"]) == (0, "S4"), outcome.stderr
    assert active_links(syncd) == {("katrin.mueller", "S1")}


def test_an_internal_id_no_student_has_is_a_row_error_not_a_pending_link(syncd: Syncd) -> None:
    # syncd gives its own ids: no student comes later with that one, but the next new
    # student would get it, and a pending link would then name a stranger.
    syncd.configure(child_field="internal_id")
    imported(syncd, "students.csv", students_csv())
    ids = _students_with_ids(syncd)
    unknown = str(max(map(int, ids.values())) + 50)
    rows = [
        ("Katrin", "Müller", "katrin.mueller", ids["S1"], ""),
        ("Peter", "Sørensen", "peter.sorensen", f"{ids['S2']};{unknown}", ""),
    ]
    imported(syncd, "parents.csv", parents_csv(rows))
    document = report(syncd, "parents.csv")
    assert (document["counts"]["rejected"], document["pending"]) == (1, [])
    [error] = errors_rows(syncd, "parents.csv")
    assert (error["row"], error["value"]) == ("3", unknown)
    assert error["error"].startswith(f"no student has internal id '{unknown}'")
    assert active_links(syncd) == {("katrin.mueller", "S1")}
    relationships = f"Parent ID,Student ID\nkatrin.mueller,{ids['S3']}\nkatrin.mueller,{unknown}\n"
    imported(syncd, "relationships.csv", relationships)
    assert report(syncd, "relationships.csv")["counts"]["rejected"] == 1
    assert [link for link in syncd.links() if link[2] == "pending"] == []


def test_an_internal_id_no_student_has_is_a_row_error_in_a_sites_first_keyed_parents_file(
    syncd: Syncd,
) -> None:
    # A site's first parents file with a sync-key column is read column by column: the
    # same rule (found by black-box testing: it was a pending link the next new student,
    # given that id, would have resolved).
    syncd.configure(child_field="internal_id")
    imported(syncd, "students.csv", students_csv())
    ids = _students_with_ids(syncd)
    unknown = str(max(map(int, ids.values())) + 1)  # the next new person's id
    header = ("SyncID", "First name", "Last name", "Pupil sync key")
    rows = [("P1", "Ada", "Berg", str(ids["S1"])), ("P2", "Bo", "Lund", unknown)]
    imported(syncd, "parents.csv", parents_csv(rows, header))
    document = report(syncd, "parents.csv")
    assert (document["counts"]["rejected"], document["pending"]) == (1, [])
    [error] = errors_rows(syncd, "parents.csv")
    assert (error["row"], error["value"]) == ("3", unknown)
    assert [link for link in syncd.links() if link[2] == "pending"] == []
    imported(
        syncd, "students-2.csv", students_csv([*STUDENTS, ("S9", "", "Ny", "Elev", "", "", "")])
    )
    assert active_links(syncd) == {("P1", "S1")}


def test_a_pending_internal_id_an_earlier_syncd_left_never_resolves_to_a_new_student(
    syncd: Syncd,
) -> None:
    syncd.configure(child_field="internal_id")
    imported(syncd, "students.csv", students_csv())
    header = ("SyncID", "First name", "Last name", "Pupil sync key")
    ids = _students_with_ids(syncd)
    imported(syncd, "parents.csv", parents_csv([("P1", "Ada", "Berg", str(ids["S1"]))], header))
    engine = sa.create_engine(syncd.database_url)
    with engine.begin() as connection:
        parent_id = connection.execute(
            sa.text("SELECT id FROM persons WHERE sync_key = 'P1'")
        ).scalar_one()
        now = datetime.now(UTC)
        connection.execute(
            pending_links.insert().values(
                site="district-a",
                source="district-a",
                parent_id=parent_id,
                child_field="internal_id",
                child_value=str(parent_id + 1),
                type="Parent",
                origin="parents",
                created_at=now,
                expires_at=now + timedelta(days=14),
            )  # fmt: skip
        )
    engine.dispose()
    imported(
        syncd, "students-2.csv", students_csv([*STUDENTS, ("S9", "", "Ny", "Elev", "", "", "")])
    )
    assert _students_with_ids(syncd, ["S9"]) == {"S9": parent_id + 1}
    assert active_links(syncd) == {("P1", "S1")}


def test_child_column_named_per_source(syncd: Syncd) -> None:
    syncd.configure(child_column="Kid")
    imported(syncd, "students.csv", students_csv())
    header = ("First name", "Last name", "User name", "Kid", "E-mail")
    rows = [("Zoë", "Martin", "zoe.parent", "S5", "zoe.parent@home.example")]
    imported(syncd, "guardians.csv", parents_csv(rows, header))
    assert active_links(syncd) == {("zoe.parent", "S5")}
    assert "Kid" not in report(syncd, "guardians.csv")["ignored_columns"]
    # Misspelt in a later file: the file fails, where it would link no child, unsaid.
    header = ("First name", "Last name", "User name", "Kidz", "E-mail")
    assert run_import(syncd, "guardians-2.csv", parents_csv(rows, header)).exit_code == 1
    assert report(syncd, "guardians-2.csv")["reason"] == (
        "no child column: the source's child_column 'Kid' is not in the header, nor any of "
        "its aliases (ChildID, Child ID, Student ID, ...)"
    )
    assert active_links(syncd) == {("zoe.parent", "S5")}


def test_child_value_matching_two_students_is_a_row_error_naming_both(syncd: Syncd) -> None:
    syncd.configure(child_field="email")
    siblings = [
        ("S1", "lena.mueller", "Lena", "Müller", "family.mueller@home.example", "1001", "5"),
        ("S2", "max.mueller", "Max", "Müller", "family.mueller@home.example", "1002", "6"),
        ("S3", "maria.nunez", "María", "Nuñez", "maria.nunez@school.example", "1003", "7"),
    ]
    imported(syncd, "students.csv", students_csv(siblings))
    rows = [
        ("Katrin", "Müller", "katrin.mueller", "family.mueller@home.example", ""),
        ("Ana", "Nuñez", "ana.nunez", "maria.nunez@school.example", ""),
    ]
    imported(syncd, "parents.csv", parents_csv(rows))
    assert active_links(syncd) == {("ana.nunez", "S3")}
    errors = errors_rows(syncd, "parents.csv")
    assert len(errors) == 1
    assert errors[0]["row"] == "2"
    assert errors[0]["column"] == "Pupil sync key"
    assert "S1" in errors[0]["error"] and "S2" in errors[0]["error"]
    assert report(syncd, "parents.csv")["counts"]["rejected"] == 1
    # Never a guess: the ambiguous parent is not created either.
    assert "katrin.mueller" not in {p["sync_key"] for p in syncd.export()}


def test_parents_file_before_its_students_leaves_pending_links_resolved_later(
    syncd: Syncd,
) -> None:
    imported(syncd, "parents.csv", parents_csv())
    pending = {(p, c) for p, c, status in syncd.links() if status == "pending"}
    assert pending == PARENT_LINKS
    assert {(p["parent"], p["child"]) for p in report(syncd, "parents.csv")["pending"]} == (
        PARENT_LINKS
    )
    imported(syncd, "students.csv", students_csv())
    assert active_links(syncd) == PARENT_LINKS
    assert event_names(syncd).count("relationship.resolved") == 6
    assert not [status for *_, status in syncd.links() if status == "pending"]


def test_a_parents_file_sent_again_reports_the_links_still_pending(syncd: Syncd) -> None:
    imported(syncd, "parents.csv", parents_csv())
    again = parents_csv().replace("\r\n", "\n")  # the same rows in other bytes
    assert again != parents_csv()
    imported(syncd, "parents-2.csv", again)
    document = report(syncd, "parents-2.csv")
    assert {(p["parent"], p["child"]) for p in document["pending"]} == PARENT_LINKS
    assert document["counts"]["pending"] == len(PARENT_LINKS)
    assert not syncd.events("relationship.pending")[len(PARENT_LINKS) :]  # none new


def test_parents_header_is_the_canonical_itslearning_header(syncd: Syncd) -> None:
    # Kind from the header alone: a child column makes a parents file whatever its name.
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "export-2026.csv", parents_csv(PARENTS[:1], PARENT_HEADER))
    assert report(syncd, "export-2026.csv")["kind"] == "parents"
    assert active_links(syncd) == {("katrin.mueller", "S1")}


def test_student_twice_in_one_file_is_a_duplicate_row_error(syncd: Syncd) -> None:
    rows = [*STUDENTS, STUDENTS[0]]
    imported(syncd, "students.csv", students_csv(rows))
    errors = errors_rows(syncd, "students.csv")
    assert [(e["row"], e["column"], e["value"]) for e in errors] == [("7", "SyncID", "S1")]
    assert "duplicate" in errors[0]["error"]
    assert len(syncd.export()) == 5


def test_parent_rows_with_different_names_for_one_key_are_a_duplicate(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    rows = [
        ("Sean", "O'Brien", "sean.obrien", "S4", ""),
        ("Seán", "O'Brien", "sean.obrien", "S5", ""),
        ("Ana", "Nuñez", "ana.nunez", "S3", ""),
    ]
    imported(syncd, "parents.csv", parents_csv(rows))
    assert [e["row"] for e in errors_rows(syncd, "parents.csv")] == ["3"]
    assert active_links(syncd) == {("sean.obrien", "S4"), ("ana.nunez", "S3")}


def test_a_parent_on_two_rows_with_a_cell_left_empty_on_one_gets_both_children(
    syncd: Syncd,
) -> None:
    # SPEC §2.3: "Both forms give the same result": a phone written on one row only is the
    # same parent, not a duplicate (its second child was lost).
    imported(syncd, "students.csv", students_csv())
    text = "SyncID,First name,Last name,ChildID,Phone\nP9,Rob,Dick,S1,111\nP9,Rob,Dick,S2,\n"
    imported(syncd, "parents.csv", text)
    assert report(syncd, "parents.csv")["counts"]["rejected"] == 0
    assert active_links(syncd) == {("P9", "S1"), ("P9", "S2")}
    assert person(syncd, "P9")["attributes"] == {"phone": "111"}
    # Sent again as one row with both children: the same result, nothing changes.
    imported(
        syncd, "parents-2.csv", "SyncID,First name,Last name,ChildID,Phone\nP9,Rob,Dick,S1;S2,111\n"
    )
    counts = report(syncd, "parents-2.csv")["counts"]
    assert (counts["unchanged"], counts["updated"], counts["links_created"]) == (1, 0, 0)


def test_relationship_column_of_a_parents_file_sets_the_link_type(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    header = (*PARENT_HEADER, "Relationship")
    rows = [
        ("Katrin", "Müller", "katrin.mueller", "S1", "", "Guardian"),
        ("Oma", "Müller", "oma.mueller", "S1", "", "relative"),
    ]
    imported(syncd, "parents.csv", parents_csv(rows, header))
    types = {(link["parent"], link["type"]) for link in syncd.export("relationships")}
    assert types == {("katrin.mueller", "Guardian"), ("oma.mueller", "Relative")}


def test_a_parent_on_one_row_per_child_has_each_childs_type(syncd: Syncd) -> None:
    # SPEC §2.3: a mother of her own child and guardian of a niece, one row per child.
    imported(syncd, "students.csv", students_csv())
    header = "SyncID,First name,Last name,ChildID,Relationship\n"
    rows = "P1,Mary,Lee,S1,Parent\nP1,Mary,Lee,S2,Guardian\n"
    imported(syncd, "parents.csv", header + rows)
    assert report(syncd, "parents.csv")["counts"]["rejected"] == 0
    types = {(link["child"], link["type"]) for link in syncd.export("relationships")}
    assert types == {("S1", "Parent"), ("S2", "Guardian")}
    imported(syncd, "parents-2.csv", header + rows + "\n")  # the same rows: nothing changes
    counts = report(syncd, "parents-2.csv")["counts"]
    assert (counts["unchanged"], counts["updated"], counts["links_created"]) == (1, 0, 0)
    imported(syncd, "parents-3.csv", header + "P1,Mary,Lee,S1,Parent\nP1,Mary,Lee,S2,Parent\n")
    types = {(link["child"], link["type"]) for link in syncd.export("relationships")}
    assert types == {("S1", "Parent"), ("S2", "Parent")}


def test_a_link_a_file_removed_is_made_anew_by_a_parents_file_without_types(
    syncd: Syncd,
) -> None:
    # The relationships file's Guardian link goes with its next file; a parents file naming
    # the child later makes a new link: a Parent link, not the removed one's type come back.
    syncd.configure(max_deactivate=1.0)
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", "SyncID,First name,Last name\nP1,Pat,Lee\n")
    imported(syncd, "relationships.csv", "Parent ID,Student ID,Relationship\nP1,S1,Guardian\n")
    imported(syncd, "relationships-2.csv", "Parent ID,Student ID,Relationship\nP1,S2,Aide\n")
    assert {(link["child"], link["type"]) for link in syncd.export("relationships")} == {
        ("S2", "Aide")
    }
    imported(syncd, "parents-2.csv", "SyncID,First name,Last name,ChildID\nP1,Pat,Lee,S1;S2\n")
    types = {(link["child"], link["type"]) for link in syncd.export("relationships")}
    assert types == {("S1", "Parent"), ("S2", "Aide")}  # S2's link is live: its type stays


def test_a_parents_file_without_a_type_column_leaves_a_links_type_alone(syncd: Syncd) -> None:
    # The relationships file says Guardian; the nightly parents file, with no type column,
    # names the same child: the link stays a Guardian link (no retype each night, and the
    # next relationships file finds nothing to change back), and is the parents file's too.
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", "SyncID,First name,Last name\nP1,Pat,Lee\n")
    imported(syncd, "relationships.csv", "Parent ID,Student ID,Relationship\nP1,S1,Guardian\n")
    imported(syncd, "parents-2.csv", "SyncID,First name,Last name,ChildID\nP1,Pat,Lee,S1;S2\n")
    types = {(link["child"], link["type"]) for link in syncd.export("relationships")}
    assert types == {("S1", "Guardian"), ("S2", "Parent")}  # a new link is a Parent link
    parents_2 = file_id(syncd, "parents-2.csv")
    created = [e for e in syncd.events("relationship.created") if e["file_id"] == parents_2]
    assert [event["child"] for event in created] == ["S2"]
    again = "Parent ID,Student ID,Relationship\nP1,S1,Guardian\n\n"  # new bytes, same rows
    imported(syncd, "relationships-2.csv", again)
    counts = report(syncd, "relationships-2.csv")["counts"]
    assert (counts["updated"], counts["links_created"], counts["unchanged"]) == (0, 0, 1)
    # Both files named it: the relationships file dropping it leaves the parents file's link.
    imported(syncd, "relationships-3.csv", "Parent ID,Student ID,Relationship\nP1,S2,Parent\n")
    types = {(link["child"], link["type"]) for link in syncd.export("relationships")}
    assert types == {("S1", "Guardian"), ("S2", "Parent")}
