"""SPEC §2.4 undo: `syncd files revert ID` restores what one applied file changed."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from syncd import edits
from tests.cli.conftest import Syncd
from tests.cli.rosters import (
    STUDENTS,
    active_links,
    file_id,
    files,
    imported,
    parents_csv,
    person,
    students_csv,
)

HEADER = ("SyncID", "First name", "Last name", "E-mail", "Pupil sync key")


def _snapshot(syncd: Syncd) -> tuple[list[dict[str, Any]], set[tuple[str, str]]]:
    return syncd.export(), active_links(syncd)


def _revert(syncd: Syncd, name: str) -> int:
    outcome = syncd("files", "revert", str(file_id(syncd, name)))
    assert outcome.exit_code == 0, outcome.stderr
    return file_id(syncd, name)


def test_revert_restores_updated_fields_and_deactivated_students(syncd: Syncd) -> None:
    syncd.configure(max_deactivate=0.5, max_update=1.0)
    imported(syncd, "students.csv", students_csv())
    before = _snapshot(syncd)
    changed = [
        ("S1", "lena.mueller", "Lena", "Müller-Schmidt", "lena@school.example", "1001", "6"),
        *STUDENTS[1:4],
    ]
    imported(syncd, "students-2.csv", students_csv(changed))
    assert person(syncd, "S1")["last_name"] == "Müller-Schmidt"
    assert person(syncd, "S5")["active"] is False
    reverted = _revert(syncd, "students-2.csv")
    assert _snapshot(syncd) == before
    assert [e["file_id"] for e in syncd.events("file.reverted")] == [reverted]
    assert [f["status"] for f in files(syncd) if f["id"] == reverted] == ["reverted"]


def test_revert_deactivates_persons_the_file_created(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv(STUDENTS[:3]))
    imported(syncd, "students-2.csv", students_csv(STUDENTS))
    _revert(syncd, "students-2.csv")
    state = {p["sync_key"]: p["active"] for p in syncd.export()}
    assert state == {"S1": True, "S2": True, "S3": True, "S4": False, "S5": False}


PARENTS = [
    ("P1", "Katrin", "Müller", "katrin@home.example", "S1"),
    ("P2", "Peter", "Sørensen", "peter@home.example", "S2;S3"),
]
# P1 with another email and a second child, P2 without S3.
PARENTS_CHANGED = [
    ("P1", "Katrin", "Müller", "katrin.neu@home.example", "S1;S4"),
    ("P2", "Peter", "Sørensen", "peter@home.example", "S2"),
]


def _parents_then_changed(
    syncd: Syncd, *more: tuple[str, ...]
) -> tuple[list[dict[str, Any]], set[tuple[str, str]]]:
    """Import the students, PARENTS, then PARENTS_CHANGED (and `more`) as parents-2.csv;
    return the snapshot before parents-2.csv."""
    syncd.configure(max_deactivate=1.0, max_update=1.0)
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", parents_csv(PARENTS, HEADER))
    before = _snapshot(syncd)
    imported(syncd, "parents-2.csv", parents_csv([*PARENTS_CHANGED, *more], HEADER))
    return before


def test_revert_of_a_file_that_created_a_parent_and_orphaned_it_leaves_it_inactive(
    syncd: Syncd,
) -> None:
    # parents-3.csv creates P9, linked only to a student who left: an orphan from the start.
    # Its undos, last first: active again (the orphan step), then not (the creation).
    syncd.configure(max_deactivate=1.0)
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", parents_csv(PARENTS, HEADER))
    imported(syncd, "students-2.csv", students_csv(STUDENTS[:4]))  # S5 leaves
    nine = ("P9", "Nora", "Neun", "nora@home.example", "S5")
    imported(syncd, "parents-3.csv", parents_csv([*PARENTS, nine], HEADER))
    assert person(syncd, "P9")["active"] is False
    _revert(syncd, "parents-3.csv")
    assert person(syncd, "P9")["active"] is False
    last = [e["event"] for e in syncd.events() if e.get("sync_key") == "P9"][-1]
    assert last == "person.deactivated"  # the trail's last word is the stored state


def test_revert_restores_links_a_parents_file_changed(syncd: Syncd) -> None:
    before = _parents_then_changed(syncd)
    assert active_links(syncd) == {("P1", "S1"), ("P1", "S4"), ("P2", "S2")}
    _revert(syncd, "parents-2.csv")
    assert _snapshot(syncd) == before


def test_revert_of_a_file_whose_records_a_later_file_changed_is_refused(syncd: Syncd) -> None:
    syncd.configure(max_update=1.0)
    imported(syncd, "students.csv", students_csv())
    second = [(*STUDENTS[0][:6], "6"), *STUDENTS[1:]]
    imported(syncd, "students-2.csv", students_csv(second))
    third = [(*STUDENTS[0][:6], "7"), *STUDENTS[1:]]
    imported(syncd, "students-3.csv", students_csv(third))
    later = file_id(syncd, "students-3.csv")
    outcome = syncd("files", "revert", str(file_id(syncd, "students-2.csv")))
    assert outcome.exit_code != 0
    assert f"revert file {later} first" in outcome.stderr
    assert len(outcome.stderr.strip().splitlines()) == 1
    assert person(syncd, "S1")["attributes"]["grade"] == "7"
    assert syncd.events("file.reverted") == []
    # Reverting the later file first, then the earlier one, works back to the start.
    _revert(syncd, "students-3.csv")
    _revert(syncd, "students-2.csv")
    assert person(syncd, "S1")["attributes"]["grade"] == "5"


def test_revert_refused_for_a_later_manual_edit_says_what_to_do_instead(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", parents_csv())
    assert syncd("link", "--parent", "katrin.mueller", "--child", "S3").exit_code == 0
    outcome = syncd("files", "revert", str(file_id(syncd, "parents.csv")))
    assert outcome.exit_code == 1
    assert outcome.stderr.strip().endswith(
        "send a corrected file (its links can also be mended by hand, with syncd link or unlink)"
    )
    assert "a manual edit" in outcome.stderr


def test_revert_is_one_audited_change_with_person_events(syncd: Syncd) -> None:
    syncd.configure(max_update=1.0)
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "students-2.csv", students_csv([(*STUDENTS[0][:6], "6"), *STUDENTS[1:]]))
    reverted = _revert(syncd, "students-2.csv")
    history = syncd("history", "--person", "S1", "--json").json()
    updates = [e for e in history if e["event"] == "person.updated"]
    assert [u["changes"]["attributes.grade"] for u in updates] == [
        {"old": "5", "new": "6"},
        {"old": "6", "new": "5"},
    ]
    events = syncd("history", "--file", str(reverted), "--json").json()
    assert "file.reverted" in [e["event"] for e in events]


def test_revert_of_a_file_that_was_not_applied_is_a_usage_error(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    reverted = _revert(syncd, "students.csv")
    outcome = syncd("files", "revert", str(reverted))
    assert outcome.exit_code == 2
    assert "reverted" in outcome.stderr
    assert syncd("files", "revert", "999").exit_code == 2


def test_reverted_content_imported_again_applies_again(syncd: Syncd) -> None:
    syncd.configure(max_update=1.0)
    imported(syncd, "students.csv", students_csv())
    path = syncd.write("students-2.csv", students_csv([(*STUDENTS[0][:6], "6"), *STUDENTS[1:]]))
    assert syncd("import", str(path)).exit_code == 0
    _revert(syncd, "students-2.csv")
    assert syncd("import", str(path)).exit_code == 0
    assert person(syncd, "S1")["attributes"]["grade"] == "6"
    assert [f["status"] for f in files(syncd)] == ["applied", "reverted", "applied"]


def test_reverted_parents_file_sent_again_makes_its_links_again(syncd: Syncd) -> None:
    # The parents' rows are the same as the reverted file's: only their links differ from
    # what the revert restored, and those must be made again, not skipped as unchanged.
    syncd.configure(max_deactivate=1.0, max_update=1.0)
    imported(syncd, "students.csv", students_csv())
    rows = [("P1", "Katrin", "Müller", "katrin@home.example", "S1")]
    imported(syncd, "parents.csv", parents_csv(rows, HEADER))
    moved = [("P1", "Katrin", "Müller", "katrin@home.example", "S2")]
    path = syncd.write("parents-2.csv", parents_csv(moved, HEADER))
    assert syncd("import", str(path)).exit_code == 0
    _revert(syncd, "parents-2.csv")
    assert active_links(syncd) == {("P1", "S1")}
    again = syncd("import", "--json", str(path))
    assert again.exit_code == 0, again.stderr
    assert active_links(syncd) == {("P1", "S2")}
    counts = json.loads(again.stdout)["counts"]
    assert (counts["links_created"], counts["links_removed"], counts["updated"]) == (1, 1, 0)
    updates = [e for e in syncd.events("person.updated") if e.get("reason") != "revert"]
    assert updates == []


def test_revert_of_a_relationships_file_drops_its_links_and_pending_links(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    rows = [("P1", "Katrin", "Müller", "katrin@home.example", "S1")]
    imported(syncd, "parents.csv", parents_csv(rows, HEADER))
    links = "Parent ID,Student ID,Relationship\nP1,S1,Parent\nP1,S2,Guardian\nP1,S9,Parent\n"
    imported(syncd, "relationships.csv", links)
    assert syncd.links() == {
        ("P1", "S1", "active"), ("P1", "S2", "active"), ("P1", "S9", "pending")
    }  # fmt: skip
    _revert(syncd, "relationships.csv")
    # P1-S1 stays: the parents file names it too.
    assert syncd.links() == {("P1", "S1", "active")}


def test_revert_of_a_students_file_refuses_when_a_later_file_linked_its_students(
    syncd: Syncd,
) -> None:
    imported(syncd, "students.csv", students_csv(STUDENTS[:4]))
    imported(syncd, "students-2.csv", students_csv(STUDENTS))
    rows = [("P1", "Zoë", "Martin", "zoe.parent@home.example", "S5")]
    imported(syncd, "parents.csv", parents_csv(rows, HEADER))
    outcome = syncd("files", "revert", str(file_id(syncd, "students-2.csv")))
    assert outcome.exit_code != 0
    assert f"file {file_id(syncd, 'parents.csv')}" in outcome.stderr
    assert person(syncd, "S5")["active"] is True


def test_a_refused_revert_names_the_earliest_later_change_on_every_database(
    syncd: Syncd,
) -> None:
    # The later file made several links to the students: the one it made first is named
    # (it was whichever row the database gave first, another on PostgreSQL than on SQLite).
    imported(syncd, "students.csv", students_csv(STUDENTS[:4]))
    imported(syncd, "parents.csv", "SyncID,First name,Last name\nP1,Pat,Lee\nP2,Kim,Lee\n")
    rows = "P2,S4,Parent\nP1,S3,Guardian\nP1,S4,Parent\nP2,S1,Parent\n"
    imported(syncd, "relationships.csv", "Parent ID,Student ID,Relationship\n" + rows)
    outcome = syncd("files", "revert", str(file_id(syncd, "students.csv")))
    assert outcome.exit_code == 1
    later = file_id(syncd, "relationships.csv")
    assert outcome.stderr == (
        f"syncd: cannot revert file {file_id(syncd, 'students.csv')}: file {later} changed the "
        "same records later (relationship.created of link P2 → S4); revert file "
        f"{later} first\n"
    )


def test_a_manual_unlink_of_a_pair_never_linked_does_not_block_a_revert(syncd: Syncd) -> None:
    # `unlink` of a pair that is not linked only keeps files from linking it: no link
    # changed, so reverting the file that made the parent is not refused for it.
    imported(syncd, "students.csv", students_csv(STUDENTS[:4]))
    imported(syncd, "parents.csv", "SyncID,First name,Last name,ChildID\nP1,Pat,Lee,S1\n")
    assert syncd("unlink", "--parent", "P1", "--child", "S3").exit_code == 0
    _revert(syncd, "parents.csv")
    assert active_links(syncd) == set()
    assert person(syncd, "P1")["active"] is False


def test_a_pending_link_that_expired_does_not_block_reverting_its_file(syncd: Syncd) -> None:
    # An expiry (pending_ttl) is nobody's change to undo first, and no command could.
    syncd.configure(pending_ttl="1s")
    imported(syncd, "students.csv", students_csv(STUDENTS[:2]))
    imported(syncd, "parents.csv", "SyncID,First name,Last name,ChildID\nP1,A,B,S1\nP2,C,D,S99\n")
    time.sleep(1.2)
    syncd.drop_dir.mkdir()
    assert syncd("run", "--once").exit_code == 0
    assert len(syncd.events("relationship.expired")) == 1
    outcome = syncd("files", "revert", str(file_id(syncd, "parents.csv")))
    assert outcome.exit_code == 0, outcome.stderr
    assert "3 changes undone" in outcome.stdout  # P1, P2 and P1 → S1; the expired one was gone
    assert syncd.export("relationships") == []


def test_revert_restores_a_pending_link_the_file_dropped_and_audits_both_ways(
    syncd: Syncd,
) -> None:
    imported(syncd, "students.csv", students_csv())
    before_rows = [("P1", "Katrin", "Müller", "katrin@home.example", "S1;S9")]
    imported(syncd, "parents.csv", parents_csv(before_rows, HEADER))
    after_rows = [("P1", "Katrin", "Müller", "katrin@home.example", "S1;S8")]
    imported(syncd, "parents-2.csv", parents_csv(after_rows, HEADER))
    assert syncd.links() == {("P1", "S1", "active"), ("P1", "S8", "pending")}
    _revert(syncd, "parents-2.csv")
    assert syncd.links() == {("P1", "S1", "active"), ("P1", "S9", "pending")}
    undone = [
        (e["event"], e["child"], e.get("origin"))
        for e in syncd.events()
        if e["event"].startswith("relationship.") and e.get("reason") == "revert"
    ]
    # Each names the kind of file whose change it undoes, as the events of the file did.
    assert sorted(undone) == [
        ("relationship.pending", "S9", "parents"),
        ("relationship.removed", "S8", "parents"),
    ]


def test_revert_of_a_students_file_makes_the_links_it_resolved_pending_again(
    syncd: Syncd,
) -> None:
    imported(syncd, "students.csv", students_csv(STUDENTS[:4]))
    rows = [("P1", "Zoë", "Martin", "zoe.parent@home.example", "S4;S5")]
    imported(syncd, "parents.csv", parents_csv(rows, HEADER))
    before = syncd.links()
    assert before == {("P1", "S4", "active"), ("P1", "S5", "pending")}
    imported(syncd, "students-2.csv", students_csv(STUDENTS))
    assert syncd.links() == {("P1", "S4", "active"), ("P1", "S5", "active")}
    _revert(syncd, "students-2.csv")
    assert person(syncd, "S5")["active"] is False
    assert syncd.links() == before


@pytest.mark.parametrize("batch", [1, 2, edits.UNDO_BATCH])
def test_revert_writes_its_undos_in_trail_order_however_many_at_once(
    syncd: Syncd, monkeypatch: pytest.MonkeyPatch, batch: int
) -> None:
    monkeypatch.setattr(edits, "UNDO_BATCH", batch)
    before = _parents_then_changed(
        syncd, ("P3", "Claire", "Martin", "claire@home.example", "S5;S4")
    )
    reverted = _revert(syncd, "parents-2.csv")
    persons, links = _snapshot(syncd)
    assert links == before[1]
    assert [p for p in persons if p["sync_key"] != "P3"] == before[0]
    assert person(syncd, "P3")["active"] is False
    events = syncd("history", "--file", str(reverted), "--json").json()
    undone = [
        (e["event"], e.get("sync_key") or f"{e['parent']}→{e['child']}")
        for e in events
        if e.get("reason") == "revert"
    ]
    # Each link's undo names the kind of file whose change it undoes.
    assert {e.get("origin") for e in events if e.get("reason") == "revert" and "parent" in e} == {
        "parents"
    }
    # Newest first, as the one-at-a-time revert wrote them.
    assert undone == [
        ("relationship.created", "P2→S3"),
        ("person.updated", "P1"),
        ("relationship.removed", "P3→S4"),
        ("relationship.removed", "P3→S5"),
        ("relationship.removed", "P1→S4"),
        ("person.deactivated", "P3"),
    ]


def test_a_later_change_to_another_link_of_the_same_parent_does_not_block_a_revert(
    syncd: Syncd,
) -> None:
    # SPEC §2.4: a revert refuses where a later change touched *the same records*; a link
    # of the parent to another child is another record.
    imported(syncd, "students.csv", students_csv())
    rows = [("P1", "Katrin", "Müller", "katrin@home.example", "S1")]
    imported(syncd, "parents.csv", parents_csv(rows, HEADER))
    imported(syncd, "relationships.csv", "Parent ID,Student ID,Relationship\nP1,S2,Guardian\n")
    assert syncd("link", "--parent", "P1", "--child", "S3").exit_code == 0
    _revert(syncd, "relationships.csv")
    assert active_links(syncd) == {("P1", "S1"), ("P1", "S3")}
    # The same link changed later still blocks it.
    imported(syncd, "relationships-2.csv", "Parent ID,Student ID,Relationship\nP1,S2,Guardian\n")
    assert syncd("unlink", "--parent", "P1", "--child", "S2").exit_code == 0
    outcome = syncd("files", "revert", str(file_id(syncd, "relationships-2.csv")))
    assert outcome.exit_code == 1
    assert "link P1 → S2" in outcome.stderr


def test_a_later_link_of_a_person_the_file_only_updated_does_not_block_a_revert(
    syncd: Syncd,
) -> None:
    # A file that only renamed a parent and a student: the later links of either are other
    # records (SPEC §2.4 refuses only where a later change touched the same records).
    syncd.configure(max_update=1.0)
    imported(syncd, "students.csv", students_csv())
    rows = [("P1", "Katrin", "Müller", "katrin@home.example", "S1")]
    imported(syncd, "parents.csv", parents_csv(rows, HEADER))
    renamed = [("P1", "Katrin", "Mueller", "katrin@home.example", "S1")]
    imported(syncd, "parents-2.csv", parents_csv(renamed, HEADER))
    imported(
        syncd,
        "students-2.csv",
        students_csv(
            [("S2", *STUDENTS[1][1:3], "Sorensen", *STUDENTS[1][4:]), *STUDENTS[2:], STUDENTS[0]]
        ),
    )
    imported(syncd, "relationships.csv", "Parent ID,Student ID\nP1,S2\n")
    _revert(syncd, "parents-2.csv")
    _revert(syncd, "students-2.csv")
    assert (person(syncd, "P1")["last_name"], person(syncd, "S2")["last_name"]) == (
        "Müller",
        "Sørensen",
    )
    assert active_links(syncd) == {("P1", "S1"), ("P1", "S2")}
    # A later change of the same person still blocks it.
    imported(syncd, "parents-3.csv", parents_csv(renamed, HEADER))
    imported(
        syncd,
        "parents-4.csv",
        parents_csv([("P1", "Kat", "Mueller", "katrin@home.example", "S1")], HEADER),
    )
    outcome = syncd("files", "revert", str(file_id(syncd, "parents-3.csv")))
    assert outcome.exit_code == 1
    assert f"file {file_id(syncd, 'parents-4.csv')}" in outcome.stderr


def test_a_link_resolved_from_a_files_pending_link_blocks_reverting_that_file(
    syncd: Syncd,
) -> None:
    # The parents file asked for S5 before she came; her students file made the link. The
    # revert cannot take that link back as the file's (it is the students file's now).
    imported(syncd, "students.csv", students_csv(STUDENTS[:4]))
    rows = [("P1", "Katrin", "Müller", "katrin@home.example", "S1")]
    imported(syncd, "parents.csv", parents_csv(rows, HEADER))
    rows = [("P1", "Katrin", "Müller", "katrin@home.example", "S1;S5")]
    imported(syncd, "parents-2.csv", parents_csv(rows, HEADER))
    imported(syncd, "students-2.csv", students_csv())
    assert ("P1", "S5") in active_links(syncd)
    outcome = syncd("files", "revert", str(file_id(syncd, "parents-2.csv")))
    assert outcome.exit_code == 1
    assert f"file {file_id(syncd, 'students-2.csv')} changed the same records" in outcome.stderr


def test_a_reverted_link_that_a_relationships_file_still_names_stays_and_says_nothing(
    syncd: Syncd,
) -> None:
    # SPEC §2.4: a link both kinds name stays while either names it. Reverting the parents
    # file that made it takes back that file's mark only: no relationship.removed for a
    # link that is still there, and not counted among the changes undone.
    syncd.configure(max_deactivate=1.0)
    imported(syncd, "students.csv", students_csv())
    rows = [("P1", "Katrin", "Müller", "katrin@home.example", "S1")]
    imported(syncd, "parents.csv", parents_csv(rows, HEADER))
    rows = [("P1", "Katrin", "Müller", "katrin@home.example", "S2")]
    imported(syncd, "parents-2.csv", parents_csv(rows, HEADER))
    imported(syncd, "relationships.csv", "Parent ID,Student ID\nP1,S2\n")
    removed_before = len(syncd.events("relationship.removed"))
    outcome = syncd("files", "revert", str(file_id(syncd, "parents-2.csv")))
    assert outcome.exit_code == 0, outcome.stderr
    assert active_links(syncd) == {("P1", "S1"), ("P1", "S2")}
    assert len(syncd.events("relationship.removed")) == removed_before
    [reverted] = syncd.events("file.reverted")
    assert reverted["changes"] == 1


def test_reverting_a_retype_takes_back_the_files_mark_on_the_link(syncd: Syncd) -> None:
    # The relationships file both named the parents file's link and retyped it; reverted,
    # the link is the parents file's alone again, and goes with that file's revert.
    syncd.configure(max_deactivate=1.0)
    imported(syncd, "students.csv", students_csv())
    rows = [("P1", "Katrin", "Müller", "katrin@home.example", "S1;S2")]
    imported(syncd, "parents.csv", parents_csv(rows, HEADER))
    imported(syncd, "relationships.csv", "Parent ID,Student ID,Relationship\nP1,S1,Guardian\n")
    _revert(syncd, "relationships.csv")
    [link] = [x for x in syncd.export("relationships") if x["child"] == "S1"]
    assert link["type"] == "Parent"
    _revert(syncd, "parents.csv")
    assert active_links(syncd) == set()
