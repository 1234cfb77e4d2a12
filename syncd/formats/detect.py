"""Finding a file's format, text encoding and delimiter from its content (SPEC §2.2)."""

from __future__ import annotations

import codecs
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

from syncd.errors import FileFailed
from syncd.formats.headers import detect_kind

__all__ = [
    "DELIMITERS",
    "READ_CHUNK_SIZE",
    "SAVE_AS_HINT",
    "Detected",
    "detect_format",
    "detect_kind",
    "sniff_delimiter",
]

SAVE_AS_HINT = "save it as .xlsx or CSV"

# Candidate delimiters, in the order that breaks ties.
DELIMITERS: tuple[str, ...] = (",", ";", "\t", "|")

READ_CHUNK_SIZE = 256 * 1024
_BLANK_LINE_CHARS = ' \t\r\n\f\v\xa0"' + "".join(DELIMITERS)
_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# Well-known binary formats whose first bytes may hold no NUL byte.
_BINARY_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "a PDF document"),
    (b"PK\x05\x06", "an empty zip archive"),
    (b"PK\x07\x08", "a zip archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\xfd7zXZ\x00", "an xz archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"{\\rtf", "an RTF document"),
)
# Markup that spreadsheet tools save under spreadsheet names: a web SIS's "Export to Excel"
# (an HTML table named .xls) or Excel's "XML Spreadsheet 2003". Text, but never CSV: read as
# CSV they would fail later with a misleading reason (no identifier column).
_MARKUP_START: tuple[tuple[bytes, str], ...] = (
    (b"<!doctype html", "an HTML page"),
    (b"<html", "an HTML page"),
    (b"<table", "an HTML table"),
    (b"<?xml", "an XML document"),
)
_MARKUP_PEEK = 1024
# A JSON export (an API's users list, say): an object, or an array of objects, strings or
# arrays. No header row starts so.
_JSON_START = re.compile(rb'(\{\s*["}]|\[\s*[\[{"\]])')


@dataclass(frozen=True, slots=True)
class Detected:
    """What a file holds: format "csv" or "xlsx", and for text its encoding and BOM length."""

    format: str
    encoding: str | None = None
    bom_length: int = 0


def _fail_binary(what: str) -> FileFailed:
    return FileFailed(f"{what}, not a spreadsheet or text file; {SAVE_AS_HINT}")


def _is_xlsx(binary: BinaryIO) -> bool:
    """Return whether the zip in `binary` is an .xlsx workbook; raise FileFailed if damaged."""
    try:
        with zipfile.ZipFile(binary) as archive:
            return "xl/workbook.xml" in archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise FileFailed(f"a damaged zip archive ({error}); {SAVE_AS_HINT}") from error


# A UTF-8 file with bytes that are not UTF-8 (a row typed in a cp1252 editor): each such
# byte is read as cp1252, the rest as UTF-8 (SPEC §2.2: "cp1252 as the fallback for bytes that
# are not UTF-8"), so the file's UTF-8 names are never garbled into "ZoÃ«".
UTF8_WITH_CP1252 = "utf-8+cp1252"
CP1252_FALLBACK = "syncd-cp1252"


def _cp1252_fallback(error: UnicodeError) -> tuple[str, int]:
    assert isinstance(error, UnicodeDecodeError)
    return error.object[error.start : error.end].decode("cp1252", "replace"), error.end


codecs.register_error(CP1252_FALLBACK, _cp1252_fallback)
_UTF8_CHARACTER = re.compile("[^\x00-\x7f\udc80-\udcff]")


def _scan_text(binary: BinaryIO) -> str:
    """Return the encoding of the rest of `binary`: "utf-8" if it is valid UTF-8, else
    "utf-8+cp1252" if it holds UTF-8 characters too, else "cp1252". Raises FileFailed on NUL
    bytes.

    Reads in chunks so that memory stays bounded whatever the file size.
    """
    strict = codecs.getincrementaldecoder("utf-8")()
    # After the first byte that is not UTF-8: such bytes decode to lone surrogates.
    lenient: codecs.IncrementalDecoder | None = None
    utf8_characters = False  # seen: non-ASCII characters that are UTF-8
    while chunk := binary.read(READ_CHUNK_SIZE):
        if b"\x00" in chunk:
            raise _fail_binary("binary content (NUL bytes)")
        if lenient is None:
            pending = strict.getstate()[0]
            # Pure ASCII needs no decoding, as long as no multi-byte sequence is pending.
            if chunk.isascii() and not pending:
                continue
            try:
                strict.decode(chunk)
                utf8_characters = True
                continue
            except UnicodeDecodeError:
                lenient = codecs.getincrementaldecoder("utf-8")("surrogateescape")
                chunk = pending + chunk
        if not utf8_characters:
            text = lenient.decode(chunk)
            utf8_characters = _UTF8_CHARACTER.search(text) is not None
    if lenient is None:
        try:
            strict.decode(b"", final=True)
            fallbacks = False
        except UnicodeDecodeError:  # a sequence cut short at the end
            fallbacks = True
    else:
        fallbacks = True
    if not fallbacks:
        return "utf-8"
    return UTF8_WITH_CP1252 if utf8_characters else "cp1252"


def detect_format(binary: BinaryIO) -> Detected:
    """Return the format and encoding of the seekable file `binary` from its content.

    Raises FileFailed for old .xls workbooks, other binary formats and zips that are not
    workbooks. Leaves `binary` at an unspecified position.
    """
    binary.seek(0)
    head = binary.read(16)
    if head.startswith(_ZIP_MAGIC):
        binary.seek(0)
        if _is_xlsx(binary):
            return Detected(format="xlsx")
        raise _fail_binary("a zip archive that is not an .xlsx workbook")
    if head.startswith(_OLE_MAGIC):
        raise FileFailed(
            f"an old binary Excel .xls (or password-protected) workbook; {SAVE_AS_HINT}"
        )
    for magic, what in _BINARY_MAGIC:
        if head.startswith(magic):
            raise _fail_binary(what)
    binary.seek(0)
    start = binary.read(_MARKUP_PEEK).removeprefix(codecs.BOM_UTF8).lstrip().lower()
    for markup, what in _MARKUP_START:
        if start.startswith(markup):
            raise FileFailed(f"{what}, not a spreadsheet or CSV file; {SAVE_AS_HINT}")
    if _JSON_START.match(start):
        raise FileFailed(f"JSON, not a spreadsheet or CSV file; {SAVE_AS_HINT}")

    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):  # before UTF-16's
        raise FileFailed(f"UTF-32 text, which syncd does not read; {SAVE_AS_HINT}")
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            if encoding == "utf-8-sig":
                binary.seek(len(bom))
                if _scan_text(binary) != "utf-8":  # a stray cp1252 byte, as without a BOM
                    encoding = UTF8_WITH_CP1252
            # UTF-16 text is full of NUL bytes; its decoder reports bad input while reading.
            return Detected(format="csv", encoding=encoding, bom_length=len(bom))

    binary.seek(0)
    if _looks_like_utf16(binary.read(4096)):
        raise FileFailed(
            "UTF-16 text without a byte order mark; save it as CSV UTF-8, or as Unicode text "
            "(which has one)"
        )
    binary.seek(0)
    return Detected(format="csv", encoding=_scan_text(binary))


