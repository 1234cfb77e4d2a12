"""syncd.formats.readers: format and encoding detection, CSV and XLSX rows, limits."""

from __future__ import annotations

import csv
import datetime as dt
import tracemalloc
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import openpyxl
import pytest

from syncd.errors import FileFailed
from syncd.formats.detect import READ_CHUNK_SIZE, sniff_delimiter
from syncd.formats.known_rows import KnownRows
from syncd.formats.readers import Table, _scan_sheet, _TextRuns, cell_text, open_table
from syncd.model import Limits, RawRow

NAMES = ("Müller", "Sørensen", "Nuñez", "O'Brien", "Zoë")
PEOPLE_CSV = "SyncID,First name,Last name\n" + "".join(
    f"S{number},Kim,{name}\n" for number, name in enumerate(NAMES, start=1)
)
PEOPLE_ROWS = [
    RawRow(line=number + 1, values=(f"S{number}", "Kim", name))
    for number, name in enumerate(NAMES, start=1)
]


def write(tmp_path: Path, data: bytes | str, name: str = "students.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def read(path: Path, limits: Limits | None = None) -> tuple[Table, list[RawRow]]:
    """The table and its rows, digests left out (tests of digests read them themselves)."""
    with open_table(path, limits or Limits()) as table:
        return table, [row._replace(digest=None) for row in table.rows]


def read_failure(path: Path, limits: Limits | None = None) -> str:
    with pytest.raises(FileFailed) as caught:
        read(path, limits)
    return str(caught.value)


# --- delimiters and line endings ----------------------------------------------------------------


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiter_is_sniffed_from_the_header(tmp_path: Path, delimiter: str) -> None:
    path = write(tmp_path, PEOPLE_CSV.replace(",", delimiter))
    table, rows = read(path)
    assert table.delimiter == delimiter
    assert table.header == ("SyncID", "First name", "Last name")
    assert rows == PEOPLE_ROWS


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_crlf_lf_and_cr_line_endings_read_alike(tmp_path: Path, newline: str) -> None:
    path = write(tmp_path, PEOPLE_CSV.replace("\n", newline))
    _, rows = read(path)
    assert rows == PEOPLE_ROWS


def test_missing_final_newline_keeps_last_row(tmp_path: Path) -> None:
    path = write(tmp_path, PEOPLE_CSV.rstrip("\n"))
    _, rows = read(path)
    assert rows == PEOPLE_ROWS


def test_delimiter_inside_quotes_does_not_count(tmp_path: Path) -> None:
    path = write(tmp_path, '"Name, given";"Name, family";Grade\nZoë;Müller;5\n')
    table, rows = read(path)
    assert table.delimiter == ";"
    assert table.header == ("Name, given", "Name, family", "Grade")
    assert rows == [RawRow(line=2, values=("Zoë", "Müller", "5"))]


def test_single_column_file_defaults_to_comma(tmp_path: Path) -> None:
    table, rows = read(write(tmp_path, "Email\nzoe@example.org\n"))
    assert table.delimiter == ","
    assert rows == [RawRow(line=2, values=("zoe@example.org",))]


def test_delimiter_ties_go_to_comma_then_semicolon() -> None:
    assert sniff_delimiter(["a;b,c\n"]) == ","
    assert sniff_delimiter(["a;b|c\n"]) == ";"
    assert sniff_delimiter(["a\tb|c\n"]) == "\t"


def test_delimiter_is_sniffed_across_a_multiline_quoted_header() -> None:
    assert sniff_delimiter(["\n", '"First\n', 'name";Last;Grade\n', "a,b,c,d,e\n"]) == ";"


# --- encodings ----------------------------------------------------------------------------------


def test_utf8_without_bom_is_read(tmp_path: Path) -> None:
    table, rows = read(write(tmp_path, PEOPLE_CSV.encode("utf-8")))
    assert table.encoding == "utf-8"
    assert rows == PEOPLE_ROWS


def test_utf8_with_bom_is_read_and_bom_left_out_of_header(tmp_path: Path) -> None:
    table, rows = read(write(tmp_path, PEOPLE_CSV.encode("utf-8-sig")))
    assert table.encoding == "utf-8-sig"
    assert table.header[0] == "SyncID"
    assert rows == PEOPLE_ROWS


@pytest.mark.parametrize("delimiter", [";", ",", "|", "\t"])
def test_excels_sep_hint_line_gives_the_delimiter_and_is_not_the_header(
    tmp_path: Path, delimiter: str
) -> None:
    text = f"SEP={delimiter}\r\n" + PEOPLE_CSV.replace(",", delimiter)
    table, rows = read(write(tmp_path, text))
    assert (table.delimiter, table.header) == (delimiter, ("SyncID", "First name", "Last name"))
    assert rows == [row._replace(line=row.line + 1) for row in PEOPLE_ROWS]  # lines as in the file


def test_utf16_le_with_bom_is_read(tmp_path: Path) -> None:
    data = b"\xff\xfe" + PEOPLE_CSV.replace(",", "\t").replace("\n", "\r\n").encode("utf-16-le")
    table, rows = read(write(tmp_path, data, "students.txt"))
    assert (table.encoding, table.delimiter) == ("utf-16-le", "\t")
    assert table.header == ("SyncID", "First name", "Last name")
    assert rows == PEOPLE_ROWS


def test_utf16_be_with_bom_is_read(tmp_path: Path) -> None:
    data = b"\xfe\xff" + PEOPLE_CSV.encode("utf-16-be")
    table, rows = read(write(tmp_path, data))
    assert table.encoding == "utf-16-be"
    assert table.header == ("SyncID", "First name", "Last name")
    assert rows == PEOPLE_ROWS


def test_cp1252_is_the_fallback_for_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    table, rows = read(
        write(tmp_path, b"First name,Last name\r\nZo\xeb,M\xfcller\r\nAna,Nu\xf1ez\r\n")
    )
    assert table.encoding == "cp1252"
    assert rows == [
        RawRow(line=2, values=("Zoë", "Müller")),
        RawRow(line=3, values=("Ana", "Nuñez")),
    ]


def test_cp1252_is_found_even_when_the_bad_byte_is_far_into_the_file(tmp_path: Path) -> None:
    filler = "".join(f"S{number},Kim,Smith\n" for number in range(200_000))  # many chunks
    data = ("SyncID,First name,Last name\n" + filler).encode("ascii") + b"S0,Kim,M\xfcller\n"
    table, rows = read(write(tmp_path, data))
    assert table.encoding == "cp1252"
    assert rows[-1].values == ("S0", "Kim", "Müller")


def test_a_utf8_file_with_a_few_cp1252_bytes_reads_each_byte_as_what_it_is(
    tmp_path: Path,
) -> None:
    # A UTF-8 export with a row typed in a cp1252 editor: the UTF-8 names stay themselves
    # (never "ZoÃ«"), the bytes that are not UTF-8 are read as cp1252 (SPEC §2.2).
    filler = "".join(f"S{number},Zoë,Nuñez\n" for number in range(100_000))  # many chunks
    data = (
        "SyncID,First name,Last name\nS1,Zoë,Øster\n".encode()
        + b"S2,Ana,M\xfcller\n"
        + filler.encode()
        + b"S3,J\xf6rg,K\xe4fer\x81\n"
    )
    table, rows = read(write(tmp_path, data))
    assert table.encoding == "utf-8+cp1252"
    assert rows[:2] == [
        RawRow(line=2, values=("S1", "Zoë", "Øster")),
        RawRow(line=3, values=("S2", "Ana", "Müller")),
    ]
    assert rows[-2].values == ("S99999", "Zoë", "Nuñez")
    assert rows[-1].values == ("S3", "Jörg", "Käfer\ufffd")  # 0x81: no cp1252 character


def test_a_utf8_sequence_cut_short_at_the_end_is_read_as_cp1252(tmp_path: Path) -> None:
    table, rows = read(write(tmp_path, "First name,Last name\nZoë,Ann".encode() + b"\xc3"))
    assert rows == [RawRow(line=2, values=("Zoë", "AnnÃ"))]
    assert table.encoding == "utf-8+cp1252"


def test_utf8_character_split_across_read_chunks_stays_utf8(tmp_path: Path) -> None:
    header = "SyncID,First name,Last name\n"
    # Filler rows put the two bytes of "ü" on both sides of a read-chunk boundary.
    room = 4 * READ_CHUNK_SIZE - 1 - len(header) - len("S1,Kim,M")
    row = "S0,Kim," + "x" * 56 + "\n"
    count, rest = divmod(room, len(row))
    last_row = "S0,Kim," + "y" * (rest + len(row) - 8) + "\n"
    filler = row * (count - 1) + last_row
    data = (header + filler + "S1,Kim,Müller\n").encode("utf-8")
    boundary = 4 * READ_CHUNK_SIZE
    assert data[boundary - 1 : boundary + 1] == "ü".encode()
    table, rows = read(write(tmp_path, data))
    assert table.encoding == "utf-8"
    assert rows[-1].values == ("S1", "Kim", "Müller")


def test_utf16_with_odd_trailing_byte_fails_with_reason(tmp_path: Path) -> None:
    data = b"\xff\xfe" + "Name\nZoë\n".encode("utf-16-le") + b"\x00\xd8"
    assert "utf-16-le" in read_failure(write(tmp_path, data))


# --- quoting and line numbers -------------------------------------------------------------------


def test_quoted_field_with_newline_keeps_physical_line_numbers(tmp_path: Path) -> None:
    data = (
        "SyncID,Name,Note\r\n"
        'S1,Zoë,"three\r\nline\r\nnote"\r\n'
        "S2,Müller,plain\r\n"
        'S3,"O\'Brien, Sean","say ""hi"""\r\n'
    )
    _, rows = read(write(tmp_path, data))
    assert rows == [
        RawRow(line=2, values=("S1", "Zoë", "three\r\nline\r\nnote")),
        RawRow(line=5, values=("S2", "Müller", "plain")),
        RawRow(line=6, values=("S3", "O'Brien, Sean", 'say "hi"')),
    ]


def test_blank_rows_are_skipped_but_line_numbers_stay_physical(tmp_path: Path) -> None:
    data = "\n\nSyncID;Name\n\nS1;Sørensen\n ; \n;;;\nS2;Nuñez\n\n"
    table, rows = read(write(tmp_path, data))
    assert table.header == ("SyncID", "Name")
    assert rows == [
        RawRow(line=5, values=("S1", "Sørensen")),
        RawRow(line=8, values=("S2", "Nuñez")),
    ]


def test_unclosed_quote_fails_instead_of_swallowing_the_rest(tmp_path: Path) -> None:
    reason = read_failure(write(tmp_path, 'SyncID,Name\nS1,"Zoë\nS2,Müller\nS3,Nuñez\n'))
    assert "line 2" in reason
    assert "never closed" in reason


@pytest.mark.parametrize(
    "last_line",
    ['S2,"Müller\n', 'S2,"Müller', 'S2,"Müller,b@x.org\r\n', 'S2,Müller,"4\n'],
)
def test_a_quote_never_closed_on_the_last_line_fails_too(tmp_path: Path, last_line: str) -> None:
    # The csv module ends the field at the end of the file; syncd's end marker was kept in it.
    data = "SyncID,Name,Grade\nS1,Zoë,5\n" + last_line
    reason = read_failure(write(tmp_path, data))
    assert "line 3" in reason and "never closed" in reason


def test_quote_inside_unquoted_field_is_literal(tmp_path: Path) -> None:
    _, rows = read(write(tmp_path, "SyncID,Name\nS1,O'Brien 5'11\"\n"))
    assert rows == [RawRow(line=2, values=("S1", "O'Brien 5'11\""))]


def test_short_rows_are_padded_and_long_rows_keep_extra_cells(tmp_path: Path) -> None:
    _, rows = read(write(tmp_path, "A,B,C\n1\n1,2,3,4\n1,2,3,,\n"))
    assert rows == [
        RawRow(line=2, values=("1", "", "")),
        RawRow(line=3, values=("1", "2", "3", "4")),
        RawRow(line=4, values=("1", "2", "3")),  # empty cells past the header are dropped
    ]


def test_header_cells_are_stripped_of_whitespace_and_bom(tmp_path: Path) -> None:
    table, _ = read(
        write(tmp_path, "\ufeff\ufeff SyncID ,\xa0First name\t,Last name,,\nS1,Zoë,M\n")
    )
    assert table.header == ("SyncID", "First name", "Last name")


def test_data_cells_are_kept_as_written(tmp_path: Path) -> None:
    _, rows = read(write(tmp_path, "SyncID,Name\n S1 ,  Zoë\n"))
    assert rows == [RawRow(line=2, values=(" S1 ", "  Zoë"))]


def test_rows_are_an_iterator_not_a_list(tmp_path: Path) -> None:
    with open_table(write(tmp_path, PEOPLE_CSV), Limits()) as table:
        assert isinstance(table.rows, Iterator)
        assert next(table.rows)._replace(digest=None) == PEOPLE_ROWS[0]


# --- failures -----------------------------------------------------------------------------------


def test_empty_file_fails(tmp_path: Path) -> None:
    assert read_failure(write(tmp_path, b"")) == "empty file"


@pytest.mark.parametrize("data", [b"\n\n\r\n", b"  \n\t\n", b",,,\n, ,\n"])
def test_file_with_only_blank_lines_has_no_header_row(tmp_path: Path, data: bytes) -> None:
    assert read_failure(write(tmp_path, data)) == "no header row"


def test_file_over_max_file_size_fails(tmp_path: Path) -> None:
    reason = read_failure(write(tmp_path, PEOPLE_CSV), Limits(max_file_size=20))
    assert reason == "file is larger than max_file_size (20 bytes)"


def test_old_xls_fails_with_save_as_hint(tmp_path: Path) -> None:
    data = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504
    reason = read_failure(write(tmp_path, data, "contacts.xls"))
    assert ".xls" in reason
    assert "save it as .xlsx or CSV" in reason


def test_zip_that_is_not_a_workbook_fails_with_save_as_hint(tmp_path: Path) -> None:
    path = tmp_path / "students.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("users.csv", PEOPLE_CSV)
    assert "save it as .xlsx or CSV" in read_failure(path)


def test_damaged_zip_fails_with_save_as_hint(tmp_path: Path) -> None:
    reason = read_failure(write(tmp_path, b"PK\x03\x04" + b"garbage" * 10, "students.xlsx"))
    assert "save it as .xlsx or CSV" in reason


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_without_a_bom_fails_saying_so(tmp_path: Path, codec: str) -> None:
    reason = read_failure(write(tmp_path, "SyncID,Name\nS1,Zoë\n".encode(codec)))
    assert reason.startswith("UTF-16 text without a byte order mark; save it as CSV UTF-8")


@pytest.mark.parametrize("codec", ["utf-32", "utf-32-be"])
def test_utf32_text_fails_with_the_save_as_hint_not_as_utf16(tmp_path: Path, codec: str) -> None:
    text = "SyncID,Name\nS1,Zoë\n"
    content = text.encode(codec) if codec == "utf-32" else b"\x00\x00\xfe\xff" + text.encode(codec)
    reason = read_failure(write(tmp_path, content))
    assert reason == "UTF-32 text, which syncd does not read; save it as .xlsx or CSV"


def test_nul_bytes_in_a_file_fail_as_binary(tmp_path: Path) -> None:
    reason = read_failure(write(tmp_path, b"SyncID,Name\nS1,\x00\x01\x02\xff\x00garbage\n"))
    assert "binary content (NUL bytes)" in reason and "save it as .xlsx or CSV" in reason


def test_a_utf8_bom_file_with_a_stray_cp1252_byte_reads_that_byte_as_cp1252(
    tmp_path: Path,
) -> None:
    data = b"\xef\xbb\xbfSyncID,Name\nS1,Zo\xc3\xab\nS2,Ren\xe9\n"
    table, rows = read(write(tmp_path, data))
    assert table.encoding == "utf-8+cp1252"
    assert table.header == ("SyncID", "Name")
    assert [row.values for row in rows] == [("S1", "Zoë"), ("S2", "René")]


def test_pdf_fails_with_save_as_hint(tmp_path: Path) -> None:
    reason = read_failure(write(tmp_path, b"%PDF-1.7\nstudents list\n", "students.csv"))
    assert "PDF" in reason
    assert "save it as .xlsx or CSV" in reason


def test_field_over_max_field_chars_fails(tmp_path: Path) -> None:
    path = write(tmp_path, "SyncID,Note\nS1,short\nS2," + "x" * 51 + "\n")
    with open_table(path, Limits(max_field_chars=50)) as table:
        assert next(table.rows).line == 2
        with pytest.raises(FileFailed, match="max_field_chars") as caught:
            next(table.rows)
    assert "line 3" in str(caught.value)


def test_multiline_quoted_field_over_max_field_chars_fails(tmp_path: Path) -> None:
    note = "\n".join(["y" * 20] * 10)
    path = write(tmp_path, f'SyncID,Note\nS1,"{note}"\n')
    assert "max_field_chars" in read_failure(path, Limits(max_field_chars=100))


def test_field_limit_of_the_csv_module_is_never_lowered(tmp_path: Path) -> None:
    previous = csv.field_size_limit()
    try:
        csv.field_size_limit(10_000_000)
        read(write(tmp_path, PEOPLE_CSV), Limits(max_field_chars=10))
        assert csv.field_size_limit() == 10_000_000
    finally:
        csv.field_size_limit(previous)


def test_row_over_max_columns_fails(tmp_path: Path) -> None:
    path = write(tmp_path, "A,B,C\n1,2,3\n" + ",".join("x" * 6) + "\n")
    reason = read_failure(path, Limits(max_columns=5))
    assert "max_columns" in reason
    assert "line 3" in reason


@pytest.mark.parametrize("quoted", [False, True])
def test_a_hostile_wide_row_fails_before_its_cells_are_made(tmp_path: Path, quoted: bool) -> None:
    """2M cells on one 4-6 MB line: a list of them all would take over 100 MB."""
    cell = '"x"' if quoted else "x"
    path = write(tmp_path, "A,B,C\n1,2,3\n" + ",".join([cell] * 2_000_000) + "\n")
    tracemalloc.start()
    try:
        reason = read_failure(path, Limits())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert reason == "line 3: row has more than max_columns (1000) cells"
    assert peak < 40_000_000


def test_delimiters_inside_quotes_are_no_cells_of_a_wide_row(tmp_path: Path) -> None:
    notes = '"' + "," * 2_000 + '"'
    table, rows = read(write(tmp_path, f"A,B\n1,{notes}\n"))
    assert rows[0].values == ("1", "," * 2_000)


def test_header_over_max_columns_fails_on_open(tmp_path: Path) -> None:
    path = write(tmp_path, ",".join(f"C{number}" for number in range(6)) + "\n")
    with pytest.raises(FileFailed, match="max_columns"):
        open_table(path, Limits(max_columns=5)).__enter__()


def test_line_without_line_breaks_is_cut_off_by_the_limits(tmp_path: Path) -> None:
    path = write(tmp_path, "A,B\n" + "x" * 10_000)
    limits = Limits(max_field_chars=100, max_columns=10)
    assert "max_field_chars" in read_failure(path, limits)


def test_memory_does_not_grow_with_file_size(tmp_path: Path) -> None:
    path = tmp_path / "students.csv"
    with path.open("w", encoding="utf-8") as file:
        file.write("SyncID,First name,Last name,Email\n")
        for number in range(60_000):
            file.write(f"S{number},Zoë,Müller,zoe{number}@example.org\n")
    assert path.stat().st_size > 2_400_000
    tracemalloc.start()
    try:
        with open_table(path, Limits()) as table:
            count = sum(1 for _ in table.rows)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 60_000
    # A few read chunks and their text, well under the file's size (reading it all would not be).
    assert peak < 1_500_000


# --- format from content ------------------------------------------------------------------------


def test_csv_named_xlsx_is_read_as_csv(tmp_path: Path) -> None:
    table, rows = read(write(tmp_path, PEOPLE_CSV, "students.xlsx"))
    assert table.format == "csv"
    assert rows == PEOPLE_ROWS


def test_csv_without_extension_is_read(tmp_path: Path) -> None:
    table, _ = read(write(tmp_path, PEOPLE_CSV, "students"))
    assert table.format == "csv"


# --- XLSX ---------------------------------------------------------------------------------------


def write_xlsx(path: Path, rows: list[list[object]], extra_sheet: bool = False) -> Path:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    if extra_sheet:
        workbook.create_sheet("Second").append(["Other", "Sheet"])
    workbook.save(path)
    return path


def test_xlsx_reads_first_sheet_with_header_in_first_non_empty_row(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "students.xlsx",
        [
            [],
            [None, "  SyncID ", "Last name", "Born", "Account #", "Grade", "Active"],
            [None, "S1", "Müller", dt.datetime(2012, 5, 13), 1234, 5.0, True],
            [None, None, None, None, None, None, None],
            [None, "S2", "Sørensen", dt.date(2011, 1, 2), 12345678901, 12.5, False],
        ],
        extra_sheet=True,
    )
    table, rows = read(path)
    assert (table.format, table.encoding, table.delimiter) == ("xlsx", None, None)
    assert table.header == ("", "SyncID", "Last name", "Born", "Account #", "Grade", "Active")
    assert rows == [
        RawRow(line=3, values=("", "S1", "Müller", "2012-05-13", "1234", "5", "TRUE")),
        RawRow(line=5, values=("", "S2", "Sørensen", "2011-01-02", "12345678901", "12.5", "FALSE")),
    ]


def test_xlsx_merged_cells_read_as_the_user_sees_them(tmp_path: Path) -> None:
    # SPEC §2.2: every cell of a merged range shows its first cell's value.
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["SyncID", "Name", None, "School"])
    sheet.append(["S1", "Ann", "Lee", "North"])
    sheet.append(["S2", "Bob", None, None])
    sheet.append(["S3", "Cy", "Ray", None])
    sheet.merge_cells("B1:C1")  # a heading over two columns
    sheet.merge_cells("D2:D4")
    sheet.merge_cells("C2:C3")
    workbook.save(tmp_path / "students.xlsx")
    table, rows = read(tmp_path / "students.xlsx")
    assert table.header == ("SyncID", "Name", "Name", "School")
    assert [row.values for row in rows] == [
        ("S1", "Ann", "Lee", "North"),
        ("S2", "Bob", "Lee", "North"),
        ("S3", "Cy", "Ray", "North"),
    ]


