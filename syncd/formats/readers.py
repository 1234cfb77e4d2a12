"""Streaming CSV and XLSX readers: a file in, a header and an iterator of RawRow out."""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import posixpath
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from xml.etree import ElementTree

from xxhash import xxh3_64_intdigest

from syncd.errors import FileFailed
from syncd.formats.detect import (
    CP1252_FALLBACK,
    SAVE_AS_HINT,
    UTF8_WITH_CP1252,
    Detected,
    detect_format,
    sniff_delimiter,
)
from syncd.formats.known_rows import KnownRows
from syncd.model import Limits, RawRow, has_invisible_mark, trim_visible

__all__ = ["LineBlocks", "RowDigests", "Table", "cell_text", "open_table", "row_digest"]


@dataclass(frozen=True, slots=True)
class Table:
    """A file opened for reading: how it was read, its header and its data rows (streamed).

    `digests` (CSV only) is read when the first row is: set its seed and known rows first.
    """

    format: str
    encoding: str | None
    delimiter: str | None
    header: tuple[str, ...]
    rows: Iterator[RawRow]
    digests: RowDigests | None = None
    # The same rows as whole lines of bytes, for a caller that reads plain lines itself
    # (syncd.core.columns): read first, then `rows` from where `lines.rows_after` says.
    lines: LineBlocks | None = None
    # Columns (0-based) known to hold no value at all, heading included (XLSX only: a
    # sheet's table that starts in column B leaves column A empty): no column to report.
    empty_columns: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class LineBlocks:
    """The data lines of a CSV file as bytes: `blocks()` yields whole lines (each ending in
    a line feed but for the file's last), about LINE_BLOCK bytes at a time; a line too long
    for the row reader may come alone and unfinished. `decode` turns them into text as the
    row reader does; it fails a line longer than `max_line_chars` characters.

    `rows_after(consumed, lines)`: the caller took the first `lines` data lines, `consumed`
    bytes of blocks, and leaves the rest to the table's `rows`, which then start there.

    `rows_of(block, lines)`: the rows of `block`, a block of whole lines that follows the
    first `lines` data lines, as the table's `rows` reads them (known lines skipped).
    """

    blocks: Callable[[], Iterator[bytes]]
    decode: Callable[[bytes], str]
    max_line_chars: int
    rows_after: Callable[[int, int], None]
    rows_of: Callable[[bytes, int], Iterator[RawRow]]


