"""A plain students or parents file of a new site is read column by column
(syncd.core.columns): the same database rows, report and audit trail as the row reader gives
it, or the row reader.

Each example imports generated files twice into fresh installations, once as syncd does and
once with the column reader switched off, and compares everything the import left.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import sqlite3
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncd import column_worker, person_files
from syncd.formats import readers
from tests.cli.conftest import Syncd

# Cells mix what trimming, case folding and the email pattern treat specially: Unicode
# spaces (no-break, line separator, ideographic), ß and ſ (casefold changes them), İ.
LETTERS = "abzXYZüøßİſ'-. \u00a0\u2028\u3000"
NAME = st.text(alphabet=LETTERS, min_size=0, max_size=8)
EMAIL = st.one_of(
    st.just(""),
    st.builds(
        lambda user, host, pad: f"{pad}{user}@{host}.Example{pad}",
        st.text(alphabet="abcXYZß.", min_size=1, max_size=6),
        st.text(alphabet="abcDEF", min_size=1, max_size=5),
        st.sampled_from(["", " ", "\u00a0"]),
    ),
)
# Columns besides SyncID, First name and Last name; a file has any of them.
OPTIONAL = ("Username", "E-mail", "Student number", "Grade", "School")
# What a file may hold that a plain split would read differently: the row reader gets it.
UNUSUAL = st.sampled_from(
    [None] * 8 + ["quote", "blank", "x1c", "duplicate", "bad email", "no last name"]
)


@st.composite
def students_file(draw: st.DrawFn) -> bytes:
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    optional = [name for name in OPTIONAL if draw(st.booleans())]
    header = ["SyncID", "First name", "Last name", *optional]
    count = draw(st.integers(min_value=1, max_value=12))
    rows = []
    for number in range(count):
        pad = draw(st.sampled_from(["", " ", "\u3000"]))
        cells = {
            "SyncID": f"{pad}S{number}{pad}",
            "First name": pad + (draw(NAME).strip() or "Ann"),
            "Last name": (draw(NAME).strip() or "Lee") + pad,
            "Username": draw(NAME),
            "E-mail": draw(EMAIL),
            "Student number": draw(st.sampled_from(["", "0042", " 7 "])),
            "Grade": draw(st.sampled_from(["", "5", " 10 "])),
            "School": draw(NAME),
        }
        rows.append([cells[name].replace("\t", " ") for name in header])
    unusual, at = draw(UNUSUAL), draw(st.integers(min_value=0, max_value=count - 1))
    if unusual == "quote":
        rows[at][1] = '"' + rows[at][1] + '"'
    elif unusual == "x1c":
        rows[at][2] += "\x1c"
    elif unusual == "duplicate":
        rows.insert(draw(st.integers(min_value=at + 1, max_value=count)), list(rows[at]))
    elif unusual == "bad email" and "E-mail" in header:
        rows[at][header.index("E-mail")] = "not an email"
    elif unusual == "no last name":
        rows[at][2] = "\u3000"
    lines = [delimiter.join(header)] + [delimiter.join(row) for row in rows]
    if unusual == "blank":
        lines.insert(at + 1, "")
    text = newline.join(lines) + (newline if draw(st.booleans()) else "")
    return text.encode("utf-8")


PERSON_COLUMNS = (
    "id, site, kind, sync_key, username, email, first_name, last_name, student_number, "
    "attributes, password_hash, active, inactive_reason, had_link, fingerprint, source, "
    "file_id, created_file_id, row_digest"
)
LINK_COLUMNS = (
    "id, site, parent_id, child_id, type, by_parents, by_relationships, manual, source, "
    "file_id, created_file_id, created_type, created_origin"
)
PENDING_COLUMNS = "id, site, source, parent_id, child_field, child_value, type, origin, file_id"


def _import(
    files: dict[str, bytes], row_by_row: bool, sizes: tuple[int, int] | None = None,
    worker: bool = False, before: dict[str, bytes] | None = None, **source: Any,
) -> dict[str, Any]:  # fmt: skip
    """Import `files` (name: content, in order) in one command into a fresh installation
    whose source has `source`'s settings; return everything it left. `sizes`: the bytes of
    a block of lines and the rows of a chunk, small to have a file read in several.
    `worker`: blocks are prepared in a worker process whatever the file's size. `before`:
    files imported first, in a command of their own (the site then has persons)."""
    # Not pytest's tmp_path: hypothesis runs many examples in one test.
    with tempfile.TemporaryDirectory(prefix="syncd-plain-") as temp:
        return _import_in(Path(temp), files, row_by_row, sizes, worker, before, **source)


def _import_in(
    root: Path, files: dict[str, bytes], row_by_row: bool, sizes: tuple[int, int] | None,
    worker: bool = False, before: dict[str, bytes] | None = None, **source: Any,
) -> dict[str, Any]:  # fmt: skip
    installation = Syncd(root, f"sqlite:///{root / 'syncd.db'}")
    installation.configure(**source)
    if before:
        earlier = [str(installation.write(name, content)) for name, content in before.items()]
        assert installation("import", "--json", *earlier).exit_code in (0, 1)
    paths = [str(installation.write(name, content)) for name, content in files.items()]
    with contextlib.ExitStack() as patches:
        # However small the file, a site's persons do not keep it from the column reader.
        patches.enter_context(mock.patch.object(person_files, "PLAIN_ONTO_PERSONS_BYTES", 1))
        if sizes is not None:
            patches.enter_context(mock.patch.object(readers, "LINE_BLOCK", sizes[0]))
            patches.enter_context(mock.patch.object(person_files, "CHUNK", sizes[1]))
        if row_by_row:
            patches.enter_context(
                mock.patch.object(person_files, "person_columns", lambda *_, **__: None)
            )
        answers: list[Any] = []
        if worker:
            receive = column_worker._Worker.receive

            def recorded(self: column_worker._Worker) -> Any:
                answers.append(receive(self))
                return answers[-1]

            patches.enter_context(mock.patch.object(column_worker, "WORKER_MIN_BYTES", 0))
            patches.enter_context(mock.patch.object(column_worker, "usable_cores", lambda: 2))
            patches.enter_context(mock.patch.object(column_worker._Worker, "receive", recorded))
        outcome = installation("import", "--json", *paths)
        # The comparison must not pass because the worker read no block column by column.
        assert not worker or any(answer and answer[0] is not None for answer in answers)
    reports = json.loads(outcome.stdout)
    for report in reports if isinstance(reports, list) else [reports]:
        report.pop("duration_s", None)
    with sqlite3.connect(root / "syncd.db") as connection:
        tables = {
            table: connection.execute(f"SELECT {columns} FROM {table} ORDER BY id").fetchall()
            for table, columns in (
                ("persons", PERSON_COLUMNS),
                ("links", LINK_COLUMNS),
                ("pending_links", PENDING_COLUMNS),
            )
        }
    return {
        "exit": outcome.exit_code,
        "reports": reports,
        **tables,
        "events": [
            {k: v for k, v in event.items() if k not in ("ts", "run_id")}
            for event in installation.events()
        ],
        "errors": {
            name: (root / f"{name}.errors.csv").read_text("utf-8")
            for name in files
            if (root / f"{name}.errors.csv").exists()
        },
    }


def _both_ways(
    files: dict[str, bytes], sizes: tuple[int, int] | None,
    before: dict[str, bytes] | None = None, **source: Any,
) -> None:  # fmt: skip
    by_columns = _import(files, row_by_row=False, sizes=sizes, before=before, **source)
    by_rows = _import(files, row_by_row=True, sizes=sizes, before=before, **source)
    if before:
        # The row reader writes a chunk's new persons before its updates; the column reader
        # reads the blocks that name the site's persons as chunks of their own.
        by_columns["events"] = _changes_sorted(by_columns["events"])
        by_rows["events"] = _changes_sorted(by_rows["events"])
    assert by_columns == by_rows


def _changes_sorted(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return `events` with each run of person and relationship events in a sorted order."""
    runs = itertools.groupby(events, lambda e: e["event"].startswith(("person.", "relation")))
    return [
        event
        for changes, run in runs
        for event in (sorted(run, key=lambda e: json.dumps(e, sort_keys=True)) if changes else run)
    ]


