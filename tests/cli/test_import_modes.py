"""SPEC §2.4: full and delta files, orphan parents, and links that files never undo."""

from __future__ import annotations

import json
from typing import Any

import pytest

from syncd.db import apply, store
from tests.cli.conftest import Syncd
from tests.cli.rosters import (
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

REL_HEADER = ("Parent ID", "Student ID", "Relationship Type")
PARENT_HEADER = ("SyncID", "First name", "Last name", "Pupil sync key")


def _parents(*rows: tuple[str, str]) -> str:
    """A parents file of (parent key, children cell) rows; names from the key."""
    return parents_csv([(key, "Nuñez", f"O'Brien-{key}", cell) for key, cell in rows],
                       PARENT_HEADER)  # fmt: skip


def _relationships(*rows: tuple[str, ...]) -> str:
    return table(REL_HEADER, [(*row, "Parent")[:3] for row in rows])


def _p1_orphaned(syncd: Syncd, max_deactivate: float = 0.5) -> None:
    """P1 (parent of S5) and P2 (of S4) linked, then the students file drops S5: P1 is an
    orphan (SPEC §2.4)."""
    syncd.configure(max_deactivate=max_deactivate)
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", _parents(("P1", "S5"), ("P2", "S4")))
    imported(syncd, "students-2.csv", students_csv(STUDENTS[:4]))


def test_full_students_file_deactivates_missing_students_never_deletes(syncd: Syncd) -> None:
    syncd.configure(max_deactivate=0.5)
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "students-2.csv", students_csv(STUDENTS[:4]))
    zoe = person(syncd, "S5")
    assert zoe["active"] is False
    assert zoe["first_name"] == "Zoë"
    assert report(syncd, "students-2.csv")["counts"]["deactivated"] == 1
    assert [e["sync_key"] for e in syncd.events("person.deactivated")] == ["S5"]


def test_student_back_in_a_full_file_is_reactivated(syncd: Syncd) -> None:
    syncd.configure(max_deactivate=0.5)
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "students-2.csv", students_csv(STUDENTS[:4]))
    # Not byte-identical to students.csv, which would be a duplicate of applied content.
    imported(syncd, "students-3.csv", students_csv(STUDENTS[::-1]))
    assert person(syncd, "S5")["active"] is True
    assert report(syncd, "students-3.csv")["counts"]["reactivated"] == 1
    assert [e["sync_key"] for e in syncd.events("person.reactivated")] == ["S5"]


def test_delta_students_file_only_upserts_and_deactivates_rows_marked_deleted(
    syncd: Syncd,
) -> None:
    syncd.configure(mode={"students": "delta"}, max_deactivate=0.9)
    imported(syncd, "students.csv", students_csv())
    header = (*STUDENT_HEADER, "Status")
    rows = [
        (*STUDENTS[0], "Deleted"),
        (*STUDENTS[1], "INACTIVE"),
        (*STUDENTS[2], "tobedeleted"),
        ("S6", "ole.hansen", "Ole", "Hansen", "ole@school.example", "1006", "3", ""),
    ]
    imported(syncd, "students-delta.csv", table(header, rows))
    state = {p["sync_key"]: p["active"] for p in syncd.export() if p["kind"] == "student"}
    assert state == {"S1": False, "S2": False, "S3": False, "S4": True, "S5": True, "S6": True}
    counts = report(syncd, "students-delta.csv")["counts"]
    assert (counts["created"], counts["deactivated"]) == (1, 3)


def test_delta_action_delete_column_deactivates_a_parent(syncd: Syncd) -> None:
    syncd.configure(mode={"students": "full", "parents": "delta"}, max_deactivate=0.9)
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", _parents(("P1", "S1"), ("P2", "S2")))
    header = (*PARENT_HEADER, "Action")
    imported(syncd, "parents-delta.csv", parents_csv([("P1", "Nuñez", "Zoë", "S1", "delete")],
                                                     header))  # fmt: skip
    assert person(syncd, "P1")["active"] is False
    assert person(syncd, "P2")["active"] is True
    assert ("P1", "S1") not in active_links(syncd)