def _with_sheet_xml(path: Path, change: Callable[[str], str]) -> Path:
    """Rewrite the first sheet's XML of the workbook at `path` (as another program saves it)."""
    with zipfile.ZipFile(path) as archive:
        parts = {info.filename: archive.read(info) for info in archive.infolist()}
    sheet = "xl/worksheets/sheet1.xml"
    parts[sheet] = change(parts[sheet].decode()).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
    return path


def test_xlsx_formula_never_computed_fails_naming_its_cell(tmp_path: Path) -> None:
    # openpyxl (as any program writing workbooks) saves a formula without its value: read
    # as an empty cell, a key or an email would silently be missing.
    rows: list[list[object]] = [["SyncID", "First name", "Last name", "E-mail"]]
    rows += [[f"S{n}", "Ann", "Lee", f"s{n}@school.example"] for n in range(1, 4)]
    rows.append(["S4", "Bob", "Ray", '=LOWER(B5)&"@school.example"'])
    path = write_xlsx(tmp_path / "students.xlsx", rows)
    assert read_failure(path).startswith("cell D5 holds a formula whose value was never computed")
    # Saved by a spreadsheet application, the computed value is there and is what is read.
    _with_sheet_xml(
        path,
        lambda xml: xml.replace('<c r="D5"><f>', '<c r="D5" t="str"><f>').replace(
            "<v />", "<v>bob@school.example</v>"
        ),
    )
    assert read(path)[1][-1].values == ("S4", "Bob", "Ray", "bob@school.example")