@contextmanager
def open_table(path: Path, limits: Limits, detected: Detected | None = None) -> Iterator[Table]:
    """Yield the Table of the file at `path`; the file is closed when the block ends.
    `detected`: its format and encoding, if already found (detect_format).

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
        if detected is None:
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


def _visible(cells: Sequence[str]) -> list[str]:
    """`cells`, those with an invisible mark trimmed of such marks and whitespace."""
    return [trim_visible(cell) if has_invisible_mark(cell) else cell for cell in cells]


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


def _cells_at_least(line: str, delimiter: str, count: int) -> bool:
    """Whether the record that starts with `line` has at least `count` cells (later lines
    only add cells): its delimiters outside quoted sections, counted until there are
    enough, so that a line of millions of cells costs a few thousand steps and no memory."""
    # A quoted section (closed, or running on to the next line), or a delimiter.
    edges = re.compile(f'("[^"]*(?:"|$))|({re.escape(delimiter)})')
    cells = 1
    for edge in edges.finditer(line):
        if edge.lastindex == 2:
            cells += 1
            if cells >= count:
                return True
    return False


def _is_blank(cells: Iterable[str]) -> bool:
    # \x1a is the end-of-file mark some DOS-era exports still append.
    return all(not cell.strip().strip("\x1a") for cell in cells)


def _header_cell(cell: str) -> str:
    return trim_visible(cell)


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
    """Yield RawRows of `records` (a sheet's), skipping blank ones, of `width` cells."""
    for line, cells in records:
        kept = _trimmed(_visible(cells), width)
        _checked(kept, line, limits)
        if _is_blank(kept):
            continue
        # A sheet's cells never shift: a row is its header's columns (those past its last
        # heading with a value anywhere included, _open_xlsx).
        values = tuple(kept[:width])
        if len(values) < width:
            values += ("",) * (width - len(values))
        yield RawRow(line=line, values=values)


# ---------------------------------------------------------------------------------------------
# CSV


_SNIFF_CHARS = 1024 * 1024
LINE_BLOCK = 1024 * 1024
# Encodings read line by line as bytes: a line break is the byte \n in each of them.
_BYTE_LINE_ENCODINGS = frozenset({"utf-8", "utf-8-sig", "cp1252", UTF8_WITH_CP1252})


def _text_codec(detected: Detected) -> tuple[str, str]:
    """Return the codec and error policy to decode the text after its BOM."""
    assert detected.encoding is not None
    if detected.encoding == "cp1252":
        # cp1252 is the fallback for anything that is not UTF-8: read it whatever it holds.
        return "cp1252", "replace"
    if detected.encoding == UTF8_WITH_CP1252:
        return "utf-8", CP1252_FALLBACK
    codec = "utf-8" if detected.encoding == "utf-8-sig" else detected.encoding
    return codec, "strict"


# Fed to the csv reader after the last line: inside a quoted field it lands in that field, which
# is how a quote never closed shows (the csv module would quietly swallow the rest of the file).
_END_SENTINEL = "\ufdd0syncd-end-of-file\ufdd1\n"
_END_MARK = _END_SENTINEL[:-1]


@dataclass(slots=True)
class RowDigests:
    """The unchanged-row fast path of a CSV file (set by the caller before reading rows).

    Every row gets a digest of its bytes (line ending left out) mixed with `seed`, which
    the caller derives from everything else that decides what a row means (header, kind,
    settings). A physical line whose digest `known` takes (KnownRows.take_line: known, not
    taken yet) is not parsed at all, only counted in `hits`.
    """

    seed: int = 0
    known: KnownRows = field(default_factory=KnownRows)
    hits: int = 0


def row_digest(body: bytes, seed: int) -> int:
    """Return the digest of a row's bytes (without its line ending) under `seed`.

    63 bits, so that it fits a signed 64-bit database column.
    """
    return xxh3_64_intdigest(body, seed) >> 1


def _lone_cr_pieces(text: str) -> list[str] | None:
    """Return `text` split after each CR not followed by LF, or None if it has none.

    A text reader with universal newlines ends a line at a lone CR (old Mac line ends).
    """
    crs = text.count("\r")
    if not crs or (crs == 1 and text.endswith("\r\n")) or (crs == 1 and text.endswith("\r")):
        return None
    pieces = _LONE_CR.split(text)
    return [piece for piece in pieces if piece] if len(pieces) > 1 else None


_LONE_CR = re.compile(r"(?<=\r)(?!\n)")


class _CsvScanner:
    """Reads records of a delimited file line by line, the header first, then the rows.

    Lines are read as bytes (or, for UTF-16 and CR-only files, as text encoded back to
    UTF-8) so that a line can be digested and skipped without decoding or parsing it. The
    csv module parses the other lines and pulls further lines itself for quoted fields that
    span lines.
    """

    def __init__(
        self, readline: Callable[[int], bytes], decode: Callable[[bytes], str], delimiter: str,
        encoding: str, limits: Limits, binary: BinaryIO | None = None,
    ) -> None:  # fmt: skip
        self._readline = readline
        self._binary = binary  # the byte file, when lines are its bytes as they are
        self._data_start = 0  # where its data lines start
        self._decode = decode
        self._encoding = encoding
        self._limits = limits
        # Room for max_columns fields of max_field_chars, each with quotes doubled; a UTF-8
        # character is at most 4 bytes. `readline` with a size keeps one hostile line
        # without line breaks from filling memory.
        self._max_line_chars = limits.max_columns * (2 * limits.max_field_chars + 3) + 2
        self._max_line_bytes = 4 * self._max_line_chars
        self._delimiter = delimiter
        self._pending: list[str] = []  # text the csv reader reads next (the current line)
        self._taken: list[bytes] = []  # lines the csv reader pulled beyond the current one
        self._at_end = False
        self._line = 0  # physical lines read so far
        self._reader = csv.reader(
            self._feed(), delimiter=delimiter, quotechar='"', doublequote=True,
            skipinitialspace=False, strict=False,
        )  # fmt: skip

    def _next_line(self) -> bytes:
        try:
            raw = self._readline(self._max_line_bytes + 1)
        except UnicodeDecodeError as error:  # the text path decodes while reading
            raise self._undecodable(self._line + len(self._taken) + 1) from error
        if len(raw) > self._max_line_bytes:
            raise self._too_long(self._line + 1)
        return raw

    def _too_long(self, line: int) -> FileFailed:
        limits = self._limits
        return FileFailed(
            f"line {line}: line is longer than max_columns ({limits.max_columns}) "
            f"fields of max_field_chars ({limits.max_field_chars} characters) can be"
        )

    def _undecodable(self, line: int) -> FileFailed:
        return FileFailed(f"near line {line}: not valid {self._encoding} text; {SAVE_AS_HINT}")

    def _text(self, raw: bytes, line: int) -> str:
        try:
            text = self._decode(raw)
        except UnicodeDecodeError as error:
            raise self._undecodable(line) from error
        if len(text) > self._max_line_chars:
            raise self._too_long(line)
        return text

    def _feed(self) -> Iterator[str]:
        """Lines for the csv reader: the current line, then more while a record goes on."""
        pending = self._pending
        while True:
            if pending:
                yield pending.pop()
                continue
            raw = self._next_line()
            if not raw:
                self._at_end = True
                yield _END_SENTINEL
                return
            self._taken.append(raw)
            text = self._text(raw, self._line + len(self._taken))
            pieces = _lone_cr_pieces(text)
            if pieces is None:
                yield text
            else:
                pending.extend(reversed(pieces[1:]))
                yield pieces[0]

    def _refuse_wide(self, text: str, line: int) -> None:
        """Fail a record whose first line alone has more than max_columns cells before the
        csv module makes a list of them all (a hostile 200 MB line of `A,A,…`: 100M
        cells, gigabytes). The first test is all an ordinary line costs."""
        most = self._limits.max_columns
        if (
            len(text) > most
            and text.count(self._delimiter) >= most
            and _cells_at_least(text, self._delimiter, most + 1)
        ):
            raise _too_many_columns(line, self._limits)

    def _parse(self, text: str, start: int) -> list[str] | None:
        """Return the cells of the record that starts with `text` on line `start`, or None
        at the end of the file. Lines the record spans beyond the first are in `_taken`."""
        self._refuse_wide(text, start)
        pieces = _lone_cr_pieces(text)
        if pieces is None:
            self._pending.append(text)
        else:
            self._pending.extend(reversed(pieces))
        try:
            cells = next(self._reader)
        except StopIteration:
            return None
        except csv.Error as error:
            raise self._unreadable(error, start) from error
        if self._at_end and any(_END_MARK in cell for cell in cells):
            raise _never_closed(start)
        return cells

    def _records(self) -> Iterator[tuple[int, list[str], int | None, bytes]]:
        """Yield (line, cells, extra lines, first line's bytes) for each record, unparsed
        lines included. Lines split at lone CRs yield one record per piece."""
        while True:
            raw = self._next_line()
            if not raw:
                return
            self._line += 1
            start = self._line
            self._taken.clear()
            cells = self._parse(self._text(raw, start), start)
            if cells is None:
                return
            yield start, cells, len(self._taken), raw
            self._line += len(self._taken)
            while self._pending:  # more pieces of a line with lone CRs
                self._taken.clear()
                self._line += 1
                cells = self._parse(self._pending.pop(), self._line)
                if cells is None:
                    return
                yield self._line, cells, None, b""
                self._line += len(self._taken)

    def header(self) -> tuple[str, ...] | None:
        """Return the first non-blank record as header cells, or None if there is none.

        A first line `sep=;` is Excel's hint of the delimiter (the sniffer took it from that
        line, as it is its only delimiter), not the header: the header is the next record.
        """
        first = True
        for line, cells, _, _ in self._records():
            cells = list(_trimmed(cells, 0))
            _checked(cells, line, self._limits)
            if _is_blank(cells):
                continue
            # (Its second, empty cell is trimmed.)
            if first and len(cells) == 1 and cells[0].strip().casefold() == "sep=":
                first = False
                continue
            return tuple(_header_cell(cell) for cell in cells)
        return None

    def line_blocks(self, width: int, digests: RowDigests) -> LineBlocks | None:
        """The data lines as bytes (see LineBlocks), or None: lines are not the file's
        bytes (UTF-16, CR line ends), or the header was not the file's first line.
        `width` and `digests` as for `rows`."""
        if self._binary is None or self._line != 1 or self._pending or self._taken:
            return None
        self._data_start = self._binary.tell()

        def rows_of(block: bytes, lines: int) -> Iterator[RawRow]:
            part = _CsvScanner(
                io.BytesIO(block).readline, self._decode, self._delimiter, self._encoding,
                self._limits,
            )  # fmt: skip
            part._line = 1 + lines  # the header's line, then the lines before the block
            return part.rows(width, digests)

        return LineBlocks(
            self._blocks, self._decode, self._max_line_chars, self._rows_after, rows_of
        )

    def _rows_after(self, consumed: int, lines: int) -> None:
        """Make `rows` start after the first `lines` data lines (`consumed` bytes)."""
        assert self._binary is not None
        self._binary.seek(self._data_start + consumed)
        self._line = 1 + lines

    def _blocks(self) -> Iterator[bytes]:
        assert self._binary is not None
        read, limit = self._binary.read, self._max_line_bytes
        rest = b""
        while block := read(LINE_BLOCK):
            block = rest + block
            end = block.rfind(b"\n") + 1
            if end:
                rest = block[end:]
                yield block[:end]
            else:
                rest = block
            if len(rest) > limit:
                yield rest  # a line too long: the caller hands the file to the row reader
                return
        if rest:
            yield rest

    def rows(self, width: int, digests: RowDigests) -> Iterator[RawRow]:
        """Yield the data rows after the header, padded to `width`; skip known lines."""
        try:
            yield from self._rows(width, digests)
        except UnicodeDecodeError as error:  # the text path decodes while reading
            raise self._undecodable(self._line + 1) from error

    def _rows(self, width: int, digests: RowDigests) -> Iterator[RawRow]:
        limits = self._limits
        max_field = limits.max_field_chars
        take, seed = digests.known.take_line, digests.seed
        readline, limit = self._readline, self._max_line_bytes + 1
        decode, reader, pending, taken = self._decode, self._reader, self._pending, self._taken
        line = self._line
        skipped = 0  # added to digests.hits at the end: this loop runs for every line
        try:
            while True:
                raw = readline(limit)
                if not raw:
                    return
                line += 1
                digest = xxh3_64_intdigest(raw.rstrip(b"\r\n"), seed) >> 1
                if take(digest):
                    skipped += 1
                    continue
                self._line = line
                try:
                    text = decode(raw)
                except UnicodeDecodeError as error:
                    raise self._undecodable(line) from error
                cr = text.find("\r")
                if len(raw) >= limit or (
                    cr >= 0 and not (cr == len(text) - 2 and text[-1] == "\n")
                ):
                    # Rare: a line too long (in bytes; _general_rows counts characters), or with
                    # lone CRs (universal newlines end a line there).
                    yield from self._general_rows(text, width)
                    line = self._line
                    continue
                # The common case: one line, one record, parsed by the csv module.
                self._refuse_wide(text, line)
                pending.append(text)
                taken.clear()
                try:
                    cells = next(reader)
                except StopIteration:
                    return
                except csv.Error as error:
                    raise self._unreadable(error, line) from error
                # A quote still open at the end of the file took syncd's end marker (even on
                # the last line itself, where no further line was taken).
                if self._at_end and any(_END_MARK in cell for cell in cells):
                    raise _never_closed(line)
                if taken:  # a quoted field spans lines: the record's bytes are all of them
                    digest = row_digest(b"".join([raw, *taken]).rstrip(b"\r\n"), seed)
                    self._line = line = line + len(taken)
                    if max(map(len, cells)) > max_field:
                        raise _field_too_long(line - len(taken), limits)
                elif len(text) > max_field and max(map(len, cells)) > max_field:
                    raise _field_too_long(line, limits)
                if taken or (not text.isascii() and has_invisible_mark(text)):
                    cells = _visible(cells)
                found = self._row(cells, width, line - len(taken), digest)
                if found is not None:
                    yield found
        finally:
            digests.hits += skipped

    def _row(self, cells: list[str], width: int, line: int, digest: int | None) -> RawRow | None:
        """Return the RawRow of a record's cells, or None if blank. A short row is padded to
        the header's `width` (Excel leaves out the empty cells at the end of rows); blank
        cells past it are dropped, and a row still longer is validation's to reject
        (core.validate.misaligned_row)."""
        if len(cells) != width:
            cells = list(_trimmed(cells, width))
            if len(cells) > self._limits.max_columns:
                raise _too_many_columns(line, self._limits)
            if len(cells) < width:
                cells += [""] * (width - len(cells))
        # The first cell settles most rows; \x1a is a DOS end-of-file mark.
        if cells and cells[0].strip().strip("\x1a") or not _is_blank(cells):
            return RawRow(line, tuple(cells), digest)
        return None

    def _general_rows(self, text: str, width: int) -> Iterator[RawRow]:
        """Yield the rows of the physical line `text` (at `_line`) whatever it holds."""
        start = self._line
        if len(text) > self._max_line_chars:
            raise self._too_long(start)
        self._taken.clear()
        cells = self._parse(text, start)
        while cells is not None:
            self._line += len(self._taken)
            _checked(cells, start, self._limits)
            row = self._row(_visible(cells), width, start, None)  # not a whole line: never skipped
            if row is not None:
                yield row
            if not self._pending:
                return
            self._taken.clear()
            self._line += 1
            start = self._line
            cells = self._parse(self._pending.pop(), start)

    def _unreadable(self, error: csv.Error, line: int) -> FileFailed:
        if "field limit" in str(error):
            return _field_too_long(line, self._limits)
        return FileFailed(f"line {line}: unreadable CSV ({error})")


def _never_closed(line: int) -> FileFailed:
    return FileFailed(f"line {line}: a quoted field is never closed (a stray '\"'?)")


def _line_source(
    binary: BinaryIO, detected: Detected
) -> tuple[Callable[[int], bytes], Callable[[bytes], str], BinaryIO | None]:
    """Return (readline of byte lines, decode of one line, and the byte file when its bytes
    are the lines as they are) for the text after the BOM."""
    assert detected.encoding is not None
    codec, errors = _text_codec(detected)
    binary.seek(detected.bom_length)
    sample = binary.read(_SNIFF_CHARS)
    binary.seek(detected.bom_length)
    cr_only = b"\r" in sample and b"\n" not in sample
    if detected.encoding in _BYTE_LINE_ENCODINGS and not cr_only:
        decode = functools.partial(bytes.decode, encoding=codec, errors=errors)
        return binary.readline, decode, binary
    # UTF-16 (a line break is two bytes) or old Mac CR line ends: universal newlines.
    text = io.TextIOWrapper(binary, encoding=codec, errors=errors, newline="")

    def readline(size: int) -> bytes:
        return text.readline(size // 4).encode("utf-8", "surrogatepass")

    return (
        readline,
        functools.partial(bytes.decode, encoding="utf-8", errors="surrogatepass"),
        None,
    )


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

    readline, decode, lines_file = _line_source(binary, detected)
    scanner = _CsvScanner(readline, decode, delimiter, detected.encoding, limits, lines_file)
    try:
        header = scanner.header()
        if header is None:
            raise FileFailed("no header row")
    except FileFailed as failure:
        failure.encoding, failure.delimiter = detected.encoding, delimiter
        raise
    digests = RowDigests()
    yield Table(
        format="csv",
        encoding=detected.encoding,
        delimiter=delimiter,
        header=header,
        rows=scanner.rows(len(header), digests),
        digests=digests,
        lines=scanner.line_blocks(len(header), digests),
    )


# ---------------------------------------------------------------------------------------------
# XLSX


# Number formats whose text differs from the plain number: IDs kept with their leading zeros
# ("000000": 1234 shows as 001234) and percentages ("0%", "0.0%": 0.25 shows as 25%).
_ZERO_PADDED = re.compile(r"0+")
_PERCENT = re.compile(r"0(?:\.(0+))?%")


def cell_text(value: object, number_format: str | None = None) -> str:
    """Return an XLSX cell value as the user sees it: `1234`, `12.5`, `2012-05-13`, `TRUE`,
    and with its `number_format`: `001234` for a zero-padded ID, `25%` for a percentage."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float) and number_format and number_format != "General":
        shown = _formatted_number(value, number_format)
        if shown is not None:
            return shown
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


def _formatted_number(value: int | float, number_format: str) -> str | None:
    """Return a number as a zero-padding or percent format shows it; None for other formats."""
    if _ZERO_PADDED.fullmatch(number_format) and float(value).is_integer():
        digits = str(abs(int(value))).zfill(len(number_format))
        return "-" + digits if value < 0 else digits
    percent = _PERCENT.fullmatch(number_format)
    if percent:
        decimals = len(percent.group(1) or "")
        return f"{value * 100:.{decimals}f}%"
    return None


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


def _check_inflated_size(binary: BinaryIO, limits: Limits) -> str | None:
    """Raise FileFailed when the first sheet or the shared strings inflate past max_file_size;
    return the first sheet's zip path (None when it cannot be told)."""
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
    return first_sheet if first_sheet in sizes else None


# The XML bytes one cell's text may take: a character escaped as `&quot;` takes six, so a
# run of text without markup longer than this is past max_field_chars whatever it holds.
_XML_BYTES_PER_CHAR = 8
# Besides, the markup of a rich-text string's runs (fonts, colours: a few hundred bytes a
# run) within one shared or inline string.
_RICH_TEXT_MARKUP = 64 * 1024
# Where a shared (`si`) or inline (`is`) string starts or ends, any namespace prefix.
_STRING_TAG = re.compile(rb"<(/?)(?:[A-Za-z_][\w.-]*:)?(?:si|is)(?=[\s/>])")
# A rich-text run (`<r>`): a string then is the sum of its runs' texts.
_RICH_RUNS = (b"<r>", b"<r ", b":r>", b":r ")


class _TextRuns:
    """Fails a workbook part holding a text past max_field_chars, fed in blocks, before
    openpyxl reads it: openpyxl builds each text whole, so one shared string, one stretch of
    whitespace or one attribute of a small zip could take gigabytes. A text is a run of
    bytes without `<`, or a shared or inline string whose rich-text runs add up."""

    def __init__(self, limits: Limits) -> None:
        self.max_chars = limits.max_field_chars
        self.longest = _XML_BYTES_PER_CHAR * limits.max_field_chars
        self.longest_string = self.longest + _RICH_TEXT_MARKUP
        self.run = 0  # bytes since the last `<` (a tag's name, then the text after it)
        self.offset = 0  # bytes fed before this block
        self.string_at: int | None = None  # where the string we are in started

    def feed(self, block: bytes) -> None:
        self._runs(block)
        self._strings(block)
        self.offset += len(block)

    def _runs(self, block: bytes) -> None:
        first = block.find(b"<")
        if first == -1:
            self.run += len(block)
            self._check(self.run, self.longest)
            return
        self._check(self.run + first, self.longest)
        # A run inside the block at least `longest` long holds a whole window of half that
        # without a `<`: a few searches a block find it, not one per tag.
        last = block.rfind(b"<")
        half = max(1, self.longest // 2)
        for start in range(first, last, half):
            if block.find(b"<", start, start + half) == -1:
                begin = block.rfind(b"<", 0, start)
                self._check(block.find(b"<", start + half) - begin - 1, self.longest)
        self.run = len(block) - last - 1

    def _strings(self, block: bytes) -> None:
        if any(tag in block for tag in _RICH_RUNS):
            # Each string of the block measured (a block of rich text is rare).
            for tag in _STRING_TAG.finditer(block):
                where = self.offset + tag.start()
                if block.startswith(b"/>", tag.end()):
                    continue  # an empty string, <si/>
                if not tag[1]:
                    self.string_at = where
                elif self.string_at is not None:
                    self._check(where - self.string_at, self.longest_string)
                    self.string_at = None
        else:
            # Only where the block's last string starts or ends matters to the next block.
            started = max(block.rfind(b"<si>"), block.rfind(b"<is>"))
            ended = max(block.rfind(b"</si>"), block.rfind(b"</is>"))
            if started > ended:
                self.string_at = self.offset + started
            elif ended != -1:
                self.string_at = None
        if self.string_at is not None:
            self._check(self.offset + len(block) - self.string_at, self.longest_string)

    def _check(self, size: int, most: int) -> None:
        if size > most:
            raise FileFailed(
                "the workbook holds a text longer than max_field_chars "
                f"({self.max_chars} characters)"
            )


def _check_text_runs(binary: BinaryIO, part: str, limits: Limits, block: int) -> None:
    """Fail the workbook when its part `part` (if it has one) holds a text past the limit."""
    binary.seek(0)
    runs = _TextRuns(limits)
    with zipfile.ZipFile(binary) as archive:
        if part not in archive.NameToInfo:
            return
        with archive.open(part) as stream:
            while chunk := stream.read(block):
                runs.feed(chunk)


def _unreadable_workbook(error: Exception) -> FileFailed:
    return FileFailed(f"unreadable .xlsx workbook ({type(error).__name__}); {SAVE_AS_HINT}")


_MERGE_REF = re.compile(rb"<(?:\w+:)?mergeCell\b[^>]*?\bref=\"([A-Z]+[0-9]+):([A-Z]+[0-9]+)\"")
# A cell element with content (a value, an inline string or a formula), not an empty styled
# one (`<c r="Z9" s="3"/>`): its column's letters. (A cell without `r` is not counted.)
_VALUE_CELL = re.compile(rb"<(?:\w+:)?c\b[^>]*?\br=\"([A-Z]{1,3})[0-9]+\"[^>]*?(?<!/)>")
# A formula cell whose value was never computed: no type (a text result has t="str") and
# no value or an empty one (a number is never empty). A program that writes workbooks
# (openpyxl, a report generator) leaves them so; Excel and LibreOffice save the value.
_UNCOMPUTED_FORMULA = re.compile(
    rb"<(?:\w+:)?c\b(?![^>]*\bt=\")[^>]*?\br=\"([A-Z]+[0-9]+)\"(?![^>]*\bt=\")[^>]*>\s*"
    rb"<(?:\w+:)?f\b[^>]*(?:/>|>[^<]*</(?:\w+:)?f>)\s*"
    rb"(?:<(?:\w+:)?v\s*/>|<(?:\w+:)?v>\s*</(?:\w+:)?v>)?\s*</(?:\w+:)?c>"
)


def _scan_sheet(
    binary: BinaryIO, part: str | None, limits: Limits, block: int = LINE_BLOCK
) -> tuple[list[tuple[int, int, int, int]], set[int]]:
    """Return the merged cell ranges of the worksheet at zip path `part` as (first row,
    first column, last row, last column), 1-based, and the columns (1-based) holding a
    cell with a value; raise FileFailed at a formula without a computed value. openpyxl's
    read-only sheets give neither (the ranges come after the cells, a formula's missing
    value reads as an empty cell, and a sheet's stated dimensions are often the whole
    formatted range): the sheet's XML is scanned once, in blocks of `block` bytes, which
    also bounds its texts (_TextRuns)."""
    from openpyxl.utils.cell import column_index_from_string, range_boundaries

    if part is None:
        return [], set()
    binary.seek(0)
    ranges: list[tuple[int, int, int, int]] = []
    columns: set[bytes] = set()  # the letters of columns with a value somewhere
    runs = _TextRuns(limits)
    with zipfile.ZipFile(binary) as archive, archive.open(part) as sheet:
        carry = b""
        while chunk := sheet.read(block):
            runs.feed(chunk)
            text = carry + chunk
            columns.update(_VALUE_CELL.findall(text))
            if (formula := _UNCOMPUTED_FORMULA.search(text)) is not None:
                raise FileFailed(
                    f"cell {formula[1].decode()} holds a formula whose value was never "
                    "computed (the workbook was written by a program): open it in a "
                    "spreadsheet application and save it, or save it as CSV"
                )
            end = 0
            for match in _MERGE_REF.finditer(text):
                first_col, first_row, last_col, last_row = range_boundaries(
                    f"{match[1].decode()}:{match[2].decode()}"
                )
                ranges.append((first_row, first_col, last_row, last_col))
                end = match.end()
            # A tag cut by the chunk's end: a mergeCell, or a cell with its formula (up to
            # 8,192 characters in Excel).
            cut = len(text) - 200
            near = max(0, len(text) - 40_000)
            cell = max(text.rfind(b"<c ", near), text.rfind(b":c ", near))
            if cell != -1:
                cut = min(cut, cell)
            carry = text[max(end, cut) :]
    return ranges, {column_index_from_string(letters.decode()) for letters in columns}


def _xlsx_records(
    sheet_rows: Iterable[Sequence[Any]], merged: Sequence[tuple[int, int, int, int]] = ()
) -> Iterator[tuple[int, list[str]]]:
    """Yield (sheet row number, cell texts) for each row of openpyxl's read-only cells,
    wrapping openpyxl's errors. Every cell of a merged range shows its first cell's text,
    as the user sees it."""
    rows = iter(sheet_rows)
    number = 0
    shown: dict[int, str] = {}  # a merged range's text, by its index in `merged`
    while True:
        try:
            values = next(rows)
        except StopIteration:
            return
        except Exception as error:  # openpyxl raises many kinds on a damaged sheet
            raise _unreadable_workbook(error) from error
        # openpyxl yields one tuple per sheet row from row 1, empty ones included.
        number += 1
        texts = [cell_text(cell.value, cell.number_format) for cell in values]
        for index, (first_row, first_col, last_row, last_col) in enumerate(merged):
            if first_row <= number <= last_row:
                if number == first_row:
                    shown[index] = texts[first_col - 1] if first_col <= len(texts) else ""
                if len(texts) < last_col:
                    texts.extend([""] * (last_col - len(texts)))
                texts[first_col - 1 : last_col] = [shown[index]] * (last_col - first_col + 1)
        yield number, texts


@contextmanager
def _open_xlsx(binary: BinaryIO, limits: Limits) -> Iterator[Table]:
    """Yield the Table of the first worksheet of the workbook in `binary`."""
    import openpyxl  # here: a CSV run need not pay for importing it

    first_sheet = _check_inflated_size(binary, limits)
    # Both before openpyxl opens the workbook: it reads the shared strings whole then, and
    # parses the sheet's start (a huge attribute there took expat minutes).
    _check_text_runs(binary, _SHARED_STRINGS_PART, limits, LINE_BLOCK)
    merged, valued = _scan_sheet(binary, first_sheet, limits)
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
        # Cells, not values: what the user sees depends on the number format too.
        widest = max(valued, default=0)
        records = _xlsx_records(sheet.iter_rows(), merged)
        header = _split_header(records, limits)
        if header is None:
            # An instructions sheet in front of the data one, say: SPEC §2.2 reads the first.
            others = " (syncd reads the first sheet only)" if len(sheets) > 1 else ""
            raise FileFailed(f"no header row in the first sheet, {sheet.title!r}{others}")
        if len(header) < widest <= limits.max_columns:
            # Values past the last named column (a notes column without a heading): columns
            # without a header, kept as attributes as one in the middle is (SPEC §2.2: "not
            # dropped"). The header is the first row with a value: none are above it.
            header += ("",) * (widest - len(header))
        yield Table(
            format="xlsx",
            encoding=None,
            delimiter=None,
            header=header,
            rows=_data_rows(records, len(header), limits),
            # Known only where the scan saw the cells (a sheet without `r` says nothing).
            empty_columns=frozenset(
                index for index in range(len(header)) if valued and index + 1 not in valued
            ),
        )
    finally:
        workbook.close()
