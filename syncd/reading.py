"""Opening a roster file: its format, kind and columns, and its rows counted as they stream."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from syncd.core.validate import Columns, RowRules
from syncd.errors import FileFailed
from syncd.formats.detect import Detected
from syncd.formats.headers import ColumnMap, detect_kind, map_columns
from syncd.formats.readers import Table, open_table
from syncd.model import Kind, PasswordPolicy, RawRow

if TYPE_CHECKING:
    from syncd.pipeline import FileResult, Job

PERSON_IDENTIFIERS = ("sync_key", "username", "email")
PROGRESS_EVERY = 10_000


def counting(
    rows: Iterator[RawRow], counter: list[int], progress: Callable[[int], None] | None
) -> Iterator[RawRow]:
    """Yield `rows`, counting them in counter[0] and telling `progress` now and then."""
    for row in rows:
        counter[0] += 1
        if progress is not None and counter[0] % PROGRESS_EVERY == 0:
            progress(counter[0])
        yield row


def tell_progress(progress: Callable[[int], None] | None, before: int, after: int) -> None:
    """Tell `progress` what `counting` would have told it while the count went from
    `before` to `after` (rows taken a block at a time)."""
    if progress is not None:
        first = before - before % PROGRESS_EVERY + PROGRESS_EVERY
        for count in range(first, after + 1, PROGRESS_EVERY):
            progress(count)


@dataclass(frozen=True, slots=True)
class OpenedFile:
    """A file opened for reading, with its kind and columns found."""

    table: Table
    kind: Kind
    columns: ColumnMap
    cols: Columns
    rules: RowRules


def _column_names(header: tuple[str, ...], indexes: list[int]) -> list[str]:
    """Return the names of the header's columns at `indexes`, each name once. A column
    without a header is named by its position: "" would tell the sender nothing."""
    names = (header[index] or f"(column {index + 1}, no header)" for index in indexes)
    return list(dict.fromkeys(names))


@contextmanager
def open_file(
    job: Job, result: FileResult, detected: Detected | None = None
) -> Iterator[OpenedFile]:
    """Open the job's file, find its kind and columns (noted in `result`); `detected`: its
    format, if already found.

    Raises FileFailed for what fails the whole file.
    """
    source = job.source
    with open_table(job.path, source.limits, detected) as table:
        result.encoding = table.encoding if table.format == "csv" else "xlsx"
        result.delimiter = table.delimiter
        kind = job.kind or detect_kind(job.name, table.header, source.globs, source.child_column)
        if kind is None:
            raise FileFailed(
                "kind cannot be found from the file name or the header: name it like "
                "*students*, *parents* or *relationships*, or use the documented column names"
            )
        result.kind = kind
        columns = map_columns(table.header, kind, source.child_column)
        check_required_columns(kind, columns)
        if kind is Kind.PARENTS and source.child_column and "child_key" not in columns.fields:
            # Named in the config, the column is expected: a misspelt header would link no
            # child, unsaid, night after night.
            raise FileFailed(
                f"no child column: the source's child_column {source.child_column!r} is not "
                "in the header, nor any of its aliases (ChildID, Child ID, Student ID, ...)"
            )
        keep_passwords = source.passwords is PasswordPolicy.HASH
        header = columns.header
        empty = table.empty_columns  # a sheet's columns with nothing in them: not reported
        result.attribute_columns = _column_names(
            header, [i for _, i in columns.attributes if i not in empty]
        )
        # Every column that sets no field (SPEC §2.2: unrecognised columns are "listed once
        # in the report"): those kept as attributes (a field's second column too), and those
        # dropped (passwords; a relationships file's); attribute_columns tells them apart.
        used = set(columns.fields.values()) | set(columns.more_children)
        if not keep_passwords:
            used.discard(columns.fields.get("password"))
        unreported = used | empty
        result.ignored_columns = _column_names(
            header, [index for index in range(len(header)) if index not in unreported]
        )
        rules = RowRules(
            keep_passwords=keep_passwords, relationship_types=source.relationship_types
        )
        cols = Columns(
            fields=columns.fields,
            names={name: columns.column_name(name) for name in columns.fields},
            attributes=columns.attributes,
            more_children=columns.more_children,
            # A sheet's cells stay under their columns; a text row's may shift (SPEC §3.3).
            width=None if table.format == "xlsx" else len(header),
        )
        yield OpenedFile(table, kind, columns, cols, rules)


def check_required_columns(kind: Kind, columns: ColumnMap) -> None:
    """Fail a file whose header lacks what its kind needs (a title row above the header, in
    a hand-made sheet, is read as the header: the failure says so)."""
    if kind is Kind.RELATIONSHIPS:
        if not any(
            name in columns.fields for name in ("parent_email", "parent_key", "parent_username")
        ):
            raise FileFailed(
                "no parent column (Parent Email, Parent ID or Parent username)"
                + _header_read(columns.header)
            )
        if not any(name in columns.fields for name in ("student_email", "student_id")):
            raise FileFailed(
                "no child column (Student Email or Student ID)" + _header_read(columns.header)
            )
        return
    if not any(name in columns.fields for name in PERSON_IDENTIFIERS):
        raise FileFailed(
            "no identifier column: needs a sync key, username or email column"
            + _header_read(columns.header)
        )


_TITLE_SHOWN = 80  # characters of a title row a failure quotes


def _header_read(header: Sequence[str]) -> str:
    """Return what a failure adds about a header of one cell: a title above the header (a
    hand-made sheet's). Other headers are not quoted: a file without a header row would
    show its first row of data, a password perhaps."""
    cells = [cell.strip() for cell in header if cell.strip()]
    if len(cells) != 1:
        return ""
    title = cells[0] if len(cells[0]) <= _TITLE_SHOWN else cells[0][: _TITLE_SHOWN - 1] + "…"
    return f"; the header row is one cell, {title!r}: a title? the header must come first"
