"""SPEC §2.4/§3.2: a file held on an SFTP source waits in held/ there; release and reject work."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.cli.conftest import Syncd
from tests.cli.rosters import file_id, files, students_csv
from tests.integration.sshd import Sshd, sshd  # noqa: F401 - the fixture

TEN = tuple(
    (f"K{n}", f"kid{n}", "Zoë", f"Nuñez{n}", f"kid{n}@school.example", f"20{n:02}", "4")
    for n in range(10)
)


@pytest.fixture
def remote(syncd_sqlite: Syncd, sshd: Sshd) -> Syncd:  # noqa: F811
    """A syncd whose one source is the SFTP server's upload folder, one file held there."""
    config = syncd_sqlite.config_path.read_text(encoding="utf-8")
    config = config[: config.index("[[sources]]")] + sshd.source_toml() + 'min_age = "0s"\n'
    syncd_sqlite.config_path.write_text(config, encoding="utf-8")
    syncd_sqlite.drop_dir = sshd.upload
    syncd_sqlite.drop("students.csv", students_csv(TEN))
    assert syncd_sqlite("run", "--once").exit_code == 0
    syncd_sqlite.drop("students-2.csv", students_csv(TEN[:8]))
    assert syncd_sqlite("run", "--once").exit_code == 1
    assert (sshd.upload / "held" / "students-2.csv").is_file()
    return syncd_sqlite


def _active(syncd: Syncd) -> dict[str, bool]:
    return {p["sync_key"]: p["active"] for p in syncd.export()}


def _reports(folder: Path, name: str) -> set[str]:
    return {
        json.loads(path.read_text("utf-8"))["status"]
        for path in (folder / "reports").glob(f"{name}.report*.json")
    }


def test_release_of_a_file_held_on_sftp_applies_and_archives_it(remote: Syncd) -> None:
    outcome = remote("files", "release", str(file_id(remote, "students-2.csv")))
    assert outcome.exit_code == 0, outcome.stderr
    assert _active(remote)["K9"] is False
    assert not (remote.drop_dir / "held" / "students-2.csv").exists()
    assert list((remote.drop_dir / "archive").rglob("students-2.csv"))
    assert _reports(remote.drop_dir, "students-2.csv") == {"held", "applied"}
    assert [f["status"] for f in files(remote) if f["name"] == "students-2.csv"] == ["applied"]


def test_reject_of_a_file_held_on_sftp_moves_it_to_failed(remote: Syncd) -> None:
    outcome = remote("files", "reject", str(file_id(remote, "students-2.csv")))
    assert outcome.exit_code == 0, outcome.stderr
    assert all(_active(remote).values())
    assert (remote.drop_dir / "failed" / "students-2.csv").is_file()
    assert _reports(remote.drop_dir, "students-2.csv") == {"held", "failed"}


def test_status_of_an_sftp_source_counts_files_waiting_at_the_last_pass(
    syncd_sqlite: Syncd,
    sshd: Sshd,  # noqa: F811
) -> None:
    config = syncd_sqlite.config_path.read_text(encoding="utf-8")
    config = config[: config.index("[[sources]]")] + sshd.source_toml() + "done_marker = true\n"
    syncd_sqlite.config_path.write_text(config, encoding="utf-8")
    (sshd.upload / "students.csv").write_text(students_csv(), encoding="utf-8")
    assert syncd_sqlite("run", "--once").exit_code == 0
    [state] = syncd_sqlite("status", "--json").json()
    assert (state["source"], state["waiting"]) == ("sftp", 1)


def test_cron_run_once_ages_an_sftp_file_waiting_for_its_students_file(
    syncd_sqlite: Syncd,
    sshd: Sshd,  # noqa: F811
) -> None:
    """Each `run --once` is a new process: the first-seen time of a file must outlive it."""
    config = syncd_sqlite.config_path.read_text(encoding="utf-8")
    source = sshd.source_toml() + 'min_age = "0s"\ndependency_wait = "1s"\n'
    syncd_sqlite.config_path.write_text(config[: config.index("[[sources]]")] + source, "utf-8")
    header = "SyncID,First name,Last name,Pupil sync key\n"
    (sshd.upload / "parents.csv").write_text(header + "P1,Ada,Berg,S1\n", encoding="utf-8")
    (sshd.upload / "students.csv.part").write_text(students_csv(), encoding="utf-8")
    assert syncd_sqlite("run", "--once").exit_code == 0
    assert [e["name"] for e in syncd_sqlite.events("file.waiting")] == ["parents.csv"]
    time.sleep(1.2)  # dependency_wait passes between two cron runs
    assert syncd_sqlite("run", "--once").exit_code == 0
    assert len(syncd_sqlite.events("file.waiting")) == 1
    assert syncd_sqlite.links() == {("P1", "S1", "pending")}


def test_done_marker_held_on_sftp_goes_on_with_its_file(remote: Syncd) -> None:
    # As the pickup leaves it with done_marker = true: the marker beside the file in held/.
    (remote.drop_dir / "held" / "students-2.csv.done").write_bytes(b"")
    outcome = remote("files", "release", str(file_id(remote, "students-2.csv")))
    assert outcome.exit_code == 0, outcome.stderr
    assert list((remote.drop_dir / "held").iterdir()) == []
    [archived] = (remote.drop_dir / "archive").rglob("students-2.csv")
    assert (archived.parent / "students-2.csv.done").is_file()


def test_a_held_file_someone_removed_on_the_server(remote: Syncd, sshd: Sshd) -> None:  # noqa: F811
    # The server answers; only the file is gone: not "unreachable" (exit 3).
    (sshd.upload / "held" / "students-2.csv").unlink()
    held = str(file_id(remote, "students-2.csv"))
    release = remote("files", "release", held)
    assert release.exit_code == 2 and "is gone; cannot release it" in release.stderr
    assert remote("files", "reject", held).exit_code == 0  # nothing left to move
    assert [f["status"] for f in files(remote) if f["name"] == "students-2.csv"] == ["rejected"]
