"""A big file's events go to the database in batches and its JSON lines to a spool file,
logged after the commit: the log and the database still hold every event exactly once, in
order."""

from __future__ import annotations

import json

import pytest

from syncd import audit
from tests.cli.conftest import Syncd


def _import_students_logged_in_order(syncd: Syncd, count: int) -> list[dict[str, object]]:
    """Import `count` new students; check their person.created lines, in order; return them."""
    rows = "".join(f"S{number:02},First{number},Last{number}\n" for number in range(count))
    path = syncd.write("students.csv", "SyncID,First name,Last name\n" + rows)
    outcome = syncd("import", str(path))
    assert outcome.exit_code == 0, outcome.stderr
    created = syncd.events("person.created")
    assert [event["sync_key"] for event in created] == [f"S{n:02}" for n in range(count)]
    return created


def test_spilled_events_are_logged_once_each_in_order(
    syncd: Syncd, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit, "FLUSH_EVENTS", 7)
    monkeypatch.setattr(audit, "SPOOL_LINES", 5)
    created = _import_students_logged_in_order(syncd, 30)
    assert all(event["file_id"] == created[0]["file_id"] for event in created)
    names = [event["event"] for event in syncd.events() if event.get("file_id")]
    assert names[-1] == "file.applied" and names.count("file.validated") == 1
    history = syncd("history", "--file", str(created[0]["file_id"]), "--json").json()
    assert [e["event"] for e in history].count("person.created") == 30


def test_a_log_written_out_as_it_grows_keeps_every_line(
    syncd: Syncd, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The log asks the kernel to write out and drop what it appended every WRITE_OUT_BYTES
    # (a district's gigabyte of events must not sit dirty in the page cache); the lines,
    # before and after each window, are all there, whole and in order.
    monkeypatch.setattr(audit, "SPOOL_LINES", 5)
    monkeypatch.setattr(audit._ReopenableFile, "WRITE_OUT_BYTES", 100)
    advised: list[tuple[int, int]] = []
    fadvise = audit.os.posix_fadvise

    def recording(fd: int, offset: int, length: int, advice: int) -> None:
        advised.append((offset, length))
        fadvise(fd, offset, length, advice)

    monkeypatch.setattr(audit.os, "posix_fadvise", recording)
    _import_students_logged_in_order(syncd, 60)
    # Each call starts where the one before it did (pages in flight then are dropped now):
    # at the start of the log, then further on.
    offsets = [offset for offset, _ in advised]
    assert len(offsets) >= 3 and offsets[:2] == [0, 0] and offsets == sorted(offsets)
    assert len(set(offsets)) == len(offsets) - 1
    assert all(length == 0 for _, length in advised)  # to the end of the file


def test_a_line_left_unfinished_by_a_killed_writer_is_ended_before_new_events(
    syncd_sqlite: Syncd,
) -> None:
    """kill -9 mid-write leaves half a line; the next process's events start lines of their
    own (SPEC §6: one object a line), the half line kept as it was, ended."""
    half = '{"source":"district-a","event":"person.crea'
    syncd_sqlite.audit_path.write_text('{"event":"daemon.started"}\n' + half)
    path = syncd_sqlite.write("students.csv", "SyncID,First name,Last name\nS1,Ann,Lee\n")
    assert syncd_sqlite("import", str(path)).exit_code == 0
    lines = syncd_sqlite.audit_path.read_text().splitlines()
    assert lines[:2] == ['{"event":"daemon.started"}', half]
    assert [json.loads(line)["event"] for line in lines[2:]][:2] == [
        "file.received",
        "file.validated",
    ]


@pytest.mark.parametrize("spooled", [False, True])
def test_a_line_separator_in_a_value_stays_inside_its_audit_line(
    syncd: Syncd, monkeypatch: pytest.MonkeyPatch, spooled: bool
) -> None:
    # U+2028, U+2029 and U+0085 end a line for Python's str.splitlines (and for older
    # JavaScript parsers), where JSON leaves them as they are: the log escapes them, the
    # lines written at once and those spooled first alike.
    if spooled:
        monkeypatch.setattr(audit, "SPOOL_LINES", 1)
    odd = "Ann\u2028Marie\x85Lee\u2029Jo"
    syncd.configure(max_update=1.0)
    first = syncd.write("students.csv", "SyncID,First name,Last name,E-mail\nS1,Ann,Lee,\n")
    assert syncd("import", str(first)).exit_code == 0
    rows = f"S1,{odd},Lee,\nS{odd}2,Bo,Lee,\n"  # a key holding them: a person.created line
    second = syncd.write("students.csv", "SyncID,First name,Last name,E-mail\n" + rows)
    assert syncd("import", str(second)).exit_code == 0
    raw = syncd.audit_path.read_bytes()
    assert not any(mark.encode() in raw for mark in "\u2028\u2029\x85")
    lines = syncd.audit_path.read_text("utf-8").splitlines()
    assert len(lines) == raw.count(b"\n")
    events = [json.loads(line) for line in lines]
    updated = next(e for e in events if e["event"] == "person.updated")
    assert updated["changes"]["first_name"]["new"] == odd
    assert any(e["event"] == "person.created" and e["sync_key"] == f"S{odd}2" for e in events)