def test_delta_relationships_row_marked_delete_removes_the_link(syncd: Syncd) -> None:
    syncd.configure(mode={"students": "full", "parents": "full", "relationships": "delta"},
                    max_deactivate=0.9)  # fmt: skip
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", _parents(("P1", ""), ("P2", "")))
    imported(syncd, "relationships.csv", _relationships(("P1", "S1"), ("P1", "S2"), ("P2", "S3")))
    assert active_links(syncd) == {("P1", "S1"), ("P1", "S2"), ("P2", "S3")}
    header = (*REL_HEADER, "Status")
    imported(syncd, "relationships-2.csv", table(header, [("P1", "S2", "Parent", "Delete")]))
    # Delta: the rows it does not name stay.
    assert active_links(syncd) == {("P1", "S1"), ("P2", "S3")}
    assert report(syncd, "relationships-2.csv")["counts"]["links_removed"] == 1


def test_a_delete_row_whose_link_another_kind_or_an_operator_made_says_why_it_stays(
    syncd: Syncd,
) -> None:
    # SPEC §2.4 keeps these links; the admin who asked for their removal is told why.
    syncd.configure(
        mode={"students": "full", "parents": "full", "relationships": "delta"},
        max_deactivate=0.5,
    )
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", _parents(("P1", "S1"), ("P2", "")))
    imported(syncd, "relationships.csv", _relationships(("P1", "S2"), ("P2", "S3")))
    assert syncd("link", "--parent", "P2", "--child", "S4").exit_code == 0
    header = (*REL_HEADER, "Status")
    rows = [
        ("P1", "S1", "Parent", "Delete"),  # the parents file's
        ("P1", "S2", "Parent", "Delete"),  # this kind's: removed
        ("P2", "S4", "Parent", "Delete"),  # by hand
    ]
    outcome = imported(syncd, "relationships-2.csv", table(header, rows))
    assert outcome.stdout.splitlines()[1:] == [
        "  row 2: link P1 → S1 stays: a parents file names this link; it stays while that "
        "file names it",
        "  row 4: link P2 → S4 stays: linked by hand (syncd link); only syncd unlink removes it",
        f"  report: {syncd.root / 'relationships-2.csv.report.json'}",
    ]
    assert active_links(syncd) == {("P1", "S1"), ("P2", "S3"), ("P2", "S4")}
    document = report(syncd, "relationships-2.csv")
    assert document["counts"]["links_removed"] == 1
    assert document["links_kept"] == [
        {
            "row": 2,
            "parent": "P1",
            "child": "S1",
            "kept": "a parents file names this link; it stays while that file names it",
        },
        {
            "row": 4,
            "parent": "P2",
            "child": "S4",
            "kept": "linked by hand (syncd link); only syncd unlink removes it",
        },
    ]
    preview = syncd("import", "--dry-run", "--json", str(syncd.root / "relationships-2.csv"))
    assert [kept["row"] for kept in preview.json()["links_kept"]] == [2, 4]
    # A file without such rows has no such key.
    assert "links_kept" not in report(syncd, "relationships.csv")


def test_a_relationships_files_preview_counts_the_parents_it_orphans(syncd: Syncd) -> None:
    # SPEC §2.5: the preview is the plan; the orphans a file leaves are in its counts, as
    # in the real run's report, not only in its change list.
    syncd.configure(max_deactivate=1.0)
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", _parents(("P1", ""), ("P2", ""), ("P3", "")))
    imported(syncd, "relationships.csv", _relationships(("P1", "S1"), ("P2", "S2"), ("P3", "S3")))
    smaller = syncd.write("relationships-2.csv", _relationships(("P1", "S1")))
    preview = syncd("import", "--dry-run", "--json", str(smaller)).json()
    orphaned = [c["sync_key"] for c in preview["changes"] if c.get("reason") == "orphan"]
    assert orphaned == ["P2", "P3"]
    assert preview["counts"]["orphans_deactivated"] == 2
    assert syncd("import", str(smaller)).exit_code == 0
    assert report(syncd, "relationships-2.csv")["counts"] == preview["counts"]


def test_full_relationships_file_removes_the_links_it_no_longer_lists(syncd: Syncd) -> None:
    syncd.configure(max_deactivate=0.9)
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", _parents(("P1", ""), ("P2", "")))
    imported(syncd, "relationships.csv", _relationships(("P1", "S1"), ("P1", "S2"), ("P2", "S3")))
    imported(syncd, "relationships-2.csv", _relationships(("P1", "S1"), ("P2", "S3")))
    assert active_links(syncd) == {("P1", "S1"), ("P2", "S3")}


