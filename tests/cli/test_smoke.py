"""The README walk-through: the three sample files give 5 students, 5 parents, 8 links."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.cli.conftest import Syncd


def test_samples_import_gives_eight_links(syncd: Syncd, shared_dir: Path) -> None:
    paths = []
    for name in ("relationships.xlsx", "parents.csv", "students.csv"):
        paths.append(str(syncd.write(name, (shared_dir / "samples" / name).read_bytes())))
    outcome = syncd("import", *paths)
    assert outcome.exit_code == 0, outcome.stderr
    persons = syncd.export()
    assert sum(p["kind"] == "student" for p in persons) == 5
    assert sum(p["kind"] == "parent" for p in persons) == 5
    assert len([link for link in syncd.links() if link[2] == "active"]) == 8


def test_samples_dropped_and_picked_up_give_eight_links(syncd: Syncd, shared_dir: Path) -> None:
    syncd.drop_dir.mkdir()
    for name in ("students.csv", "parents.csv", "relationships.xlsx"):
        shutil.copy(shared_dir / "samples" / name, syncd.drop_dir / name)
    outcome = syncd("run", "--once")
    assert outcome.exit_code == 0, outcome.stderr
    assert len(syncd.links()) == 8
    assert sorted(p.name for p in (syncd.drop_dir / "reports").iterdir()) == [
        "parents.csv.report.json",
        "relationships.xlsx.report.json",
        "students.csv.report.json",
    ]
