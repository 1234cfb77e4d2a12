"""One suite of behaviour every Source (sources.base) must show: local folder and SFTP.

Both drop folders are on this host's disk (the SFTP one is served by a real OpenSSH server
from a local folder), so each test arranges files and checks effects with plain file I/O.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from syncd.config import local_source
from syncd.sources.base import Entry, Source
from syncd.sources.local import LocalSource
from syncd.sources.sftp import SftpSource
from tests.integration.sshd import Sshd
from tests.integration.sshd import sshd as sshd  # noqa: F401 - the fixture, by name

CONTENT = b"Sync key,First name,Last name\r\n1,Ada,Lovelace\r\n\x00\xff\xfe end"


@dataclass
class Drop:
    """A Source and the local folder that is its drop folder."""

    source: Source
    root: Path

    def put(self, name: str, content: bytes = CONTENT) -> Path:
        path = self.root / name
        path.write_bytes(content)
        return path

    def tree(self) -> list[str]:
        return sorted(path.relative_to(self.root).as_posix() for path in self.root.rglob("*"))


@pytest.fixture(params=["local", "sftp"])
def drop(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Drop]:
    source: Source
    if request.param == "local":
        root = tmp_path / "drop"
        root.mkdir()
        source = LocalSource(local_source(root))
    else:
        server: Sshd = request.getfixturevalue("sshd")
        root = server.upload
        source = SftpSource(server.source_config(), connect_timeout=5, io_timeout=10)
    try:
        yield Drop(source, root)
    finally:
        source.close()


def names(entries: list[Entry]) -> list[str]:
    return sorted(entry.name for entry in entries)


def test_lists_only_top_level_regular_files(drop: Drop) -> None:
    file = drop.put("students.csv")
    (drop.root / "sub").mkdir()
    (drop.root / "sub" / "parents.csv").write_bytes(CONTENT)
    (drop.root / "link.csv").symlink_to(file)
    (drop.root / "dirlink").symlink_to(drop.root / "sub")
    (drop.root / "dangling.csv").symlink_to(drop.root / "nowhere.csv")
    os.mkfifo(drop.root / "fifo.csv")

    entries = drop.source.list_entries()

    assert names(entries) == ["students.csv"]
    (entry,) = entries
    assert entry.size == len(CONTENT)
    assert abs(entry.mtime - file.stat().st_mtime) < 1.01


def test_empty_folder_lists_nothing(drop: Drop) -> None:
    assert drop.source.list_entries() == []
    assert drop.source.list_processing() == []


def test_claim_moves_into_processing_once(drop: Drop) -> None:
    drop.put("students.csv")

    assert drop.source.claim("students.csv") == "students.csv"
    assert drop.source.claim("students.csv") is None

    assert not (drop.root / "students.csv").exists()
    assert (drop.root / "processing" / "students.csv").read_bytes() == CONTENT
    assert drop.source.list_entries() == []
    assert names(drop.source.list_processing()) == ["students.csv"]


def test_claim_of_a_missing_name_is_none(drop: Drop) -> None:
    assert drop.source.claim("nothing.csv") is None


def test_claim_never_overwrites_a_file_in_processing(drop: Drop) -> None:
    (drop.root / "processing").mkdir(exist_ok=True)
    (drop.root / "processing" / "students.csv").write_bytes(b"older")
    (drop.root / "processing" / "students.1.csv").write_bytes(b"older 1")
    drop.put("students.csv")

    assert drop.source.claim("students.csv") == "students.2.csv"

    processing = drop.root / "processing"
    assert (processing / "students.csv").read_bytes() == b"older"
    assert (processing / "students.1.csv").read_bytes() == b"older 1"
    assert (processing / "students.2.csv").read_bytes() == CONTENT
    assert names(drop.source.list_processing()) == [
        "students.1.csv",
        "students.2.csv",
        "students.csv",
    ]


def test_claim_suffixes_names_without_a_dot(drop: Drop) -> None:
    (drop.root / "processing").mkdir(exist_ok=True)
    (drop.root / "processing" / "STUDENTS").write_bytes(b"older")
    drop.put("STUDENTS")

    assert drop.source.claim("STUDENTS") == "STUDENTS.1"


def test_fetch_returns_the_exact_bytes(drop: Drop, tmp_path: Path) -> None:
    drop.put("students.csv")
    claimed = drop.source.claim("students.csv")
    assert claimed is not None
    into = tmp_path / "fetched"
    into.mkdir()

    local = drop.source.fetch(claimed, into)

    assert local.read_bytes() == CONTENT


def test_finish_creates_the_archive_folders(drop: Drop) -> None:
    drop.put("students.csv")
    claimed = drop.source.claim("students.csv")
    assert claimed is not None

    where = drop.source.finish(claimed, "archive/2026/11/23", "students.csv")

    target = drop.root / "archive" / "2026" / "11" / "23" / "students.csv"
    assert Path(where) == target
    assert target.read_bytes() == CONTENT
    assert drop.source.list_processing() == []


@pytest.mark.parametrize("folder", ["failed", "held"])
def test_finish_to_failed_and_held(drop: Drop, folder: str) -> None:
    drop.put("parents.csv")
    claimed = drop.source.claim("parents.csv")
    assert claimed is not None

    where = drop.source.finish(claimed, folder, "parents.csv")

    assert Path(where) == drop.root / folder / "parents.csv"
    assert Path(where).read_bytes() == CONTENT


def test_finish_twice_with_one_name_never_overwrites(drop: Drop) -> None:
    places = []
    for content in (b"first", b"second"):
        drop.put("students.csv", content)
        claimed = drop.source.claim("students.csv")
        assert claimed is not None
        places.append(drop.source.finish(claimed, "archive/2026/11/23", "students.csv"))

    day = drop.root / "archive" / "2026" / "11" / "23"
    assert [Path(place) for place in places] == [day / "students.csv", day / "students.1.csv"]
    assert (day / "students.csv").read_bytes() == b"first"
    assert (day / "students.1.csv").read_bytes() == b"second"


def test_finish_uses_the_final_name_not_the_processing_name(drop: Drop) -> None:
    (drop.root / "processing").mkdir(exist_ok=True)
    (drop.root / "processing" / "students.csv").write_bytes(b"older")
    drop.put("students.csv")
    claimed = drop.source.claim("students.csv")
    assert claimed == "students.1.csv"

    where = drop.source.finish(claimed, "failed", "students.csv")

    assert Path(where) == drop.root / "failed" / "students.csv"
    assert (drop.root / "processing" / "students.csv").read_bytes() == b"older"


def test_take_back_and_fetch_location(drop: Drop, tmp_path: Path) -> None:
    drop.put("students.csv")
    claimed = drop.source.claim("students.csv")
    assert claimed is not None
    held = drop.source.finish(claimed, "held", "students.csv")
    into = tmp_path / "fetched"
    into.mkdir()

    assert drop.source.fetch_location(held, into).read_bytes() == CONTENT
    where = drop.source.take_back(held, "archive/2026/11/24", "students.csv")

    assert Path(where) == drop.root / "archive" / "2026" / "11" / "24" / "students.csv"
    assert Path(where).read_bytes() == CONTENT
    assert not Path(held).exists()


def test_restore_returns_a_claimed_file_to_the_drop_folder_never_overwriting(
    drop: Drop,
) -> None:
    drop.put("students.csv")
    claimed = drop.source.claim("students.csv")
    assert claimed is not None
    drop.put("students.csv", b"a newer upload of the same name")

    processing = drop.source.work_folder("processing")
    where = drop.source.restore(f"{processing}/{claimed}", "students.csv")

    assert Path(where) == drop.root / "students.1.csv"
    assert Path(where).read_bytes() == CONTENT
    assert (drop.root / "students.csv").read_bytes() == b"a newer upload of the same name"
    assert drop.source.list_processing() == []


def test_an_archived_file_s_size_is_seen_and_it_can_be_restored_to_the_drop_folder(
    drop: Drop,
) -> None:
    drop.put("students.csv")
    claimed = drop.source.claim("students.csv")
    assert claimed is not None
    where = drop.source.finish(claimed, "archive/2026/12/06", "students.csv")
    assert where.startswith(drop.source.work_folder("archive") + "/")
    assert drop.source.size_at(where) == len(CONTENT)
    assert drop.source.size_at(where + ".gone") is None

    restored = drop.source.restore(where, "students.csv")

    assert Path(restored) == drop.root / "students.csv"
    assert Path(restored).read_bytes() == CONTENT
    assert drop.source.size_at(where) is None


def test_write_report_never_overwrites(drop: Drop) -> None:
    first = drop.source.write_report("students.csv.report.json", b'{"n": 1}')
    second = drop.source.write_report("students.csv.report.json", b'{"n": 2}')

    reports = drop.root / "reports"
    assert Path(first) == reports / "students.csv.report.json"
    assert Path(second) == reports / "students.csv.report.1.json"
    assert Path(first).read_bytes() == b'{"n": 1}'
    assert Path(second).read_bytes() == b'{"n": 2}'
    assert sorted(path.name for path in reports.iterdir()) == [
        "students.csv.report.1.json",
        "students.csv.report.json",
    ]  # no temp file left behind


def test_write_report_of_empty_content(drop: Drop) -> None:
    where = drop.source.write_report("empty.errors.csv", b"")

    assert Path(where).read_bytes() == b""


def test_remove_marker_moves_the_marker(drop: Drop) -> None:
    drop.put("students.csv")
    drop.put("students.csv.done", b"")
    claimed = drop.source.claim("students.csv")
    assert claimed is not None
    drop.source.finish(claimed, "archive/2026/11/23", "students.csv")

    drop.source.remove_marker("students.csv.done", "archive/2026/11/23", "students.csv.done")
    drop.source.remove_marker("students.csv.ok", "archive/2026/11/23", "students.csv.ok")

    assert not (drop.root / "students.csv.done").exists()
    day = drop.root / "archive" / "2026" / "11" / "23"
    assert sorted(path.name for path in day.iterdir()) == ["students.csv", "students.csv.done"]


def test_remove_marker_ignores_symlinks(drop: Drop) -> None:
    target = drop.put("elsewhere.txt", b"x")
    (drop.root / "students.csv.done").symlink_to(target)

    drop.source.remove_marker("students.csv.done", "failed", "students.csv.done")

    assert (drop.root / "students.csv.done").is_symlink()
    assert not (drop.root / "failed" / "students.csv.done").exists()


def test_remove_marker_never_overwrites(drop: Drop) -> None:
    (drop.root / "failed").mkdir(exist_ok=True)
    (drop.root / "failed" / "students.csv.ok").write_bytes(b"older")
    drop.put("students.csv.ok", b"new")

    drop.source.remove_marker("students.csv.ok", "failed", "students.csv.ok")

    assert (drop.root / "failed" / "students.csv.ok").read_bytes() == b"older"
    assert (drop.root / "failed" / "students.csv.1.ok").read_bytes() == b"new"


def test_remove_marker_takes_the_name_of_its_suffixed_file(drop: Drop) -> None:
    drop.put("students.csv.done", b"")

    drop.source.remove_marker("students.csv.done", "held", "students.1.csv.done")

    assert (drop.root / "held" / "students.1.csv.done").exists()


def test_close_twice_is_fine(drop: Drop) -> None:
    drop.source.close()
    drop.source.close()


def test_holds_says_whether_a_regular_file_is_there(drop: Drop) -> None:
    drop.put("students.csv")
    claimed = drop.source.claim("students.csv")
    assert claimed is not None
    where = drop.source.take_back(drop.source.processing_path(claimed), "held", "students.csv")

    assert drop.source.holds(str(where))
    assert not drop.source.holds(str(where) + ".gone")
