"""A person a file names by its username (no sync key): usernames compare case-insensitively
(SPEC §2.2), so a username in another case names the same person and is no change; its
sync key (SPEC §9) and username keep the spelling they were first given."""

from __future__ import annotations

import pytest

from tests.cli.conftest import Syncd
from tests.cli.rosters import (
    PARENT_HEADER,
    active_links,
    errors_rows,
    imported,
    parents_csv,
    person,
    report,
    run_import,
    students_csv,
    table,
)

USERNAME_STUDENTS = ("Username", "First name", "Last name", "Grade")


@pytest.fixture(autouse=True)
def _no_thresholds(syncd: Syncd) -> None:
    # Files of a few rows: any change is more than the default thresholds' share.
    syncd.configure(max_update=1.0, max_deactivate=1.0)


def _students(*rows: tuple[str, str, str, str]) -> str:
    return table(USERNAME_STUDENTS, rows)


def test_a_username_in_another_case_names_the_same_student(syncd: Syncd) -> None:
    imported(
        syncd,
        "students-1.csv",
        _students(("JDoe", "Jane", "Doe", "5"), ("ASmith", "A", "Smith", "5")),
    )
    imported(
        syncd,
        "students-2.csv",
        _students(("jdoe", "Jane", "Doe", "6"), ("ASMITH", "A", "Smith", "5")),
    )

    counts = report(syncd, "students-2.csv")["counts"]
    assert (counts["created"], counts["updated"], counts["unchanged"]) == (0, 1, 1)
    assert counts["deactivated"] == 0
    students = syncd.export()
    assert [(s["sync_key"], s["username"], s["active"]) for s in students] == [
        ("ASmith", "ASmith", True),
        ("JDoe", "JDoe", True),
    ]
    assert person(syncd, "JDoe")["attributes"] == {"grade": "6"}
    [updated] = syncd.events("person.updated")
    assert (updated["sync_key"], list(updated["changes"])) == ("JDoe", ["attributes.grade"])


def test_a_username_only_in_another_case_is_no_change(syncd: Syncd) -> None:
    imported(syncd, "students-1.csv", _students(("jdoe", "Jane", "Doe", "5")))
    imported(syncd, "students-2.csv", _students(("JDOE", "Jane", "Doe", "5")))
    imported(
        syncd, "students-3.csv", _students(("JDOE", "Jane", "Doe", "5"), ("new", "N", "W", "5"))
    )

    assert report(syncd, "students-2.csv")["counts"]["unchanged"] == 1
    counts = report(syncd, "students-3.csv")["counts"]
    assert (counts["created"], counts["updated"], counts["unchanged"]) == (1, 0, 1)
    assert {(s["sync_key"], s["username"]) for s in syncd.export()} == {
        ("jdoe", "jdoe"),
        ("new", "new"),
    }
    assert syncd.events("person.updated") == []


def test_one_username_twice_in_a_file_in_two_cases_is_a_duplicate(syncd: Syncd) -> None:
    imported(
        syncd,
        "students.csv",
        _students(("JDoe", "Jane", "Doe", "5"), ("jdoe", "J", "Doe", "5"), ("x", "X", "Y", "5")),
    )

    errors = errors_rows(syncd, "students.csv")
    assert [(e["row"], e["value"]) for e in errors] == [("3", "jdoe")]
    assert "duplicate of row 2" in errors[0]["error"]
    assert sorted(s["sync_key"] for s in syncd.export()) == ["JDoe", "x"]


def test_a_delta_delete_row_names_its_person_in_any_case(syncd: Syncd) -> None:
    syncd.configure(mode={"students": "delta"}, max_deactivate=1.0)
    imported(syncd, "students-1.csv", _students(("JDoe", "Jane", "Doe", "5"), ("x", "X", "Y", "5")))
    deletes = table(("Username", "Status"), [("jdoe", "deleted")])
    imported(syncd, "students-2.csv", deletes)

    assert {(s["sync_key"], s["active"]) for s in syncd.export()} == {("JDoe", False), ("x", True)}


