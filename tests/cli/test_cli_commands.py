"""SPEC §9 output shapes: export, files, status, history; §5 commands that print data."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import click
import pytest
import sqlalchemy as sa

from syncd.cli import cli, print_json_array
from tests.cli.conftest import Syncd
from tests.cli.rosters import (
    STUDENTS,
    active_links,
    file_id,
    files,
    imported,
    parents_csv,
    person,
    report,
    run_import,
    students_csv,
    table,
)

PERSON_KEYS = ["site", "kind", "sync_key", "username", "first_name", "last_name", "email",
               "active", "attributes"]  # fmt: skip
LINK_KEYS = ["site", "parent", "child", "type", "status", "origin"]
FILE_KEYS = {"id", "source", "site", "name", "kind", "status", "sha256", "received_at", "counts",
             "reason"}  # fmt: skip
STATUS_KEYS = {"source", "site", "last_poll", "last_success", "waiting", "held", "failed",
               "pending_links", "error"}  # fmt: skip


def _roster(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", parents_csv())
    syncd("link", "--parent", "katrin.mueller", "--child", "S3", "--type", "Relative")
    rels = table(("Parent Email", "Student ID"), [("katrin.mueller@home.example", "S7")])
    imported(syncd, "relationships.csv", rels)


def test_export_persons_json_has_exactly_the_documented_keys(syncd: Syncd) -> None:
    _roster(syncd)
    persons = syncd.export()
    assert len(persons) == 9
    for exported in persons:
        assert list(exported) == PERSON_KEYS
        assert isinstance(exported["active"], bool)
        assert isinstance(exported["attributes"], dict)
    lena = [p for p in persons if p["sync_key"] == "S1"][0]
    assert lena == {
        "site": "district-a",
        "kind": "student",
        "sync_key": "S1",
        "username": "lena.mueller",
        "first_name": "Lena",
        "last_name": "Müller",
        "email": "lena.mueller@school.example",
        "active": True,
        "attributes": {"grade": "5"},
    }


def test_export_relationships_json_has_exactly_the_documented_keys(syncd: Syncd) -> None:
    _roster(syncd)
    exported = syncd.export("relationships")
    for link in exported:
        assert list(link) == LINK_KEYS
    shapes = {(link["parent"], link["child"], link["status"], link["origin"], link["type"])
              for link in exported}  # fmt: skip
    assert ("katrin.mueller", "S1", "active", "file", "Parent") in shapes
    assert ("katrin.mueller", "S3", "active", "manual", "Relative") in shapes
    assert ("katrin.mueller", "S7", "pending", "file", "Parent") in shapes
    assert len(exported) == 8


def test_export_csv_gives_the_same_fields_as_columns(syncd: Syncd) -> None:
    _roster(syncd)
    persons = syncd("export", "persons", "--format", "csv")
    assert persons.exit_code == 0, persons.stderr
    rows = list(csv.reader(io.StringIO(persons.stdout)))
    assert rows[0] == PERSON_KEYS
    assert len(rows) == 10
    by_key = {row[2]: dict(zip(PERSON_KEYS, row, strict=True)) for row in rows[1:]}
    assert by_key["S2"]["last_name"] == "Sørensen"
    assert by_key["S2"]["active"] == "true"
    assert json.loads(by_key["S2"]["attributes"]) == {"grade": "5"}
    assert by_key["sean.obrien"]["last_name"] == "O'Brien"
    links = syncd("export", "relationships", "--format", "csv")
    link_rows = list(csv.reader(io.StringIO(links.stdout)))
    assert link_rows[0] == LINK_KEYS
    assert len(link_rows) == 9
    both = syncd("export", "persons", "--format", "csv", "--json")
    assert both.exit_code == 2 and "two formats" in both.stderr


def test_export_shows_deactivated_persons_as_inactive(syncd: Syncd) -> None:
    syncd.configure(max_deactivate=1.0)
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "students-2.csv", students_csv([]) + "S1,a,Lena,Müller,,,\n")
    active = {p["sync_key"]: p["active"] for p in syncd.export()}
    assert active == {"S1": True, "S2": False, "S3": False, "S4": False, "S5": False}


def test_sync_key_falls_back_to_username_as_written_then_lower_cased_email(
    syncd: Syncd,
) -> None:
    content = table(
        ("User name", "E-mail", "First name", "Last name"),
        [
            ("Zoe.Martin", "", "Zoë", "Martin"),
            ("", "Liam.OBrien@School.Example", "Liam", "O'Brien"),
        ],
    )
    imported(syncd, "students.csv", content)
    assert {p["sync_key"] for p in syncd.export()} == {
        "Zoe.Martin",
        "liam.obrien@school.example",
    }


def test_files_json_shape(syncd: Syncd) -> None:
    _roster(syncd)
    listed = files(syncd)
    assert [f["name"] for f in listed] == ["students.csv", "parents.csv", "relationships.csv"]
    for entry in listed:
        assert set(entry) == FILE_KEYS
        assert entry["status"] == "applied"
        assert entry["source"] == "district-a" and entry["site"] == "district-a"
        assert len(entry["sha256"]) == 64
        datetime.fromisoformat(entry["received_at"])
        assert entry["counts"]["rows"] >= 1
    assert [f["kind"] for f in listed] == ["students", "parents", "relationships"]
    assert files(syncd, "--status", "failed") == []
    assert len(files(syncd, "--status", "applied")) == 3


def test_files_plain_listing_is_one_line_each(syncd: Syncd) -> None:
    _roster(syncd)
    outcome = syncd("files")
    assert outcome.exit_code == 0
    lines = outcome.stdout.strip().splitlines()
    assert len(lines) == 3
    # id, when it came (UTC, to the minute: nightly files of one name told apart), status…
    received = [f["received_at"][:16].replace("T", " ") + "Z" for f in files(syncd)]
    assert [line.split()[1:5] for line in lines] == [
        [*when.split(), "applied", kind]
        for when, kind in zip(received, ("students", "parents", "relationships"), strict=True)
    ]


def test_files_of_an_unknown_source_is_a_usage_error(syncd: Syncd) -> None:
    _roster(syncd)
    assert len(files(syncd, "--source", "district-a")) == 3
    outcome = syncd("files", "--source", "district-b")
    assert outcome.exit_code == 2
    assert 'no source "district-b"' in outcome.stderr


@pytest.mark.parametrize(
    "command",
    [("files", "release"), ("files", "reject"), ("files", "revert"), ("history", "--file")],
)
@pytest.mark.parametrize("number", ["0", "-3", "99999999999999999999999"])
def test_a_file_id_out_of_range_is_a_usage_error(
    syncd: Syncd, command: tuple[str, str], number: str
) -> None:
    outcome = syncd(*command, number)
    assert outcome.exit_code == 2, outcome.stderr
    assert len(outcome.stderr.strip().splitlines()) == 1
    assert "unexpected error" not in outcome.stderr


def test_status_json_shape(syncd: Syncd) -> None:
    _roster(syncd)
    syncd.drop("students-next.csv", students_csv())
    outcome = syncd("status", "--json")
    assert outcome.exit_code == 0, outcome.stderr
    [state] = outcome.json()
    assert set(state) == STATUS_KEYS
    assert (state["source"], state["site"]) == ("district-a", "district-a")
    assert (state["waiting"], state["held"], state["failed"], state["pending_links"]) == (
        1,
        0,
        0,
        1,
    )
    assert state["error"] is None
    plain = syncd("status")
    assert plain.exit_code == 0 and "district-a" in plain.stdout


def test_status_after_a_pickup_pass_has_poll_times(syncd: Syncd) -> None:
    syncd.drop("students.csv", students_csv())
    assert syncd("run", "--once").exit_code == 0
    [state] = syncd("status", "--json").json()
    assert state["last_poll"] is not None and state["last_success"] is not None
    assert state["waiting"] == 0


def test_history_of_a_person_lists_its_audit_events(syncd: Syncd) -> None:
    syncd.configure(max_update=1.0)
    imported(syncd, "students.csv", students_csv())
    imported(syncd, "parents.csv", parents_csv())
    changed = students_csv().replace("Lena,Müller", "Lena,Müller-Ek")
    imported(syncd, "students-2.csv", changed)
    outcome = syncd("history", "--person", "S1", "--json")
    assert outcome.exit_code == 0, outcome.stderr
    events = outcome.json()
    # S1's link to its parent (katrin.mueller) is in its history too.
    assert [e["event"] for e in events] == [
        "person.created",
        "relationship.created",
        "person.updated",
    ]
    for event in events:
        assert {"ts", "level", "event", "source", "site", "file_id", "run_id"} <= set(event)
        assert event["ts"].endswith("Z") or event["ts"].endswith("+00:00")
    assert events[2]["changes"]["last_name"] == {"old": "Müller", "new": "Müller-Ek"}
    parent = syncd("history", "--person", "sean.obrien", "--json").json()
    assert [e["event"] for e in parent].count("relationship.created") == 2
    assert syncd("history", "--person", "nobody").exit_code == 2
    unknown = syncd("history", "--file", "999")
    assert unknown.exit_code == 2 and "no file 999" in unknown.stderr
    assert syncd("history").exit_code == 2


def test_history_of_a_child_lists_the_links_that_concern_it(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv(STUDENTS[:4]))
    header = ("SyncID", "First name", "Last name", "Pupil sync key")
    imported(syncd, "parents.csv", parents_csv([("P1", "Ada", "Berg", "S5;S1")], header))
    imported(syncd, "students-2.csv", students_csv())  # S5 arrives: the pending link resolves
    assert syncd("link", "--parent", "P1", "--child", "S2").exit_code == 0
    assert syncd("unlink", "--parent", "P1", "--child", "S5").exit_code == 0
    events = syncd("history", "--person", "S5", "--json").json()
    assert [(e["event"], e.get("child"), e.get("parent_id")) for e in events] == [
        ("relationship.pending", "S5", events[0]["parent_id"]),
        ("person.created", None, None),
        ("relationship.resolved", "S5", events[0]["parent_id"]),
        ("relationship.removed", "S5", events[0]["parent_id"]),
    ]
    # Another child's links stay out; the parent's history still has them all.
    s1 = [e["event"] for e in syncd("history", "--person", "S1", "--json").json()]
    assert s1 == ["person.created", "relationship.created"]
    parent = [e["event"] for e in syncd("history", "--person", "P1", "--json").json()]
    assert parent.count("relationship.created") == 2  # S1 by the file, S2 by hand


def test_history_kind_tells_a_student_and_a_parent_of_one_key_apart(syncd: Syncd) -> None:
    # Two SIS tables, two numberings: student S1 and a parent whose key is also S1.
    imported(syncd, "students.csv", students_csv(STUDENTS[:2]))
    header = ("SyncID", "First name", "Last name", "Pupil sync key")
    imported(syncd, "parents.csv", parents_csv([("S1", "Ada", "Berg", "S2")], header))
    both = syncd("history", "--person", "S1", "--json").json()
    assert sorted(e["kind"] for e in both if e["event"] == "person.created") == [
        "parent",
        "student",
    ]
    student = syncd("history", "--person", "S1", "--kind", "student", "--json").json()
    assert [(e["event"], e.get("kind")) for e in student] == [("person.created", "student")]
    parent = syncd("history", "--person", "S1", "--kind", "parent", "--json").json()
    assert [e["event"] for e in parent] == ["person.created", "relationship.created"]
    assert syncd("history", "--person", "S2", "--kind", "parent").exit_code == 2
    assert syncd("history", "--file", "1", "--kind", "parent").exit_code == 2


def test_history_of_a_file_lists_its_audit_events(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    outcome = syncd("history", "--file", str(file_id(syncd, "students.csv")), "--json")
    assert outcome.exit_code == 0, outcome.stderr
    names = [e["event"] for e in outcome.json()]
    assert names[0] == "file.received"
    assert names.count("person.created") == 5
    assert "file.validated" in names and names[-1] == "file.applied"
    # The audit log has the same events as JSON lines.
    logged = [
        e["event"] for e in syncd.events() if e.get("file_id") == file_id(syncd, "students.csv")
    ]
    assert logged == names


def test_history_of_each_file_is_its_audit_lines_event_for_event(syncd: Syncd) -> None:
    # SPEC §6: the same events in the database as in the log: every member, not just the
    # names (events stored as the created rows' provenance included).
    _roster(syncd)
    for name in ("students.csv", "parents.csv", "relationships.csv"):
        number = file_id(syncd, name)
        history = syncd("history", "--file", str(number), "--json").json()
        logged = [event for event in syncd.events() if event.get("file_id") == number]
        assert len(history) == len(logged) > 2
        assert history == logged, name


def test_a_files_outcome_is_stamped_when_it_was_decided(syncd: Syncd) -> None:
    # Its changes keep the time its transaction began; file.applied (or file.held) is when
    # it was decided, so a log reader measures how long the file took, in time order.
    rows = [(f"S{n}", f"kid{n}", "Ann", f"Lee{n}", "", "", "") for n in range(20_000)]
    imported(syncd, "students.csv", students_csv(rows))
    run_import(syncd, "students-2.csv", students_csv(rows[:100]))  # held: 19,900 to go
    for name, outcome in (("students.csv", "file.applied"), ("students-2.csv", "file.held")):
        number = file_id(syncd, name)
        logged = [event for event in syncd.events() if event.get("file_id") == number]
        times = {event["event"]: event["ts"] for event in logged}
        assert times["file.received"] <= times["file.validated"] < times[outcome], name
        if outcome == "file.applied":
            created = {event["ts"] for event in logged if event["event"] == "person.created"}
            assert created == {times["file.validated"]}
        history = syncd("history", "--file", str(number), "--json").json()
        assert history == logged, name


def test_audit_lines_carry_the_documented_fields(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    for event in syncd.events():
        assert {"ts", "level", "event"} <= set(event)
    created = syncd.events("person.created")[0]
    assert {"source", "site", "file_id", "run_id"} <= set(created)
    assert created["site"] == "district-a"


def test_manual_link_and_unlink_are_audited_and_exported_as_manual(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    header = ("SyncID", "First name", "Last name")
    imported(syncd, "parents.csv", parents_csv([("P1", "Zoë", "Nuñez")], header))
    outcome = syncd("link", "--parent", "P1", "--child", "S2", "--type", "aide")
    assert outcome.exit_code == 0, outcome.stderr
    [link] = syncd.export("relationships")
    assert (link["type"], link["origin"]) == ("Aide", "manual")
    again = syncd("link", "--parent", "P1", "--child", "S2")
    assert again.exit_code == 0
    assert len(syncd.events("relationship.created")) == 1
    assert syncd("unlink", "--parent", "P1", "--child", "S2").exit_code == 0
    assert active_links(syncd) == set()
    removed = syncd.events("relationship.removed")
    assert [(e["parent"], e["child"]) for e in removed] == [("P1", "S2")]


def test_link_type_may_be_given_as_the_sites_files_write_it(syncd: Syncd) -> None:
    syncd.configure(relationship_types={"Grandma": "Relative"})
    imported(syncd, "students.csv", students_csv())
    imported(
        syncd,
        "parents.csv",
        parents_csv([("P1", "Zoë", "Nuñez")], ("SyncID", "First name", "Last name")),
    )
    linked = syncd("link", "--parent", "P1", "--child", "S2", "--type", "grandma", "--json")
    assert (linked.exit_code, linked.json()["type"]) == (0, "Relative"), linked.stderr
    wrong = syncd("link", "--parent", "P1", "--child", "S2", "--type", "Aunt")
    assert (wrong.exit_code, wrong.stderr.strip()) == (
        2,
        "syncd: --type Aunt: one of Parent, Aide, Guardian, Relative, Other, or as the "
        "site's sources map: grandma",
    )


def test_link_by_username_or_email_names_the_sync_keys_it_linked(syncd: Syncd) -> None:
    syncd.configure(max_deactivate=1.0)
    imported(syncd, "students.csv", students_csv())
    header = ("SyncID", "First name", "Last name", "E-mail")
    zoe = ("P1", "Zoë", "Nuñez", "zoe@home.example")
    imported(syncd, "parents.csv", parents_csv([zoe], header))
    outcome = syncd("link", "--parent", "ZOE@home.example", "--child", "Jonas.Sorensen")
    assert outcome.exit_code == 0, outcome.stderr
    assert outcome.stdout.strip() == "linked P1 → S2"
    retyped = syncd("link", "--parent", "P1", "--child", "S2", "--type", "Aide")
    assert retyped.stdout.strip() == "linked P1 → S2 (now Aide, was Parent)"
    imported(syncd, "students-2.csv", students_csv(STUDENTS[:4]))  # S5 leaves
    to_inactive = syncd("link", "--parent", "P1", "--child", "S5")
    assert to_inactive.stdout.strip() == "linked P1 → S5; S5 is an inactive student"
    unlinked = syncd("unlink", "--parent", "zoe@home.example", "--child", "S2", "--json")
    assert (unlinked.json()["parent"], unlinked.json()["child"]) == ("P1", "S2")


def test_manual_link_over_a_files_link_is_a_change_audited_with_what_it_was(
    syncd: Syncd,
) -> None:
    imported(syncd, "students.csv", students_csv())
    header = ("SyncID", "First name", "Last name", "Pupil sync key")
    imported(syncd, "parents.csv", parents_csv([("P1", "Zoë", "Nuñez", "S2")], header))
    outcome = syncd("link", "--parent", "P1", "--child", "S2", "--type", "guardian", "--json")
    assert outcome.exit_code == 0, outcome.stderr
    assert outcome.json()["changed"] is True
    [link] = syncd.export("relationships")
    assert (link["type"], link["origin"]) == ("Guardian", "manual")
    event = syncd.events("relationship.created")[-1]
    assert (event["type"], event["origin"]) == ("Guardian", "manual")
    assert (event["previous_type"], event["previous_origin"]) == ("Parent", "file")
    same = syncd("link", "--parent", "P1", "--child", "S2", "--type", "Guardian", "--json")
    assert same.json()["changed"] is False
    assert len(syncd.events("relationship.created")) == 2  # the file's, the edit's


def test_manual_unlink_names_the_link_it_removed(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    header = ("SyncID", "First name", "Last name", "Pupil sync key")
    imported(syncd, "parents.csv", parents_csv([("P1", "Zoë", "Nuñez", "S2;S3")], header))
    wrong = syncd("unlink", "--parent", "P1", "--child", "S2", "--type", "Aide")
    assert wrong.exit_code == 2 and "is a Parent link, not Aide" in wrong.stderr
    assert len(active_links(syncd)) == 2
    assert syncd("unlink", "--parent", "P1", "--child", "S2").exit_code == 0
    [removed] = syncd.events("relationship.removed")
    assert (removed["child"], removed["type"], removed["origin"]) == ("S2", "Parent", "file")
    assert removed["reason"] == "manual"  # a file's link, removed by an operator


def test_unlinking_a_parents_last_child_says_the_parent_was_deactivated(syncd: Syncd) -> None:
    # SPEC §2.4: a parent left without an active child is deactivated (an edit is its own
    # batch); the admin who did it is told so, and told again when a link brings it back.
    imported(syncd, "students.csv", students_csv())
    header = ("SyncID", "First name", "Last name", "Pupil sync key")
    imported(syncd, "parents.csv", parents_csv([("P1", "Zoë", "Nuñez", "S2")], header))
    unlinked = syncd("unlink", "--parent", "P1", "--child", "S2")
    assert unlinked.exit_code == 0, unlinked.stderr
    assert unlinked.stdout.strip() == (
        "unlinked P1 → S2; no file will link them; P1 has no active child left and was deactivated"
    )
    assert person(syncd, "P1")["active"] is False
    linked = syncd("link", "--parent", "P1", "--child", "S3", "--json")
    assert (linked.json()["parent_deactivated"], linked.json()["parent_reactivated"]) == (
        False,
        True,
    )
    assert person(syncd, "P1")["active"] is True


def test_unlink_of_a_pending_link_is_not_undone_by_files(syncd: Syncd) -> None:
    # SPEC §1/§5: manual unlinks that nightly syncs do not undo, also of a child value no
    # student has yet: no file makes it pending again, nor links the pair when it arrives.
    imported(syncd, "students.csv", students_csv(STUDENTS[:4]))
    header = ("SyncID", "First name", "Last name", "Pupil sync key")
    imported(syncd, "parents.csv", parents_csv([("P1", "Zoë", "Nuñez", "S2;S5")], header))
    assert ("P1", "S5", "pending") in syncd.links()
    # --type is checked as for a live link.
    typed = syncd("unlink", "--parent", "P1", "--child", "S5", "--type", "Guardian")
    assert (typed.exit_code, typed.stderr.strip()) == (
        2,
        "syncd: P1 → S5 is a pending Parent link, not Guardian; leave out --type or give its type",
    )
    outcome = syncd("unlink", "--parent", "P1", "--child", "S5")
    assert outcome.exit_code == 0, outcome.stderr
    assert outcome.stdout.strip() == (
        "unlinked P1 → S5 (pending: no student has that value); no file will link them, now "
        "or when the student arrives"
    )
    assert syncd.links() == {("P1", "S2", "active")}
    [removed] = syncd.events("relationship.removed")
    assert (removed["parent"], removed["child"], removed["status"], removed["reason"]) == (
        "P1",
        "S5",
        "pending",
        "manual",
    )
    again = syncd("unlink", "--parent", "P1", "--child", "S5")
    assert (again.exit_code, again.stdout.strip()) == (0, "unlinked P1 → S5 (already so)")
    early = syncd("link", "--parent", "P1", "--child", "S5")
    assert early.exit_code == 2
    assert early.stderr.strip() == (
        'syncd: no student "S5" in site "district-a" yet: P1 stays unlinked from it '
        "(syncd unlink); link them once the student has arrived"
    )
    # The parents file again, P1's row read anew (its children in another order): not
    # pending again.
    rows = [("P1", "Zoë", "Nuñez", "S5;S2"), ("P2", "Kim", "Lee", "S2")]
    preview = run_import(syncd, "parents-2.csv", parents_csv(rows, header), "--dry-run", "--json")
    assert preview.json()["counts"]["pending"] == 0
    assert [c for c in preview.json()["changes"] if c["action"] == "pending"] == []
    imported(syncd, "parents-2.csv", parents_csv(rows, header))
    assert report(syncd, "parents-2.csv")["pending"] == []
    assert syncd.links() == {("P1", "S2", "active"), ("P2", "S2", "active")}
    # S5 arrives, and a parents file names it for P1 again: still apart.
    imported(syncd, "students-2.csv", students_csv())
    rows = [("P1", "Zoë", "Nuñez", "S2;S5"), ("P2", "Kim", "Lee", "S2")]
    imported(syncd, "parents-3.csv", parents_csv(rows, header))
    assert syncd.links() == {("P1", "S2", "active"), ("P2", "S2", "active")}
    assert [e["child"] for e in syncd.events("relationship.resolved")] == []
    # Until an operator links them.
    linked = syncd("link", "--parent", "P1", "--child", "S5")
    assert linked.exit_code == 0, linked.stderr
    assert ("P1", "S5", "active") in syncd.links()


def test_unlink_of_a_relationships_files_pending_link_is_not_undone(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv(STUDENTS[:4]))
    imported(
        syncd,
        "parents.csv",
        parents_csv([("P1", "Zoë", "Nuñez")], ("SyncID", "First name", "Last name")),
    )
    rels = table(("Parent ID", "Student Email"), [("P1", "Zoe.Martin@school.example")])
    imported(syncd, "relationships.csv", rels)
    assert syncd.links() == {("P1", "Zoe.Martin@school.example", "pending")}
    outcome = syncd("unlink", "--parent", "P1", "--child", "zoe.martin@school.example", "--json")
    assert (outcome.exit_code, outcome.json()["type"]) == (0, "Parent"), outcome.stderr
    imported(syncd, "relationships-2.csv", rels + "\n")
    assert syncd.links() == set()
    # The student arrives in the same batch as the file naming her: still apart.
    imported(syncd, "students-2.csv", students_csv())
    imported(syncd, "relationships-3.csv", rels + "\n\n")
    assert syncd.links() == set()


def test_link_and_unlink_take_a_childs_student_number(syncd: Syncd) -> None:
    # A source matching children by student number (SPEC §2.3 child_field): the admin uses
    # the value of the SIS file, before and after the student arrives.
    syncd.configure(child_field="student_number")
    imported(syncd, "students.csv", students_csv(STUDENTS[:4]))
    header = ("SyncID", "First name", "Last name", "Child ID")
    imported(syncd, "parents.csv", parents_csv([("P1", "Zoë", "Nuñez", "1001;1005")], header))
    assert syncd.links() == {("P1", "S1", "active"), ("P1", "1005", "pending")}
    for child in ("1001", "1005"):
        outcome = syncd("unlink", "--parent", "P1", "--child", child)
        assert outcome.exit_code == 0, outcome.stderr
    assert syncd.links() == set()
    imported(syncd, "students-2.csv", students_csv())
    linked = syncd("link", "--parent", "P1", "--child", "1005", "--json")
    assert linked.exit_code == 0, linked.stderr
    assert (linked.json()["child"], linked.json()["changed"]) == ("S5", True)
    assert syncd.links() == {("P1", "S5", "active")}


def test_a_child_value_naming_two_students_by_two_fields_is_refused_naming_both(
    syncd: Syncd,
) -> None:
    # SPEC §2.3 "never a guess": "1002" is one student's sync key and another's student
    # number, in a site whose source matches children by student number.
    syncd.configure(child_field="student_number")
    rows = [*STUDENTS[:2], ("1002", "ann.lee", "Ann", "Lee", "ann@school.example", "7", "5")]
    imported(syncd, "students.csv", students_csv(rows))
    imported(
        syncd,
        "parents.csv",
        parents_csv(
            [("P1", "Zoë", "Nuñez", "1001")], ("SyncID", "First name", "Last name", "Child ID")
        ),
    )
    outcome = syncd("link", "--parent", "P1", "--child", "1002")
    assert (outcome.exit_code, outcome.stderr.strip()) == (
        2,
        'syncd: "1002" names 2 students in site "district-a": 1002 (by sync key), S2 (by '
        "student number); name the child by a key only it has",
    )
    assert syncd("link", "--parent", "P1", "--child", "jonas.sorensen").exit_code == 0
    # Where no source matches children by student number, a student number names no one.
    syncd.configure()
    assert syncd("link", "--parent", "P1", "--child", "1001").exit_code == 2


def test_a_pending_link_to_a_child_an_operator_unlinked_is_not_resolved(syncd: Syncd) -> None:
    # Two pending links of one parent name the same coming student by two values (a parents
    # file's key, a relationships file's email); the operator unlinked one. When she
    # arrives the pair stays apart, and the trail says so: no relationship.resolved for a
    # link that is not there, no link in the preview.
    imported(syncd, "students.csv", students_csv(STUDENTS[:4]))
    header = ("SyncID", "First name", "Last name", "Pupil sync key")
    imported(syncd, "parents.csv", parents_csv([("P1", "Zoë", "Nuñez", "S1;S5")], header))
    rels = table(("Parent ID", "Student Email"), [("P1", "Zoe.Martin@school.example")])
    imported(syncd, "relationships.csv", rels)
    assert syncd("unlink", "--parent", "P1", "--child", "S5").exit_code == 0
    assert syncd.links() == {("P1", "S1", "active"), ("P1", "Zoe.Martin@school.example", "pending")}
    preview = run_import(syncd, "students-2.csv", students_csv(), "--dry-run", "--json")
    assert [c for c in preview.json()["changes"] if c["action"] == "link"] == []
    imported(syncd, "students-2.csv", students_csv())
    assert syncd.links() == {("P1", "S1", "active")}
    assert syncd.events("relationship.resolved") == []
    dropped = syncd.events("relationship.removed")[-1]
    assert (dropped["child"], dropped["status"], dropped["reason"]) == (
        "Zoe.Martin@school.example",
        "pending",
        "manual",
    )


def test_manual_link_events_carry_a_run_id(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    header = ("SyncID", "First name", "Last name")
    imported(syncd, "parents.csv", parents_csv([("P1", "Zoë", "Nuñez")], header))
    assert syncd("link", "--parent", "P1", "--child", "S2").exit_code == 0
    assert syncd("unlink", "--parent", "P1", "--child", "S2").exit_code == 0
    created, removed = (
        syncd.events("relationship.created")[-1],
        syncd.events("relationship.removed")[-1],
    )
    assert created["run_id"] and removed["run_id"] and created["run_id"] != removed["run_id"]


def test_commands_that_print_data_take_json(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    header = ("SyncID", "First name", "Last name")
    imported(syncd, "parents.csv", parents_csv([("P1", "Zoë", "Nuñez")], header))
    linked = syncd("link", "--parent", "P1", "--child", "S2", "--json")
    assert linked.exit_code == 0, linked.stderr
    assert linked.json() == {
        "site": "district-a", "parent": "P1", "child": "S2", "action": "link", "changed": True,
        "parent_deactivated": False, "parent_reactivated": False, "pending": False,
        "type": "Parent", "previous_type": None, "was_linked": False, "child_active": True,
    }  # fmt: skip
    retyped = syncd("link", "--parent", "P1", "--child", "S2", "--type", "Aide", "--json").json()
    assert (retyped["type"], retyped["previous_type"]) == ("Aide", "Parent")
    unlinked = syncd("unlink", "--parent", "P1", "--child", "S2", "--json").json()
    assert (unlinked["action"], unlinked["changed"], unlinked["was_linked"]) == (
        "unlink",
        True,
        True,
    )
    apart = syncd("unlink", "--parent", "P1", "--child", "S3", "--json").json()
    assert (apart["changed"], apart["was_linked"]) == (True, False)
    again = syncd("unlink", "--parent", "P1", "--child", "S3", "--json").json()
    assert (again["changed"], again["was_linked"]) == (False, False)
    syncd.drop_dir.mkdir(exist_ok=True)
    checked = syncd("check-config", "--json")
    assert checked.exit_code == 0, checked.stderr
    document = checked.json()
    assert set(document) == {
        "config", "config_ok", "config_error", "database", "database_ok", "database_error",
        "sources",
    }  # fmt: skip
    assert document["config_ok"] and document["database_ok"]
    assert document["sources"] == [
        {"source": "district-a", "url": "file:drop", "ok": True, "error": None}
    ]
    imported(syncd, "students-2.csv", students_csv().replace("Lena,Müller", "Lena,Berg"))
    reverted = syncd("files", "revert", str(file_id(syncd, "students-2.csv")), "--json")
    assert reverted.exit_code == 0, reverted.stderr
    entry = reverted.json()
    assert set(entry) >= FILE_KEYS and entry["status"] == "reverted"


def test_import_json_prints_the_report_document(syncd: Syncd) -> None:
    path = syncd.write("students.csv", students_csv())
    outcome = syncd("import", "--json", str(path))
    assert outcome.exit_code == 0, outcome.stderr
    document = outcome.json()
    assert (document["file"], document["status"], document["kind"]) == (
        "students.csv",
        "applied",
        "students",
    )
    assert document["counts"]["created"] == 5


def test_import_works_without_any_configured_source(syncd_sqlite: Syncd) -> None:
    syncd_sqlite.configure(sources=[])
    path = syncd_sqlite.write("students.csv", students_csv())
    outcome = syncd_sqlite("import", str(path))
    assert outcome.exit_code == 0, outcome.stderr
    assert len(syncd_sqlite.export()) == 5
    assert syncd_sqlite("status", "--json").json() == []


def test_export_of_an_unknown_site_is_a_usage_error(syncd_sqlite: Syncd) -> None:
    outcome = syncd_sqlite("export", "persons", "--site", "nowhere")
    assert outcome.exit_code == 2
    assert "nowhere" in outcome.stderr


def test_status_counts_held_and_failed_files(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    syncd("import", str(syncd.write("students-2.csv", students_csv([]))))
    syncd("import", str(syncd.write("students-3.csv", b"")))
    [state] = syncd("status", "--json").json()
    assert (state["held"], state["failed"]) == (1, 1)
    assert [f["name"] for f in files(syncd, "--status", "held")] == ["students-2.csv"]


def test_audit_on_stdout_leaves_a_json_document_whole(syncd: Syncd) -> None:
    # [audit] path = "-" sends the events to stdout (journald under systemd); a command's
    # --json document is stdout too, so while one is printed the events go to stderr.
    config = syncd.config_path.read_text(encoding="utf-8")
    syncd.config_path.write_text(
        config.replace(json.dumps(str(syncd.audit_path)), '"-"'), encoding="utf-8"
    )
    outcome = imported(syncd, "students.csv", students_csv(), "--json")
    assert json.loads(outcome.stdout)["status"] == "applied"
    logged = [json.loads(line)["event"] for line in outcome.stderr.splitlines()]
    assert logged[0] == "file.received" and logged[-1] == "file.applied"
    # Without --json the events go to stdout, as configured.
    outcome = imported(syncd, "students-2.csv", students_csv(STUDENTS[::-1]))
    assert '"event":"file.applied"' in outcome.stdout
    assert not syncd.audit_path.exists()


def test_a_streamed_json_array_is_printed_as_its_list_would_be(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Exports stream their documents (a district's million persons are never held).
    documents = [{"a": 1, "b": {"x": "é\nz", "y": [1, 2]}}, {"a": None, "b": {}}]
    for case in (documents, [], documents[:1]):
        print_json_array(iter(case))
        assert capsys.readouterr().out == json.dumps(case, ensure_ascii=False, indent=2) + "\n"


@pytest.fixture
def postgres_in_en_us(postgres_url: str) -> Iterator[str]:
    """A PostgreSQL database whose collation sorts as people read (ICU en-US), as many
    production servers are set up."""
    from tests.conftest import PG_URL

    name = f"syncd_test_icu_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(
            sa.text(
                f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu "
                "ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
            )
        )
    yield PG_URL.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as connection:
        connection.execute(sa.text(f"DROP DATABASE {name} WITH (FORCE)"))
    admin.dispose()


def test_exports_sort_keys_by_code_point_whatever_the_database_collation(
    tmp_path: Path, postgres_in_en_us: str
) -> None:
    """The same roster exports in the same order from SQLite and from a PostgreSQL server
    whose collation would put "_5" before "10" and "ä0" before "Ab" (nightly exports are
    diffed)."""
    keys = ["a1", "B2", "é3", "Z4", "_5", "10", "9", "aa", "Ab", "ä0"]
    students = "SyncID,First name,Last name\n" + "".join(f"{key},F,L\n" for key in keys)
    parents = "SyncID,First name,Last name,ChildID\n" + "".join(
        f"P{key},F,L,{key}\n" for key in keys
    )
    exported = []
    for backend, url in (
        ("sqlite", f"sqlite:///{tmp_path / 'syncd.db'}"),
        ("postgresql", postgres_in_en_us),
    ):
        root = tmp_path / backend
        root.mkdir()
        syncd = Syncd(root, url)
        imported(syncd, "students.csv", students)
        imported(syncd, "parents.csv", parents)
        exported.append(
            (
                [p["sync_key"] for p in syncd.export()],
                [link["child"] for link in syncd.export("relationships")],
            )
        )
    assert exported[0] == exported[1]
    assert exported[0][1] == sorted(keys)


def test_every_option_of_every_command_says_what_it_does_in_help(syncd: Syncd) -> None:
    def silent(command: click.Command, path: str) -> Iterator[str]:
        for param in command.params:
            if isinstance(param, click.Option) and not param.help and not param.hidden:
                yield f"{path} {param.opts[0]}"
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                yield from silent(sub, f"{path} {name}")

    assert list(silent(cli, "syncd")) == []
    assert "Write the reports here" in syncd("import", "--help").stdout