@st.composite
def trial_of(draw: st.DrawFn, content: bytes, key: bytes) -> bytes:
    """A trial file before `content` (a students or parents file whose keys are `key` and a
    number): its header and some of its lines, each as it is or with its key's number
    changed (another person, or one the whole file leaves out)."""
    header, *lines = content.splitlines(keepends=True)
    chosen = draw(st.lists(st.sampled_from(range(len(lines))), unique=True)) if lines else []
    trial = []
    for index in sorted(chosen):
        line = lines[index]
        if draw(st.integers(0, 3)) == 0:
            other = key + b"%d" % draw(st.integers(0, 20))
            line = re.sub(re.escape(key) + rb"\d+", other, line, count=1)
        trial.append(line if line.endswith(b"\n") else line + b"\r\n")
    return header + b"".join(trial)


# Blocks of a few lines and chunks of a few rows (or the real ones): an unusual line then
# comes after plain blocks already written, and the row reader goes on from its block.
SIZES = st.one_of(st.none(), st.tuples(st.integers(min_value=16, max_value=300), st.integers(1, 6)))


EXAMPLES = settings(
    max_examples=int(os.environ.get("SYNCD_PLAIN_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@EXAMPLES
@given(content=students_file(), sizes=SIZES)
def test_a_plain_students_file_reads_as_the_row_reader_reads_it(
    content: bytes, sizes: tuple[int, int] | None
) -> None:
    _both_ways({"students.csv": content}, sizes)


@EXAMPLES
@given(data=st.data(), content=students_file(), sizes=SIZES)
def test_a_students_file_onto_a_site_with_students_reads_as_the_row_reader_reads_it(
    data: st.DataObject, content: bytes, sizes: tuple[int, int] | None
) -> None:
    # Some of its lines, or others, imported first: their blocks go to the row reader, the
    # others to the column reader; the trial's students the file leaves out are deactivated.
    trial = data.draw(st.one_of(trial_of(content, b"S"), students_file()))
    limits = {"max_update": 1.0, "max_deactivate": 1.0}
    _both_ways({"students.csv": content}, sizes, before={"trial-students.csv": trial}, **limits)


# The students a parents file names: S0..S5, two of them sharing an email (an ambiguous
# child when children are named by email).
STUDENTS = "SyncID,Username,First name,Last name,E-mail,Student number\r\n" + "".join(
    f"S{n},kid{n},Kid,Lee {n},{'twins' if n in (4, 5) else f'kid{n}'}@School.Example,00{n}\r\n"
    for n in range(6)
)
# How a child cell names student n, by the source's child_field; 9 names no one (a pending
# link).
CHILD_VALUE = {
    "sync_key": lambda n: f"S{n}",
    "username": lambda n: f"Kid{n}" if n % 2 else f"kid{n}",
    "email": lambda n: f"{'twins' if n in (4, 5) else f'kid{n}'}@school.example",
    "student_number": lambda n: f"00{n}",
}
PARENT_OPTIONAL = ("User name", "E-mail", "Password", "Relationship", "Role")
PARENT_UNUSUAL = st.sampled_from(
    [None] * 8
    + ["duplicate", "bad email", "quote inside", "unknown type", "child quote", "no children"]
)


@st.composite
def parents_files(draw: st.DrawFn) -> tuple[dict[str, bytes], dict[str, Any]]:
    """A students file and a parents file, and the source's settings to import them with."""
    child_field = draw(st.sampled_from(sorted(CHILD_VALUE)))
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    optional = [name for name in PARENT_OPTIONAL if draw(st.booleans())]
    header = ["SyncID", "First name", "Last name", *optional, "Child ID"]
    quote_all = draw(st.booleans())
    rows = []
    for number in range(draw(st.integers(min_value=1, max_value=10))):
        pad = draw(st.sampled_from(["", " ", "\u3000"]))
        children = draw(st.lists(st.sampled_from([0, 1, 2, 3, 4, 5, 9]), max_size=3))
        separator = draw(st.sampled_from([";", "|", "; ", ","]))
        child_cell = separator.join(CHILD_VALUE[child_field](n) for n in children)
        cells = {
            "SyncID": f"{pad}P{number}{pad}",
            "First name": pad + (draw(NAME).strip() or "Ann"),
            "Last name": (draw(NAME).strip() or "Lee") + pad,
            "User name": draw(NAME),
            "E-mail": draw(EMAIL),
            "Password": draw(st.sampled_from(["", "pw-1", "secret"])),
            "Relationship": draw(st.sampled_from(["", "Parent", "guardian", "Mother", " Aide "])),
            "Role": draw(st.sampled_from(["", "primary"])),
            "Child ID": f" {child_cell} " if draw(st.booleans()) else child_cell,
        }
        row = [cells[name].replace("\t", " ") for name in header]
        # Quoted whole: every cell, the child cell, or none; a delimiter inside needs it.
        rows.append(
            [
                f'"{cell}"'
                if quote_all or (name == "Child ID" and draw(st.booleans())) or delimiter in cell
                else cell
                for name, cell in zip(header, row, strict=True)
            ]
        )
    unusual, at = draw(PARENT_UNUSUAL), draw(st.integers(min_value=0, max_value=len(rows) - 1))
    if unusual == "duplicate":
        rows.insert(draw(st.integers(min_value=at + 1, max_value=len(rows))), list(rows[at]))
    elif unusual == "bad email" and "E-mail" in header:
        rows[at][header.index("E-mail")] = "not an email"
    elif unusual == "quote inside":
        rows[at][1] = '"An""n"'
    elif unusual == "unknown type" and "Relationship" in header:
        rows[at][header.index("Relationship")] = "Uncle"
    elif unusual == "child quote":
        rows[at][-1] = f'"{CHILD_VALUE[child_field](1)}"";S2"'
    elif unusual == "no children":
        header.pop()
        rows = [row[:-1] for row in rows]
    lines = [delimiter.join(header)] + [delimiter.join(row) for row in rows]
    text = newline.join(lines) + (newline if draw(st.booleans()) else "")
    files = {"students.csv": STUDENTS.encode(), "parents.csv": text.encode("utf-8")}
    return files, {"child_field": child_field, "relationship_types": {"Mother": "Parent"}}


@EXAMPLES
@given(example=parents_files(), sizes=SIZES)
def test_a_plain_parents_file_reads_as_the_row_reader_reads_it(
    example: tuple[dict[str, bytes], dict[str, Any]], sizes: tuple[int, int] | None
) -> None:
    files, source = example
    _both_ways(files, sizes, **source)


@pytest.mark.parametrize(
    ("lines", "trial"),
    [
        # A line the trial had, again at the end: its first copy was skipped unread.
        (["S0,Ann,Lee", "S1,Bo,Lee", "S2,Cy,Lee", "S3,Di,Lee", "S1,Bo,Lee"], [1]),
        # Plain lines after skipped ones, then a key they named again: its line is named.
        (["S0,Ann,Lee", "S1,Bo,Lee", "S2,Cy,Lee", "S3,Di,Lee", "S4,Ed,Lee", "S3,Di,Le"], [0, 1]),
    ],
)
def test_blocks_naming_the_sites_students_between_plain_ones(
    lines: list[str], trial: list[int]
) -> None:
    # Blocks of one line: each is either the trial's (row by row) or plain.
    content = "SyncID,First name,Last name\n" + "".join(line + "\n" for line in lines)
    earlier = "SyncID,First name,Last name\n" + "".join(lines[i] + "\n" for i in trial)
    before = {"trial-students.csv": earlier.encode()}
    _both_ways({"students.csv": content.encode()}, (16, 1), before=before)


def test_a_file_onto_a_site_with_students_is_read_column_by_column(tmp_path: Path) -> None:
    # The comparisons above must not pass because both imports read row by row: the trial's
    # block goes to the row reader, the others are plain.
    lines = ["SyncID,First name,Last name"] + [f"S{n},Zoë,Nuñez {n}" for n in range(3000)]
    trial = "\n".join(lines[:101]) + "\n"  # the site may have one a 400 bytes of the file
    whole = "\n".join(lines) + "\n"
    installation = Syncd(tmp_path, f"sqlite:///{tmp_path / 'syncd.db'}")
    assert installation("import", str(installation.write("trial.csv", trial))).exit_code == 0
    with mock.patch.object(readers, "LINE_BLOCK", 4096):
        _, outcome, results = _import_watched(tmp_path, {"students.csv": whole})
    assert len(results) > 3 and all(result is not None for result in results)
    counts = json.loads(outcome.stdout)["counts"]
    assert (counts["created"], counts["unchanged"]) == (2900, 100)


@EXAMPLES
@given(data=st.data(), example=parents_files(), sizes=SIZES)
def test_a_parents_file_onto_a_site_with_parents_reads_as_the_row_reader_reads_it(
    data: st.DataObject,
    example: tuple[dict[str, bytes], dict[str, Any]],
    sizes: tuple[int, int] | None,
) -> None:
    files, source = example
    trial = data.draw(trial_of(files["parents.csv"], b"P"))
    before = {"students.csv": files["students.csv"], "trial-parents.csv": trial}
    limits = {"max_update": 1.0, "max_deactivate": 1.0}
    _both_ways(files, sizes, before=before, **source, **limits)


def _import_watched(root: Path, files: dict[str, str]) -> tuple[Syncd, Any, list[Any]]:
    """Import `files` (name: content, in order); return the installation, the outcome and
    what each call of the column reader returned (None: the block went to the row reader)."""
    installation = Syncd(root, f"sqlite:///{root / 'syncd.db'}")
    paths = [str(installation.write(name, content)) for name, content in files.items()]
    results: list[Any] = []
    real = person_files.person_columns

    def spy(*args: Any, **kwargs: Any) -> Any:
        results.append(real(*args, **kwargs))
        return results[-1]

    with mock.patch.object(person_files, "person_columns", spy):
        outcome = installation("import", "--json", *paths)
    assert outcome.exit_code == 0, outcome.stderr
    return installation, outcome, results


def test_a_plain_file_is_read_column_by_column(tmp_path: Path) -> None:
    # The comparison above must not pass because both imports read row by row.
    lines = ["SyncID;First name;Last name;E-mail;Grade"]
    lines += [f"S{n};Zoë;Nuñez {n};Zoe.{n}@School.Example;{n % 12}" for n in range(3000)]
    content = "\r\n".join(lines) + "\r\n"
    installation, outcome, results = _import_watched(tmp_path, {"students.csv": content})
    assert results and all(result is not None for result in results)
    assert json.loads(outcome.stdout)["counts"]["created"] == 3000
    assert [e["event"] for e in installation.events()].count("person.created") == 3000
    assert installation.export()[0]["email"] == "zoe.0@school.example"


def test_a_parents_file_with_quoted_child_cells_is_read_column_by_column(
    tmp_path: Path,
) -> None:
    students = ["SyncID,First name,Last name"] + [f"S{n},Kid,Lee" for n in range(100)]
    parents = ["SyncID,First name,Last name,Password,Pupil sync key"]
    parents += [f'P{n},Ann,Lee {n},pw,"S{n % 100};S{(n + 1) % 100}"' for n in range(6000)]
    parents[-1] = 'P5999,Ann,Lee,pw,"S999"'  # no such student yet: a pending link
    files = {"students.csv": "\n".join(students) + "\n", "parents.csv": "\r\n".join(parents)}
    installation, outcome, results = _import_watched(tmp_path, files)
    assert [len(result.sync_keys) for result in results] == [100, 5000, 1000]
    assert all(result is not None for result in results)
    assert [len(result.sync_keys) for result in results[1:]] == [5000, 1000]
    assert results[1].children[0] == ("S0", "S1")
    report = json.loads(outcome.stdout)[1]
    assert report["counts"]["links_created"] == 11998
    assert report["pending"] == [{"parent": "P5999", "child": "S999", "child_field": "sync_key"}]
    # As the row path writes them: each chunk's parents, then their links, then its
    # pending links.
    events = [e["event"] for e in installation.events() if e.get("kind") != "student"]
    changes = [event for event in events if event.startswith(("person.", "relationship."))]
    assert changes == (
        ["person.created"] * 5000
        + ["relationship.created"] * 10000
        + ["person.created"] * 1000
        + ["relationship.created"] * 1998
        + ["relationship.pending"]
    )


def test_a_file_with_a_quote_inside_a_cell_is_read_row_by_row(tmp_path: Path) -> None:
    content = 'SyncID,First name,Last name\nS1,"An""n",Lee\n'
    installation, _, results = _import_watched(tmp_path, {"students.csv": content})
    assert results == [None]
    assert installation.export()[0]["first_name"] == 'An"n'


def test_a_bad_row_after_plain_blocks_goes_row_by_row_from_its_block(tmp_path: Path) -> None:
    # What the column reader wrote stays; the file is not read a second time.
    lines = ["SyncID,First name,Last name,E-mail"]
    lines += [f"S{n},Ann,Lee,ann.{n}@school.example" for n in range(40)]
    lines[31] = "S30,Ann,Lee,not an email"  # line 32 of the file
    with mock.patch.object(readers, "LINE_BLOCK", 120):
        installation, outcome, results = _import_watched(
            tmp_path, {"students.csv": "\n".join(lines) + "\n"}
        )
    assert len(results) > 2 and results[-1] is None
    assert all(result is not None for result in results[:-1])  # read once, plain blocks first
    report = json.loads(outcome.stdout)
    assert report["counts"]["created"] == 39 and report["counts"]["rejected"] == 1
    errors = (tmp_path / "students.csv.errors.csv").read_text("utf-8").splitlines()
    assert len(errors) == 2 and errors[1].startswith("32,") and "not an email" in errors[1]
    assert {person["sync_key"] for person in installation.export()} == {
        f"S{n}" for n in range(40) if n != 30
    }


@pytest.mark.parametrize("row_by_row", [False, True])
@pytest.mark.parametrize("sizes", [(16, 1), None])
def test_a_person_a_full_file_also_rejects_a_row_of_keeps_no_row_digest(
    row_by_row: bool, sizes: tuple[int, int] | None
) -> None:
    # However early its valid row was written: with blocks and chunks of one row, before
    # the duplicate was read. The next file's rows for it are read, not skipped.
    content = b"SyncID,First name,Last name\nS0,Ann,Lee\nS1,Bo,Lee\nS0,Ann,Lee\n"
    left = _import({"students.csv": content}, row_by_row, sizes)
    digests = {person[3]: person[-1] for person in left["persons"]}
    assert digests["S0"] is None and digests["S1"] is not None


@pytest.mark.parametrize("encoding", ["utf-8", "cp1252"])
def test_a_worker_process_reads_blocks_as_this_process_does(encoding: str) -> None:
    # A big file's blocks are prepared in a worker process (syncd.column_worker), here
    # forced for a small one: the same rows, report and trail as the row reader. The file
    # is cp1252 with an undefined byte (the readers' error handler), and a bad row late in
    # the file sends the rest to the row reader.
    lines = ["SyncID;First name;Last name;E-mail;Grade"]
    lines += [f"S{n};Zoë;Nuñez {n};Zoe.{n}@School.Example;{n % 12}" for n in range(400)]
    lines[300] = "S299;Zoë;Nuñez;not an email;1"
    students = ("\r\n".join(lines) + "\r\n").encode(encoding)
    if encoding == "cp1252":
        students = students.replace(b"Zo\xeb;Nu\xf1ez 7;", b"Zo\x81;Nu\xf1ez 7;")
    parents = ["SyncID,First name,Last name,Pupil sync key"]
    parents += [f'P{n},Ann,Lee {n},"S{n % 400};S{(n + 1) % 400}"' for n in range(300)]
    files = {"students.csv": students, "parents.csv": "\n".join(parents).encode(encoding)}
    sizes = (2000, 40)  # blocks of a few dozen lines: many of them go to the worker
    by_worker = _import(files, row_by_row=False, sizes=sizes, worker=True)
    assert by_worker["exit"] == 0
    assert by_worker == _import(files, row_by_row=True, sizes=sizes)