def test_orphan_parent_is_deactivated_when_its_last_child_goes(syncd: Syncd) -> None:
    syncd.configure(max_deactivate=0.5)
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", _parents(("P1", "S5"), ("P2", "S4;S5"), ("P3", "")))
    imported(syncd, "students-2.csv", students_csv(STUDENTS[:4]))
    assert person(syncd, "S5")["active"] is False
    assert person(syncd, "P1")["active"] is False  # its only child left
    assert person(syncd, "P2")["active"] is True  # still has S4
    assert person(syncd, "P3")["active"] is True  # never had a link
    orphaned = [e for e in syncd.events("person.deactivated") if e["kind"] == "parent"]
    assert [e["sync_key"] for e in orphaned] == ["P1"]


def test_orphan_parent_is_reactivated_when_a_link_to_an_active_child_appears(
    syncd: Syncd,
) -> None:
    _p1_orphaned(syncd)
    assert person(syncd, "P1")["active"] is False
    imported(syncd, "students-3.csv", students_csv(STUDENTS[::-1]))
    assert person(syncd, "S5")["active"] is True
    assert person(syncd, "P1")["active"] is True


def test_orphans_are_judged_at_the_end_of_the_batch(syncd: Syncd) -> None:
    # The students file drops P1's child, the parents file of the same batch gives P1 a new
    # one: P1 never was an orphan, so no deactivation and no reactivation.
    syncd.configure(max_deactivate=0.5)
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", _parents(("P1", "S5"), ("P2", "S4")))
    students = syncd.write("students-2.csv", students_csv(STUDENTS[:4]))
    parents = syncd.write("parents-2.csv", _parents(("P1", "S1"), ("P2", "S4")))
    before = len(syncd.events())
    assert syncd("import", str(parents), str(students)).exit_code == 0
    assert person(syncd, "P1")["active"] is True
    batch = syncd.events()[before:]
    assert not [e for e in batch if e["event"].startswith("person.") and e["kind"] == "parent"]
    assert report(syncd, "students-2.csv")["counts"]["deactivated"] == 1  # S5 only
    assert report(syncd, "parents-2.csv")["counts"]["reactivated"] == 0


def test_dry_run_counts_orphans_as_the_real_run_reports_them(syncd: Syncd) -> None:
    syncd.configure(max_deactivate=0.5)
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", _parents(("P1", "S5"), ("P2", "S4")))
    students = syncd.write("students-2.csv", students_csv(STUDENTS[:3]))  # S4, S5 leave
    parents = syncd.write("parents-2.csv", _parents(("P1", "S1"), ("P2", "S4")))
    for batch in ([students], [students, parents]):
        plans = syncd("import", "--dry-run", "--json", *map(str, batch)).json()
        plans = plans if isinstance(plans, list) else [plans]
        assert person(syncd, "P2")["active"] is True  # rolled back
        real = syncd("import", "--json", *map(str, batch)).json()
        real = real if isinstance(real, list) else [real]
        assert [p["counts"] for p in plans] == [r["counts"] for r in real]
        # The students file deactivates S4 and S5; alone, it orphans P1 and P2; with the
        # parents file, only P2 (counted apart: follow-ons, not what the rows did).
        assert sum(r["counts"]["deactivated"] for r in real) == 2
        assert sum(r["counts"]["orphans_deactivated"] for r in real) == (
            2 if len(batch) == 1 else 1
        )
        # The preview lists them as changes too, as the real run's events name them.
        orphans = [
            change["sync_key"]
            for plan in plans
            for change in plan["changes"]
            if change.get("reason") == "orphan"
        ]
        assert orphans == (["P1", "P2"] if len(batch) == 1 else ["P2"])
        assert all(
            change == {"action": "deactivate", "kind": "parent", "sync_key": change["sync_key"],
                       "reason": "orphan"}
            for plan in plans for change in plan["changes"] if change.get("sync_key") in orphans
        )  # fmt: skip
        imported(syncd, "students-3.csv", students_csv())  # back as before the batch
        imported(syncd, "parents-3.csv", _parents(("P1", "S5"), ("P2", "S4")))


