"""Streaming CSV and XLSX readers: a file in, a header and an iterator of RawRow out."""

from __future__ import annotations

import csv
import datetime as dt
import io
import posixpath
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO
from xml.etree import ElementTree

import openpyxl

from syncd.errors import FileFailed
from syncd.formats.detect import SAVE_AS_HINT, Detected, detect_format, sniff_delimiter
from syncd.model import Limits, RawRow

__all__ = ["Table", "cell_text", "open_table"]


@dataclass(frozen=True, slots=True)
class Table:
    """A file opened for reading: how it was read, its header and its data rows (streamed)."""

    format: str
    encoding: str | None
    delimiter: str | None
    header: tuple[str, ...]
    rows: Iterator[RawRow]


@contextmanager
def open_table(path: Path, limits: Limits) -> Iterator[Table]:
    """Yield the Table of the file at `path`; the file is closed when the block ends.

    Raises FileFailed (on entry or while iterating rows) for empty, binary, unreadable or
    headerless files and for files beyond `limits`.
    """
    try:
        size = path.stat().st_size
    except OSError as error:
        raise FileFailed(f"cannot read the file: {error.strerror or error}") from error
    if size == 0:
        raise FileFailed("empty file")
    if size > limits.max_file_size:
        raise FileFailed(f"file is larger than max_file_size ({limits.max_file_size} bytes)")
    try:
        binary = path.open("rb")
    except OSError as error:
        raise FileFailed(f"cannot read the file: {error.strerror or error}") from error
    with binary:
        detected = detect_format(binary)
        if detected.format == "xlsx":
            with _open_xlsx(binary, limits) as table:
                yield table
        else:
            with _open_csv(binary, detected, limits) as table:
                yield table


# ---------------------------------------------------------------------------------------------
# Rows common to both formats


def _too_many_columns(line: int, limits: Limits) -> FileFailed:
    return FileFailed(f"line {line}: row has more than max_columns ({limits.max_columns}) cells")


def _field_too_long(line: int, limits: Limits) -> FileFailed:
    return FileFailed(
        f"line {line}: a field is longer than max_field_chars ({limits.max_field_chars} characters)"
    )


def _trimmed(cells: Sequence[str], keep: int) -> Sequence[str]:
    """Return `cells` without blank cells at the end beyond the first `keep`."""
    end = len(cells)
    # Spreadsheet exports often carry empty cells far past the last column in use.
    while end > keep and not cells[end - 1].strip():
        end -= 1
    return cells[:end]


def _checked(cells: Sequence[str], line: int, limits: Limits) -> None:
    """Raise FileFailed when `cells` break max_columns or max_field_chars."""
    if len(cells) > limits.max_columns:
        raise _too_many_columns(line, limits)
    if cells and max(map(len, cells)) > limits.max_field_chars:
        raise _field_too_long(line, limits)


def _is_blank(cells: Iterable[str]) -> bool:
    # \x1a is the end-of-file mark some DOS-era exports still append.
    return all(not cell.strip().strip("\x1a") for cell in cells)


def _header_cell(cell: str) -> str:
    return cell.strip().strip("\ufeff").strip()


def _split_header(
    records: Iterator[tuple[int, list[str]]], limits: Limits
) -> tuple[str, ...] | None:
    """Return the first non-blank record of `records` as header cells, or None if there is none."""
    for line, cells in records:
        cells = list(_trimmed(cells, 0))
        _checked(cells, line, limits)
        if not _is_blank(cells):
            return tuple(_header_cell(cell) for cell in cells)
    return None


def _data_rows(
    records: Iterator[tuple[int, list[str]]], width: int, limits: Limits
) -> Iterator[RawRow]:
    """Yield RawRows of `records`, skipping blank ones, padded to `width` cells."""
    for line, cells in records:
        kept = _trimmed(cells, width)
        _checked(kept, line, limits)
        if _is_blank(kept):
            continue
        values = tuple(kept)
        if len(values) < width:
            values += ("",) * (width - len(values))
        yield RawRow(line=line, values=values)


# ---------------------------------------------------------------------------------------------
# CSV


_SNIFF_CHARS = 1024 * 1024


def _text_codec(detected: Detected) -> tuple[str, str]:
    """Return the codec and error policy to decode the text after its BOM."""
    assert detected.encoding is not None
    if detected.encoding == "cp1252":
        # cp1252 is the fallback for anything that is not UTF-8: read it whatever it holds.
        return "cp1252", "replace"
    codec = "utf-8" if detected.encoding == "utf-8-sig" else detected.encoding
    return codec, "strict"