def test_xlsx_scan_finds_formulas_and_merges_cut_by_its_blocks(tmp_path: Path) -> None:
    # The sheet's XML is scanned in blocks: a tag across two of them counts too.
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    for n in range(1, 30):
        sheet.append([f"S{n}", "Ann", "Lee"])
    sheet.merge_cells("B2:B3")
    sheet.merge_cells("C4:C9")
    workbook.save(tmp_path / "merged.xlsx")
    sheet["D20"] = "=" + "+".join(["A2"] * 40)
    workbook.save(tmp_path / "formula.xlsx")
    part = "xl/worksheets/sheet1.xml"
    for block in range(40, 700, 13):
        with (tmp_path / "merged.xlsx").open("rb") as binary:
            assert sorted(_scan_sheet(binary, part, Limits(), block)[0]) == [
                (2, 2, 3, 2),
                (4, 3, 9, 3),
            ]
        with (tmp_path / "formula.xlsx").open("rb") as binary, pytest.raises(FileFailed) as caught:
            _scan_sheet(binary, part, Limits(), block)
        assert str(caught.value).startswith("cell D20 holds a formula")


def test_xlsx_whole_number_reads_as_integer_text(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "s.xlsx", [["SyncID", "Account #"], ["S1", 1234.0], ["S2", 1234]])
    _, rows = read(path)
    assert [row.values[1] for row in rows] == ["1234", "1234"]


