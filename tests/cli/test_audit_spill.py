"""A big file's events go to the database in batches and its JSON lines to a spool file,
logged after the commit: the log and the database still hold every event exactly once, in
order."""

from __future__ import annotations

import pytest

from syncd import audit
from tests.cli.conftest import Syncd


def test_spilled_events_are_logged_once_each_in_order(
    syncd: Syncd, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit, "FLUSH_EVENTS", 7)
    monkeypatch.setattr(audit, "SPOOL_LINES", 5)
    rows = "".join(f"S{number:02},First{number},Last{number}\n" for number in range(30))
    path = syncd.write("students.csv", "SyncID,First name,Last name\n" + rows)
    outcome = syncd("import", str(path))
    assert outcome.exit_code == 0, outcome.stderr
    created = syncd.events("person.created")
    assert [event["sync_key"] for event in created] == [f"S{n:02}" for n in range(30)]
    assert all(event["file_id"] == created[0]["file_id"] for event in created)
    names = [event["event"] for event in syncd.events() if event.get("file_id")]
    assert names[-1] == "file.applied" and names.count("file.validated") == 1
    history = syncd("history", "--file", str(created[0]["file_id"]), "--json").json()
    assert [e["event"] for e in history].count("person.created") == 30
