"""A file's result → `NAME.report.json` and `NAME.errors.csv` bytes (SPEC §3.3); pure."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

from syncd.errors import one_line
from syncd.model import FileStatus
from syncd.pipeline import FileResult
from syncd.sources.base import SUFFIX_ROOM, fit_name

# Cells starting with these are formulas to a spreadsheet (CSV injection); a leading
# apostrophe makes them text without changing what a person reads.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def inert(value: str) -> str:
    """Return `value` made safe to open in a spreadsheet."""
    return "'" + value if value.startswith(FORMULA_PREFIXES) else value


def report_status(status: FileStatus) -> str:
    """Return the status a sender reads: applied, held, failed or duplicate (SPEC §3.3).

    A held file an operator rejected ends in failed/, so its report says failed (the
    reason says who rejected it); the ledger keeps the finer "rejected".
    """
    return FileStatus.FAILED.value if status is FileStatus.REJECTED else status.value


def problem_line(result: FileResult) -> str | None:
    """Return the one line a command says on stderr of a file that failed or was held
    (SPEC §5), or that a dry run says would be, None for any other outcome; the report
    holds the details."""
    if result.would is not None:
        return one_line(f"{result.name}: {result.reason}")
    if result.status not in (FileStatus.FAILED, FileStatus.HELD, FileStatus.REJECTED):
        return None
    reason = result.reason or "see its report"
    return one_line(f"{result.name}: {report_status(result.status)}: {reason}")


def report_document(result: FileResult, errors_file: str | None = None) -> dict[str, Any]:
    """Return the report.json document for a processed file (`errors_file`: its errors.csv)."""
    document: dict[str, Any] = {
        "file": result.name,
        "file_id": result.file_id,
        "kind": result.kind.value if result.kind else None,
        "status": report_status(result.status),
        "encoding": result.encoding,
        "delimiter": result.delimiter,
        "sha256": result.sha256,
        "counts": result.counts.as_dict(),
        "pending": result.pending,
        "ignored_columns": result.ignored_columns,
        "attribute_columns": result.attribute_columns,
        "errors": len(result.errors),
        "duration_s": result.duration_s,
    }
    if result.reason:
        document["reason"] = result.reason
    if result.links_kept:
        document["links_kept"] = result.links_kept
    if result.errors:
        document["errors_file"] = errors_file or errors_name(result.name)
    return document


def report_json(result: FileResult, errors_file: str | None = None) -> bytes:
    document = report_document(result, errors_file)
    return (json.dumps(document, ensure_ascii=False, indent=2) + "\n").encode()


def write_reports_with(write: Callable[[str, bytes], object], result: FileResult) -> None:
    """Write a file's errors.csv (if any rows were rejected), then its report.json, by `write`;
    note where they went in `result.reports_written`.

    `write(name, content)` stores a report without overwriting and returns where it went: a
    name already taken gets a numeric suffix, so the errors file is written first and the
    report names the file it really got, not an earlier upload's.
    """
    written = result.reports_written
    errors_file = None
    if result.errors:
        written["errors"] = str(write(errors_name(result.name), errors_csv(result)))
        errors_file = PurePosixPath(written["errors"]).name
    written["report"] = str(write(report_name(result.name), report_json(result, errors_file)))


def report_name(file_name: str) -> str:
    """Return NAME.report.json, NAME shortened where the whole would not fit a file name."""
    return _named_after(file_name, ".report.json")


def errors_name(file_name: str) -> str:
    return _named_after(file_name, ".errors.csv")


def _named_after(file_name: str, ending: str) -> str:
    return fit_name(file_name, len(ending) + SUFFIX_ROOM) + ending


def errors_csv(result: FileResult) -> bytes:
    """Return `row,column,value,error` lines for the rejected rows (header = row 1)."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["row", "column", "value", "error"])
    for error in result.errors:
        writer.writerow([error.row, inert(error.column), inert(error.value), inert(error.error)])
    return buffer.getvalue().encode("utf-8")