def test_dry_run_of_pending_links_says_what_the_real_run_does(syncd: Syncd) -> None:
    syncd.configure(max_deactivate=0.5)
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", _parents(("P1", "S1"), ("P3", "S9")))  # S9: pending

    def preview_then_apply(name: str, content: str) -> dict[str, Any]:
        path = syncd.write(name, content)
        plan = syncd("import", "--dry-run", "--json", str(path)).json()
        real = syncd("import", "--json", str(path)).json()
        assert plan["counts"] == real["counts"]
        return dict(plan)

    # The report counts every pending link the full file names, S9's from before included.
    plan = preview_then_apply("parents-2.csv", _parents(("P1", "S1"), ("P3", "S9"), ("P7", "NEW1")))
    assert plan["counts"]["pending"] == 2
    assert {"action": "pending", "parent": "P7", "child": "NEW1"} in plan["changes"]
    # A pending link the file no longer names goes, listed as such.
    plan = preview_then_apply("parents-3.csv", _parents(("P1", "S1"), ("P3", ""), ("P7", "NEW1")))
    assert plan["counts"]["links_removed"] == 1
    assert {"action": "unlink", "parent": "P3", "child": "S9", "pending": True} in plan["changes"]
    # A students file resolving one lists the link it makes.
    new_pupil = ("NEW1", "n.one", "Nia", "One", "nia.one@school.example", "1010", "2")
    plan = preview_then_apply("students-2.csv", students_csv([*STUDENTS, new_pupil]))
    assert plan["counts"]["links_created"] == 1
    link = {"action": "link", "parent": "P7", "child": "NEW1", "type": "Parent"}
    assert {**link, "resolved": "NEW1"} in plan["changes"]


def test_a_files_deactivated_count_is_its_own_kind_and_orphans_are_counted_apart(
    syncd: Syncd,
) -> None:
    # A students file that drops one student: "deactivated 1", and the parent it leaves
    # without a child is a follow-on (SPEC §2.4), counted as such, held or applied alike.
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", _parents(("P1", "S5"), ("P2", "S4")))
    outcome = run_import(syncd, "students-2.csv", students_csv(STUDENTS[:4]))  # S5 leaves
    assert outcome.exit_code == 1  # held: 1 of 5 students is more than 10 %
    held = report(syncd, "students-2.csv")["counts"]
    assert (held["deactivated"], held["orphans_deactivated"]) == (1, 0)  # not judged yet
    assert syncd("files", "release", str(file_id(syncd, "students-2.csv"))).exit_code == 0
    # The release writes a second report beside the held one.
    applied = json.loads((syncd.root / "students-2.csv.report.1.json").read_text())["counts"]
    assert (applied["deactivated"], applied["orphans_deactivated"]) == (1, 1)
    assert person(syncd, "P1")["active"] is False
    # Back again: the student is reactivated, the parent with it (a follow-on too).
    imported(syncd, "students-3.csv", students_csv())
    counts = report(syncd, "students-3.csv")["counts"]
    assert (counts["reactivated"], counts["orphans_reactivated"]) == (1, 1)
    assert person(syncd, "P1")["active"] is True


def test_orphans_of_a_pickup_batch_are_judged_by_its_last_file(syncd: Syncd) -> None:
    syncd.configure(max_deactivate=0.5)
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", _parents(("P1", "S5"), ("P2", "S4"), ("P3", "S3")))
    syncd.drop("students-2.csv", students_csv(STUDENTS[:3]))  # S4 and S5 leave
    syncd.drop("parents-2.csv", _parents(("P1", "S1"), ("P2", "S4"), ("P3", "S3")))
    assert syncd("run", "--once").exit_code == 0
    assert (person(syncd, "P1")["active"], person(syncd, "P2")["active"]) == (True, False)
    orphaned = [e for e in syncd.events("person.deactivated") if e["kind"] == "parent"]
    assert [(e["sync_key"], e["reason"]) for e in orphaned] == [("P2", "orphan")]
    # Counted in the report of the file that judged it, with that file's id, as a follow-on.
    counts = report(syncd, "parents-2.csv", syncd.root / "drop" / "reports")["counts"]
    assert (counts["deactivated"], counts["orphans_deactivated"]) == (0, 1)
    assert (
        orphaned[0]["file_id"]
        == report(syncd, "parents-2.csv", syncd.root / "drop" / "reports")["file_id"]
    )
    assert not syncd.events("person.reactivated")


def test_orphans_are_judged_after_the_batch_when_its_last_file_fails(syncd: Syncd) -> None:
    syncd.configure(max_deactivate=0.5)
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", _parents(("P1", "S5")))
    students = syncd.write("students-2.csv", students_csv(STUDENTS[:4]))
    failing = syncd.write("parents-2.csv", _parents(("", "S1"), ("", "S2")))  # no keys
    assert syncd("import", str(students), str(failing)).exit_code == 1
    assert person(syncd, "P1")["active"] is False
    orphaned = [e for e in syncd.events("person.deactivated") if e["kind"] == "parent"]
    assert [(e["sync_key"], e["reason"]) for e in orphaned] == [("P1", "orphan")]


