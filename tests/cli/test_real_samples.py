"""Real roster files published by vendors and projects end as shared/real-samples/README.md
says, dropped into a folder (`run --once`) or given to `syncd import`. They are read from
../shared/real-samples and never copied into this repository."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from tests.cli.conftest import Syncd


def sample(shared_dir: Path, relative: str) -> Path:
    path = shared_dir / "real-samples" / relative
    if not path.is_file():
        pytest.skip(f"real sample {relative} is not in {shared_dir / 'real-samples'}")
    return path


def import_copy(syncd: Syncd, path: Path) -> tuple[int, dict[str, object], str]:
    """Import a copy of `path`; return exit code, report document and stderr."""
    copy = syncd.root / "in" / path.name
    copy.parent.mkdir(exist_ok=True)
    shutil.copy(path, copy)
    outcome = syncd("import", str(copy))
    report = json.loads((copy.parent / f"{path.name}.report.json").read_text())
    assert "Traceback" not in outcome.stderr
    return outcome.exit_code, report, outcome.stderr


def drop_and_pick_up(syncd: Syncd, path: Path) -> tuple[int, dict[str, object]]:
    syncd.drop_dir.mkdir(exist_ok=True)
    shutil.copy(path, syncd.drop_dir / path.name)
    outcome = syncd("run", "--once")
    assert "Traceback" not in outcome.stderr
    report = json.loads((syncd.drop_dir / "reports" / f"{path.name}.report.json").read_text())
    return outcome.exit_code, report


def test_sds_v1_students_apply_keyed_by_sis_id(syncd: Syncd, shared_dir: Path) -> None:
    path = sample(shared_dir, "microsoft-sds/sds-v1-25-users/Student.csv")
    code, report = drop_and_pick_up(syncd, path)
    assert code == 0
    assert report["status"] == "applied" and report["kind"] == "students"
    assert "Password" in report["ignored_columns"]  # type: ignore[operator]
    persons = syncd.export()
    assert len(persons) == 22 and all(p["active"] for p in persons)
    assert {p["sync_key"] for p in persons} >= {"13001", "13002"}
    first = next(p for p in persons if p["sync_key"] == "13001")
    assert first["attributes"]["grade"] == "9"
    assert first["attributes"]["school_sis_id"] == "10001"
    assert "P@ssword" not in json.dumps(persons)
    assert "P@ssword" not in syncd.audit_path.read_text()


def test_sds_v1_min_required_fails_every_row_lacking_names(syncd: Syncd, shared_dir: Path) -> None:
    path = sample(shared_dir, "microsoft-sds/sds-v1-min-required/Student.csv")
    code, report = drop_and_pick_up(syncd, path)
    assert code == 1 and report["status"] == "failed"
    errors_path = syncd.drop_dir / "reports" / "Student.csv.errors.csv"
    rows = list(csv.DictReader(errors_path.open(encoding="utf-8")))
    assert {int(row["row"]) for row in rows} == set(range(2, 24))
    assert (syncd.drop_dir / "failed" / "Student.csv").exists()
    assert syncd.export() == []


@pytest.mark.parametrize(
    "relative",
    ["microsoft-sds/sds-v2.1/roles.csv", "moodle-enrol-oneroster/Test_full_data_set/manifest.csv"],
)
def test_files_of_no_known_kind_fail(syncd_sqlite: Syncd, shared_dir: Path, relative: str) -> None:
    code, report, stderr = import_copy(syncd_sqlite, sample(shared_dir, relative))
    assert code == 1 and report["status"] == "failed"
    assert "kind cannot be found" in str(report["reason"])


@pytest.mark.parametrize(
    "relative", ["moodle-enrol-oneroster/oneroster_test_data.zip", "schooltool/errant_contacts.xls"]
)
def test_zip_and_old_xls_fail_with_save_as_hint(
    syncd_sqlite: Syncd, shared_dir: Path, relative: str
) -> None:
    code, report, _ = import_copy(syncd_sqlite, sample(shared_dir, relative))
    assert code == 1 and report["status"] == "failed"
    assert "save it as .xlsx or CSV" in str(report["reason"])


@pytest.mark.parametrize("name", ["Students_RosarioSIS_test.csv", "Students_RosarioSIS_test.xlsx"])
def test_rosariosis_students_keyed_by_lowercased_email(
    syncd: Syncd, shared_dir: Path, name: str
) -> None:
    code, report, _ = import_copy(syncd, sample(shared_dir, f"rosariosis-import/{name}"))
    assert code == 0 and report["status"] == "applied"
    assert report["counts"]["created"] == 5 and report["counts"]["rejected"] == 3  # type: ignore[index]
    errors = list(csv.DictReader((syncd.root / "in" / f"{name}.errors.csv").open()))
    assert sorted({int(row["row"]) for row in errors}) == [5, 6, 9]
    persons = {p["sync_key"]: p for p in syncd.export()}
    assert set(persons) == {
        "john@smith.com", "merryl@streep.com", "roger@rabbit.com",
        "no@accountnumber.com", "no@pin.com",
    }  # fmt: skip
    assert persons["john@smith.com"]["attributes"]["account"] == "1234"
    # "Account # and the rest as attributes" (the samples' README): PIN is no password.
    assert persons["john@smith.com"]["attributes"]["pin"] == "letterpin"
    if name.endswith(".xlsx"):
        assert persons["no@pin.com"]["attributes"]["birthdate"] == "2012-05-13"


def test_opensis_upload_without_identifier_fails(syncd_sqlite: Syncd, shared_dir: Path) -> None:
    code, report, _ = import_copy(
        syncd_sqlite, sample(shared_dir, "opensis-bulk-student/upload.csv")
    )
    assert code == 1 and report["status"] == "failed"
    assert "identifier" in str(report["reason"])


@pytest.mark.parametrize(
    "relative",
    [
        "microsoft-sds/sds-v2.1/users.csv",
        "microsoft-sds/sds-v2.1/relationships.csv",
        "moodle-enrol-oneroster/Test_full_data_set/users.csv",
        "moodle-enrol-oneroster/v1p2_full_dataset/users.csv",
        "oat-oneroster-import/OneRosterv1p1BaseCSV/users.csv",
        "rosariosis-import/Staff_Parents_RosarioSIS_test.csv",
        "rosariosis-import/Staff_Parents_RosarioSIS_test.xlsx",
        "opensis-bulk-student/enhanced_upload.csv",
        "schoology-enhancer/parent_associations.csv",
        "schoology-enhancer/users.csv",
    ],
)
def test_later_formats_never_crash(syncd_sqlite: Syncd, shared_dir: Path, relative: str) -> None:
    code, report, stderr = import_copy(syncd_sqlite, sample(shared_dir, relative))
    assert code in (0, 1)
    assert report["status"] in ("applied", "failed", "held")
    assert "unexpected error" not in stderr
