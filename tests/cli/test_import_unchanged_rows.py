"""SPEC §2.5 and §7 at scale: a row that is byte for byte the row that last set a person is
counted unchanged without being parsed; everything else a file says still applies exactly as
if every row were read (duplicates, a parent's later rows, settings that change a row's
meaning)."""

from __future__ import annotations

import pytest

from syncd import person_files
from syncd.db import store
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
    table,
)


def _lf(text: str) -> str:
    return text.replace("\r\n", "\n")


def _crlf(text: str) -> str:
    return _lf(text).replace("\n", "\r\n")


def test_the_same_rows_with_other_line_ends_are_unchanged_and_write_nothing(
    syncd: Syncd,
) -> None:
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", parents_csv())
    before = (syncd.export(), syncd.export("relationships"), len(event_names(syncd)))
    imported(syncd, "students-2.csv", _crlf(students_csv()))
    imported(syncd, "parents-2.csv", _lf(parents_csv()))
    assert (syncd.export(), syncd.export("relationships"), len(event_names(syncd))) == before
    assert report(syncd, "students-2.csv")["counts"]["unchanged"] == len(STUDENTS)
    assert report(syncd, "parents-2.csv")["counts"]["unchanged"] == 4  # sean.obrien merged


def test_a_changed_row_among_unchanged_ones_is_the_only_update(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    changed = [STUDENTS[0], (*STUDENTS[1][:3], "Sørensen-Berg", *STUDENTS[1][4:]), *STUDENTS[2:]]
    imported(syncd, "students-2.csv", _crlf(students_csv(changed)))
    counts = report(syncd, "students-2.csv")["counts"]
    assert (counts["updated"], counts["unchanged"]) == (1, len(STUDENTS) - 1)
    updated = syncd.events("person.updated")
    assert [(e["sync_key"], e["fields"]) for e in updated] == [("S2", ["last_name"])]


def test_an_unchanged_row_sent_twice_is_a_duplicate_of_its_first_line(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "students-2.csv", _crlf(students_csv([*STUDENTS, STUDENTS[0]])))
    errors = errors_rows(syncd, "students-2.csv")
    assert [(e["row"], e["error"]) for e in errors] == [("7", "duplicate of row 2")]
    assert report(syncd, "students-2.csv")["counts"]["unchanged"] == len(STUDENTS)


def test_a_changed_row_then_the_old_row_again_keeps_the_first(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    renamed = (*STUDENTS[0][:3], "Müller-Ek", *STUDENTS[0][4:])
    imported(syncd, "students-2.csv", _crlf(students_csv([renamed, *STUDENTS[1:], STUDENTS[0]])))
    assert person(syncd, "S1")["last_name"] == "Müller-Ek"
    errors = errors_rows(syncd, "students-2.csv")
    assert [(e["row"], e["error"]) for e in errors] == [("7", "duplicate of row 2")]


def test_a_parent_on_a_new_second_row_keeps_its_first_child(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", parents_csv())
    katrin_again = ("Katrin", "Müller", "katrin.mueller", "S2", "katrin.mueller@home.example")
    imported(syncd, "parents-2.csv", _lf(parents_csv([*PARENTS, katrin_again])))
    assert active_links(syncd) == PARENT_LINKS | {("katrin.mueller", "S2")}
    assert "relationship.removed" not in event_names(syncd)


def test_a_parent_whose_later_row_is_rejected_keeps_its_links(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", parents_csv())
    peter_one_child = ("Peter", "Sørensen", "peter.sorensen", "S2", "peter.sorensen@home.example")
    peter_broken = ("Peter", "Sørensen", "peter.sorensen", "S3", "not an email")
    rows = [PARENTS[0], peter_one_child, *PARENTS[2:], peter_broken]
    imported(syncd, "parents-2.csv", parents_csv(rows))
    # Only partly listed (a row rejected): a malformed row must not remove a link.
    assert ("peter.sorensen", "S3") in active_links(syncd)
    assert "relationship.removed" not in event_names(syncd)


def test_a_setting_that_changes_what_a_row_means_makes_it_read_again(syncd: Syncd) -> None:
    header = (*PARENT_HEADER, "Relationship")
    rows = [(*PARENTS[0], "Mother")]
    imported(syncd, "students.csv", students_csv())
    syncd.configure(relationship_types={"Mother": "Guardian"}, mode="delta")
    imported(syncd, "parents.csv", parents_csv(rows, header))
    syncd.configure(relationship_types={"Mother": "Relative"}, mode="delta")
    imported(syncd, "parents-2.csv", _lf(parents_csv(rows, header)))
    links = syncd.export("relationships")
    assert [(link["parent"], link["child"], link["type"]) for link in links] == [
        ("katrin.mueller", "S1", "Relative")
    ]


def test_history_keeps_the_creation_of_a_link_a_later_file_removed(syncd: Syncd) -> None:
    syncd.configure(max_deactivate=1.0)
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", parents_csv())
    moved = ("Katrin", "Müller", "katrin.mueller", "S2", "katrin.mueller@home.example")
    imported(syncd, "parents-2.csv", parents_csv([moved, *PARENTS[1:]]))
    first = syncd("history", "--file", str(file_id(syncd, "parents.csv")), "--json").json()
    created = [(e["parent"], e["child"]) for e in first if e["event"] == "relationship.created"]
    assert sorted(created) == sorted(PARENT_LINKS)
    katrin = syncd("history", "--person", "katrin.mueller", "--json").json()
    links = [(e["event"], e["child"]) for e in katrin if e["event"].startswith("relationship.")]
    assert links == [
        ("relationship.created", "S1"),
        ("relationship.created", "S2"),
        ("relationship.removed", "S1"),
    ]


def test_a_first_load_lists_its_creations_in_history_in_file_order(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    events = syncd("history", "--file", str(file_id(syncd, "students.csv")), "--json").json()
    names = [e["event"] for e in events]
    assert names[:2] == ["file.received", "file.validated"] and names[-1] == "file.applied"
    created = [e for e in events if e["event"] == "person.created"]
    assert [e["sync_key"] for e in created] == [s[0] for s in STUDENTS]
    assert all(
        {"ts", "source", "site", "file_id", "run_id", "person_id"} <= set(e) for e in created
    )


@pytest.mark.parametrize("rows_first", [True, False])
def test_big_file_paths_give_the_same_result(
    syncd: Syncd, monkeypatch: pytest.MonkeyPatch, rows_first: bool
) -> None:
    """Chunks, the parked records of parents that repeat, the whole student index: with the
    sizes that switch them on made tiny, the outcome is the small file's."""
    monkeypatch.setattr(person_files, "CHUNK", 2)
    monkeypatch.setattr(person_files, "IN_FILE_ORDER", 3)
    monkeypatch.setattr(store, "WHOLE_STUDENT_INDEX", 2)
    imported(syncd, "students.csv", students_csv())
    parents = PARENTS if rows_first else PARENTS[::-1]
    imported(syncd, "parents.csv", parents_csv(parents))
    assert active_links(syncd) == PARENT_LINKS
    imported(syncd, "parents-2.csv", _lf(parents_csv(parents)))
    assert active_links(syncd) == PARENT_LINKS
    counts = report(syncd, "parents-2.csv")["counts"]
    assert (counts["created"], counts["updated"], counts["links_created"]) == (0, 0, 0)


def test_unknown_columns_in_another_order_are_read_and_unchanged(syncd: Syncd) -> None:
    header = ("SyncID", "First name", "Last name", "Grade", "School")
    rows = [("S1", "Lena", "Müller", "5", "North"), ("S2", "Jonas", "Sørensen", "5", "South")]
    imported(syncd, "students.csv", table(header, rows))
    swapped = [(key, first, last, school, grade) for key, first, last, grade, school in rows]
    imported(syncd, "students-2.csv", table(("SyncID", "First name", "Last name", "School",
                                              "Grade"), swapped))  # fmt: skip
    assert report(syncd, "students-2.csv")["counts"]["unchanged"] == 2
    assert "person.updated" not in event_names(syncd)


@pytest.mark.parametrize("duplicate", [False, True])
@pytest.mark.parametrize("left_out", [1, 3])
def test_a_full_file_deactivates_exactly_whom_it_leaves_out(
    syncd: Syncd, monkeypatch: pytest.MonkeyPatch, left_out: int, duplicate: bool
) -> None:
    """Whom a full file leaves out is what its unchanged rows did not take out of the
    site's digests: a few are looked up by digest, many in one pass (store.CHUNK made tiny
    switches between them); a duplicate row makes every row parsed, with the same result."""
    monkeypatch.setattr(store, "CHUNK", 1)
    syncd.configure(max_deactivate=1.0)
    imported(syncd, "students.csv", students_csv())
    kept = [*STUDENTS[left_out:], *([STUDENTS[-1]] if duplicate else [])]
    imported(syncd, "students-2.csv", _lf(students_csv(kept)))
    active = {p["sync_key"]: p["active"] for p in syncd.export()}
    assert active == {s[0]: i >= left_out for i, s in enumerate(STUDENTS)}
    counts = report(syncd, "students-2.csv")["counts"]
    assert (counts["deactivated"], counts["unchanged"]) == (left_out, len(STUDENTS) - left_out)


def test_max_update_counts_the_sites_inactive_persons_too(syncd: Syncd) -> None:
    """The update threshold is judged against every person of the site: 2 updates of 5
    students is 40 % (under 50 %) even when only 3 of them are active and listed."""
    syncd.configure(max_update=0.5, max_deactivate=1.0)
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "students-2.csv", _lf(students_csv(STUDENTS[2:])))  # S1, S2 deactivated
    renamed = [(*s[:3], s[3] + "-Ek", *s[4:]) for s in STUDENTS[2:4]]
    imported(syncd, "students-3.csv", students_csv([*renamed, STUDENTS[4]]))
    assert report(syncd, "students-3.csv")["status"] == "applied"
    assert person(syncd, "S3")["last_name"] == "Nuñez-Ek"
    all_renamed = [(*s[:3], s[3] + "-Ek", *s[4:]) for s in STUDENTS]
    outcome = run_import(syncd, "students-4.csv", students_csv(all_renamed))
    assert report(syncd, "students-4.csv")["status"] == "held", outcome.stdout


def test_changed_parents_among_unchanged_ones_resolve_children_by_key(
    syncd: Syncd, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While unchanged rows are skipped, children are looked up by key until half the site's
    students were asked for, then read whole: either way the links are the file's."""
    monkeypatch.setattr(person_files, "CHUNK", 1)
    monkeypatch.setattr(store, "WHOLE_STUDENT_INDEX", 0)
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", parents_csv())
    katrin = ("Katrin", "Müller", "katrin.mueller", "S1", "katrin@home.example")  # 1 asked
    peter = ("Peter", "Sørensen", "peter.sorensen", "S2;S3;S5", "peter.sorensen@home.example")
    imported(syncd, "parents-2.csv", _lf(parents_csv([katrin, peter, *PARENTS[2:]])))
    assert active_links(syncd) == PARENT_LINKS | {("peter.sorensen", "S5")}
    counts = report(syncd, "parents-2.csv")["counts"]
    assert (counts["updated"], counts["links_created"]) == (1, 1)


def test_an_unchanged_parent_row_names_a_child_again_after_its_pending_link_expired(
    syncd: Syncd,
) -> None:
    syncd.configure(pending_ttl="1ms")
    imported(syncd, "students.csv", students_csv(STUDENTS[:4]))
    katrin = ("Katrin", "Müller", "katrin.mueller", "S1;S5", "katrin.mueller@home.example")
    imported(syncd, "parents.csv", parents_csv([katrin]))
    syncd.drop_dir.mkdir()
    assert syncd("run", "--once").exit_code == 0
    assert [e["child"] for e in syncd.events("relationship.expired")] == ["S5"]
    # The same row again, S5 still unknown: the file names it, so it is pending again.
    imported(syncd, "parents-2.csv", _lf(parents_csv([katrin])))
    pending = report(syncd, "parents-2.csv")["pending"]
    assert [(link["parent"], link["child"]) for link in pending] == [("katrin.mueller", "S5")]
    # Once S5 came (after that link expired too), the same row links it.
    assert syncd("run", "--once").exit_code == 0
    imported(syncd, "students-2.csv", students_csv())
    imported(syncd, "parents-3.csv", parents_csv([katrin]) + "\r\n")
    assert active_links(syncd) == {("katrin.mueller", "S1"), ("katrin.mueller", "S5")}


def test_an_unchanged_parent_row_follows_a_child_email_to_the_student_who_has_it_now(
    syncd: Syncd,
) -> None:
    syncd.configure(child_field="email", max_deactivate=1.0)
    imported(syncd, "students.csv", students_csv(STUDENTS[:4]))
    katrin = ("Katrin", "Müller", "katrin.mueller", "lena.mueller@school.example",
              "katrin.mueller@home.example")  # fmt: skip
    imported(syncd, "parents.csv", parents_csv([katrin]))
    assert active_links(syncd) == {("katrin.mueller", "S1")}
    # S1's address moves to a new student S5; the parents row, byte for byte the same, now
    # names S5.
    moved = [(*STUDENTS[0][:4], "lena.old@school.example", *STUDENTS[0][5:]), *STUDENTS[1:4]]
    s5 = (*STUDENTS[4][:4], "lena.mueller@school.example", *STUDENTS[4][5:])
    imported(syncd, "students-2.csv", students_csv([*moved, s5]))
    imported(syncd, "parents-2.csv", _lf(parents_csv([katrin])))
    assert active_links(syncd) == {("katrin.mueller", "S5")}
