"""SPEC §2.4 safety thresholds: held files, release and reject; §2.5 max_reject."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from tests.cli.conftest import Syncd
from tests.cli.rosters import (
    STUDENT_HEADER,
    STUDENTS,
    active_links,
    errors_rows,
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

# Ten students, so that one missing is 10% (not more than the default max_deactivate).
TEN = tuple(
    (f"K{n}", f"kid{n}", "Zoë", f"Nuñez{n}", f"kid{n}@school.example", f"20{n:02}", "4")
    for n in range(10)
)


def _student_states(syncd: Syncd) -> dict[str, bool]:
    return {p["sync_key"]: p["active"] for p in syncd.export() if p["kind"] == "student"}


def test_deactivating_up_to_max_deactivate_applies(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv(TEN))
    imported(syncd, "students-2.csv", students_csv(TEN[:9]))
    assert _student_states(syncd)["K9"] is False


def test_deactivating_more_than_max_deactivate_holds_the_file(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv(TEN))
    outcome = run_import(syncd, "students-2.csv", students_csv(TEN[:8]))
    assert outcome.exit_code == 1
    assert "held" in outcome.stdout
    assert all(_student_states(syncd).values())  # nothing applied
    document = report(syncd, "students-2.csv")
    assert document["status"] == "held"
    assert "max_deactivate" in document["reason"]
    held = files(syncd, "--status", "held")
    assert [(f["name"], f["status"], f["kind"]) for f in held] == [
        ("students-2.csv", "held", "students")
    ]
    assert "max_deactivate" in held[0]["reason"]
    assert [e["file_id"] for e in syncd.events("file.held")] == [held[0]["id"]]


def test_released_file_applies_with_file_released_event(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv(TEN))
    run_import(syncd, "students-2.csv", students_csv(TEN[:8]))
    held_id = file_id(syncd, "students-2.csv")
    outcome = syncd("files", "release", str(held_id))
    assert outcome.exit_code == 0, outcome.stderr
    states = _student_states(syncd)
    assert (states["K8"], states["K9"], states["K0"]) == (False, False, True)
    assert [e["file_id"] for e in syncd.events("file.released")] == [held_id]
    assert [f["status"] for f in files(syncd) if f["id"] == held_id] == ["applied"]
    assert files(syncd, "--status", "held") == []


def test_rejected_file_changes_nothing_with_file_rejected_event(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv(TEN))
    run_import(syncd, "students-2.csv", students_csv(TEN[:8]))
    held_id = file_id(syncd, "students-2.csv")
    outcome = syncd("files", "reject", str(held_id))
    assert outcome.exit_code == 0, outcome.stderr
    assert all(_student_states(syncd).values())
    assert [f["status"] for f in files(syncd) if f["id"] == held_id] == ["rejected"]
    assert [e["file_id"] for e in syncd.events("file.rejected")] == [held_id]
    # Its report and ledger entry count its rows, and nothing it would have changed.
    [entry] = [f for f in files(syncd) if f["id"] == held_id]
    assert (entry["counts"]["rows"], entry["counts"]["deactivated"]) == (8, 0)
    # A rejected file cannot be released afterwards.
    assert syncd("files", "release", str(held_id)).exit_code == 2
    # It sits in failed/: `files --status failed` lists it (as rejected), `held` no more.
    assert [(f["id"], f["status"]) for f in files(syncd, "--status", "failed")] == [
        (held_id, "rejected")
    ]
    assert [f["id"] for f in files(syncd, "--status", "rejected")] == [held_id]
    assert files(syncd, "--status", "held") == []
    [status] = syncd("status", "--json").json()
    assert (status["held"], status["failed"]) == (0, 1)


def test_a_held_file_older_than_an_applied_file_of_its_kind_is_not_released(
    syncd: Syncd,
) -> None:
    # Released, it would undo what the newer file did (K9 back out, and K10 with it).
    imported(syncd, "students.csv", students_csv(TEN))
    run_import(syncd, "students-2.csv", students_csv(TEN[:8]))
    held_id = file_id(syncd, "students-2.csv")
    newer = (*TEN, ("K10", "kid10", "Zoë", "Nuñez10", "kid10@school.example", "2010", "4"))
    imported(syncd, "students-3.csv", students_csv(newer))

    outcome = syncd("files", "release", str(held_id))

    assert outcome.exit_code == 2
    assert outcome.stderr.count("\n") == 1
    assert f"file {held_id}" in outcome.stderr
    assert "students-3.csv" in outcome.stderr
    assert "reject" in outcome.stderr
    assert all(_student_states(syncd).values())  # nothing applied
    assert [f["status"] for f in files(syncd) if f["id"] == held_id] == ["held"]
    assert syncd.events("file.released") == []
    # Rejecting it still works; the same content sent again is planned against today.
    assert syncd("files", "reject", str(held_id)).exit_code == 0
    again = run_import(syncd, "students-4.csv", students_csv(TEN[:8]))
    assert again.exit_code == 1
    assert report(syncd, "students-4.csv")["counts"]["deactivated"] == 3


def test_a_held_file_that_would_now_change_more_than_its_report_said_is_not_released(
    syncd: Syncd,
) -> None:
    # Thirty students; a file cuts them to twenty (released). The next, of fifteen, is held
    # for five more. A revert of the cut brings ten back: released now, that file would
    # deactivate fifteen, ten of them just brought back, not the five its report showed.
    thirty = tuple(
        (f"K{n}", f"kid{n}", "Zoë", f"Nuñez{n}", f"kid{n}@school.example", f"20{n:02}", "4")
        for n in range(30)
    )
    imported(syncd, "students.csv", students_csv(thirty))
    run_import(syncd, "students-2.csv", students_csv(thirty[:20]))
    cut = file_id(syncd, "students-2.csv")
    assert syncd("files", "release", str(cut)).exit_code == 0
    run_import(syncd, "students-3.csv", students_csv(thirty[:15]))
    held = file_id(syncd, "students-3.csv")
    assert report(syncd, "students-3.csv")["counts"]["deactivated"] == 5
    assert syncd("files", "revert", str(cut)).exit_code == 0
    outcome = syncd("files", "release", str(held))
    assert outcome.exit_code == 2
    assert outcome.stderr.strip() == (
        f"syncd: file {held} (students-3.csv): the roster changed since it was held: released "
        "now, it would deactivate 15 students, where its report said 5. Reject it (syncd "
        f"files reject {held}), or send its content again to have it judged against today's "
        "roster"
    )
    assert sum(_student_states(syncd).values()) == 30  # nothing applied
    assert [f["status"] for f in files(syncd) if f["id"] == held] == ["held"]
    assert len(syncd.events("file.released")) == 1  # the cut's only


def test_a_held_file_is_released_after_a_newer_file_of_another_kind(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv(TEN))
    run_import(syncd, "students-2.csv", students_csv(TEN[:8]))
    imported(syncd, "parents.csv", parents_csv([("Ann", "Lee", "ann.lee", "K0", "")]))

    outcome = syncd("files", "release", str(file_id(syncd, "students-2.csv")))

    assert outcome.exit_code == 0, outcome.stderr


def test_release_and_reject_take_json(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv(TEN))
    run_import(syncd, "students-2.csv", students_csv(TEN[:8]))
    released = syncd("files", "release", str(file_id(syncd, "students-2.csv")), "--json")
    assert released.exit_code == 0, released.stderr
    document = released.json()
    assert (document["status"], document["counts"]["deactivated"]) == ("applied", 2)
    run_import(syncd, "students-3.csv", students_csv(TEN[:1]))
    rejected = syncd("files", "reject", str(file_id(syncd, "students-3.csv")), "--json")
    assert rejected.exit_code == 0, rejected.stderr
    assert (rejected.json()["name"], rejected.json()["status"]) == ("students-3.csv", "rejected")


def test_header_only_full_file_is_held(syncd: Syncd) -> None:
    syncd.configure(max_deactivate=1.0)
    imported(syncd, "students.csv", students_csv())
    outcome = run_import(syncd, "students-2.csv", students_csv(()))
    assert outcome.exit_code == 1
    document = report(syncd, "students-2.csv")
    assert document["status"] == "held"
    assert "header-only" in document["reason"]
    assert all(_student_states(syncd).values())
    # Its report says what it would do, as its reason does.
    assert document["counts"]["deactivated"] == len(STUDENTS)
    assert f"all {len(STUDENTS)} students" in document["reason"]


def test_header_only_file_into_an_empty_site_is_fine(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv(()))
    assert report(syncd, "students.csv")["status"] == "applied"


def test_updating_more_than_max_update_holds_the_file(syncd: Syncd) -> None:
    syncd.configure(max_update=0.5)
    imported(syncd, "students.csv", students_csv())
    promoted = [(*row[:6], "grade-up") for row in STUDENTS[:3]] + list(STUDENTS[3:])
    outcome = run_import(syncd, "students-2.csv", students_csv(promoted))
    assert outcome.exit_code == 1
    document = report(syncd, "students-2.csv")
    assert document["status"] == "held"
    assert "max_update" in document["reason"]
    assert person(syncd, "S1")["attributes"]["grade"] == "5"


def test_updating_up_to_max_update_applies(syncd: Syncd) -> None:
    syncd.configure(max_update=0.5)
    imported(syncd, "students.csv", students_csv())
    promoted = [(*row[:6], "grade-up") for row in STUDENTS[:2]] + list(STUDENTS[2:])
    imported(syncd, "students-2.csv", students_csv(promoted))
    assert person(syncd, "S1")["attributes"]["grade"] == "grade-up"


def test_removing_more_than_max_deactivate_of_links_holds_the_file(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv())
    header = ("SyncID", "First name", "Last name", "Pupil sync key")
    rows = [(f"P{n}", "Sean", "O'Brien", f"S{n}") for n in range(1, 6)]
    imported(syncd, "parents.csv", parents_csv(rows, header))
    changed = [*rows[:3], ("P4", "Sean", "O'Brien", "S1"), ("P5", "Sean", "O'Brien", "S1")]
    outcome = run_import(syncd, "parents-2.csv", parents_csv(changed, header))
    assert outcome.exit_code == 1
    assert "links" in report(syncd, "parents-2.csv")["reason"]
    assert ("P4", "S4") in active_links(syncd)


def test_more_than_max_reject_rejected_rows_fails_the_file_and_applies_nothing(
    syncd: Syncd,
) -> None:
    rows = [
        STUDENTS[0],
        ("S2", "jonas", "Jonas", "", "jonas@school.example", "", ""),  # no last name
        ("S3", "maria", "", "Nuñez", "maria@school.example", "", ""),  # no first name
        ("S4", "liam", "Liam", "O'Brien", "not-an-email", "", ""),
    ]
    outcome = run_import(syncd, "students.csv", table(STUDENT_HEADER, rows))
    assert outcome.exit_code == 1
    document = report(syncd, "students.csv")
    assert document["status"] == "failed"
    assert "max_reject" in document["reason"]
    # What was read, and nothing applied (S1 was valid, but is not created).
    counts = document["counts"]
    assert (counts["rows"], counts["rejected"], counts["created"]) == (4, 3, 0)
    assert syncd.export() == []
    assert [e["row"] for e in errors_rows(syncd, "students.csv")] == ["3", "4", "5"]
    assert [f["status"] for f in files(syncd, "--status", "failed")] == ["failed"]
    # The audit trail says why: the rejected rows, then file.failed (and no person.*).
    logged = [(e["event"], e.get("row")) for e in syncd.events() if e["event"] != "file.received"]
    assert logged == [("row.rejected", 3), ("row.rejected", 4), ("row.rejected", 5),
                      ("file.failed", None)]  # fmt: skip
    history = syncd("history", "--file", str(file_id(syncd, "students.csv")), "--json").json()
    assert [e["event"] for e in history].count("row.rejected") == 3


def test_max_reject_is_per_source(syncd: Syncd) -> None:
    syncd.configure(max_reject=0.8)
    rows = [STUDENTS[0], ("S2", "jonas", "Jonas", "", "", "", ""), ("S3", "m", "", "N", "", "", "")]
    imported(syncd, "students.csv", table(STUDENT_HEADER, rows))
    assert [p["sync_key"] for p in syncd.export()] == ["S1"]


def test_released_import_file_stays_where_it_is_with_its_report_next_to_it(
    syncd: Syncd,
) -> None:
    imported(syncd, "students.csv", students_csv(TEN))
    path = syncd.write("students-2.csv", students_csv(TEN[:8]))
    assert syncd("import", str(path)).exit_code == 1
    assert syncd("files", "release", str(file_id(syncd, "students-2.csv"))).exit_code == 0
    assert path.is_file()
    assert not (syncd.drop_dir / "archive").exists()
    assert report(syncd, "students-2.csv")["status"] == "held"
    # A second report never overwrites the first (SPEC §3.2: a numeric suffix).
    [second] = set(syncd.root.glob("students-2.csv.report*.json")) - {
        syncd.root / "students-2.csv.report.json"
    }
    assert json.loads(second.read_text("utf-8"))["status"] == "applied"


def test_rejected_import_file_stays_where_it_is(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv(TEN))
    path = syncd.write("students-2.csv", students_csv(TEN[:8]))
    assert syncd("import", str(path)).exit_code == 1
    assert syncd("files", "reject", str(file_id(syncd, "students-2.csv"))).exit_code == 0
    assert path.is_file()
    assert not (syncd.drop_dir / "failed").exists()
    statuses = {
        json.loads(p.read_text("utf-8"))["status"]
        for p in syncd.root.glob("students-2.csv.report*.json")
    }
    assert statuses == {"held", "failed"}


def test_held_drop_file_waits_in_held_and_release_archives_it(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv(TEN))
    syncd.drop("students-2.csv", students_csv(TEN[:8]))
    assert syncd("run", "--once").exit_code == 1
    assert (syncd.drop_dir / "held" / "students-2.csv").is_file()
    assert syncd("files", "release", str(file_id(syncd, "students-2.csv"))).exit_code == 0
    assert not (syncd.drop_dir / "held" / "students-2.csv").exists()
    assert list((syncd.drop_dir / "archive").rglob("students-2.csv"))
    assert _student_states(syncd)["K9"] is False


def test_a_released_file_its_archive_refused_moves_on_when_released_again(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv(TEN))
    syncd.drop("students-2.csv", students_csv(TEN[:8]))
    assert syncd("run", "--once").exit_code == 1
    held = syncd.drop_dir / "held" / "students-2.csv"
    year = syncd.drop_dir / "archive" / f"{datetime.now(UTC):%Y}"
    year.write_text("a file where the day's folder goes\n")  # the move cannot be made
    number = str(file_id(syncd, "students-2.csv"))
    outcome = syncd("files", "release", number)
    assert outcome.exit_code == 3
    line = outcome.stderr.strip()
    assert len(line.splitlines()) == 1
    assert f"file {number} is applied; `syncd files release {number}` again moves it on" in line
    assert held.is_file()  # applied, but still where it was
    year.unlink()
    again = syncd("files", "release", number)
    assert again.exit_code == 0, again.stderr
    assert not held.exists()
    assert list((syncd.drop_dir / "archive").rglob("students-2.csv"))
    report = syncd.drop_dir / "reports" / "students-2.csv.report.1.json"  # after the held one
    assert json.loads(report.read_text(encoding="utf-8"))["status"] == "applied"
    assert _student_states(syncd)["K9"] is False
    assert len(syncd.events("file.released")) == 1  # applied once
    assert syncd("files", "release", number).exit_code == 2  # nothing left to do


def test_a_held_file_changed_before_its_release_is_not_released(syncd: Syncd) -> None:
    # The operator reviewed what was held; other content put in its place is never applied.
    imported(syncd, "students.csv", students_csv(TEN))
    syncd.drop("students-2.csv", students_csv(TEN[:8]))
    assert syncd("run", "--once").exit_code == 1
    held = syncd.drop_dir / "held" / "students-2.csv"
    held.write_text(students_csv(TEN[:1]), encoding="utf-8")
    outcome = syncd("files", "release", str(file_id(syncd, "students-2.csv")))
    assert outcome.exit_code == 1
    assert "changed since it was held" in outcome.stderr
    assert len(outcome.stderr.strip().splitlines()) == 1
    assert all(_student_states(syncd).values())  # nothing applied
    assert held.is_file()
    assert [f["status"] for f in files(syncd) if f["name"] == "students-2.csv"] == ["held"]
    assert syncd.events("file.released") == []


def test_a_held_file_of_a_source_taken_out_of_the_config_can_still_be_rejected(
    syncd: Syncd,
) -> None:
    imported(syncd, "students.csv", students_csv(TEN))
    syncd.drop("students-2.csv", students_csv(TEN[:8]))
    assert syncd("run", "--once").exit_code == 1
    number = str(file_id(syncd, "students-2.csv"))
    syncd.configure(sources=[{"name": "district-b", "url": "file:drop-b", "site": "b"}])
    release = syncd("files", "release", number)
    assert release.exit_code == 2
    assert "its source is no longer configured" in release.stderr
    outcome = syncd("files", "reject", number)
    assert outcome.exit_code == 0, outcome.stderr
    assert outcome.stdout.strip() == (
        f'file {number} (students-2.csv) rejected; its source "district-a" is no longer '
        f"configured, so {syncd.drop_dir / 'held' / 'students-2.csv'} was left where it is"
    )
    assert (syncd.drop_dir / "held" / "students-2.csv").is_file()
    assert [f["status"] for f in files(syncd) if f["name"] == "students-2.csv"] == ["rejected"]
    assert [(e["source"], e["file_id"]) for e in syncd.events("file.rejected")] == [
        ("district-a", int(number))
    ]


def test_rejected_drop_file_moves_to_failed(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv(TEN))
    syncd.drop("students-2.csv", students_csv(TEN[:8]))
    assert syncd("run", "--once").exit_code == 1
    assert syncd("files", "reject", str(file_id(syncd, "students-2.csv"))).exit_code == 0
    assert (syncd.drop_dir / "failed" / "students-2.csv").is_file()
    assert all(_student_states(syncd).values())
    # The rejection's report says what the held one said of the file, now failed: its
    # rows, and none of the changes it would have made (as a failed file's report).
    reports = syncd.drop_dir / "reports"
    held, rejected = (
        json.loads((reports / name).read_text(encoding="utf-8"))
        for name in ("students-2.csv.report.json", "students-2.csv.report.1.json")
    )
    assert (held["status"], rejected["status"]) == ("held", "failed")
    assert rejected["reason"] == "rejected by an operator"
    for key in ("kind", "encoding", "delimiter", "sha256"):
        assert rejected[key] == held[key], key
    assert (held["counts"]["deactivated"], held["counts"]["unchanged"]) == (2, 8)
    assert rejected["counts"] == {
        **{name: 0 for name in held["counts"]},
        "rows": held["counts"]["rows"],
        "rejected": held["counts"]["rejected"],
    }
    [event] = syncd.events("file.rejected")
    assert event["run_id"]


def test_delta_deletes_count_against_max_deactivate(syncd: Syncd) -> None:
    syncd.configure(mode={"students": "delta"})
    imported(syncd, "students.csv", students_csv(TEN))
    header = (*STUDENT_HEADER, "Status")
    rows = [(*TEN[0], "delete"), (*TEN[1], "delete")]
    outcome = run_import(syncd, "students-2.csv", table(header, rows))
    assert outcome.exit_code == 1
    assert "max_deactivate" in report(syncd, "students-2.csv")["reason"]


def test_orphan_parent_follow_ons_do_not_count_against_max_deactivate(syncd: Syncd) -> None:
    imported(syncd, "students.csv", students_csv(TEN))
    header = ("SyncID", "First name", "Last name", "Pupil sync key")
    rows = [(f"P{n}", "Sean", "O'Brien", "K9" if n < 4 else f"K{n - 4}") for n in range(10)]
    imported(syncd, "parents.csv", parents_csv(rows, header))
    imported(syncd, "students-2.csv", students_csv(TEN[:9]))  # 1 of 10 students
    parents = {p["sync_key"]: p["active"] for p in syncd.export() if p["kind"] == "parent"}
    assert [key for key, active in parents.items() if not active] == ["P0", "P1", "P2", "P3"]


def test_header_only_full_relationships_file_is_held(syncd: Syncd) -> None:
    syncd.configure(max_deactivate=1.0)
    imported(syncd, "students.csv", students_csv())
    header = ("SyncID", "First name", "Last name")
    imported(syncd, "parents.csv", parents_csv([("P1", "Ana", "Nuñez")], header))
    imported(syncd, "relationships.csv", "Parent ID,Student ID\nP1,S1\nP1,S2\n")
    outcome = run_import(syncd, "relationships-2.csv", "Parent ID,Student ID\n")
    assert outcome.exit_code == 1
    document = report(syncd, "relationships-2.csv")
    assert (
        "header-only full file would remove all 2 relationships-file links" in (document["reason"])
    )
    assert document["counts"]["links_removed"] == 2
    assert active_links(syncd) == {("P1", "S1"), ("P1", "S2")}
    # A link a parents file names too stays: neither the reason nor the count has it.
    both = ("SyncID", "First name", "Last name", "Pupil sync key")
    imported(syncd, "parents-2.csv", parents_csv([("P1", "Ana", "Nuñez", "S1")], both))
    run_import(syncd, "relationships-3.csv", "Parent ID,Student ID\n")
    document = report(syncd, "relationships-3.csv")
    assert document["reason"].startswith("header-only full file would remove all 1 ")
    assert document["counts"]["links_removed"] == 1


def test_a_row_with_two_errors_is_one_row_rejected_event_listing_both(syncd: Syncd) -> None:
    """A row is rejected whole (SPEC §3.3): one event per row, so the events match the
    report's `rejected` count; errors.csv and a report written again keep every error."""
    imported(syncd, "students.csv", students_csv(TEN))
    bad = ("K9", "kid9", "Zoë", "", "not-an-email", "2009", "4")  # no last name, bad email
    outcome = run_import(syncd, "students-2.csv", students_csv(TEN[:7] + (bad,)))
    assert outcome.exit_code == 1  # held: K7 and K8 would be deactivated (2 of 10)
    assert report(syncd, "students-2.csv")["counts"]["rejected"] == 1
    [event] = syncd.events("row.rejected")
    assert event["row"] == 9
    assert sorted(error["column"] for error in event["errors"]) == ["E-mail", "Last name"]
    assert (event["column"], event["error"]) == (
        event["errors"][0]["column"],
        event["errors"][0]["error"],
    )
    assert sorted(row["column"] for row in errors_rows(syncd, "students-2.csv")) == [
        "E-mail",
        "Last name",
    ]
    # Rejecting the held file writes its report again from the ledger and the trail.
    (syncd.root / "students-2.csv.errors.csv").unlink()
    assert syncd("files", "reject", str(file_id(syncd, "students-2.csv"))).exit_code == 0
    assert sorted(row["column"] for row in errors_rows(syncd, "students-2.csv")) == [
        "E-mail",
        "Last name",
    ]


def test_a_held_relationships_file_lists_the_pending_links_it_counts(syncd: Syncd) -> None:
    """SPEC §3.3: the report has the pending links; a held file's says what releasing it
    would leave waiting, as a held parents file's does."""
    imported(syncd, "students.csv", students_csv())
    header = ("SyncID", "First name", "Last name", "Pupil sync key")
    rows = [(f"P{n}", "Sean", "O'Brien", f"S{n}") for n in range(1, 6)]
    imported(syncd, "parents.csv", parents_csv(rows, header))
    syncd.configure(max_deactivate=0.0)
    first = "Parent ID,Student ID\nP1,S2\n"
    imported(syncd, "relationships.csv", first)
    outcome = run_import(syncd, "relationships-2.csv", "Parent ID,Student ID\nP2,S99\n")
    assert outcome.exit_code == 1  # it removes P1 → S2: more than max_deactivate 0
    held = report(syncd, "relationships-2.csv")
    assert held["status"] == "held"
    assert (held["counts"]["pending"], [p["child"] for p in held["pending"]]) == (1, ["S99"])