# Fed to the csv reader after the last line: inside a quoted field it lands in that field, which
# is how a quote never closed shows (the csv module would quietly swallow the rest of the file).
_END_SENTINEL = "\ufdd0syncd-end-of-file\ufdd1\n"


def _physical_lines(text: IO[str], limits: Limits, at_end: list[bool]) -> Iterator[str]:
    """Yield the lines of `text` with their endings, then the end sentinel (`at_end` set).

    Raises FileFailed on a line longer than max_columns fields of max_field_chars could be:
    `readline` with a size keeps one hostile line without line breaks from filling memory.
    """
    # Room for max_columns fields of max_field_chars, each with quotes doubled.
    max_line_chars = limits.max_columns * (2 * limits.max_field_chars + 3) + 2
    line_number = 0
    while line := text.readline(max_line_chars + 1):
        line_number += 1
        if len(line) > max_line_chars:
            raise FileFailed(
                f"line {line_number}: line is longer than max_columns ({limits.max_columns}) "
                f"fields of max_field_chars ({limits.max_field_chars} characters) can be"
            )
        yield line
    at_end[0] = True
    yield _END_SENTINEL


def _csv_records(
    text: IO[str], delimiter: str, encoding: str, limits: Limits
) -> Iterator[tuple[int, list[str]]]:
    """Yield (line the record starts on, cells) for each record of `text`."""
    # Only the record read with the sentinel can hold it: check just that one (a hot path).
    at_end = [False]
    reader = csv.reader(
        _physical_lines(text, limits, at_end),
        delimiter=delimiter,
        quotechar='"',
        doublequote=True,
        skipinitialspace=False,
        strict=False,
    )
    start = 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            if "field limit" in str(error):
                raise _field_too_long(start, limits) from error
            raise FileFailed(f"line {start}: unreadable CSV ({error})") from error
        except UnicodeDecodeError as error:
            raise FileFailed(
                f"near line {reader.line_num + 1}: not valid {encoding} text; {SAVE_AS_HINT}"
            ) from error
        if cells == [_END_SENTINEL[:-1]]:
            return
        if at_end[0] and any(_END_SENTINEL[:-1] in cell for cell in cells):
            raise FileFailed(f"line {start}: a quoted field is never closed (a stray '\"'?)")
        yield start, cells
        start = reader.line_num + 1


@contextmanager
def _open_csv(binary: BinaryIO, detected: Detected, limits: Limits) -> Iterator[Table]:
    """Yield the Table of a delimited text file, decoded as `detected` says."""
    assert detected.encoding is not None
    codec, errors = _text_codec(detected)
    # The csv module's field limit is process-wide: only ever raise it, check ours per cell.
    csv.field_size_limit(max(limits.max_field_chars + 1, csv.field_size_limit()))

    binary.seek(detected.bom_length)
    sniffing = io.TextIOWrapper(binary, encoding=codec, errors=errors, newline="")
    try:
        # Bounded reads: a hostile file may hold no line break at all.
        delimiter = sniff_delimiter(iter(lambda: sniffing.readline(_SNIFF_CHARS), ""))
    except UnicodeDecodeError as error:
        raise FileFailed(f"not valid {detected.encoding} text; {SAVE_AS_HINT}") from error
    finally:
        sniffing.detach()  # keep `binary` open for the reading pass

    binary.seek(detected.bom_length)
    text = io.TextIOWrapper(binary, encoding=codec, errors=errors, newline="")
    try:
        records = _csv_records(text, delimiter, detected.encoding, limits)
        header = _split_header(records, limits)
        if header is None:
            raise FileFailed("no header row")
        yield Table(
            format="csv",
            encoding=detected.encoding,
            delimiter=delimiter,
            header=header,
            rows=_data_rows(records, len(header), limits),
        )
    finally:
        text.detach()


# ---------------------------------------------------------------------------------------------
# XLSX