def test_xlsx_date_reads_as_iso_date(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "s.xlsx",
        [
            ["SyncID", "Born"],
            ["S1", dt.datetime(2012, 5, 13)],
            ["S2", dt.datetime(2012, 5, 13, 10, 30)],
        ],
    )
    _, rows = read(path)
    assert [row.values[1] for row in rows] == ["2012-05-13", "2012-05-13T10:30:00"]


def test_xlsx_zero_padded_ids_and_percentages_read_as_shown(tmp_path: Path) -> None:
    # Student numbers kept with their leading zeros by a "000000" format, as Excel shows them.
    path = write_xlsx(
        tmp_path / "s.xlsx",
        [["SyncID", "Student number", "Share"], ["S1", 1234, 0.25], ["S2", 56, 0.125]],
    )
    workbook = openpyxl.load_workbook(path)
    sheet = workbook.active
    assert sheet is not None
    for cell, number_format in (("B2", "000000"), ("B3", "000"), ("C2", "0%"), ("C3", "0.0%")):
        sheet[cell].number_format = number_format
    workbook.save(path)
    _, rows = read(path)
    assert [row.values[1:] for row in rows] == [("001234", "25%"), ("056", "12.5%")]


@pytest.mark.parametrize(
    ("value", "number_format", "text"),
    [
        (1234, "000000", "001234"),
        (1234.0, "000000", "001234"),
        (-12, "0000", "-0012"),
        (1234567, "000", "1234567"),
        (12.5, "000", "12.5"),  # a fraction is not an ID: shown as a number
        (0.25, "0%", "25%"),
        (0.1234, "0.00%", "12.34%"),
        (1234, "General", "1234"),
        (1234, "#,##0", "1234"),  # other formats: the plain number
        ("007", "000", "007"),
    ],
)
def test_cell_text_follows_zero_padding_and_percent_formats(
    value: object, number_format: str, text: str
) -> None:
    assert cell_text(value, number_format) == text