def test_orphan_parents_are_kept_when_the_source_says_so(syncd: Syncd) -> None:
    syncd.configure(max_deactivate=0.5, deactivate_orphan_parents=False)
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", _parents(("P1", "S5")))
    imported(syncd, "students-2.csv", students_csv(STUDENTS[:4]))
    assert person(syncd, "P1")["active"] is True


def test_parent_that_never_had_a_link_stays_active(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    header = ("SyncID", "First name", "Last name", "E-mail")
    imported(syncd, "parents.csv", parents_csv([("P1", "Zoë", "Martin", "zoe@home.example")],
                                               header))  # fmt: skip
    imported(syncd, "students-2.csv", students_csv(STUDENTS))  # a later batch, no links
    assert person(syncd, "P1")["active"] is True


def test_manual_link_survives_a_full_parents_file_that_does_not_name_it(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", _parents(("P1", "S1")))
    assert syncd("link", "--parent", "P1", "--child", "S3").exit_code == 0
    imported(syncd, "parents-2.csv", _parents(("P1", "S1;S2")))
    assert active_links(syncd) == {("P1", "S1"), ("P1", "S2"), ("P1", "S3")}
    origins = {(link["child"], link["origin"]) for link in syncd.export("relationships")}
    assert ("S3", "manual") in origins


def test_manual_link_survives_a_full_relationships_file_that_does_not_name_it(
    syncd: Syncd,
) -> None:
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", _parents(("P1", ""), ("P2", "")))
    imported(syncd, "relationships.csv", _relationships(("P1", "S1"), ("P2", "S2")))
    assert syncd("link", "--parent", "P1", "--child", "S3", "--type", "guardian").exit_code == 0
    imported(syncd, "relationships-2.csv", _relationships(("P1", "S1"), ("P2", "S2"), ("P2", "S4")))
    assert ("P1", "S3") in active_links(syncd)


def test_manual_unlink_is_not_undone_by_a_parents_file_naming_the_link(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", _parents(("P1", "S1;S2")))
    assert syncd("unlink", "--parent", "P1", "--child", "S2").exit_code == 0
    assert active_links(syncd) == {("P1", "S1")}
    # A changed file (so not a duplicate) still naming S2.
    imported(syncd, "parents-2.csv", _parents(("P1", "S1;S2;S3")))
    assert active_links(syncd) == {("P1", "S1"), ("P1", "S3")}


def test_manual_unlink_is_not_undone_by_a_relationships_file_naming_the_link(
    syncd: Syncd,
) -> None:
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", _parents(("P1", ""), ("P2", "")))
    imported(syncd, "relationships.csv", _relationships(("P1", "S1"), ("P2", "S2")))
    assert syncd("unlink", "--parent", "P1", "--child", "S1").exit_code == 0
    imported(syncd, "relationships-2.csv", _relationships(("P1", "S1"), ("P2", "S2"), ("P2", "S3")))
    assert ("P1", "S1") not in active_links(syncd)


def test_manual_unlink_of_a_pair_never_linked_is_audited_and_keeps_files_off(
    syncd: Syncd,
) -> None:
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", _parents(("P1", ""), ("P2", "")))
    outcome = syncd("unlink", "--parent", "P1", "--child", "S1")
    assert outcome.exit_code == 0
    assert (
        outcome.stdout.strip() == "unlinked P1 → S1 (they were not linked); no file will link them"
    )
    [blocked] = syncd.events("relationship.removed")
    assert (blocked["parent"], blocked["child"], blocked["was_linked"]) == ("P1", "S1", False)
    imported(syncd, "relationships.csv", _relationships(("P1", "S1"), ("P2", "S2")))
    assert active_links(syncd) == {("P2", "S2")}
    assert "already so" in syncd("unlink", "--parent", "P1", "--child", "S1").stdout


def test_a_header_only_relationships_file_is_not_held_for_links_unlinked_by_hand(
    syncd: Syncd,
) -> None:
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", _parents(("P1", "")))
    imported(syncd, "relationships.csv", _relationships(("P1", "S1")))
    assert syncd("unlink", "--parent", "P1", "--child", "S1").exit_code == 0
    imported(syncd, "relationships-2.csv", _relationships())
    assert active_links(syncd) == set()


@pytest.mark.parametrize("whole", [False, True])
def test_pending_links_of_both_kinds_of_file_resolve_into_one_link(
    syncd: Syncd, monkeypatch: pytest.MonkeyPatch, whole: bool
) -> None:
    # The students a few pending values name are looked up by key; from a share of the
    # site's students on, the whole index is read: either way the same links.
    if whole:
        monkeypatch.setattr(store, "WHOLE_STUDENT_INDEX", 0)
        monkeypatch.setattr(store, "WHOLE_STUDENT_SHARE", 0.01)
    read_whole = []
    student_values = store._student_values
    monkeypatch.setattr(
        store, "_student_values", lambda *a: read_whole.append(a) or student_values(*a)
    )
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", _parents(("P1", "S9"), ("P2", "S1")))
    imported(syncd, "relationships.csv", _relationships(("P1", "S9"), ("P2", "S8")))
    assert len(syncd("status", "--json").json()) == 1
    newcomers = [
        ("S8", "ida.berg", "Ida", "Berg", "ida@school.example", "1008", "2"),
        ("S9", "noah.mueller", "Noah", "Müller", "noah@school.example", "1009", "1"),
    ]
    read_whole.clear()
    imported(syncd, "students-2.csv", students_csv([*STUDENTS, *newcomers]))
    assert bool(read_whole) == whole
    assert active_links(syncd) == {("P1", "S9"), ("P2", "S1"), ("P2", "S8")}
    assert [link for link in syncd.export("relationships") if link["status"] == "pending"] == []
    assert event_names(syncd).count("relationship.resolved") == 3
    # P1-S9 is named by both kinds of file: a full relationships file without it keeps it.
    imported(syncd, "relationships-2.csv", _relationships(("P2", "S8")))
    assert ("P1", "S9") in active_links(syncd)


def test_link_both_kinds_name_stays_while_either_names_it(syncd: Syncd) -> None:
    syncd.configure(max_deactivate=1.0)
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", _parents(("P1", "S1"), ("P2", "S2")))
    imported(syncd, "relationships.csv", _relationships(("P1", "S1"), ("P2", "S3")))
    assert active_links(syncd) == {("P1", "S1"), ("P2", "S2"), ("P2", "S3")}
    # The relationships file drops P1-S1: the parents file still names it.
    imported(syncd, "relationships-2.csv", _relationships(("P2", "S3")))
    assert ("P1", "S1") in active_links(syncd)
    assert "relationship.removed" not in event_names(syncd)
    # Now the parents file drops it too (P1 keeps S4): gone.
    imported(syncd, "parents-2.csv", _parents(("P1", "S4"), ("P2", "S2")))
    assert active_links(syncd) == {("P1", "S4"), ("P2", "S2"), ("P2", "S3")}
    removed = syncd.events("relationship.removed")
    assert [(e["parent"], e["child"]) for e in removed] == [("P1", "S1")]


def test_parents_file_never_removes_a_relationships_file_link(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", _parents(("P1", "S1")))
    imported(syncd, "relationships.csv", _relationships(("P1", "S2")))
    imported(syncd, "parents-2.csv", _parents(("P1", "S1;S3")))
    assert active_links(syncd) == {("P1", "S1"), ("P1", "S2"), ("P1", "S3")}


def test_full_parents_file_removes_links_of_parents_whose_cell_dropped_a_child(
    syncd: Syncd,
) -> None:
    syncd.configure(max_deactivate=1.0)
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", _parents(("P1", "S1;S2"), ("P2", "S3")))
    imported(syncd, "parents-2.csv", _parents(("P1", "S1"), ("P2", "S3")))
    assert active_links(syncd) == {("P1", "S1"), ("P2", "S3")}
    assert report(syncd, "parents-2.csv")["counts"]["links_removed"] == 1


def test_full_parents_file_deactivating_a_parent_removes_its_parents_file_links_only(
    syncd: Syncd,
) -> None:
    syncd.configure(max_deactivate=1.0)
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", _parents(("P1", "S1"), ("P2", "S2;S3")))
    imported(syncd, "relationships.csv", _relationships(("P2", "S4")))
    imported(syncd, "parents-2.csv", _parents(("P1", "S1")))
    assert person(syncd, "P2")["active"] is False
    # Its relationships-file link is not the parents file's to remove.
    assert active_links(syncd) == {("P1", "S1"), ("P2", "S4")}
    assert report(syncd, "parents-2.csv")["counts"]["links_removed"] == 2


def test_parent_whose_child_left_but_with_a_pending_link_stays_active(syncd: Syncd) -> None:
    syncd.configure(max_deactivate=0.5)
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", _parents(("P1", "S5;S9")))
    assert syncd.links() == {("P1", "S5", "active"), ("P1", "S9", "pending")}
    imported(syncd, "students-2.csv", students_csv(STUDENTS[:4]))
    assert person(syncd, "P1")["active"] is True


def test_full_parents_file_drops_pending_values_its_cell_no_longer_names(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", _parents(("P1", "S1;S9")))
    imported(syncd, "parents-2.csv", _parents(("P1", "S1;S8")))
    assert syncd.links() == {("P1", "S1", "active"), ("P1", "S8", "pending")}


def test_delta_delete_of_an_unknown_person_changes_nothing(syncd: Syncd) -> None:
    syncd.configure(mode={"students": "delta"})
    imported(syncd, "students.csv", students_csv())
    header = (*STUDENT_HEADER, "Status")
    rows = [("S9", "x", "Ole", "Hansen", "", "", "", "delete"), (*STUDENTS[0], "")]
    imported(syncd, "students-2.csv", table(header, rows))
    assert len(syncd.export()) == 5
    assert syncd.events("person.deactivated") == []


def test_deleted_row_in_a_full_file_deactivates_too(syncd: Syncd) -> None:
    syncd.configure(max_deactivate=0.5)
    imported(syncd, "students.csv", students_csv())
    header = (*STUDENT_HEADER, "Action")
    rows = [(*row, "") for row in STUDENTS[1:]] + [(*STUDENTS[0], "Delete")]
    imported(syncd, "students-2.csv", table(header, rows))
    assert person(syncd, "S1")["active"] is False


def test_reactivation_by_delta_upsert(syncd: Syncd) -> None:
    syncd.configure(mode={"students": "delta"}, max_deactivate=0.5)
    imported(syncd, "students.csv", students_csv())
    header = (*STUDENT_HEADER, "Status")
    imported(syncd, "students-2.csv", table(header, [(*STUDENTS[0], "inactive")]))
    assert person(syncd, "S1")["active"] is False
    imported(syncd, "students-3.csv", table(header, [(*STUDENTS[0], "active")]))
    assert person(syncd, "S1")["active"] is True


def test_orphan_parent_listed_again_with_only_a_departed_child_stays_inactive(
    syncd: Syncd,
) -> None:
    _p1_orphaned(syncd)
    assert person(syncd, "P1")["active"] is False
    before = len(event_names(syncd))
    # The SIS still lists P1 with S5 the next night: P1 is no parent of a current student.
    imported(syncd, "parents-2.csv", _parents(("P2", "S4"), ("P1", "S5")))
    assert person(syncd, "P1")["active"] is False
    assert event_names(syncd)[before:] == []
    # When S5 comes back, P1 is reactivated by the link.
    imported(syncd, "students-3.csv", students_csv(STUDENTS[::-1]))
    assert person(syncd, "P1")["active"] is True


@pytest.fixture(params=["by-id", "whole-site"])
def inactive_read(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The students a file linked are checked by id, or (a district's first load names too
    many to keep) against all of the site's inactive students: both must judge alike."""
    if request.param == "whole-site":
        monkeypatch.setattr(apply, "CHILDREN_KEPT", 0)
    return str(request.param)


def test_new_parent_linked_only_to_a_departed_child_is_an_orphan_from_the_start(
    syncd: Syncd, inactive_read: str
) -> None:
    syncd.configure(max_deactivate=0.5)
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "students-2.csv", students_csv(STUDENTS[:4]))  # S5 leaves
    # A site's first parents file (read column by column), then a later one (row by row).
    imported(syncd, "parents.csv", _parents(("P1", "S5"), ("P2", "S4;S5"), ("P3", "")))
    imported(
        syncd,
        "parents-2.csv",
        _parents(("P1", "S5"), ("P2", "S4;S5"), ("P3", ""), ("P4", "S5")),
    )
    assert syncd.links() >= {("P1", "S5", "active"), ("P4", "S5", "active")}
    assert [person(syncd, key)["active"] for key in ("P1", "P2", "P3", "P4")] == [
        False,  # its only child is not a current student
        True,  # S4 is
        True,  # never had a link
        False,
    ]
    assert report(syncd, "parents.csv")["counts"]["orphans_deactivated"] == 1
    assert report(syncd, "parents-2.csv")["counts"]["orphans_deactivated"] == 1
    orphaned = [e for e in syncd.events("person.deactivated") if e.get("reason") == "orphan"]
    assert [e["sync_key"] for e in orphaned] == ["P1", "P4"]
    # S5 comes back: its parents with it.
    imported(syncd, "students-3.csv", students_csv(STUDENTS[::-1]))
    assert person(syncd, "P1")["active"] is True
    assert person(syncd, "P4")["active"] is True


def test_relationships_file_linking_a_parent_only_to_a_departed_child_orphans_it(
    syncd: Syncd, inactive_read: str
) -> None:
    syncd.configure(max_deactivate=0.5, mode={"relationships": "delta"})
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", _parents(("P1", ""), ("P2", ""), ("P3", "")))
    imported(syncd, "students-2.csv", students_csv(STUDENTS[:4]))  # S5 leaves
    imported(syncd, "relationships.csv", _relationships(("P1", "S5"), ("P2", "S5"), ("P2", "S1")))
    assert [person(syncd, key)["active"] for key in ("P1", "P2", "P3")] == [False, True, True]
    assert report(syncd, "relationships.csv")["counts"]["orphans_deactivated"] == 1


def test_orphan_parent_a_full_parents_file_leaves_out_loses_its_links_and_stays_inactive(
    syncd: Syncd,
) -> None:
    _p1_orphaned(syncd, max_deactivate=1.0)
    assert person(syncd, "P1")["active"] is False
    # The SIS drops P1 too: its parents-file link goes, as a deactivated parent's would.
    imported(syncd, "parents-2.csv", _parents(("P2", "S4")))
    assert syncd.links() == {("P2", "S4", "active")}
    assert report(syncd, "parents-2.csv")["counts"]["links_removed"] == 1
    # S5 comes back: no file names P1 as its parent any more, so P1 stays inactive.
    imported(syncd, "students-3.csv", students_csv(STUDENTS[::-1]))
    assert person(syncd, "P1")["active"] is False
    # Listed again with S5 (the same row as before): the link is made anew, P1 is back.
    imported(syncd, "parents-3.csv", _parents(("P1", "S5"), ("P2", "S4")))
    assert ("P1", "S5", "active") in syncd.links()
    assert person(syncd, "P1")["active"] is True


def test_revert_of_the_file_that_dropped_an_orphans_links_makes_it_an_orphan_again(
    syncd: Syncd,
) -> None:
    _p1_orphaned(syncd, max_deactivate=1.0)
    imported(syncd, "parents-2.csv", _parents(("P2", "S4")))  # P1 left out: its link goes
    reverted = syncd("files", "revert", str(file_id(syncd, "parents-2.csv")))
    assert reverted.exit_code == 0, reverted.stderr
    assert ("P1", "S5", "active") in syncd.links()
    # As before parents-2.csv: S5's return brings its orphaned parent back.
    imported(syncd, "students-3.csv", students_csv(STUDENTS[::-1]))
    assert person(syncd, "P1")["active"] is True
    assert report(syncd, "students-3.csv")["counts"]["orphans_reactivated"] == 1


def test_parent_left_only_a_departed_child_when_a_file_drops_its_pending_link_is_orphaned(
    syncd: Syncd,
) -> None:
    syncd.configure(max_deactivate=0.5)
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", _parents(("P1", "S5;S9"), ("P2", "S4")))
    imported(syncd, "students-2.csv", students_csv(STUDENTS[:4]))
    assert person(syncd, "P1")["active"] is True  # kept by its pending link to S9
    # The next parents file no longer names S9: P1 has no live or pending link left.
    imported(syncd, "parents-2.csv", _parents(("P1", "S5"), ("P2", "S4")))
    assert syncd.links() == {("P1", "S5", "active"), ("P2", "S4", "active")}
    assert person(syncd, "P1")["active"] is False
    orphaned = [e for e in syncd.events("person.deactivated") if e.get("reason") == "orphan"]
    assert [e["sync_key"] for e in orphaned] == ["P1"]


def test_parent_left_only_a_departed_child_when_its_pending_link_expires_is_orphaned(
    syncd: Syncd,
) -> None:
    syncd.configure(max_deactivate=0.5, pending_ttl="1ms")
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "students-2.csv", students_csv(STUDENTS[:4]))
    imported(syncd, "parents.csv", _parents(("P1", "S5;S9"), ("P2", "S4")))
    assert person(syncd, "P1")["active"] is True  # kept by its pending link to S9
    # The next run expires the pending link to S9: P1 keeps only its departed S5.
    syncd.drop_dir.mkdir()
    assert syncd("run", "--once").exit_code == 0
    assert [e["child"] for e in syncd.events("relationship.expired")] == ["S9"]
    assert person(syncd, "P1")["active"] is False
    assert person(syncd, "P2")["active"] is True
    orphaned = [e for e in syncd.events("person.deactivated") if e.get("reason") == "orphan"]
    assert [e["sync_key"] for e in orphaned] == ["P1"]