def cell_text(value: object) -> str:
    """Return an XLSX cell value as the user sees it: `1234`, `12.5`, `2012-05-13`, `TRUE`."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        # 15 significant digits, as Excel shows them: 0.1 + 0.2 reads as 0.3.
        return format(value, ".15g")
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0, 0) and value.tzinfo is None:
            return value.date().isoformat()
        return value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value)


_WORKBOOK_PART = "xl/workbook.xml"
_WORKBOOK_RELS_PART = "xl/_rels/workbook.xml.rels"
_SHARED_STRINGS_PART = "xl/sharedStrings.xml"
# workbook.xml and its rels name the sheets; anything bigger than this is not worth parsing.
_MAX_INDEX_PART_SIZE = 16 * 1024 * 1024


def _local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _first_worksheet_part(archive: zipfile.ZipFile) -> str | None:
    """Return the zip path of the workbook's first worksheet, or None if it cannot be told."""
    try:
        if any(
            archive.getinfo(part).file_size > _MAX_INDEX_PART_SIZE
            for part in (_WORKBOOK_PART, _WORKBOOK_RELS_PART)
        ):
            return None
        workbook = ElementTree.fromstring(archive.read(_WORKBOOK_PART))
        relations = ElementTree.fromstring(archive.read(_WORKBOOK_RELS_PART))
    except (KeyError, ElementTree.ParseError, zipfile.BadZipFile, OSError):
        return None
    targets: dict[str, str] = {}
    for relation in relations:
        # Chart sheets are not worksheets; openpyxl's `worksheets` skips them too.
        if relation.get("Type", "").endswith("/worksheet"):
            targets[relation.get("Id", "")] = relation.get("Target", "")
    for element in workbook.iter():
        if _local_name(element.tag) != "sheet":
            continue
        relation_id = next(
            (value for key, value in element.attrib.items() if _local_name(key) == "id"), ""
        )
        target = targets.get(relation_id)
        if target:
            if target.startswith("/"):
                return posixpath.normpath(target.lstrip("/"))
            return posixpath.normpath(posixpath.join("xl", target))
    return None


def _check_inflated_size(binary: BinaryIO, limits: Limits) -> None:
    """Raise FileFailed when the first sheet or the shared strings inflate past max_file_size."""
    binary.seek(0)
    with zipfile.ZipFile(binary) as archive:
        sizes = {info.filename: info.file_size for info in archive.infolist()}
        first_sheet = _first_worksheet_part(archive)
    if first_sheet in sizes:
        sheet_size = sizes[first_sheet]
    else:
        # Cannot tell which sheet comes first: judge by the biggest.
        sheet_size = max(
            (size for name, size in sizes.items() if name.startswith("xl/worksheets/")), default=0
        )
    # zipfile never inflates a member past its recorded size, so these bound what is read.
    if max(sheet_size, sizes.get(_SHARED_STRINGS_PART, 0)) > limits.max_file_size:
        raise FileFailed(
            f"the workbook's sheet inflates past max_file_size ({limits.max_file_size} bytes)"
        )


def _unreadable_workbook(error: Exception) -> FileFailed:
    return FileFailed(f"unreadable .xlsx workbook ({type(error).__name__}); {SAVE_AS_HINT}")


def _xlsx_records(sheet_rows: Iterable[Sequence[Any]]) -> Iterator[tuple[int, list[str]]]:
    """Yield (sheet row number, cell texts) for each row, wrapping openpyxl's errors."""
    rows = iter(sheet_rows)
    number = 0
    while True:
        try:
            values = next(rows)
        except StopIteration:
            return
        except Exception as error:  # openpyxl raises many kinds on a damaged sheet
            raise _unreadable_workbook(error) from error
        # openpyxl yields one tuple per sheet row from row 1, empty ones included.
        number += 1
        yield number, [cell_text(value) for value in values]


@contextmanager
def _open_xlsx(binary: BinaryIO, limits: Limits) -> Iterator[Table]:
    """Yield the Table of the first worksheet of the workbook in `binary`."""
    _check_inflated_size(binary, limits)
    binary.seek(0)
    try:
        # A file object, not a path: openpyxl would judge a path by its extension.
        workbook = openpyxl.load_workbook(binary, read_only=True, data_only=True)
    except Exception as error:  # openpyxl raises many kinds on a damaged workbook
        raise _unreadable_workbook(error) from error
    try:
        sheets = workbook.worksheets
        if not sheets:
            raise FileFailed("no header row")
        sheet = sheets[0]
        # Trust the cells, not the sheet's stated dimensions (often the whole formatted range).
        sheet.reset_dimensions()
        records = _xlsx_records(sheet.iter_rows(values_only=True))
        header = _split_header(records, limits)
        if header is None:
            raise FileFailed("no header row")
        yield Table(
            format="xlsx",
            encoding=None,
            delimiter=None,
            header=header,
            rows=_data_rows(records, len(header), limits),
        )
    finally:
        workbook.close()
