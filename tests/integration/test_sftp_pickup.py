"""`syncd run --once` against a real OpenSSH server (SPEC §3): the nightly flow, partial
uploads, done markers, duplicates, host keys, a server that goes away and comes back."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from syncd import audit
from syncd.clock import SystemClock
from syncd.config import load_config
from syncd.db.database import open_database
from syncd.pickup import Pickup
from syncd.pipeline import Pipeline
from syncd.sources.sftp import SftpSource
from tests.cli.conftest import Syncd
from tests.integration.sshd import Sshd, keygen

STUDENTS = (
    "SyncID,First name,Last name,E-mail\n"
    "S1,Lena,Müller,lena@example.edu\n"
    "S2,Zoë,Martin,z@example.edu\n"
)
PARENTS = (
    "First name;Last name;User name;Pupil sync key\r\n"
    "Katrin;Müller;katrin;S1\r\n"
    'Sean;O\'Brien;sean;"S1,S2"\r\n'
)
RELATIONSHIPS = "Parent Email,Student ID,Relationship Type\nkatrin@example.org,S2,guardian\n"
PARENTS_WITH_EMAIL = (
    "First name;Last name;User name;E-mail;Pupil sync key\r\n"
    "Katrin;Müller;katrin;katrin@example.org;S1\r\n"
    'Sean;O\'Brien;sean;sean@example.org;"S1,S2"\r\n'
)


def sftp_source(sshd: Sshd, **overrides: Any) -> dict[str, Any]:
    return {
        "name": "district-a",
        "url": f"sftp://{sshd.user}@127.0.0.1:{sshd.port}{sshd.upload}",
        "known_hosts": str(sshd.known_hosts),
        "private_key": str(sshd.client_key),
        "min_age": "0s",
        **overrides,
    }


@pytest.fixture
def remote(sshd: Sshd, tmp_path: Path, database_url: str) -> Iterator[tuple[Syncd, Sshd]]:
    root = tmp_path / "home"
    root.mkdir()
    syncd = Syncd(root, database_url)
    syncd.configure(sources=[sftp_source(sshd)])
    yield syncd, sshd


def upload(sshd: Sshd, name: str, content: str) -> Path:
    """Put a file in the drop folder as an uploader finishing a transfer would."""
    path = sshd.upload / name
    path.write_text(content, encoding="utf-8")
    old = time.time() - 120
    os.utime(path, (old, old))
    return path


def test_nightly_files_dropped_in_reverse_order_apply_in_kind_order(
    remote: tuple[Syncd, Sshd],
) -> None:
    syncd, sshd = remote
    upload(sshd, "relationships.csv", RELATIONSHIPS)
    upload(sshd, "parents.csv", PARENTS_WITH_EMAIL)
    upload(sshd, "students.csv", STUDENTS)
    outcome = syncd("run", "--once")
    assert outcome.exit_code == 0, outcome.stderr
    assert [e["name"] for e in syncd.events("file.applied")] == [
        "students.csv",
        "parents.csv",
        "relationships.csv",
    ]
    assert syncd.links() == {
        ("katrin", "S1", "active"),
        ("katrin", "S2", "active"),
        ("sean", "S1", "active"),
        ("sean", "S2", "active"),
    }
    reports = sorted(p.name for p in (sshd.upload / "reports").iterdir())
    assert reports == [
        "parents.csv.report.json",
        "relationships.csv.report.json",
        "students.csv.report.json",
    ]
    archived = sorted(p.name for p in (sshd.upload / "archive").rglob("*.csv"))
    assert archived == ["parents.csv", "relationships.csv", "students.csv"]
    assert not list((sshd.upload / "processing").iterdir())


def test_partial_upload_is_left_alone_until_renamed(remote: tuple[Syncd, Sshd]) -> None:
    syncd, sshd = remote
    upload(sshd, "students.csv.part", STUDENTS)
    assert syncd("run", "--once").exit_code == 0
    assert (sshd.upload / "students.csv.part").exists()
    assert syncd.export() == []
    (sshd.upload / "students.csv.part").rename(sshd.upload / "students.csv")
    assert syncd("run", "--once").exit_code == 0
    assert len(syncd.export()) == 2


def test_an_upload_under_way_holds_up_only_files_naming_its_students(
    remote: tuple[Syncd, Sshd],
) -> None:
    syncd, sshd = remote
    upload(sshd, "students.csv", STUDENTS)
    assert syncd("run", "--once").exit_code == 0
    upload(sshd, "students-next.csv.part", STUDENTS)
    upload(sshd, "parents.csv", PARENTS)  # names S1, S2: both there
    upload(sshd, "more-parents.csv", PARENTS.replace("S1,S2", "S1,S3"))  # S3 is not
    assert syncd("run", "--once").exit_code == 0
    assert not (sshd.upload / "parents.csv").exists()  # applied
    assert (sshd.upload / "more-parents.csv").exists()  # waits for the upload
    assert [e["name"] for e in syncd.events("file.waiting")] == ["more-parents.csv"]


def test_growing_file_waits_until_unchanged_for_min_age(remote: tuple[Syncd, Sshd]) -> None:
    syncd, sshd = remote
    syncd.configure(sources=[sftp_source(sshd, min_age="1s")])
    path = sshd.upload / "students.csv"
    path.write_text("SyncID,First name,Last name\n")
    stop = threading.Event()

    def keep_writing() -> None:
        number = 0
        while not stop.is_set():
            with path.open("a") as stream:
                stream.write(f"S{number},First{number},Last{number}\n")
            number += 1
            time.sleep(0.1)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        outcome = syncd("run", "--once")
    finally:
        stop.set()
        writer.join()
    assert outcome.exit_code == 0, outcome.stderr
    assert path.exists() and syncd.export() == []
    assert syncd("run", "--once").exit_code == 0
    assert not path.exists() and len(syncd.export()) > 0


def test_done_marker_needed_and_archived(remote: tuple[Syncd, Sshd]) -> None:
    syncd, sshd = remote
    syncd.configure(sources=[sftp_source(sshd, done_marker=True)])
    upload(sshd, "students.csv", STUDENTS)
    assert syncd("run", "--once").exit_code == 0
    assert (sshd.upload / "students.csv").exists()
    upload(sshd, "students.csv.done", "")
    assert syncd("run", "--once").exit_code == 0
    archived = sorted(p.name for p in (sshd.upload / "archive").rglob("*") if p.is_file())
    assert archived == ["students.csv", "students.csv.done"]


def test_a_file_name_near_the_limit_gets_a_report_and_archive_name_that_fit(
    remote: tuple[Syncd, Sshd],
) -> None:
    syncd, sshd = remote
    long_name = "students_" + "x" * 240 + ".csv"  # NAME.report.json: over 255 bytes
    upload(sshd, long_name, STUDENTS)
    assert syncd("run", "--once").exit_code == 0
    upload(sshd, long_name, STUDENTS + "S3,Ann,Berg,ann@example.edu\n")  # archived beside it
    outcome = syncd("run", "--once")
    assert outcome.exit_code == 0, outcome.stderr
    assert [e["name"] for e in syncd.events("file.applied")] == [long_name] * 2
    assert not list((sshd.upload / "processing").iterdir())
    archived = [p.name for p in (sshd.upload / "archive").rglob("*.csv")]
    reports = [p.name for p in (sshd.upload / "reports").iterdir()]
    assert long_name in archived and len(archived) == len(reports) == 2
    assert all(len(name.encode()) <= 255 for name in archived + reports)


def test_a_file_name_that_is_not_utf8_is_read_as_cp1252_and_the_pass_goes_on(
    remote: tuple[Syncd, Sshd],
) -> None:
    syncd, sshd = remote
    folder = os.fsencode(sshd.upload)
    for name in (b"lat\xe9_students.csv", b"\xe9t\xe9.csv.part"):  # é as cp1252's 0xE9
        with open(os.path.join(folder, name), "w", encoding="utf-8") as file:
            file.write(STUDENTS)
        os.utime(os.path.join(folder, name), (time.time() - 120, time.time() - 120))
    upload(sshd, "parents.csv", PARENTS_WITH_EMAIL)

    outcome = syncd("run", "--once")

    assert outcome.exit_code == 0, outcome.stderr
    assert [e["name"] for e in syncd.events("file.applied")] == [
        "laté_students.csv",
        "parents.csv",
    ]
    archived = sorted(p.name for p in (sshd.upload / "archive").rglob("*.csv"))
    assert archived == ["laté_students.csv", "parents.csv"]
    left = [name for name in os.listdir(folder) if os.path.isfile(os.path.join(folder, name))]
    assert left == [b"\xe9t\xe9.csv.part"]  # an upload under way is left as it is


READER = "syncd-test-reader"


def _reader_account() -> str:
    """Return a plain account to log in as (root reads every file): made once, unlocked."""
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        pytest.skip("logs in as an account of its own: needs root and useradd")
    if subprocess.run(["id", READER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "-M", "-s", "/bin/sh", READER], check=True)
    subprocess.run(["usermod", "-p", "*", READER], check=True)  # key logins only
    return READER


@pytest.mark.parametrize("locked_name", ["pupils_locked.csv", "parents_locked.csv"])
def test_a_file_the_sftp_account_may_not_read_fails_alone(
    database_url: str, locked_name: str
) -> None:
    # One file's permissions are not the source's fault: it fails (report, failed/), the
    # other files of the pass apply. It stopped the whole source, on every pass. A parents
    # file is first looked at for the students upload under way (the preview fails too).
    user = _reader_account()
    home = Path(tempfile.mkdtemp(prefix="syncd-sshd-"))  # a place the account can reach
    home.chmod(0o755)
    server = Sshd(home / "sshd", user=user)
    try:
        server.home.chmod(0o755)
        shutil.chown(server.upload, user)
        server.start()
        locked = upload(server, locked_name, STUDENTS)
        locked.chmod(0o000)  # root's, and no one else may read it
        shutil.chown(upload(server, "parents.csv", PARENTS_WITH_EMAIL), user)
        arriving = locked_name.startswith("parents")
        if arriving:  # parents.csv then waits for it too: it names students not there yet
            shutil.chown(upload(server, "students-next.csv.part", STUDENTS), user)
        (home / "syncd").mkdir()
        syncd = Syncd(home / "syncd", database_url)
        syncd.configure(sources=[sftp_source(server)])
        outcome = syncd("run", "--once")
        assert outcome.exit_code == 1, outcome.stderr
        assert f"{locked_name}: failed: cannot read it" in outcome.stderr
        listed = {f["name"]: (f["status"], f["reason"]) for f in syncd("files", "--json").json()}
        assert listed.get("parents.csv") == (None if arriving else ("applied", None))
        assert listed[locked_name][0] == "failed"
        assert "permission denied" in listed[locked_name][1]
        assert (server.upload / "failed" / locked_name).exists()
        report = json.loads((server.upload / "reports" / f"{locked_name}.report.json").read_text())
        assert report["status"] == "failed"
        assert not list((server.upload / "processing").iterdir())
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


def test_duplicate_content_is_archived_without_changes(remote: tuple[Syncd, Sshd]) -> None:
    syncd, sshd = remote
    upload(sshd, "students.csv", STUDENTS)
    assert syncd("run", "--once").exit_code == 0
    upload(sshd, "students.csv", STUDENTS)
    assert syncd("run", "--once").exit_code == 0
    assert len(syncd.events("file.duplicate")) == 1
    assert len(syncd.events("person.created")) == 2


def test_changed_host_key_is_refused_and_nothing_moves(
    remote: tuple[Syncd, Sshd], tmp_path: Path
) -> None:
    syncd, sshd = remote
    other = keygen(tmp_path / "other_host_key")
    sshd.write_known_hosts(sshd.known_hosts, key=other)
    upload(sshd, "students.csv", STUDENTS)
    outcome = syncd("run", "--once")
    assert outcome.exit_code == 3
    assert "host key" in outcome.stderr and "changed" in outcome.stderr
    assert len(outcome.stderr.strip().splitlines()) == 1 and "Traceback" not in outcome.stderr
    assert (sshd.upload / "students.csv").exists()
    assert [e["event"] for e in syncd.events("source.error")] == ["source.error"]
    check = syncd("check-config")
    assert check.exit_code == 3 and "host key" in check.stderr


def test_an_unset_secret_variable_is_a_settings_error_and_nothing_moves(
    remote: tuple[Syncd, Sshd], monkeypatch: pytest.MonkeyPatch
) -> None:
    # password_env names a variable the environment does not have: the operator's fix, so
    # exit 2 (a service unit does not restart into it), not 3 (the network); still retried.
    syncd, sshd = remote
    monkeypatch.delenv("SYNCD_TEST_UNSET_PASSWORD", raising=False)
    syncd.configure(
        sources=[sftp_source(sshd, private_key=None, password_env="SYNCD_TEST_UNSET_PASSWORD")]
    )
    upload(sshd, "students.csv", STUDENTS)
    outcome = syncd("run", "--once")
    assert outcome.exit_code == 2
    assert outcome.stderr.strip() == (
        'syncd: source "district-a": environment variable SYNCD_TEST_UNSET_PASSWORD '
        "(named by password_env) is not set"
    )
    assert (sshd.upload / "students.csv").exists()
    assert "password_env" in syncd.events("source.error")[-1]["error"]
    check = syncd("check-config")
    assert check.exit_code == 2 and "SYNCD_TEST_UNSET_PASSWORD" in check.stderr


def test_server_away_then_back_recovers_without_loss(remote: tuple[Syncd, Sshd]) -> None:
    syncd, sshd = remote
    upload(sshd, "students.csv", STUDENTS)
    sshd.stop()
    outcome = syncd("run", "--once")
    assert outcome.exit_code == 3
    error = syncd.events("source.error")[-1]
    assert "retry_in" not in error  # run --once tries once: no retry to announce
    status = syncd("status", "--json").json()[0]
    assert status["error"]
    sshd.start()
    assert syncd("run", "--once").exit_code == 0
    assert len(syncd.export()) == 2
    assert syncd.events("source.recovered")
    assert syncd("status", "--json").json()[0]["error"] is None
    assert [f["status"] for f in syncd("files", "--json").json()] == ["applied"]


def test_one_unreachable_source_does_not_stop_the_others(
    remote: tuple[Syncd, Sshd], tmp_path: Path
) -> None:
    syncd, sshd = remote
    local = {"name": "local", "url": "file:drop", "min_age": "0s", "site": "local"}
    syncd.configure(sources=[sftp_source(sshd), local])
    syncd.drop("students.csv", STUDENTS)
    sshd.stop()
    outcome = syncd("run", "--once")
    assert outcome.exit_code == 3
    assert [e["source"] for e in syncd.events("file.applied")] == ["local"]


def test_file_over_max_file_size_fails_without_download(remote: tuple[Syncd, Sshd]) -> None:
    syncd, sshd = remote
    syncd.configure(sources=[sftp_source(sshd, max_file_size="100B")])
    upload(sshd, "students.csv", STUDENTS + "S3,Ana,Nuñez,ana@example.edu\n" * 3)
    outcome = syncd("run", "--once")
    assert outcome.exit_code == 1
    assert (sshd.upload / "failed" / "students.csv").exists()
    [failed] = syncd.events("file.failed")
    assert "max_file_size" in failed["reason"]
    report = json.loads((sshd.upload / "reports" / "students.csv.report.json").read_text())
    assert "max_file_size" in report["reason"]
    assert report["kind"] == "students"  # what its name says: it was never read


def test_a_file_another_syncd_claimed_into_processing_is_not_taken_again(
    remote: tuple[Syncd, Sshd], tmp_path: Path
) -> None:
    # SPEC §3.2 "two daemons can never take the same file": a syncd with its own database on
    # the same account finds the first one's claimed file in processing/ mid-file. It is not
    # a crash's leftover there: only its own ledger's claims are taken up again.
    first, sshd = remote
    (tmp_path / "second").mkdir()
    second = Syncd(tmp_path / "second", f"sqlite:///{tmp_path / 'second.db'}")
    second.configure(sources=[sftp_source(sshd)])
    upload(sshd, "students.csv", STUDENTS)
    processing = sshd.upload / "processing"
    processing.mkdir()
    (sshd.upload / "students.csv").rename(processing / "students.csv")  # the first's claim
    outcome = second("run", "--once")
    assert outcome.exit_code == 0, outcome.stderr
    assert second("files", "--json").json() == []
    assert (processing / "students.csv").read_text(encoding="utf-8") == STUDENTS
    assert not list(sshd.upload.glob("reports/*"))
    # The same file claimed by the first through its own pass is applied there, once.
    (processing / "students.csv").rename(sshd.upload / "students.csv")
    assert first("run", "--once").exit_code == 0
    assert second("run", "--once").exit_code == 0
    assert [f["status"] for f in first("files", "--json").json()] == ["applied"]
    assert second("files", "--json").json() == []


def test_two_districts_on_one_sftp_server_each_apply_their_own_files(
    remote: tuple[Syncd, Sshd],
) -> None:
    # Two drop folders side by side in one account: each source's work folders are its own.
    syncd, sshd = remote
    (sshd.upload / "a").mkdir()
    (sshd.upload / "b").mkdir()
    sources = [
        {**sftp_source(sshd), "name": "district-a", "url": f"{sftp_source(sshd)['url']}/a"},
        {**sftp_source(sshd), "name": "district-b", "url": f"{sftp_source(sshd)['url']}/b"},
    ]
    syncd.configure(sources=sources)
    upload(sshd, "a/students.csv", STUDENTS)
    upload(sshd, "b/students.csv", STUDENTS.replace("S1,", "T1,").replace("S2,", "T2,"))
    outcome = syncd("run", "--once")
    assert outcome.exit_code == 0, outcome.stderr
    ledger = syncd("files", "--json").json()
    assert sorted((f["source"], f["status"]) for f in ledger) == [
        ("district-a", "applied"),
        ("district-b", "applied"),
    ]
    for folder in ("a", "b"):
        assert list((sshd.upload / folder / "processing").iterdir()) == []
        assert (sshd.upload / folder / "reports" / "students.csv.report.json").exists()


def test_debug_shows_the_ssh_conversation_and_the_traceback_but_never_a_secret(
    remote: tuple[Syncd, Sshd], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    syncd, sshd = remote
    secret = "correct horse battery staple"
    key = keygen(tmp_path / "id_encrypted", passphrase=secret)
    sshd.authorize(key)
    monkeypatch.setenv("SYNCD_TEST_PASSPHRASE", secret)
    syncd.configure(
        sources=[
            sftp_source(
                sshd, private_key=str(key), private_key_passphrase_env="SYNCD_TEST_PASSPHRASE"
            )
        ]
    )
    upload(sshd, "students.csv", STUDENTS)
    loud = syncd("--debug", "run", "--once")
    assert loud.exit_code == 0
    assert "paramiko: Connected (version 2.0, client OpenSSH" in loud.stderr
    assert "paramiko: Authentication (publickey) successful!" in loud.stderr
    assert secret not in loud.stderr

    sshd.write_known_hosts(sshd.known_hosts, key=keygen(tmp_path / "other_host_key"))
    quiet = syncd("run", "--once")
    loud = syncd("--debug", "run", "--once")
    assert quiet.exit_code == loud.exit_code == 3
    assert "paramiko" not in quiet.stderr and "Traceback" not in quiet.stderr
    assert "Traceback" in loud.stderr and "paramiko: Connected" in loud.stderr
    assert loud.stderr.strip().splitlines()[-1] == quiet.stderr.strip()
    assert secret not in loud.stderr


def test_a_read_only_account_leaves_the_file_and_no_ledger_entry(
    remote: tuple[Syncd, Sshd],
) -> None:
    # The SIS's account was made read-only by mistake: the claim (a rename) is refused.
    syncd, sshd = remote
    assert syncd("run", "--once").exit_code == 0  # the work folders are made
    sshd.stop()
    sshd.sftp_subsystem = "internal-sftp -R"
    sshd.start()
    # check-config finds it, work folders there or not: it tries to write.
    checked = syncd("check-config")
    assert checked.exit_code == 3
    assert checked.stderr.startswith(
        f'syncd: source "district-a": writing in the drop folder {sshd.upload} on '
    )
    assert checked.stderr.rstrip().endswith("failed: Permission denied")
    upload(sshd, "students.csv", STUDENTS)
    outcome = syncd("run", "--once")
    assert outcome.exit_code == 3
    assert "moving /" in outcome.stderr and "students.csv" in outcome.stderr
    assert (sshd.upload / "students.csv").exists()
    assert syncd("files", "--json").json() == []  # not "processing": it never was
    sshd.stop()
    sshd.sftp_subsystem = "internal-sftp"
    sshd.start()
    assert syncd("run", "--once").exit_code == 0
    assert [f["status"] for f in syncd("files", "--json").json()] == ["applied"]


def test_a_file_still_written_after_it_was_taken_goes_back_and_is_applied_whole(
    sshd: Sshd, tmp_path: Path, database_url: str
) -> None:
    # Its sender paused longer than min_age mid-upload, then wrote on into the file syncd
    # had moved (an open handle follows a rename): syncd read only the first rows. Archived,
    # the file would hold rows never applied, their students deactivated by a full file.
    audit.configure(str(tmp_path / "audit.jsonl"))
    clock = SystemClock()
    config = sshd.source_config(name="district-a", min_age=timedelta(0))
    source = SftpSource(config, connect_timeout=5, io_timeout=10)
    pickup = Pickup(config, source, Pipeline(open_database(database_url), clock), clock)
    header, lena, zoe = STUDENTS.splitlines(keepends=True)
    upload(sshd, "students.csv", header + lena)
    sender = (sshd.upload / "students.csv").open("a", encoding="utf-8")  # still uploading

    def writes_on() -> bool:  # asked after the download, before the file applies
        if not sender.closed:
            sender.write(zoe)
            sender.close()
        return False

    try:
        outcome = pickup.run_once("run-1", should_stop=writes_on)
        assert outcome.applied == 1
        assert not (sshd.upload / "processing" / "students.csv").exists()
        assert (sshd.upload / "students.csv").read_text(encoding="utf-8") == STUDENTS
        assert [p for p in (sshd.upload / "archive").rglob("*") if p.is_file()] == []
        [report] = [json.loads(p.read_text()) for p in (sshd.upload / "reports").iterdir()]
        assert (report["status"], report["counts"]["created"]) == ("applied", 1)
        assert report["reason"].startswith("it changed after syncd took it (")
        assert "the file is back in the drop folder" in report["reason"]
        [said] = [
            event
            for line in (tmp_path / "audit.jsonl").read_text().splitlines()
            if (event := json.loads(line))["event"] == "file.waiting"
        ]
        assert (said["level"], said["name"], said["file_id"]) == (
            "warning", "students.csv", report["file_id"]
        )  # fmt: skip
        # Taken again, now whole: Zoë is applied too, and the file archived.
        again = pickup.run_once("run-2")
        assert again.applied == 1
        assert not (sshd.upload / "students.csv").exists()
        [archived] = (sshd.upload / "archive").rglob("students.csv")
        assert archived.read_text(encoding="utf-8") == STUDENTS
    finally:
        sender.close()
        source.close()


def test_a_connection_dropped_mid_download_is_one_line_without_a_traceback(
    remote: tuple[Syncd, Sshd],
) -> None:
    # paramiko's prefetch thread dies with the connection; its traceback was printed beside
    # the one line that names the failure (SPEC §5: never a traceback without --debug).
    syncd, sshd = remote
    rows = "".join(f"S{n},First,Last,s{n}@example.edu\n" for n in range(3, 1_500_000))
    upload(sshd, "students.csv", STUDENTS + rows)  # 50 MB: a download that takes a while
    processing = sshd.upload / "processing" / "students.csv"

    def drop_the_connection() -> None:
        deadline = time.monotonic() + 30
        while not processing.exists() and time.monotonic() < deadline:
            time.sleep(0.001)
        # The download under way (50 MB take ~0.3 s here), its prefetch thread sending
        # read requests: the session dies under it.
        time.sleep(0.1)
        for pid in sshd.session_pids():
            os.kill(pid, signal.SIGKILL)

    dropper = threading.Thread(target=drop_the_connection)
    dropper.start()
    # In a process of its own: the thread's traceback is printed on the process's stderr.
    ran = subprocess.run(
        [sys.executable, "-m", "syncd", "--config", str(syncd.config_path), "run", "--once"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    dropper.join()
    assert ran.returncode == 3, ran.stderr
    [line] = ran.stderr.splitlines()
    assert line.startswith('syncd: source "district-a": downloading ')
    assert processing.exists()  # taken up again at the next pass


def test_status_counts_the_file_in_hand_once(remote: tuple[Syncd, Sshd], tmp_path: Path) -> None:
    # `status` does not list an SFTP folder: it takes the count the last pass recorded and
    # adds the files claimed into processing/. A pass that saw the file still young had
    # recorded it as waiting, and the next pass's claim counted it again.
    syncd, sshd = remote
    syncd.configure(sources=[sftp_source(sshd, done_marker=True)])
    upload(sshd, "students.csv", STUDENTS)
    assert syncd("run", "--once").exit_code == 0  # no marker yet: it waits
    assert syncd("status", "--json").json()[0]["waiting"] == 1
    config = load_config(syncd.config_path).source("district-a")
    config = dataclasses.replace(config, done_marker=False)  # then: taken
    clock = SystemClock()
    source = SftpSource(config, connect_timeout=5, io_timeout=10)
    pickup = Pickup(config, source, Pipeline(open_database(syncd.database_url), clock), clock)
    seen: list[int] = []

    def look() -> bool:  # asked when the file is claimed, before it applies
        seen.append(syncd("status", "--json").json()[0]["waiting"])
        return False

    try:
        assert pickup.run_once("run-2", should_stop=look).applied == 1
    finally:
        source.close()
    assert seen[0] == 1
