"""SPEC §5: exit codes, and errors as one clear line on stderr (a traceback only with --debug)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from tests.cli.conftest import Outcome, Syncd
from tests.cli.mounts import mounted_tmpfs
from tests.cli.rosters import files, report, run_import, students_csv


def _one_line(outcome: Outcome) -> str:
    lines = outcome.stderr.strip().splitlines()
    assert len(lines) == 1, outcome.stderr
    assert "Traceback" not in outcome.stderr
    return lines[0]


def test_unknown_command_option_is_a_usage_error(syncd_sqlite: Syncd) -> None:
    outcome = syncd_sqlite("import", "--bogus", "students.csv")
    assert outcome.exit_code == 2
    assert "--bogus" in outcome.stderr
    assert "Traceback" not in outcome.stderr


def test_unknown_command_is_a_usage_error(syncd_sqlite: Syncd) -> None:
    outcome = syncd_sqlite("frobnicate")
    assert outcome.exit_code == 2
    assert "Traceback" not in outcome.stderr


def test_usage_errors_are_one_line_naming_the_problem(syncd_sqlite: Syncd) -> None:
    cases = [
        (("import", "--bogus", "students.csv"), "--bogus"),
        (("import",), "PATHS"),
        (("export",), "persons, relationships"),
        (("export", "persons", "--format", "xml"), "xml"),
        (("files", "release", "abc"), "'abc' is not a valid file id"),
        (("files", "--status", "bogus"), "bogus"),
        (("link", "--parent", "P1"), "--child"),
        (("frobnicate",), "frobnicate"),
    ]
    for args, named in cases:
        outcome = syncd_sqlite(*args)
        assert outcome.exit_code == 2, args
        line = _one_line(outcome)
        assert line.startswith("syncd: ") and named in line, (args, line)
        assert "--help" in line  # where to look next


def test_check_config_names_an_unreachable_source_once(
    syncd_sqlite: Syncd, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNCD_TEST_SFTP_PASSWORD", "not-used")
    (syncd_sqlite.root / "known_hosts").write_text("", encoding="utf-8")
    closed = {
        "name": "district-b",
        "url": "sftp://syncd@127.0.0.1:1/upload",  # nothing listens on port 1
        "known_hosts": "known_hosts",
        "password_env": "SYNCD_TEST_SFTP_PASSWORD",
    }
    syncd_sqlite.configure(sources=[{"name": "district-a", "url": "file:drop"}, closed])
    syncd_sqlite.drop_dir.mkdir()
    outcome = syncd_sqlite("check-config")
    assert outcome.exit_code == 3
    assert 'source "district-a" (file:drop): ok' in outcome.stdout
    line = _one_line(outcome)
    assert line.startswith('syncd: source "district-b": ') and line.count("district-b") == 1


def test_a_drop_folder_that_is_not_there_is_named_and_never_made(syncd_sqlite: Syncd) -> None:
    # A mistyped path: made and polled, empty, it would look healthy while the SIS's files
    # wait in the real folder. check-config and run both say so (exit 3) and make nothing.
    syncd_sqlite.configure(url="file:dorp")
    missing = (
        f'syncd: source "district-a": drop folder {syncd_sqlite.root / "dorp"} does not exist: '
        "create it, or correct the path"
    )
    for command in (["check-config"], ["run", "--once"]):
        outcome = syncd_sqlite(*command)
        assert outcome.exit_code == 3
        assert _one_line(outcome) == missing
    assert not (syncd_sqlite.root / "dorp").exists()
    [error] = syncd_sqlite.events("source.error")
    assert error["error"] == missing.removeprefix("syncd: ")
    (syncd_sqlite.root / "dorp").write_text("")
    assert "is not a folder" in _one_line(syncd_sqlite("check-config"))
    assert "is not a folder" in _one_line(syncd_sqlite("run", "--once"))


def test_a_drop_folder_on_a_read_only_mount_is_named_by_check_config_even_for_root(
    syncd_sqlite: Syncd,
) -> None:
    # Its work folders there and all: root passes every permission check, not the mount.
    with mounted_tmpfs(syncd_sqlite.root / "share", "1m") as share:
        syncd_sqlite.configure(url=f"file://{share}")
        assert syncd_sqlite("check-config").exit_code == 0
        assert syncd_sqlite("run", "--once").exit_code == 0  # makes the work folders
        subprocess.run(["mount", "-o", "remount,ro", str(share)], check=True)
        checked = syncd_sqlite("check-config")
        assert checked.exit_code == 3
        assert _one_line(checked) == (
            f'syncd: source "district-a": drop folder {share} is not writable'
        )


@pytest.mark.parametrize("folder", ["archive", "reports"])
def test_a_work_folder_no_one_may_make_is_named_by_check_config_even_for_root(
    syncd_sqlite: Syncd, folder: str
) -> None:
    # root passes every permission check; /proc takes no new folder from anyone.
    where = "/proc/syncd-check/" + folder
    syncd_sqlite.configure(folders={folder: where})
    syncd_sqlite.drop_dir.mkdir()
    checked = syncd_sqlite("check-config")
    assert checked.exit_code == 3
    assert _one_line(checked).startswith(
        f'syncd: source "district-a": folder {where} cannot be made in /proc: '
    )
    assert syncd_sqlite("run", "--once").exit_code == 3  # as run finds it


def test_a_work_folder_that_cannot_be_made_is_named_by_check_config_and_run(
    syncd_sqlite: Syncd,
) -> None:
    (syncd_sqlite.root / "afile").write_text("")
    failed = syncd_sqlite.root / "afile" / "failed"
    syncd_sqlite.configure(folders={"failed": str(failed)})
    syncd_sqlite.drop_dir.mkdir()
    syncd_sqlite.drop("students.csv", "SyncID,First name,Last name\nS1,Ada,Lovelace\n")
    expected = "is not a folder"
    checked = syncd_sqlite("check-config")
    assert checked.exit_code == 3
    assert _one_line(checked) == (
        f'syncd: source "district-a": folder {failed} cannot be made: '
        f"{syncd_sqlite.root / 'afile'} {expected}"
    )
    ran = syncd_sqlite("run", "--once")
    assert ran.exit_code == 3
    assert f"cannot use folder {failed}:" in _one_line(ran)  # that folder, not the drop folder
    assert (syncd_sqlite.drop_dir / "students.csv").exists()  # left where it was


def test_an_audit_log_that_cannot_be_written_is_named_exit_3(tmp_path: Path) -> None:
    # A full disk (/dev/full answers every write so): one line naming the log, exit 3 as
    # for a database that cannot be reached; not "unexpected error", exit 1 (a failed file).
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "students.csv").write_text(students_csv())
    config = tmp_path / "config.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "syncd.db"}"\n[audit]\npath = "/dev/full"\n'
        '[[sources]]\nname = "district-a"\nurl = "file:drop"\nmin_age = "0s"\n'
    )
    for command in (["run", "--once"], ["run"]):
        done = subprocess.run(
            [sys.executable, "-m", "syncd", "--config", str(config), *command],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 3, done.stderr
        assert done.stderr == (
            "syncd: audit log /dev/full cannot be written: No space left on device\n"
        )


def test_unknown_config_key_exits_2_naming_the_key(syncd_sqlite: Syncd) -> None:
    syncd_sqlite.configure(max_deactivte=0.2)
    outcome = syncd_sqlite("status")
    assert outcome.exit_code == 2
    assert "max_deactivte" in _one_line(outcome)


def test_bad_config_value_exits_2_naming_the_key(syncd_sqlite: Syncd) -> None:
    syncd_sqlite.configure(max_deactivate=3)
    outcome = syncd_sqlite("export", "persons")
    assert outcome.exit_code == 2
    assert "max_deactivate" in _one_line(outcome)


def test_bad_mode_and_child_field_exit_2_naming_the_key(syncd_sqlite: Syncd) -> None:
    syncd_sqlite.configure(child_field="shoe_size")
    assert "child_field" in _one_line(syncd_sqlite("status"))
    syncd_sqlite.configure(mode={"students": "sometimes"})
    outcome = syncd_sqlite("status")
    assert outcome.exit_code == 2
    assert "mode" in _one_line(outcome)


def test_missing_config_file_exits_2(syncd_sqlite: Syncd) -> None:
    syncd_sqlite.config_path.unlink()
    outcome = syncd_sqlite("status")
    assert outcome.exit_code == 2
    assert str(syncd_sqlite.config_path) in _one_line(outcome)


def test_missing_import_file_exits_2_in_one_line(syncd_sqlite: Syncd) -> None:
    outcome = syncd_sqlite("import", str(syncd_sqlite.root / "nope.csv"))
    assert outcome.exit_code == 2
    assert "nope.csv" in _one_line(outcome)
    assert files(syncd_sqlite) == []


def test_import_of_a_folder_says_it_is_a_folder(syncd_sqlite: Syncd) -> None:
    outcome = syncd_sqlite("import", str(syncd_sqlite.root))
    assert outcome.exit_code == 2
    assert "a folder, not a file" in _one_line(outcome)


def test_import_of_a_fifo_or_a_dangling_link_says_what_it_is(syncd_sqlite: Syncd) -> None:
    fifo = syncd_sqlite.root / "students-fifo.csv"
    os.mkfifo(fifo)  # reading it would wait for a writer forever
    dangling = syncd_sqlite.root / "students-link.csv"
    dangling.symlink_to(syncd_sqlite.root / "gone.csv")
    for path, said in ((fifo, "not a regular file"), (dangling, "gone.csv, which is not there")):
        outcome = syncd_sqlite("import", str(path))
        assert outcome.exit_code == 2
        assert said in _one_line(outcome)
    assert files(syncd_sqlite) == []


def test_unknown_kind_file_fails_with_exit_1_and_a_report(syncd: Syncd) -> None:
    outcome = run_import(syncd, "export.csv", "Colour,Shoe size\nred,42\n")
    assert outcome.exit_code == 1
    document = report(syncd, "export.csv")
    assert document["status"] == "failed"
    assert "kind" in document["reason"]
    assert [(f["name"], f["status"]) for f in files(syncd, "--status", "failed")] == [
        ("export.csv", "failed")
    ]
    assert [e["name"] for e in syncd.events("file.failed")] == ["export.csv"]


def test_old_binary_xls_fails_saying_save_as_xlsx_or_csv(syncd_sqlite: Syncd) -> None:
    ole2 = bytes.fromhex("D0CF11E0A1B11AE1") + bytes(504)
    outcome = run_import(syncd_sqlite, "students.xls", ole2)
    assert outcome.exit_code == 1
    assert "save it as .xlsx or CSV" in report(syncd_sqlite, "students.xls")["reason"]


def test_html_or_xml_saved_as_xls_fails_saying_save_as_xlsx_or_csv(syncd_sqlite: Syncd) -> None:
    # Web SIS "Export to Excel" buttons often send an HTML table named .xls; Excel also
    # saves "XML Spreadsheet 2003". Neither is CSV, whatever its header cells hold.
    html = (
        "\ufeff <!DOCTYPE html>\n<html><body><table>\n"
        "<tr><td>SyncID</td><td>First name</td><td>Last name</td></tr>\n"
        "<tr><td>S1</td><td>Lena</td><td>Müller</td></tr></table></body></html>\n"
    )
    xml = '<?xml version="1.0"?>\n<Workbook xmlns="urn:schemas-microsoft-com:office:spreadsheet">'
    for name, content in (("students.xls", html), ("students-2.xml", xml + "</Workbook>\n")):
        outcome = run_import(syncd_sqlite, name, content)
        assert outcome.exit_code == 1
        reason = report(syncd_sqlite, name)["reason"]
        assert "save it as .xlsx or CSV" in reason, reason
    assert syncd_sqlite.export() == []


def test_json_export_fails_saying_save_as_xlsx_or_csv(syncd_sqlite: Syncd) -> None:
    # An API's users list saved as a file: read as CSV it would fail for "no identifier
    # column", as if a header cell were misspelt.
    users = '[{"sourcedId": "S1", "givenName": "Lena"}]\n'
    for name, content in (("students.json", users), ("students-2.csv", '\ufeff {"users": []}')):
        outcome = run_import(syncd_sqlite, name, content)
        assert outcome.exit_code == 1
        reason = report(syncd_sqlite, name)["reason"]
        assert reason == "JSON, not a spreadsheet or CSV file; save it as .xlsx or CSV", reason
    assert syncd_sqlite.export() == []


def test_kind_option_overrides_the_name(syncd_sqlite: Syncd) -> None:
    outcome = run_import(syncd_sqlite, "export.csv", students_csv(), "--kind", "students")
    assert outcome.exit_code == 0, outcome.stderr
    assert report(syncd_sqlite, "export.csv")["kind"] == "students"
    bad = syncd_sqlite("import", "--kind", "teachers", str(syncd_sqlite.root / "export.csv"))
    assert bad.exit_code == 2


def test_one_failed_file_among_several_exits_1_and_the_others_apply(syncd: Syncd) -> None:
    good = syncd.write("students.csv", students_csv())
    bad = syncd.write("students-empty.csv", b"")
    outcome = syncd("import", str(good), str(bad))
    assert outcome.exit_code == 1
    assert len(syncd.export()) == 5


def test_rows_rejected_still_exit_0(syncd_sqlite: Syncd) -> None:
    content = students_csv() + "S9,x,,,,,\n"
    outcome = run_import(syncd_sqlite, "students.csv", content)
    assert outcome.exit_code == 0, outcome.stderr
    assert report(syncd_sqlite, "students.csv")["counts"]["rejected"] == 1


def test_row_errors_are_printed_with_their_column_when_they_have_one(
    syncd_sqlite: Syncd,
) -> None:
    content = (
        "SyncID,First name,Last name\nS1,Lena,Müller\nS2,,Martin\nS3,Zoë,Martin,Jr\n"
        "S4,Ann,Lee\nS5,Bo,Ray\n"
    )
    outcome = run_import(syncd_sqlite, "students.csv", content)
    assert outcome.exit_code == 0, outcome.stderr
    rows = [line for line in outcome.stdout.splitlines() if line.startswith("  row ")]
    assert rows == [
        "  row 3, First name: missing first name",
        "  row 4: 4 cells where the header has 3: quote a value that holds the delimiter, or "
        "give every column a header",
    ]


def test_several_sources_need_source_and_site(syncd_sqlite: Syncd) -> None:
    syncd_sqlite.configure(
        sources=[
            {"name": "north", "url": "file:north", "min_age": "0s"},
            {"name": "south", "url": "file:south", "min_age": "0s"},
        ]
    )
    path = syncd_sqlite.write("students.csv", students_csv())
    outcome = syncd_sqlite("import", str(path))
    assert outcome.exit_code == 2
    assert "--source" in _one_line(outcome)
    assert syncd_sqlite("import", "--source", "north", str(path)).exit_code == 0
    assert syncd_sqlite("export", "persons").exit_code == 2
    assert syncd_sqlite("link", "--parent", "a", "--child", "b").exit_code == 2
    north = syncd_sqlite("export", "persons", "--site", "north", "--json")
    assert len(north.json()) == 5
    assert syncd_sqlite("export", "persons", "--site", "south", "--json").json() == []
    assert syncd_sqlite("import", "--source", "west", str(path)).exit_code == 2


def test_manual_link_of_unknown_person_is_one_line_exit_2(syncd_sqlite: Syncd) -> None:
    run_import(syncd_sqlite, "students.csv", students_csv())
    outcome = syncd_sqlite("link", "--parent", "nobody", "--child", "S1")
    assert outcome.exit_code == 2
    assert "nobody" in _one_line(outcome)
    outcome = syncd_sqlite("link", "--parent", "S1", "--child", "S2", "--type", "Uncle")
    assert outcome.exit_code == 2


def test_manual_link_by_a_shared_email_names_the_parents_it_matches(syncd_sqlite: Syncd) -> None:
    # SPEC §2.2: two parents may share one email; matching by it is ambiguous and reported.
    run_import(syncd_sqlite, "students.csv", students_csv())
    shared = (
        "SyncID,First name,Last name,E-mail\n"
        "P2,Ann,Lee,fam@home.example\nP1,Bo,Lee,FAM@home.example\n"
    )
    run_import(syncd_sqlite, "parents.csv", shared)
    outcome = syncd_sqlite("link", "--parent", "fam@home.example", "--child", "S1")
    assert outcome.exit_code == 2
    assert _one_line(outcome) == (
        'syncd: "fam@home.example" matches 2 parents in site "district-a" (P1, P2); give a sync key'
    )
    assert syncd_sqlite("link", "--parent", "P1", "--child", "S1").exit_code == 0


def test_release_of_an_unknown_or_applied_file_is_a_usage_error(syncd_sqlite: Syncd) -> None:
    run_import(syncd_sqlite, "students.csv", students_csv())
    assert syncd_sqlite("files", "release", "42").exit_code == 2
    outcome = syncd_sqlite("files", "reject", str(files(syncd_sqlite)[0]["id"]))
    assert outcome.exit_code == 2
    assert "applied" in _one_line(outcome)


def test_unreachable_database_exits_3(syncd_sqlite: Syncd) -> None:
    syncd_sqlite.database_url = "postgresql+psycopg://postgres@127.0.0.1:1/none"
    syncd_sqlite.configure()
    outcome = syncd_sqlite("status")
    assert outcome.exit_code == 3
    _one_line(outcome)


def test_check_config_with_the_database_down_still_checks_the_sources(
    syncd_sqlite: Syncd,
) -> None:
    # A monitor reading --json gets its document exactly when the database is down.
    syncd_sqlite.database_url = "postgresql+psycopg://syncd:S3cret-db@127.0.0.1:1/none"
    syncd_sqlite.configure()
    syncd_sqlite.drop_dir.mkdir(exist_ok=True)
    checked = syncd_sqlite("check-config", "--json")
    assert checked.exit_code == 3
    assert "127.0.0.1" in _one_line(checked)  # the error line, as without --json
    document = checked.json()
    assert document["database_ok"] is False
    assert "127.0.0.1" in document["database_error"]
    assert [source["ok"] for source in document["sources"]] == [True]
    assert "S3cret-db" not in checked.stdout + checked.stderr
    text = syncd_sqlite("check-config")
    assert text.exit_code == 3
    assert "database" in _one_line(text)
    assert 'source "district-a" (file:drop): ok' in text.stdout


def test_check_config_json_of_a_bad_config_is_a_document_and_the_one_line(
    syncd_sqlite: Syncd,
) -> None:
    syncd_sqlite.configure(max_deactivte=0.2)
    checked = syncd_sqlite("check-config", "--json")
    assert checked.exit_code == 2
    assert "max_deactivte" in _one_line(checked)
    document = checked.json()
    assert (document["config"], document["config_ok"]) == (str(syncd_sqlite.config_path), False)
    assert "max_deactivte" in document["config_error"]
    assert document["sources"] == []


def test_a_sqlite_path_holding_another_file_exits_3_saying_so(syncd_sqlite: Syncd) -> None:
    (syncd_sqlite.root / "junk.sqlite").write_text("not a database\n")
    syncd_sqlite.database_url = f"sqlite:///{syncd_sqlite.root / 'junk.sqlite'}"
    syncd_sqlite.configure()
    _status_and_upgrade_exit_3_saying(syncd_sqlite, "cannot be used: file is not a database")


def _status_and_upgrade_exit_3_saying(syncd: Syncd, expected: str) -> None:
    for command in (["status"], ["db", "upgrade"]):
        outcome = syncd(*command)
        assert outcome.exit_code == 3
        assert expected in _one_line(outcome)


def test_a_read_only_sqlite_database_is_said_to_be_unusable_not_unreachable(
    syncd_sqlite: Syncd,
) -> None:
    # Reached (opened) but not writable: "cannot be reached" would send an operator
    # looking at paths and networks.
    path = syncd_sqlite.root / "read-only.sqlite"
    path.touch()
    syncd_sqlite.database_url = f"sqlite:///file:{path}?mode=ro&uri=true"
    syncd_sqlite.configure()
    _status_and_upgrade_exit_3_saying(
        syncd_sqlite, "cannot be used: attempt to write a readonly database"
    )


def test_a_postgresql_database_that_answers_with_an_error_is_said_to_be_unusable(
    tmp_path: Path, postgres_url: str
) -> None:
    # The server is there: its error (here a lock timeout, as while a DBA's migration holds
    # the table; a full disk alike) is not one of reaching it.
    syncd = Syncd(tmp_path, postgres_url)
    assert syncd("db", "upgrade").exit_code == 0
    syncd.database_url = postgres_url + quote(" -clock_timeout=200")  # within options=
    syncd.configure()
    admin = sa.create_engine(postgres_url)
    with admin.begin() as connection:
        connection.exec_driver_sql("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE")
        _status_and_upgrade_exit_3_saying(
            syncd, "cannot be used: canceling statement due to lock timeout"
        )
    admin.dispose()
    # And a server that is not there cannot be reached.
    syncd.database_url = "postgresql+psycopg://postgres@127.0.0.1:1/test"
    syncd.configure()
    _status_and_upgrade_exit_3_saying(syncd, "cannot be reached: connection")


def test_sqlite_file_whose_folder_cannot_be_made_exits_3(syncd_sqlite: Syncd) -> None:
    (syncd_sqlite.root / "var").write_text("a file where the database folder should be")
    syncd_sqlite.database_url = f"sqlite:///{syncd_sqlite.root / 'var' / 'lib' / 'syncd.db'}"
    syncd_sqlite.configure()
    outcome = syncd_sqlite("status")
    assert outcome.exit_code == 3
    line = _one_line(outcome)
    assert "database" in line and "unexpected" not in line


def test_audit_path_that_cannot_be_opened_is_a_config_error_naming_the_key(
    syncd_sqlite: Syncd,
) -> None:
    syncd_sqlite.audit_path = syncd_sqlite.root / "logs"
    syncd_sqlite.audit_path.mkdir()  # a folder, not a file
    syncd_sqlite.configure()
    outcome = syncd_sqlite("status")
    assert outcome.exit_code == 2
    line = _one_line(outcome)
    assert "audit.path" in line and str(syncd_sqlite.audit_path) in line


def test_older_schema_is_refused_except_by_db_upgrade(syncd: Syncd) -> None:
    assert syncd("db", "upgrade").exit_code == 0
    engine = sa.create_engine(syncd.database_url)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = '0000_older'"))
    engine.dispose()
    outcome = syncd("export", "persons")
    assert outcome.exit_code == 2
    assert "run syncd db upgrade" in _one_line(outcome)


def test_db_upgrade_twice_is_fine(syncd: Syncd) -> None:
    first = syncd("db", "upgrade")
    assert first.exit_code == 0, first.stderr
    second = syncd("db", "upgrade")
    assert second.exit_code == 0, second.stderr
    assert "current" in second.stdout
    assert syncd("status", "--json").exit_code == 0


def _run_real_cli(syncd: Syncd, *args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from syncd.cli import main; main(sys.argv[1:])"
    return subprocess.run(
        [sys.executable, "-c", code, "--config", str(syncd.config_path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_export_into_a_reader_that_stops_early_ends_quietly(syncd_sqlite: Syncd) -> None:
    # `syncd export persons --format csv | head`: more than a pipe holds, read one line.
    rows = "".join(f"S{n},Lena,Müller-{n}\n" for n in range(4000))
    run_import(syncd_sqlite, "students.csv", "SyncID,First name,Last name\n" + rows)
    code = "import sys; from syncd.cli import main; main(sys.argv[1:])"
    argv = [sys.executable, "-c", code, "--config", str(syncd_sqlite.config_path)]
    with subprocess.Popen(
        [*argv, "export", "persons", "--format", "csv"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as export:
        assert export.stdout is not None and export.stderr is not None
        assert export.stdout.readline().startswith(b"site,kind,sync_key")
        export.stdout.close()
        stderr = export.stderr.read()
        assert export.wait(timeout=60) == 0
    assert stderr == b""


@pytest.mark.parametrize(
    ("broken", "code"),
    [("config key", 2), ("database", 3), ("command option", 2), ("import file", 2)],
)
def test_debug_adds_the_traceback_and_keeps_the_one_line_and_exit_code(
    syncd_sqlite: Syncd, broken: str, code: int
) -> None:
    command = ["status"]
    if broken == "config key":
        syncd_sqlite.configure(max_deactivte=0.2)
    elif broken == "database":
        syncd_sqlite.database_url = "postgresql+psycopg://postgres@127.0.0.1:1/none"
        syncd_sqlite.configure()
    elif broken == "command option":
        command = ["status", "--bogus"]
    else:
        command = ["import", str(syncd_sqlite.root / "missing.csv")]
    normal = _run_real_cli(syncd_sqlite, *command)
    assert normal.returncode == code
    [line] = normal.stderr.strip().splitlines()
    assert "Traceback" not in normal.stderr
    debug = _run_real_cli(syncd_sqlite, "--debug", *command)
    assert debug.returncode == code
    assert "Traceback" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1] == line


@pytest.mark.parametrize("option", ["--debug", "--config"])
def test_a_global_option_after_the_command_is_a_usage_error_saying_where_it_goes(
    syncd_sqlite: Syncd, option: str
) -> None:
    outcome = _run_real_cli(syncd_sqlite, "files", "release", option, "x", "1")
    assert outcome.returncode == 2
    [line] = outcome.stderr.strip().splitlines()
    usage = "--config PATH" if option == "--config" else option
    assert f"syncd {usage} files release" in line


def test_database_password_in_the_url_query_is_never_shown(syncd_sqlite: Syncd) -> None:
    # libpq takes the password as a parameter too (?password=…); hide it as in user:pw@.
    syncd_sqlite.database_url = (
        "postgresql+psycopg://postgres@127.0.0.1:1/none?password=DbSecret9&sslpassword=KeySecret8"
    )
    syncd_sqlite.configure()
    syncd_sqlite.drop_dir.mkdir(exist_ok=True)  # the database's line is the only error
    outcome = syncd_sqlite("check-config")
    assert outcome.exit_code == 3
    line = _one_line(outcome)
    assert "DbSecret9" not in line and "KeySecret8" not in line
    assert "127.0.0.1:1/none" in line


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("postgresql+psycopg://postgres:DbSecret9@127.0.0.1:notaport/db", "port"),  # bad port
        ("postgresql+psycopg://postgres@127.0.0.1/db?bogus=1&password=DbSecret9", '"bogus"'),
    ],
)
def test_database_url_libpq_cannot_take_exits_2_naming_the_key(
    syncd_sqlite: Syncd, url: str, named: str
) -> None:
    syncd_sqlite.database_url = url
    syncd_sqlite.configure()
    outcome = syncd_sqlite("status")
    assert outcome.exit_code == 2
    line = _one_line(outcome)
    assert "database.url" in line and named in line and "DbSecret9" not in line


def test_newer_schema_says_to_install_a_newer_syncd_not_to_upgrade_the_database(
    syncd: Syncd,
) -> None:
    # syncd was rolled back after a `db upgrade`: `db upgrade` cannot help.
    assert syncd("db", "upgrade").exit_code == 0
    engine = sa.create_engine(syncd.database_url)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    for command in (("status",), ("db", "upgrade")):
        outcome = syncd(*command)
        assert outcome.exit_code == 2, outcome.stderr
        line = _one_line(outcome)
        assert "newer" in line and "run syncd db upgrade" not in line


def test_a_file_name_with_a_line_break_stays_on_one_line(syncd_sqlite: Syncd) -> None:
    """What syncd prints is one line per thing, whatever an uploader named the file."""
    name = "students\nfake line.csv"
    syncd_sqlite.configure(max_reject=0.1)
    outcome = run_import(syncd_sqlite, name, "SyncID,First name,Last name\nS1,Ana,\n")
    assert outcome.exit_code == 1
    assert _one_line(outcome).startswith("syncd: students\\nfake line.csv: failed: ")
    assert outcome.stdout.startswith("students\\nfake line.csv: failed (students)")
    table = syncd_sqlite("files").stdout.splitlines()
    assert len(table) == 1 and "students\\nfake line.csv" in table[0]
    # The JSON outputs keep the name as it is.
    assert [f["name"] for f in files(syncd_sqlite)] == [name]


def test_a_report_dir_that_cannot_be_made_is_refused_before_any_file_is_taken_in(
    syncd_sqlite: Syncd,
) -> None:
    # /proc takes no new folder, even from root: the import stops before the ledger.
    outcome = run_import(syncd_sqlite, "students.csv", students_csv(), "--report-dir", "/proc/x")
    assert outcome.exit_code == 2
    assert (
        _one_line(outcome)
        == "syncd: --report-dir /proc/x: cannot be made (No such file or directory)"
    )
    assert files(syncd_sqlite) == []
    made = syncd_sqlite.root / "reports" / "nightly"  # one that can be made is
    outcome = run_import(syncd_sqlite, "students.csv", students_csv(), "--report-dir", str(made))
    assert outcome.exit_code == 0 and (made / "students.csv.report.json").exists()