def test_a_parents_file_in_another_case_keeps_its_parents_and_links(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    rows = [
        ("Katrin", "Müller", "Katrin.Mueller", "S1", ""),
        ("Peter", "Sørensen", "peter.sorensen", "S2", ""),
    ]
    imported(syncd, "parents-1.csv", parents_csv(rows, PARENT_HEADER))
    again = [
        ("Katrin", "Müller", "katrin.mueller", "S1", ""),
        ("Peter", "Sørensen", "PETER.SORENSEN", "S2", ""),
        ("Peter", "Sørensen", "peter.sorensen", "S3", ""),  # one row per child, either case
    ]
    outcome = run_import(syncd, "parents-2.csv", parents_csv(again, PARENT_HEADER))

    assert outcome.exit_code == 0, outcome.stderr
    counts = report(syncd, "parents-2.csv")["counts"]
    assert (counts["created"], counts["deactivated"], counts["rejected"]) == (0, 0, 0)
    assert active_links(syncd) == {
        ("Katrin.Mueller", "S1"),
        ("peter.sorensen", "S2"),
        ("peter.sorensen", "S3"),
    }
    assert person(syncd, "peter.sorensen", "parent")["username"] == "peter.sorensen"
    assert (counts["updated"], counts["links_created"]) == (0, 1)  # peter's second child


def test_a_username_with_letters_beyond_ascii_matches_in_another_case(syncd: Syncd) -> None:
    imported(syncd, "students-1.csv", _students(("Ørsted", "Ø", "Rsted", "5")))
    imported(syncd, "students-2.csv", _students(("øRSTED", "Ø", "Rsted", "6")))
    imported(syncd, "students-3.csv", _students(("ørsted", "Ø", "Rsted", "6")))

    assert [(s["sync_key"], s["username"]) for s in syncd.export()] == [("Ørsted", "Ørsted")]
    assert report(syncd, "students-2.csv")["counts"]["updated"] == 1  # the grade
    assert report(syncd, "students-3.csv")["counts"]["unchanged"] == 1


def test_a_sync_key_is_still_compared_exactly(syncd: Syncd) -> None:
    header = ("SyncID", "Username", "First name", "Last name")
    imported(syncd, "students-1.csv", table(header, [("AB1", "ab", "A", "B")]))
    imported(syncd, "students-2.csv", table(header, [("ab1", "ab", "A", "B")]))

    assert {(s["sync_key"], s["active"]) for s in syncd.export()} == {
        ("AB1", False),
        ("ab1", True),
    }


def test_link_unlink_and_history_find_a_username_beyond_ascii_in_any_case(syncd: Syncd) -> None:
    """SQLite's lower() folds ASCII only: the commands that look a person up by username
    fold it as files do, so Ørsted is found as ØRSTED, ørsted, or Ørsted itself."""
    header = ("SyncID", "Username", "First name", "Last name")
    imported(
        syncd,
        "students.csv",
        table(header, [("S1", "Ärger.A", "Ä", "One"), ("S2", "b", "B", "Two")]),
    )
    imported(syncd, "parents.csv", table((*header, "Child ID"), [("P1", "ÖLAF.K", "Ö", "K", "S1")]))

    linked = syncd("link", "--parent", "ölaf.k", "--child", "S2")
    assert linked.exit_code == 0, linked.stderr
    unlinked = syncd("unlink", "--parent", "ÖLAF.K", "--child", "ärger.a")
    assert unlinked.exit_code == 0, unlinked.stderr
    assert active_links(syncd) == {("P1", "S2")}
    history = syncd("history", "--person", "Ärger.A", "--json")
    assert history.exit_code == 0, history.stderr
    assert {event["event"] for event in history.json()} >= {
        "person.created",
        "relationship.removed",
    }