def _looks_like_utf16(head: bytes) -> bool:
    """Whether text starts as UTF-16 does without its BOM: every other byte NUL (ASCII)."""
    pairs = len(head) // 2
    return pairs >= 2 and max(head[0::2].count(0), head[1::2].count(0)) > 0.9 * pairs


def sniff_delimiter(lines: Iterable[str], max_chars: int = 1024 * 1024) -> str:
    """Return the delimiter most frequent outside quotes in the first non-blank record.

    Ties go to the earlier of `,` `;` tab `|`; no candidate at all gives ",". Reads at most
    `max_chars` characters of the record.
    """
    counts = dict.fromkeys(DELIMITERS, 0)
    in_quotes = False
    at_field_start = True
    started = False
    seen = 0
    for line in lines:
        # Lines of only separators are blank rows, skipped by the reader as well.
        if not started and not line.strip(_BLANK_LINE_CHARS):
            continue
        started = True
        index = 0
        length = len(line)
        while index < length:
            char = line[index]
            if in_quotes:
                if char == '"':
                    if index + 1 < length and line[index + 1] == '"':
                        index += 1  # a doubled quote is a literal quote
                    else:
                        in_quotes = False
            elif char == '"' and at_field_start:
                # As in the csv module, a quote opens a quoted field only at the field's start.
                in_quotes = True
            elif char in counts:
                counts[char] += 1
                at_field_start = True
                index += 1
                continue
            at_field_start = False
            index += 1
        seen += length
        if not in_quotes or seen >= max_chars:
            break
    best = max(DELIMITERS, key=lambda delimiter: counts[delimiter])
    return best if counts[best] else ","