def test_xlsx_named_csv_is_read_as_xlsx(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "students.csv", [["SyncID", "Name"], ["S1", "Zoë"]])
    table, rows = read(path)
    assert table.format == "xlsx"
    assert rows == [RawRow(line=2, values=("S1", "Zoë"))]


def test_xlsx_with_only_empty_rows_has_no_header_row(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "s.xlsx", [[None, None], [None]])
    assert read_failure(path) == "no header row in the first sheet, 'Sheet'"


def test_xlsx_with_an_empty_first_sheet_says_only_the_first_is_read(tmp_path: Path) -> None:
    # An instructions sheet left empty in front of the data: the reason names where syncd read.
    path = write_xlsx(tmp_path / "s.xlsx", [], extra_sheet=True)
    reason = read_failure(path)
    assert reason == "no header row in the first sheet, 'Sheet' (syncd reads the first sheet only)"


def test_xlsx_sheet_inflating_past_max_file_size_fails(tmp_path: Path) -> None:
    rows: list[list[object]] = [["SyncID", "Name"]]
    rows += [[f"S{number}", "Zoë Müller"] for number in range(2_000)]
    path = write_xlsx(tmp_path / "s.xlsx", rows)
    size = path.stat().st_size
    reason = read_failure(path, Limits(max_file_size=size + 1))
    assert f"max_file_size ({size + 1} bytes)" in reason


