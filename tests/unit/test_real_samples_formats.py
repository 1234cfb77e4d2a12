"""Published roster files (../shared/real-samples/) read and classified as their README says."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.errors import FileFailed
from syncd.formats.headers import DEFAULT_GLOBS, detect_kind, map_columns
from syncd.formats.readers import open_table
from syncd.model import Kind, Limits

REAL_SAMPLES = Path(__file__).parents[2].parent / "shared" / "real-samples"

pytestmark = pytest.mark.skipif(
    not REAL_SAMPLES.is_dir(), reason=f"real samples not present at {REAL_SAMPLES}"
)


def sample(relative: str) -> Path:
    return REAL_SAMPLES / relative


@pytest.mark.parametrize(
    ("relative", "kind"),
    [
        ("microsoft-sds/sds-v1-25-users/Student.csv", Kind.STUDENTS),
        ("microsoft-sds/sds-v1-min-required/Student.csv", Kind.STUDENTS),
        ("microsoft-sds/sds-v2.1/roles.csv", None),
        ("microsoft-sds/sds-v2.1/relationships.csv", Kind.RELATIONSHIPS),
        ("moodle-enrol-oneroster/Test_full_data_set/manifest.csv", None),
        ("rosariosis-import/Students_RosarioSIS_test.csv", Kind.STUDENTS),
        ("rosariosis-import/Students_RosarioSIS_test.xlsx", Kind.STUDENTS),
        ("opensis-bulk-student/upload.csv", Kind.STUDENTS),
        ("schoology-enhancer/parent_associations.csv", Kind.RELATIONSHIPS),
    ],
)
def test_real_sample_kind(relative: str, kind: Kind | None) -> None:
    path = sample(relative)
    with open_table(path, Limits()) as table:
        assert detect_kind(path.name, table.header, DEFAULT_GLOBS) is kind


@pytest.mark.parametrize(
    "relative", ["schooltool/errant_contacts.xls", "moodle-enrol-oneroster/oneroster_test_data.zip"]
)
def test_real_sample_binary_fails_with_save_as_hint(relative: str) -> None:
    with (
        pytest.raises(FileFailed, match="save it as .xlsx or CSV"),
        open_table(sample(relative), Limits()),
    ):
        pass


def test_sds_student_export_reads_22_rows_with_crlf() -> None:
    with open_table(sample("microsoft-sds/sds-v1-25-users/Student.csv"), Limits()) as table:
        rows = list(table.rows)
        column_map = map_columns(table.header, Kind.STUDENTS)
    assert len(rows) == 22
    assert rows[0].values[0] == "13001"
    assert column_map.column_name("sync_key") == "SIS ID"
    assert "password" in column_map.fields
    assert ("school_sis_id", 1) in column_map.attributes


@pytest.mark.parametrize("extension", ["csv", "xlsx"])
def test_rosariosis_students_read_alike_as_csv_and_xlsx(extension: str) -> None:
    path = sample(f"rosariosis-import/Students_RosarioSIS_test.{extension}")
    with open_table(path, Limits()) as table:
        rows = list(table.rows)
        column_map = map_columns(table.header, Kind.STUDENTS)
    assert [row.line for row in rows] == [2, 3, 4, 5, 6, 7, 8, 9]
    assert dict(column_map.fields) == {"first_name": 0, "last_name": 1, "email": 6}
    assert ("account", 4) in column_map.attributes
    assert rows[0].values[4] == "1234"
    if extension == "xlsx":
        assert rows[0].values[3] == "1993-12-06"
        assert rows[1].values[1] == "Streep\u2019"
