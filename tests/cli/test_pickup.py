"""`syncd run --once` over a local drop folder (SPEC §3.2): what is picked up, when, in what
order, and where every file ends."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from syncd.clock import FixedClock, SystemClock
from syncd.config import local_source
from syncd.db.database import open_database
from syncd.locks import folder_pass
from syncd.pickup import Pickup
from syncd.pipeline import Job, Pipeline
from syncd.sources.local import LocalSource
from tests.cli.conftest import Syncd

STUDENTS = (
    "SyncID,First name,Last name,E-mail\n"
    "S1,Lena,Müller,lena@example.edu\n"
    "S2,Zoë,Martin,zoe@example.edu\n"
)
PARENTS = (
    "First name;Last name;User name;Pupil sync key\r\n"
    "Katrin;Müller;katrin;S1\r\n"
    'Sean;O\'Brien;sean;"S1,S2"\r\n'
)


def archived(syncd: Syncd, drop: str = "drop") -> list[str]:
    folder = syncd.root / drop / "archive"
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def today_archive(syncd: Syncd) -> Path:
    return syncd.drop_dir / "archive" / datetime.now(UTC).strftime("%Y/%m/%d")


def test_temp_and_hidden_names_are_never_picked_up(syncd_sqlite: Syncd) -> None:
    names = [
        "students.csv.tmp", "students.csv.part", "students.csv.filepart",
        "students.csv.partial", "students.csv.crdownload", ".students.csv",
    ]  # fmt: skip
    for name in names:
        syncd_sqlite.drop(name, STUDENTS)
    outcome = syncd_sqlite("run", "--once")
    assert outcome.exit_code == 0, outcome.stderr
    assert sorted(os.listdir(syncd_sqlite.drop_dir)) == sorted(
        names + ["archive", "failed", "held", "processing", "reports"]
    )
    assert syncd_sqlite.export() == []


def test_reports_that_import_wrote_into_the_drop_folder_are_never_picked_up(
    syncd_sqlite: Syncd,
) -> None:
    # `syncd import FILE` writes its reports next to the file, here the drop folder.
    students = syncd_sqlite.drop("students.csv", STUDENTS + "S3,Ann,Lee,not-an-email\n")
    assert syncd_sqlite("import", str(students)).exit_code == 0
    students.unlink()
    reports = sorted(os.listdir(syncd_sqlite.drop_dir))
    assert reports == ["students.csv.errors.csv", "students.csv.report.json"]
    syncd_sqlite.drop("students.csv.report.1.json", "{}")
    parents = syncd_sqlite.drop("parents.csv", PARENTS)
    outcome = syncd_sqlite("run", "--once")
    assert outcome.exit_code == 0, outcome.stderr
    assert not parents.exists()  # applied: a students report is no students file arriving
    assert [name for name in archived(syncd_sqlite)] == ["parents.csv"]
    assert syncd_sqlite("status", "--json").json()[0]["waiting"] == 0


def test_kinds_apply_in_order_whatever_order_they_arrived(syncd: Syncd) -> None:
    parents = syncd.drop("parents.csv", PARENTS)
    students = syncd.drop("students.csv", STUDENTS)
    os.utime(parents, (time.time() - 300, time.time() - 300))  # parents arrived first
    outcome = syncd("run", "--once")
    assert outcome.exit_code == 0, outcome.stderr
    assert syncd.links() == {
        ("katrin", "S1", "active"),
        ("sean", "S1", "active"),
        ("sean", "S2", "active"),
    }
    assert archived(syncd) == ["parents.csv", "students.csv"]
    assert sorted(os.listdir(today_archive(syncd))) == ["parents.csv", "students.csv"]
    assert not students.exists() and not os.listdir(syncd.drop_dir / "processing")
    applied = [e["name"] for e in syncd.events("file.applied")]
    assert applied == ["students.csv", "parents.csv"]


def test_the_ledger_numbers_a_passs_files_oldest_first(syncd_sqlite: Syncd) -> None:
    # Not in the order the folder lists them (a hash order on ext4): files of one kind are
    # applied oldest first, and `files` shows them so.
    syncd = syncd_sqlite
    syncd.configure(mode={"students": "delta"})
    names = [f"students-{letter}.csv" for letter in "kdwbqmazfh"]
    for age, name in enumerate(names):  # k oldest, h newest
        path = syncd.drop(name, f"SyncID,First name,Last name\nS{age},Ann,Lee\n")
        os.utime(path, (time.time() - 600 + age, time.time() - 600 + age))
    assert syncd("run", "--once").exit_code == 0
    ledger = sorted(syncd("files", "--json").json(), key=lambda entry: entry["id"])
    assert [entry["name"] for entry in ledger] == names
    assert [e["name"] for e in syncd.events("file.applied")] == names


def test_reports_are_written_to_reports_folder(syncd_sqlite: Syncd) -> None:
    syncd_sqlite.drop("students.csv", STUDENTS + "S3,,Nobody,bad-email\n")
    outcome = syncd_sqlite("run", "--once")
    assert outcome.exit_code == 0
    reports = syncd_sqlite.drop_dir / "reports"
    assert sorted(os.listdir(reports)) == ["students.csv.errors.csv", "students.csv.report.json"]
    errors = (reports / "students.csv.errors.csv").read_text().splitlines()
    assert errors[0] == "row,column,value,error"
    assert all(line.startswith("4,") for line in errors[1:])


def test_report_names_its_own_errors_file_when_names_clash(syncd_sqlite: Syncd) -> None:
    reports = syncd_sqlite.drop_dir / "reports"
    for email in ("first-bad-email", "second-bad-email"):  # two uploads, each with a bad row
        syncd_sqlite.drop("students.csv", STUDENTS + f"S3,Ann,Berg,{email}\n")
        assert syncd_sqlite("run", "--once").exit_code == 0
    assert sorted(os.listdir(reports)) == [
        "students.csv.errors.1.csv",
        "students.csv.errors.csv",
        "students.csv.report.1.json",
        "students.csv.report.json",
    ]
    second = json.loads((reports / "students.csv.report.1.json").read_text(encoding="utf-8"))
    # The second report points at the second errors file, not at the first upload's.
    assert second["errors_file"] == "students.csv.errors.1.csv"
    assert "second-bad-email" in (reports / second["errors_file"]).read_text(encoding="utf-8")


def test_a_file_name_near_the_filesystems_limit_gets_reports_and_an_archive_name_that_fit(
    syncd_sqlite: Syncd,
) -> None:
    # 253 bytes: NAME.report.json would be 265, over the 255 a Linux file name may have.
    long_name = "students_" + "x" * 240 + ".csv"
    syncd_sqlite.drop(long_name, STUDENTS + "S3,Ann,Berg,not-an-email\n")
    syncd_sqlite.drop("parents.csv", PARENTS)
    outcome = syncd_sqlite("run", "--once")
    assert outcome.exit_code == 0, outcome.stderr
    assert [f["status"] for f in syncd_sqlite("files", "--json").json()] == ["applied"] * 2
    assert os.listdir(syncd_sqlite.drop_dir / "processing") == []
    assert sorted(archived(syncd_sqlite)) == sorted([long_name, "parents.csv"])
    reports = sorted(os.listdir(syncd_sqlite.drop_dir / "reports"))
    assert len(reports) == 3 and all(len(name.encode()) <= 255 for name in reports)
    [report_file] = [name for name in reports if name.startswith("students_x")
                     and name.endswith(".report.json")]  # fmt: skip
    document = json.loads((syncd_sqlite.drop_dir / "reports" / report_file).read_text())
    assert document["file"] == long_name
    assert document["errors_file"] in reports
    # The same name again: archived beside the first under a numbered name that fits.
    syncd_sqlite.drop(long_name, STUDENTS)
    assert syncd_sqlite("run", "--once").exit_code == 0
    assert len(archived(syncd_sqlite)) == 3
    assert all(len(name.encode()) <= 255 for name in archived(syncd_sqlite))


def test_a_file_name_that_is_not_utf8_is_read_as_cp1252_and_the_pass_goes_on(
    syncd: Syncd,
) -> None:
    # An old Windows client's name: "laté" with é as the one byte 0xE9.
    drop = os.fsencode(syncd.drop_dir)
    os.makedirs(drop, exist_ok=True)
    for name, content in ((b"lat\xe9_students.csv", STUDENTS), (b"\xe9t\xe9.csv.part", "")):
        with open(os.path.join(drop, name), "w", encoding="utf-8") as file:
            file.write(content)
        os.utime(os.path.join(drop, name), (time.time() - 60, time.time() - 60))
    syncd.drop("parents.csv", PARENTS)

    outcome = syncd("run", "--once")

    assert outcome.exit_code == 0, outcome.stderr
    listed = syncd("files", "--json").json()
    assert [(f["name"], f["status"]) for f in listed] == [
        ("laté_students.csv", "applied"),
        ("parents.csv", "applied"),
    ]
    assert sorted(archived(syncd)) == ["laté_students.csv", "parents.csv"]
    assert "laté_students.csv.report.json" in os.listdir(syncd.drop_dir / "reports")
    files_left = [name for name in os.listdir(drop) if os.path.isfile(os.path.join(drop, name))]
    assert files_left == [b"\xe9t\xe9.csv.part"]  # an upload under way is left as it is


def test_same_content_again_is_a_duplicate_and_archived(syncd: Syncd) -> None:
    syncd.drop("students.csv", STUDENTS)
    assert syncd("run", "--once").exit_code == 0
    syncd.drop("students.csv", STUDENTS)
    outcome = syncd("run", "--once")
    assert outcome.exit_code == 0
    assert [e["name"] for e in syncd.events("file.duplicate")] == ["students.csv"]
    # The second copy is archived beside the first under a new name; nothing is overwritten.
    assert sorted(os.listdir(today_archive(syncd))) == ["students.1.csv", "students.csv"]
    statuses = [f["status"] for f in syncd("files", "--json").json()]
    assert statuses == ["applied", "duplicate"]
    assert len(syncd.events("person.created")) == 2


def test_failed_file_moves_to_failed_with_reason(syncd_sqlite: Syncd) -> None:
    syncd_sqlite.drop("students.csv", b"")
    syncd_sqlite.drop("roles.csv", "userSourcedId,orgSourcedId,role\n1,2,student\n")
    outcome = syncd_sqlite("run", "--once")
    assert outcome.exit_code == 1
    assert sorted(os.listdir(syncd_sqlite.drop_dir / "failed")) == ["roles.csv", "students.csv"]
    reasons = {e["name"]: e["reason"] for e in syncd_sqlite.events("file.failed")}
    assert reasons["students.csv"] == "empty file"
    assert "kind cannot be found" in reasons["roles.csv"]


def test_done_marker_required_and_archived_with_the_file(syncd_sqlite: Syncd) -> None:
    syncd_sqlite.configure(done_marker=True)
    syncd_sqlite.drop("students.csv", STUDENTS)
    assert syncd_sqlite("run", "--once").exit_code == 0
    assert (syncd_sqlite.drop_dir / "students.csv").exists()  # no marker yet: waits
    syncd_sqlite.drop("students.csv.done", "")
    assert syncd_sqlite("run", "--once").exit_code == 0
    assert sorted(os.listdir(today_archive(syncd_sqlite))) == ["students.csv", "students.csv.done"]
    assert len(syncd_sqlite.export()) == 2


def test_done_marker_in_capitals_counts(syncd_sqlite: Syncd) -> None:
    syncd_sqlite.configure(done_marker=True)
    syncd_sqlite.drop("STUDENTS.CSV", STUDENTS)
    syncd_sqlite.drop("STUDENTS.CSV.DONE", "")
    assert syncd_sqlite("run", "--once").exit_code == 0
    assert sorted(os.listdir(today_archive(syncd_sqlite))) == ["STUDENTS.CSV", "STUDENTS.CSV.DONE"]
    assert len(syncd_sqlite.export()) == 2


def test_file_younger_than_min_age_waits(tmp_path: Path) -> None:
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "students.csv").write_text(STUDENTS)
    clock = FixedClock(datetime.now(UTC))
    config = local_source(folder, min_age=timedelta(seconds=10))
    pickup = Pickup(
        config,
        LocalSource(config),
        Pipeline(open_database(f"sqlite:///{tmp_path / 'db.sqlite'}"), clock),
        clock,
    )
    ready, young = pickup.ready_entries(LocalSource(config).list_entries())
    assert [e.name for e in young] == ["students.csv"] and ready == []
    clock.sleep(11)
    ready, young = pickup.ready_entries(LocalSource(config).list_entries())
    assert [e.name for e in ready] == ["students.csv"] and young == []


def test_run_once_waits_only_what_is_left_of_min_age(tmp_path: Path) -> None:
    # A local file 7 s old (its mtime on this host's clock) with min_age 10 s: the pass
    # lists again 3 s later, not 10 (with min_age = "1h", not an hour for a file 59 min old).
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "students.csv").write_text(STUDENTS)
    clock = FixedClock(datetime.now(UTC))
    seven_ago = clock.now().timestamp() - 7
    os.utime(folder / "students.csv", (seven_ago, seven_ago))
    config = local_source(folder, min_age=timedelta(seconds=10))
    engine = open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    pickup = Pickup(config, LocalSource(config), Pipeline(engine, clock), clock)
    told: list[tuple[float, list[str]]] = []
    pickup.tell_wait = lambda seconds, names: told.append((seconds, names))
    start = clock.monotonic()
    outcome = pickup.run_once("run-1")
    assert 3 <= clock.monotonic() - start < 4
    assert (outcome.applied, outcome.waiting) == (1, 0)
    # `run --once` on a terminal says so, where it sat silent for min_age.
    [(seconds, names)] = told
    assert (round(seconds), names) == (3, ["students.csv"])


@pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1) (util-linux)")
def test_run_once_on_a_terminal_says_what_it_waits_for(syncd_sqlite: Syncd) -> None:
    syncd_sqlite.configure(min_age="2s")
    syncd_sqlite.drop_dir.mkdir()
    (syncd_sqlite.drop_dir / "students.csv").write_text(STUDENTS)  # mtime: now
    # A pseudo-terminal, as an admin at a shell: `script` gives the command one.
    command = f"{sys.executable} -m syncd --config {syncd_sqlite.config_path} run --once"
    shown = subprocess.run(
        ["script", "-qec", command, "/dev/null"], capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0, shown.stdout
    said = [line for line in shown.stdout.splitlines() if "waiting" in line]
    assert len(said) == 1 and said[0].startswith('syncd: source "district-a": waiting ')
    assert said[0].endswith("s for students.csv to be min_age old, unchanged")
    # Not in a pipe (cron mails whatever a job prints).
    piped = subprocess.run(command.split(), capture_output=True, text=True, timeout=60)
    assert piped.returncode == 0 and "waiting" not in piped.stderr


def test_run_once_waits_for_a_file_to_reach_min_age(syncd_sqlite: Syncd) -> None:
    syncd_sqlite.configure(min_age="1s")
    (syncd_sqlite.drop_dir).mkdir()
    (syncd_sqlite.drop_dir / "students.csv").write_text(STUDENTS)  # mtime: now
    outcome = syncd_sqlite("run", "--once")
    assert outcome.exit_code == 0
    assert len(syncd_sqlite.export()) == 2


def test_symlinks_and_subfolders_are_not_followed(syncd_sqlite: Syncd, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "students.csv").write_text(STUDENTS)
    syncd_sqlite.drop_dir.mkdir()
    (syncd_sqlite.drop_dir / "students.csv").symlink_to(outside / "students.csv")
    syncd_sqlite.drop("nested/pupils.csv", STUDENTS)
    assert syncd_sqlite("run", "--once").exit_code == 0
    assert syncd_sqlite.export() == []
    assert (syncd_sqlite.drop_dir / "students.csv").is_symlink()
    assert (outside / "students.csv").read_text() == STUDENTS


def test_file_left_in_processing_is_taken_up_under_its_ledger_entry(syncd: Syncd) -> None:
    processing = syncd.drop_dir / "processing"
    processing.mkdir(parents=True)
    path = processing / "students.csv"
    path.write_text(STUDENTS)
    config = local_source(syncd.drop_dir, name="district-a")
    engine = open_database(syncd.database_url)
    pipeline = Pipeline(engine, SystemClock())
    job = Job(
        path=path,
        name="students.csv",
        source=config,
        source_name="district-a",
        location="processing/students.csv",
    )
    file_id = pipeline.open_ledger(job, "0" * 64, path.stat().st_size)
    engine.dispose()
    [state] = syncd("status", "--json").json()
    assert state["waiting"] == 1  # not applied yet: it waits for the next pass
    outcome = syncd("run", "--once")  # the daemon "restarts" after a crash
    assert outcome.exit_code == 0, outcome.stderr
    ledger = syncd("files", "--json").json()
    assert [(f["id"], f["status"]) for f in ledger] == [(file_id, "applied")]
    assert archived(syncd) == ["students.csv"]
    assert syncd("status", "--json").json()[0]["waiting"] == 0


def test_a_crash_leftover_taken_away_by_hand_is_failed_not_left_processing(
    syncd: Syncd,
) -> None:
    # A crash left the file in processing/, and an operator moved it away before the restart:
    # its entry must not say `processing` for ever (nothing of it was applied).
    processing = syncd.drop_dir / "processing"
    processing.mkdir(parents=True)
    path = processing / "students.csv"
    path.write_text(STUDENTS)
    engine = open_database(syncd.database_url)
    pipeline = Pipeline(engine, SystemClock())
    job = Job(
        path=path,
        name="students.csv",
        source=local_source(syncd.drop_dir, name="district-a"),
        source_name="district-a",
        location="processing/students.csv",
    )
    file_id = pipeline.open_ledger(job, "0" * 64, path.stat().st_size)
    engine.dispose()
    path.unlink()
    for _ in range(2):  # said once: the entry is closed
        outcome = syncd("run", "--once")
        assert outcome.exit_code == 0, outcome.stderr
    ledger = syncd("files", "--json").json()
    assert [(f["id"], f["status"]) for f in ledger] == [(file_id, "failed")]
    assert "taken away" in ledger[0]["reason"]
    [failed] = syncd.events("file.failed")
    assert (failed["file_id"], failed["level"]) == (file_id, "error")
    report = json.loads(
        (syncd.drop_dir / "reports" / "students.csv.report.json").read_text(encoding="utf-8")
    )
    assert (report["file_id"], report["status"]) == (file_id, "failed")
    assert syncd.export() == []


def test_a_file_claimed_but_not_read_before_a_crash_is_taken_up_as_received_once(
    syncd: Syncd,
) -> None:
    # The claim is in the ledger before the move (register_claim); a crash before the file
    # was read leaves an entry with no size: the restart receives it under that entry.
    processing = syncd.drop_dir / "processing"
    processing.mkdir(parents=True)
    (processing / "students.csv").write_text(STUDENTS)
    engine = open_database(syncd.database_url)
    config = local_source(syncd.drop_dir, name="district-a")
    pipeline = Pipeline(engine, SystemClock())
    claim_id = pipeline.register_claim(config, "students.csv", "processing/students.csv")
    engine.dispose()
    outcome = syncd("run", "--once")
    assert outcome.exit_code == 0, outcome.stderr
    ledger = syncd("files", "--json").json()
    assert [(f["id"], f["status"], f["sha256"] is not None) for f in ledger] == [
        (claim_id, "applied", True)
    ]
    assert [e["file_id"] for e in syncd.events("file.received")] == [claim_id]
    assert archived(syncd) == ["students.csv"]


def test_a_file_in_processing_this_database_never_claimed_is_left_alone(
    syncd_sqlite: Syncd,
) -> None:
    # SPEC §3.2: the move into processing/ is the claim, "so two daemons can never take the
    # same file": another syncd's (another database's) file there, mid-file, is not a crash's
    # leftover here; nor is a file put there by hand, or an upload's temporary file.
    processing = syncd_sqlite.drop_dir / "processing"
    processing.mkdir(parents=True)
    (processing / "students.csv").write_text(STUDENTS)
    (processing / "parents.csv.part").write_text("SyncID,First name,Last name\nP1,A,B\n")
    (processing / ".DS_Store").write_bytes(b"")
    for _ in range(2):
        outcome = syncd_sqlite("run", "--once")
        assert outcome.exit_code == 0, outcome.stderr
    assert syncd_sqlite("files", "--json").json() == []
    assert syncd_sqlite.export() == []
    assert sorted(p.name for p in processing.iterdir()) == [
        ".DS_Store",
        "parents.csv.part",
        "students.csv",
    ]
    waiting = syncd_sqlite.events("file.waiting")  # once a process (each `run --once`)
    assert [(e["name"], e["level"]) for e in waiting] == [("students.csv", "warning")] * 2
    assert "not claimed by this syncd's database" in waiting[0]["reason"]


def test_file_left_in_processing_after_its_commit_is_delivered_under_its_entry(
    syncd: Syncd,
) -> None:
    syncd.drop(
        "students.csv", STUDENTS.replace("E-mail\n", "E-mail,Grade\n").replace(".edu\n", ".edu,5\n")
    )
    # The archive move fails once the transaction has committed (as a crash there would):
    # the file stays in processing/ with its ledger entry already applied.
    blocker = syncd.drop_dir / "archive" / datetime.now(UTC).strftime("%Y")
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder")
    assert syncd("run", "--once").exit_code != 0
    assert os.listdir(syncd.drop_dir / "processing") == ["students.csv"]
    blocker.unlink()
    outcome = syncd("run", "--once")  # the restart
    assert outcome.exit_code == 0, outcome.stderr
    ledger = [(f["id"], f["status"]) for f in syncd("files", "--json").json()]
    assert ledger == [(1, "applied")]  # one claimed file, one ledger entry: no "duplicate"
    assert archived(syncd) == ["students.csv"]
    report = json.loads((syncd.drop_dir / "reports" / "students.csv.report.json").read_text())
    assert (report["file_id"], report["status"], report["counts"]["created"]) == (1, "applied", 2)
    # The report delivered again names its columns, which the ledger does not keep: they
    # are read again from the file (SPEC §3.3).
    again = json.loads((syncd.drop_dir / "reports" / "students.csv.report.1.json").read_text())
    assert (again["ignored_columns"], again["attribute_columns"]) == (["Grade"], ["Grade"])
    assert len(syncd.events("file.applied")) == 1 and not syncd.events("file.duplicate")


def test_report_delivered_again_after_a_crash_keeps_its_rejected_rows(syncd: Syncd) -> None:
    syncd.drop("students.csv", STUDENTS + "S3,Ana,Ruiz,not-an-email\n")
    blocker = syncd.drop_dir / "archive" / datetime.now(UTC).strftime("%Y")
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder")
    assert syncd("run", "--once").exit_code != 0
    blocker.unlink()
    assert syncd("run", "--once").exit_code == 0  # the restart delivers it again
    reports = syncd.drop_dir / "reports"
    again = json.loads((reports / "students.csv.report.1.json").read_text())
    assert (again["status"], again["counts"]["rejected"]) == ("applied", 1)
    assert again["duration_s"] > 0
    with (reports / "students.csv.errors.1.csv").open(newline="") as errors:
        rows = list(csv.DictReader(errors))
    assert [(r["row"], r["column"]) for r in rows] == [("4", "E-mail")]


def test_a_folder_that_cannot_be_written_stops_only_its_own_source(syncd: Syncd) -> None:
    syncd.configure(
        sources=[
            {"name": "district-a", "url": "file:drop", "min_age": "0s"},
            {"name": "district-b", "url": "file:drop-b", "min_age": "0s"},
        ]
    )
    syncd.drop("students.csv", STUDENTS)
    (syncd.root / "drop-b").mkdir()
    syncd.write("students.csv", STUDENTS, syncd.root / "drop-b")
    blocker = syncd.drop_dir / "archive" / datetime.now(UTC).strftime("%Y")
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder")
    outcome = syncd("run", "--once")
    assert outcome.exit_code == 3
    [line] = outcome.stderr.strip().splitlines()
    assert line.startswith('syncd: source "district-a": ') and str(blocker) in line
    assert archived(syncd, "drop-b") == ["students.csv"]  # the other source was worked
    [error] = syncd.events("source.error")
    assert error["source"] == "district-a" and "retry_in" not in error  # no retry: --once
    states = {state["source"]: state for state in syncd("status", "--json").json()}
    assert states["district-a"]["error"] and states["district-b"]["error"] is None
    blocker.unlink()
    assert syncd("run", "--once").exit_code == 0  # taken up again from processing/
    assert archived(syncd) == ["students.csv"]
    assert syncd.events("source.recovered")


def test_a_failed_or_held_file_is_one_line_on_stderr(syncd: Syncd) -> None:
    syncd.drop("students.csv", STUDENTS)
    assert syncd("run", "--once").exit_code == 0
    syncd.drop("students-2.csv", "SyncID,First name,Last name\n")  # header only: held
    syncd.drop("notes.csv", "nothing,to,see\n1,2,3\n")  # unknown kind: failed
    outcome = syncd("run", "--once")
    assert outcome.exit_code == 1
    lines = sorted(outcome.stderr.strip().splitlines())
    assert len(lines) == 2
    assert lines[0].startswith('syncd: source "district-a": notes.csv: failed: ')
    assert lines[1].startswith('syncd: source "district-a": students-2.csv: held: header-only')
    path = syncd.write("students-3.csv", "SyncID,First name,Last name\n")
    imported = syncd("import", "--json", str(path))
    assert imported.exit_code == 1
    assert imported.stderr.startswith("syncd: students-3.csv: held: header-only")


def test_held_file_waits_in_held_then_release_archives_it(syncd: Syncd) -> None:
    syncd.drop("students.csv", STUDENTS)
    assert syncd("run", "--once").exit_code == 0
    syncd.drop("students-2.csv", "SyncID,First name,Last name\n")  # header only: held
    assert syncd("run", "--once").exit_code == 1
    assert os.listdir(syncd.drop_dir / "held") == ["students-2.csv"]
    held = syncd("files", "--status", "held", "--json").json()
    assert len(held) == 1
    outcome = syncd("files", "release", str(held[0]["id"]))
    assert outcome.exit_code == 0, outcome.stderr
    assert os.listdir(syncd.drop_dir / "held") == []
    assert "students-2.csv" in archived(syncd)
    assert all(not p["active"] for p in syncd.export())


def test_done_marker_of_a_held_file_follows_it_on_release_and_reject(
    syncd_sqlite: Syncd,
) -> None:
    syncd_sqlite.configure(done_marker=True)
    syncd_sqlite.drop("students.csv", STUDENTS)
    syncd_sqlite.drop("students.csv.done", "")
    assert syncd_sqlite("run", "--once").exit_code == 0
    for name, marker in (("students-2.csv", ".done"), ("students-3.csv", ".ok")):
        syncd_sqlite.drop(name, "SyncID,First name,Last name\n")  # header only: held
        syncd_sqlite.drop(name + marker, "")
    assert syncd_sqlite("run", "--once").exit_code == 1
    held_dir = syncd_sqlite.drop_dir / "held"
    assert sorted(os.listdir(held_dir)) == [
        "students-2.csv", "students-2.csv.done", "students-3.csv", "students-3.csv.ok",
    ]  # fmt: skip
    ids = {f["name"]: str(f["id"]) for f in syncd_sqlite("files", "--json").json()}
    assert syncd_sqlite("files", "release", ids["students-2.csv"]).exit_code == 0
    assert syncd_sqlite("files", "reject", ids["students-3.csv"]).exit_code == 0
    # Each marker went on with its file, as at pickup; none is left behind in held/.
    assert os.listdir(held_dir) == []
    assert {"students-2.csv", "students-2.csv.done"} <= set(archived(syncd_sqlite))
    failed = sorted(os.listdir(syncd_sqlite.drop_dir / "failed"))
    assert failed == ["students-3.csv", "students-3.csv.ok"]


def test_done_marker_of_a_file_with_a_numeric_suffix_pairs_with_it(syncd_sqlite: Syncd) -> None:
    syncd_sqlite.configure(done_marker=True)
    syncd_sqlite.drop("students.csv", STUDENTS)
    syncd_sqlite.drop("students.csv.done", "")
    assert syncd_sqlite("run", "--once").exit_code == 0
    for delimiter in (",", ";"):  # two header-only files of one name: both held
        syncd_sqlite.drop("students.csv", f"SyncID{delimiter}First name{delimiter}Last name\n")
        syncd_sqlite.drop("students.csv.done", "")
        assert syncd_sqlite("run", "--once").exit_code == 1
    held_dir = syncd_sqlite.drop_dir / "held"
    assert sorted(os.listdir(held_dir)) == [
        "students.1.csv", "students.1.csv.done", "students.csv", "students.csv.done",
    ]  # fmt: skip
    [second] = [f for f in syncd_sqlite("files", "--json").json() if f["id"] == 3]
    assert syncd_sqlite("files", "reject", str(second["id"])).exit_code == 0
    assert sorted(os.listdir(held_dir)) == ["students.csv", "students.csv.done"]
    # Its own name again where that is free, its marker beside it.
    failed = sorted(os.listdir(syncd_sqlite.drop_dir / "failed"))
    assert failed == ["students.csv", "students.csv.done"]


def test_status_counts_waiting_held_and_failed(syncd_sqlite: Syncd) -> None:
    syncd_sqlite.drop("bad.csv", "x,y\n1,2\n")
    syncd_sqlite("run", "--once")
    syncd_sqlite.configure(done_marker=True)
    syncd_sqlite.drop("students.csv", STUDENTS)
    status = syncd_sqlite("status", "--json").json()
    assert status == [
        {
            "source": "district-a",
            "site": "district-a",
            "last_poll": status[0]["last_poll"],
            "last_success": status[0]["last_success"],
            "waiting": 1,
            "held": 0,
            "failed": 1,
            "pending_links": 0,
            "error": None,
        }
    ]
    assert status[0]["last_poll"] is not None


def test_status_names_a_drop_folder_it_cannot_list(syncd_sqlite: Syncd) -> None:
    (syncd_sqlite.root / "not-a-folder").write_text("")
    syncd_sqlite.configure(url="file:not-a-folder")
    outcome = syncd_sqlite("status", "--json")
    assert outcome.exit_code == 0, outcome.stderr
    [status] = outcome.json()
    assert status["error"].startswith('source "district-a": cannot list ')
    assert status["error"].endswith("not-a-folder: Not a directory")


def test_parents_file_waits_while_its_students_file_is_still_uploading(syncd: Syncd) -> None:
    syncd.drop("students.csv.part", STUDENTS)
    parents = syncd.drop("parents.csv", PARENTS)
    outcome = syncd("run", "--once")
    assert outcome.exit_code == 0, outcome.stderr  # waiting is not a failure
    assert parents.exists()
    [waiting] = syncd.events("file.waiting")
    assert waiting["name"] == "parents.csv"
    # The operator is told which file it waits for (a stale upload, maybe).
    assert waiting["reason"] == "an earlier kind of file is still arriving: students.csv.part"
    assert waiting["waiting_for"] == ["students.csv.part"]
    (syncd.drop_dir / "students.csv.part").rename(syncd.drop_dir / "students.csv")
    assert syncd("run", "--once").exit_code == 0
    assert syncd.links() == {
        ("katrin", "S1", "active"),
        ("sean", "S1", "active"),
        ("sean", "S2", "active"),
    }


def test_parents_file_naming_only_known_students_does_not_wait_for_an_upload(
    syncd: Syncd,
) -> None:
    # SPEC §2.3: a later file waits for an arriving earlier one only when a child value
    # matches no student yet; a stuck students.csv.part must not hold up the others.
    assert syncd("import", str(syncd.write("students.csv", STUDENTS))).exit_code == 0
    syncd.drop("students-next.csv.part", STUDENTS)
    parents = syncd.drop("parents.csv", PARENTS)
    events_before = len(syncd.events())
    outcome = syncd("run", "--once")
    assert outcome.exit_code == 0, outcome.stderr
    assert not parents.exists()
    assert syncd.events("file.waiting") == []
    assert syncd.links() == {
        ("katrin", "S1", "active"),
        ("sean", "S1", "active"),
        ("sean", "S2", "active"),
    }
    # The preview behind that choice left no trace: one file received, applied.
    names = [e["event"] for e in syncd.events()[events_before:] if e["event"].startswith("file.")]
    assert names == ["file.received", "file.validated", "file.applied"]
    assert [f["name"] for f in syncd("files", "--json").json()] == ["students.csv", "parents.csv"]


def test_a_later_kind_held_back_for_an_upload_applies_once_its_students_do_in_that_pass(
    syncd: Syncd,
) -> None:
    # students.csv is ready, another students upload is under way: the parents file first
    # waits (it names students not there yet), then applies in the same pass once
    # students.csv did, and the relationships file after it, one batch, not three passes.
    syncd.drop("students-next.csv.part", "SyncID,First name,Last name\n")
    syncd.drop("students.csv", STUDENTS)
    syncd.drop("parents.csv", "First name;Last name;User name\r\nKatrin;Müller;katrin\r\n")
    syncd.drop("relationships.csv", "Parent ID,Student ID\nkatrin,S1\nkatrin,S2\n")
    outcome = syncd("run", "--once")
    assert outcome.exit_code == 0, outcome.stderr
    applied = [e["name"] for e in syncd.events("file.applied")]
    assert applied == ["students.csv", "parents.csv", "relationships.csv"]
    assert syncd.links() == {("katrin", "S1", "active"), ("katrin", "S2", "active")}
    assert len({e["run_id"] for e in syncd.events("file.applied")}) == 1


def test_parents_file_stops_waiting_after_dependency_wait(syncd_sqlite: Syncd) -> None:
    syncd_sqlite.configure(dependency_wait="1s")
    syncd_sqlite.drop("students.csv.part", STUDENTS)  # an upload that never ends
    parents = syncd_sqlite.drop("parents.csv", PARENTS)
    # The wait counts from when syncd first saw the file, not from its mtime (a client may
    # keep a file's old timestamp): the first cron run makes it wait in any case.
    os.utime(parents, (0, time.time() - 86_400))
    assert syncd_sqlite("run", "--once").exit_code == 0
    assert [e["name"] for e in syncd_sqlite.events("file.waiting")] == ["parents.csv"]
    time.sleep(1.2)  # dependency_wait passes between two cron runs
    assert syncd_sqlite("run", "--once").exit_code == 0
    pending = [link for link in syncd_sqlite.links() if link[2] == "pending"]
    assert len(pending) == 3


def test_every_audit_line_is_compact_json(syncd_sqlite: Syncd) -> None:
    # One format for every line, pass and source events included, so that a log shipper
    # or a grep for '"event":"file.failed"' finds them all.
    syncd_sqlite.drop("students.csv", STUDENTS)
    syncd_sqlite.drop("parents.csv", PARENTS)
    assert syncd_sqlite("run", "--once").exit_code == 0
    lines = syncd_sqlite.audit_path.read_text(encoding="utf-8").splitlines()
    assert {"source.polled", "person.created"} <= {json.loads(line)["event"] for line in lines}
    for line in lines:
        assert json.dumps(json.loads(line), ensure_ascii=False, separators=(",", ":")) == line


@pytest.fixture
def other_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A folder on another filesystem than the drop folder (/dev/shm's tmpfs)."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the temp folder")
    folder = Path(tempfile.mkdtemp(prefix="syncd-test-", dir=shm))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_folders_on_another_filesystem_take_their_files(
    syncd_sqlite: Syncd, other_filesystem: Path
) -> None:
    folders = {name: str(other_filesystem / name) for name in ("archive", "failed", "reports")}
    syncd_sqlite.configure(folders=folders)
    syncd_sqlite.drop("students.csv", STUDENTS)
    syncd_sqlite.drop("unknown.csv", "x,y\n1,2\n")
    assert syncd_sqlite("run", "--once").exit_code == 1  # unknown.csv failed
    day = other_filesystem / "archive" / datetime.now(UTC).strftime("%Y/%m/%d")
    assert (day / "students.csv").read_text(encoding="utf-8") == STUDENTS
    assert os.listdir(other_filesystem / "failed") == ["unknown.csv"]
    assert sorted(os.listdir(other_filesystem / "reports")) == [
        "students.csv.report.json", "unknown.csv.report.json",
    ]  # fmt: skip
    assert os.listdir(syncd_sqlite.drop_dir / "processing") == []


def test_a_processing_folder_on_another_filesystem_is_a_config_error(
    syncd_sqlite: Syncd, other_filesystem: Path
) -> None:
    syncd_sqlite.configure(folders={"processing": str(other_filesystem / "processing")})
    dropped = syncd_sqlite.drop("students.csv", STUDENTS)
    outcome = syncd_sqlite("run", "--once")
    assert outcome.exit_code == 2
    assert "processing" in outcome.stderr and "same filesystem" in outcome.stderr
    assert len(outcome.stderr.strip().splitlines()) == 1
    assert dropped.exists()  # never claimed
    assert syncd_sqlite("check-config").exit_code == 2


def test_a_source_with_broken_settings_does_not_stop_the_others(
    syncd_sqlite: Syncd, other_filesystem: Path
) -> None:
    broken = {"processing": str(other_filesystem / "processing")}
    syncd_sqlite.configure(
        sources=[
            {"name": "a", "url": "file:broken", "min_age": "0s", "folders": broken},
            {"name": "b", "url": "file:drop", "min_age": "0s"},
        ]
    )
    (syncd_sqlite.root / "broken").mkdir()
    syncd_sqlite.drop("students.csv", STUDENTS)
    outcome = syncd_sqlite("run", "--once")
    assert outcome.exit_code == 2  # the settings to fix
    assert 'source "a"' in outcome.stderr
    assert archived(syncd_sqlite) == ["students.csv"]  # source b was worked


def test_the_report_is_written_before_the_file_moves_on(syncd_sqlite: Syncd) -> None:
    # A move that fails (here: archive/ cannot be made; on SFTP: a dropped connection)
    # leaves the sender its report and the file in processing/ for the next pass.
    blocker = syncd_sqlite.drop_dir / "archive" / datetime.now(UTC).strftime("%Y")
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where this year's folder goes")
    syncd_sqlite.drop("students.csv", STUDENTS)
    assert syncd_sqlite("run", "--once").exit_code != 0
    reports_dir = syncd_sqlite.drop_dir / "reports"
    assert os.listdir(reports_dir) == ["students.csv.report.json"]
    assert os.listdir(syncd_sqlite.drop_dir / "processing") == ["students.csv"]
    blocker.unlink()
    assert syncd_sqlite("run", "--once").exit_code == 0
    assert archived(syncd_sqlite) == ["students.csv"]
    listed = syncd_sqlite("files", "--json").json()
    assert [f["status"] for f in listed] == ["applied"]  # one ledger entry, applied once


def _without_root_file_access(syncd: Syncd, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI as root without its right to read any file (as a service account would)."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv to take the right to read any file away")
    dropped = "-dac_override,-dac_read_search"
    command = [setpriv, f"--bounding-set={dropped}", f"--inh-caps={dropped}", sys.executable]
    return subprocess.run(
        [*command, "-m", "syncd", "--config", str(syncd.config_path), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_file_syncd_may_not_read_fails_alone(syncd_sqlite: Syncd) -> None:
    # An upload with mode 600 in a local drop folder, syncd running as its own account: that
    # file fails (failed/, a report), the others apply. It aborted every pass.
    syncd_sqlite.drop("students.csv", STUDENTS)
    syncd_sqlite.drop("pupils_locked.csv", STUDENTS.replace("S1", "S7")).chmod(0o000)
    outcome = _without_root_file_access(syncd_sqlite, "run", "--once")
    assert outcome.returncode == 1, outcome.stderr
    assert outcome.stderr.strip().endswith(
        "pupils_locked.csv: failed: cannot read the file: Permission denied"
    )
    assert (syncd_sqlite.drop_dir / "failed" / "pupils_locked.csv").exists()
    assert archived(syncd_sqlite) == ["students.csv"]
    # Its receipt says its size, and no digest of content never read.
    [received] = [
        e for e in syncd_sqlite.events("file.received") if e["name"] == "pupils_locked.csv"
    ]
    size = (syncd_sqlite.drop_dir / "failed" / "pupils_locked.csv").stat().st_size
    assert (received["size"], received.get("sha256")) == (size, None)


def test_import_of_a_file_syncd_may_not_read_fails_with_exit_1(syncd_sqlite: Syncd) -> None:
    # SPEC §5: exit 1 for "an unreadable ... file given to import" (not a usage error).
    path = syncd_sqlite.write("students.csv", STUDENTS)
    path.chmod(0o000)
    outcome = _without_root_file_access(syncd_sqlite, "import", str(path))
    assert outcome.returncode == 1, outcome.stderr
    assert "cannot read the file" in outcome.stderr
    assert "Traceback" not in outcome.stderr


def test_a_folder_another_syncd_works_with_another_database_is_left_alone(
    syncd_sqlite: Syncd,
) -> None:
    # Two configurations naming one folder with two databases: each database's lock lets
    # its daemon in, and the second took the first's file from processing/ as a crash's
    # leftover (applied in both). The folder itself is locked for each pass.
    syncd_sqlite.drop("students.csv", STUDENTS)
    processing = syncd_sqlite.drop_dir / "processing"
    processing.mkdir()
    with folder_pass(processing) as taken:  # this test is the other process
        assert taken
        outcome = syncd_sqlite("run", "--once")
        assert outcome.exit_code == 3
        assert "another syncd process works its folder" in outcome.stderr
        assert (syncd_sqlite.drop_dir / "students.csv").exists()  # not claimed
        assert syncd_sqlite("files", "--json").json() == []
    assert syncd_sqlite("run", "--once").exit_code == 0
    assert archived(syncd_sqlite) == ["students.csv"]
    assert list(processing.iterdir()) == []  # the lock is on the folder: nothing left in it


def test_a_local_file_written_on_after_it_was_taken_goes_back_then_is_archived(
    tmp_path: Path,
) -> None:
    # A local file is read where it lies in processing/: what the sender wrote before the
    # read is applied, and the file, changed since it was taken, goes back to the drop
    # folder; taken again, the same content is a duplicate, archived.
    folder = tmp_path / "drop"
    folder.mkdir()
    header, lena, zoe = STUDENTS.splitlines(keepends=True)
    (folder / "students.csv").write_text(header + lena, encoding="utf-8")
    clock = SystemClock()
    config = local_source(folder, min_age=timedelta(0))
    engine = open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    pickup = Pickup(config, LocalSource(config), Pipeline(engine, clock), clock)
    with (folder / "students.csv").open("a", encoding="utf-8") as sender:

        def writes_on() -> bool:
            if not sender.closed:
                sender.write(zoe)
                sender.close()
            return False

        first = pickup.run_once("run-1", should_stop=writes_on)
    assert (first.applied, first.results[0].counts.created) == (1, 2)
    assert "the file is back in the drop folder" in (first.results[0].reason or "")
    assert (folder / "students.csv").read_text(encoding="utf-8") == STUDENTS
    again = pickup.run_once("run-2")
    assert again.duplicate == 1
    assert [p.name for p in (folder / "archive").rglob("*.csv")] == ["students.csv"]


def test_a_claim_taken_away_before_it_was_read_is_failed_one_never_moved_is_forgotten(
    syncd: Syncd,
) -> None:
    # A claim is in the ledger before its move, its size only once read: a download cut
    # short leaves an entry `files` lists as processing. Taken away by hand then, it is
    # failed as any leftover; a claim whose move never happened (its file is still in the
    # drop folder) is no file syncd took, and is forgotten.
    syncd.drop_dir.mkdir()
    (syncd.drop_dir / "processing").mkdir()
    config = local_source(syncd.drop_dir, name="district-a")
    engine = open_database(syncd.database_url)
    pipeline = Pipeline(engine, SystemClock())
    taken = pipeline.register_claim(config, "students.csv", "processing/students.csv")
    pipeline.register_claim(config, "parents.csv", "processing/parents.csv")  # never moved
    engine.dispose()
    syncd.drop("parents.csv", PARENTS)  # still where it was: the move never happened
    outcome = syncd("run", "--once")
    assert outcome.exit_code == 0, outcome.stderr
    ledger = {f["id"]: f for f in syncd("files", "--json").json()}
    assert ledger[taken]["status"] == "failed" and "taken away" in ledger[taken]["reason"]
    [failed] = syncd.events("file.failed")
    assert failed["file_id"] == taken
    # The parents file has one entry, its own claim's (SQLite may give it the forgotten id).
    assert sorted((f["name"], f["status"]) for f in ledger.values()) == [
        ("parents.csv", "applied"),
        ("students.csv", "failed"),
    ]
    assert [e["file_id"] for e in syncd.events("file.received")] == [
        f["id"] for f in ledger.values() if f["name"] == "parents.csv"
    ]


def test_a_file_that_grew_after_it_was_archived_is_taken_again_whole(syncd: Syncd) -> None:
    # Its sender paused longer than min_age mid-upload; syncd read, applied and archived
    # the first rows in milliseconds, and the sender wrote on into the archived file (an open
    # handle follows a rename). A full file's late rows were deactivated.
    syncd.configure(max_deactivate=0.5)
    syncd.drop("students.csv", STUDENTS + "S3,Ada,Lovelace,ada@example.edu\n")
    assert syncd("run", "--once").exit_code == 0
    syncd.drop("students.csv", STUDENTS)  # the same upload, paused before its last row
    assert syncd("run", "--once").exit_code == 0
    assert {p["sync_key"]: p["active"] for p in syncd.export()}["S3"] is False
    [partial] = [p for p in today_archive(syncd).iterdir() if p.read_text() == STUDENTS]
    with partial.open("a", encoding="utf-8") as sender:  # it writes on
        sender.write("S3,Ada,Lovelace,ada@example.edu\n")
    outcome = syncd("run", "--once")
    assert outcome.exit_code == 0, outcome.stderr
    assert all(p["active"] for p in syncd.export())  # S3 back
    [said] = syncd.events("file.waiting")
    assert said["level"] == "warning" and said["reason"].startswith("it grew after syncd had ")
    ledger = syncd("files", "--json").json()
    assert [f["status"] for f in ledger] == ["applied", "applied", "applied"]
    assert said["file_id"] == ledger[1]["id"]
    # Archived again, whole, under the name it had (free again when it was taken back).
    assert sorted(p.name for p in today_archive(syncd).iterdir()) == [
        "students.1.csv",
        "students.csv",
    ]
    assert partial.read_text() == STUDENTS + "S3,Ada,Lovelace,ada@example.edu\n"
    assert syncd("run", "--once").exit_code == 0  # said once: nothing more to recall
    assert len(syncd.events("file.waiting")) == 1


def test_a_grown_archived_file_is_not_taken_again_once_a_newer_file_of_its_kind_applied(
    syncd: Syncd,
) -> None:
    # Taken again, it would undo the newer file (files release refuses so too); the newer
    # full file is the roster now.
    syncd.drop("students.csv", STUDENTS)
    assert syncd("run", "--once").exit_code == 0
    newer = STUDENTS.replace("Zoë,Martin", "Zoë,Fixed")
    syncd.drop("pupils.csv", newer)
    assert syncd("run", "--once").exit_code == 0
    [first] = [p for p in today_archive(syncd).iterdir() if p.name == "students.csv"]
    with first.open("a", encoding="utf-8") as sender:
        sender.write("S3,Ada,Lovelace,ada@example.edu\n")
    assert syncd("run", "--once").exit_code == 0
    assert first.exists() and not syncd.events("file.waiting")
    assert {p["sync_key"]: p["last_name"] for p in syncd.export()}["S2"] == "Fixed"