def test_xlsx_cell_over_max_field_chars_fails(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "s.xlsx", [["SyncID", "Note"], ["S1", "x" * 101]])
    assert "max_field_chars" in read_failure(path, Limits(max_field_chars=100))


def test_xlsx_row_over_max_columns_fails(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "s.xlsx", [["A", "B"], ["1", "2", "3", "4"]])
    assert "max_columns" in read_failure(path, Limits(max_columns=3))


def test_xlsx_with_damaged_sheet_fails_with_save_as_hint(tmp_path: Path) -> None:
    good = write_xlsx(tmp_path / "good.xlsx", [["SyncID"], ["S1"]])
    damaged = tmp_path / "damaged.xlsx"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(damaged, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "xl/worksheets/sheet1.xml":
                data = data[: len(data) // 2]
            target.writestr(info, data)
    assert "save it as .xlsx or CSV" in read_failure(damaged)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, ""),
        ("Zoë", "Zoë"),
        (1234, "1234"),
        (1234.0, "1234"),
        (12.5, "12.5"),
        (0.1 + 0.2, "0.3"),
        (True, "TRUE"),
        (False, "FALSE"),
        (dt.datetime(2012, 5, 13), "2012-05-13"),
        (dt.datetime(2012, 5, 13, 10, 30), "2012-05-13T10:30:00"),
        (dt.date(2012, 5, 13), "2012-05-13"),
        (dt.time(10, 30), "10:30:00"),
    ],
)
def test_cell_text_shows_values_as_the_user_sees_them(value: object, text: str) -> None:
    assert cell_text(value) == text


# --- row digests (the unchanged-row fast path) -----------------------------------------------


def digested(path: Path, seed: int = 0, known: set[int] | None = None) -> list[RawRow]:
    with open_table(path, Limits()) as table:
        assert table.digests is not None
        table.digests.seed = seed
        table.digests.known = KnownRows(known or ())
        return list(table.rows)


def test_row_digests_leave_the_line_end_out(tmp_path: Path) -> None:
    crlf = digested(write(tmp_path, PEOPLE_CSV.replace("\n", "\r\n"), "a.csv"))
    lf = digested(write(tmp_path, PEOPLE_CSV, "b.csv"))
    assert [row.digest for row in crlf] == [row.digest for row in lf]
    assert len({row.digest for row in lf}) == len(NAMES)


def test_a_row_digest_depends_on_the_seed(tmp_path: Path) -> None:
    path = write(tmp_path, PEOPLE_CSV)
    assert [r.digest for r in digested(path, seed=1)] != [r.digest for r in digested(path, seed=2)]


def test_known_lines_are_skipped_unparsed_and_counted(tmp_path: Path) -> None:
    path = write(tmp_path, PEOPLE_CSV)
    digests = [row.digest for row in digested(path, seed=7)]
    known = {digests[1], digests[3]}
    with open_table(path, Limits()) as table:
        assert table.digests is not None
        table.digests.seed = 7
        table.digests.known = KnownRows(known)
        rows = list(table.rows)
        hits = table.digests.hits
    assert [row._replace(digest=None) for row in rows] == [
        PEOPLE_ROWS[0],
        PEOPLE_ROWS[2],
        PEOPLE_ROWS[4],
    ]
    assert hits == 2 and not table.digests.known  # each known line is taken out once


def test_a_record_over_several_lines_is_digested_whole(tmp_path: Path) -> None:
    text = 'SyncID,Note\nS1,"two\nlines"\nS2,one\n'
    rows = digested(write(tmp_path, text))
    assert [row.line for row in rows] == [2, 4]
    assert rows[0].digest is not None and rows[0].digest != rows[1].digest
    # Only whole lines are skipped: a record over several lines is always parsed.
    assert rows[0].digest is not None
    again = digested(write(tmp_path, text, "b.csv"), known={rows[0].digest})
    assert [row.values for row in again] == [("S1", "two\nlines"), ("S2", "one")]


def test_lines_split_at_lone_carriage_returns_get_no_digest(tmp_path: Path) -> None:
    rows = digested(write(tmp_path, "SyncID,Name\nS1,Ana\rS2,Ben\n"))
    assert [row.values for row in rows] == [("S1", "Ana"), ("S2", "Ben")]
    assert [row.digest for row in rows] == [None, None]


def _bomb(tmp_path: Path, part: str, change: Callable[[bytes], bytes]) -> Path:
    """A small workbook whose `part` inflates to what `change` makes of it (deflated)."""
    path = tmp_path / "students.xlsx"
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["SyncID", "First name", "Last name"])
    sheet.append(["S1", "Ann", "Lee"])
    workbook.save(path)
    with zipfile.ZipFile(path) as archive:
        parts = {info.filename: archive.read(info) for info in archive.infolist()}
    parts[part] = change(parts.get(part, b""))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
    return path


SHARED_STRINGS = (
    b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="1" '
    b'uniqueCount="1"><si><t>%s</t></si></sst>'
)
RICH_RUNS = b"<r><t>abcdefghij</t></r>" * 3_000_000
RICH_SHARED_STRING = SHARED_STRINGS.replace(b"<t>%s</t>", RICH_RUNS)


@pytest.mark.parametrize(
    ("part", "change"),
    [
        # One shared string of 30 MB (openpyxl reads them all as it opens the workbook).
        ("xl/sharedStrings.xml", lambda _: SHARED_STRINGS % (b"A" * 30_000_000)),
        # 30 MB of whitespace between the sheet's cells.
        (
            "xl/worksheets/sheet1.xml",
            lambda xml: xml.replace(b"<row ", b" " * 30_000_000 + b"<row ", 1),
        ),
        # One shared string of 3M short rich-text runs (openpyxl joins them: 30 MB).
        ("xl/sharedStrings.xml", lambda _: RICH_SHARED_STRING),
        # The same as an inline string of the sheet.
        (
            "xl/worksheets/sheet1.xml",
            lambda xml: xml.replace(b"<is><t>Ann</t></is>", b"<is>" + RICH_RUNS + b"</is>"),
        ),
        # One attribute of 30 MB (expat took minutes over such a token).
        (
            "xl/worksheets/sheet1.xml",
            lambda xml: xml.replace(b'<c r="B2"', b'<c x="' + b"a" * 30_000_000 + b'" r="B2"'),
        ),
    ],
)
def test_an_xlsx_text_past_max_field_chars_fails_before_it_is_read_whole(
    tmp_path: Path, part: str, change: Callable[[bytes], bytes]
) -> None:
    # SPEC §3.2: limits bound memory on hostile input. A zip of a few tens of KB whose one
    # text inflates past max_file_size's reach of memory fails on max_field_chars first.
    path = _bomb(tmp_path, part, change)
    assert path.stat().st_size < 300_000
    tracemalloc.start()
    try:
        reason = read_failure(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert reason == "the workbook holds a text longer than max_field_chars (100000 characters)"
    assert peak < 10_000_000


def test_an_xlsx_text_within_max_field_chars_is_read_whole(tmp_path: Path) -> None:
    # Escaped as &quot; (six bytes a character), a text at the limit is still within it.
    text = b"&quot;" * 100
    path = _bomb(
        tmp_path, "xl/worksheets/sheet1.xml", lambda xml: xml.replace(b">Ann<", b">" + text + b"<")
    )
    _, rows = read(path, Limits(max_field_chars=100))
    assert rows[0].values == ("S1", '"' * 100, "Lee")


def test_xml_text_runs_are_measured_across_blocks() -> None:
    # max_field_chars 10: a run of 80 bytes without a `<` (eight a character) passes, 81
    # fails, wherever the blocks cut it. (It counts from the `<` before: "t>" and the text.)
    for size in range(1, 120):
        for run, fails in ((80, False), (81, True)):
            data = b"<c><t>" + b"A" * (run - 2) + b"</t></c>" + b"<v>1</v>" * 30
            runs = _TextRuns(Limits(max_field_chars=10))
            blocks = [data[start : start + size] for start in range(0, len(data), size)]
            if fails:
                with pytest.raises(FileFailed):
                    for block in blocks:
                        runs.feed(block)
            else:
                for block in blocks:
                    runs.feed(block)


def test_rich_text_within_max_field_chars_is_read_whole(tmp_path: Path) -> None:
    # A cell formatted run by run (fonts, colours) carries markup besides its text.
    run = b'<r><rPr><b/><sz val="11"/><color rgb="FFFF0000"/><rFont val="Calibri"/></rPr>'
    inline = b"<is>" + (run + b"<t>abc</t></r>") * 30 + b"</is>"
    path = _bomb(
        tmp_path,
        "xl/worksheets/sheet1.xml",
        lambda xml: xml.replace(b"<is><t>Ann</t></is>", inline),
    )
    _, rows = read(path, Limits(max_field_chars=100))
    assert rows[0].values == ("S1", "abc" * 30, "Lee")
