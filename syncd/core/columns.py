"""A plain students or parents file read column by column: the first load of a district.

A file whose lines are plain (one record a line, the header's number of cells on every line,
quotes only around whole cells, nothing the row reader treats specially) splits into its
cells with `str.split`, exactly as the csv module would read it. Its columns are then
checked and prepared with the same functions the row path uses (`str.strip`,
`str.casefold`, `EMAIL_PATTERN`, `split_child_values`, `fingerprint`'s text), each mapped
over a whole column, which costs a fraction of a row-by-row pass in Python.

Anything else returns None, and the caller reads the file row by row: quotes inside or
around part of a cell, lone CRs, NUL or DOS end-of-file marks, characters that `str.strip`
and the row reader treat apart (\\x1c–\\x1f), blank or short lines, and every row the row
path would reject or merge (invalid or missing values; duplicate keys, which the caller
finds across blocks; a child value naming no student or several, which the caller finds).
So a file read here gives the same records as the row path, or is not read here at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import chain, compress, repeat
from operator import attrgetter, getitem, rshift

from xxhash import xxh3_64_intdigest, xxh3_128_hexdigest

from syncd.core.plan import UNIT_SEPARATOR
from syncd.core.validate import (
    EMAIL_PATTERN,
    EXCEL_NUMBER,
    Columns,
    RowRules,
    parse_relationship_type,
    split_child_values,
)
from syncd.model import STORED_TEXT_MAX, Kind, RelType, attributes_text, has_invisible_mark

__all__ = ["PersonColumns", "person_columns"]

# Bytes after which a plain split would read a line differently from the row reader: NUL,
# the DOS end-of-file mark \x1a (a row of them is blank), and \x1c-\x1f, which `str.strip`
# removes; a CR is allowed only as part of a CRLF line end. Quotes are looked at per cell.
_UNUSUAL = (b"\x00", b"\x1a", b"\x1c", b"\x1d", b"\x1e", b"\x1f")
_LINE_END = b"\r\n"
_INSIDE = slice(1, -1)  # a cell quoted whole, without its quotes
# The end of the fingerprint text of a person without a children column, of the default type.
_NO_CHILDREN = UNIT_SEPARATOR + "children:-" + UNIT_SEPARATOR + RelType.PARENT.value


@dataclass(slots=True)
class PersonColumns:
    """The records of a chunk of plain rows, column by column (file order)."""

    sync_keys: list[str]
    usernames: list[str | None]
    emails: list[str | None]
    first_names: list[str]
    last_names: list[str]
    student_numbers: list[str | None]
    # The attributes column's JSON text: the non-empty (name, value) pairs, sorted by name.
    attributes: list[str]
    fingerprints: list[str]
    row_digests: list[int]
    # A parents file with a children column: each row's distinct child values and its type.
    children: list[tuple[str, ...]] | None = None
    types: list[RelType] | None = None


def person_columns(
    kind: Kind,
    block: bytes,
    decode: Callable[[bytes], str],
    delimiter: str,
    width: int,
    seed: int,
    columns: Columns,
    rules: RowRules,
    max_line_chars: int,
    max_field_chars: int,
) -> PersonColumns | None:
    """Return the records of `block` (whole data lines of a students or parents file with a
    header of `width` cells), or None when any of its lines must be read row by row.
    Duplicate keys and child values are the caller's to check: it sees every block and
    the students."""
    fields = columns.fields
    key_at = fields.get("sync_key")
    if (
        not block
        or width < 2
        or key_at is None
        or "status" in fields  # delete rows
        or columns.more_children  # children in several columns
        or (rules.keep_passwords and "password" in fields)  # hashed on create
        or "first_name" not in fields
        or "last_name" not in fields
        or any(mark in block for mark in _UNUSUAL)
        or block.count(b"\r") != block.count(_LINE_END)
    ):
        return None
    lines = block.split(b"\n")
    if block.endswith(b"\n"):
        lines.pop()
    longest = max(map(len, lines))  # in bytes: at least as many as characters
    if (
        longest > max_line_chars
        # Every line holds the header's cells (a blank line has one, a short one fewer).
        or set(map(bytes.count, lines, repeat(delimiter.encode()))) != {width - 1}
    ):
        return None
    try:
        text = decode(block)
    except UnicodeDecodeError:
        return None
    # A cell with an invisible mark at an edge is the row reader's to trim (formats.readers).
    # Searched in the text: a text of Latin-1 characters answers at once, and a search of the
    # bytes for three 3-byte marks took 2 ms a MiB where a line holds a curly apostrophe.
    if has_invisible_mark(text):
        return None
    # The line ends become delimiters too: the cells of all lines are then one split.
    body = text.replace("\r\n", "\n")
    if body.endswith("\n"):
        body = body[:-1]
    cells = body.replace("\n", delimiter).split(delimiter)
    if len(cells) != len(lines) * width:
        return None
    if '"' in body and not _unquote(cells, width):
        return None
    if longest > max_field_chars and max(map(len, cells)) > max_field_chars:
        return None  # the row reader fails the file, naming the limit

    def column(name: str) -> list[str] | None:
        at = fields.get(name)
        return None if at is None else list(map(str.strip, cells[at::width]))

    keys = list(map(str.strip, cells[key_at::width]))
    first_names, last_names = column("first_name"), column("last_name")
    assert first_names is not None and last_names is not None
    if not all(keys) or not all(first_names) or not all(last_names):
        return None
    if columns.names["sync_key"].strip().casefold() in map(str.casefold, keys):
        return None  # the header again, maybe (two tables pasted into one): row by row
    if "E+" in text and any(map(EXCEL_NUMBER.fullmatch, keys)):
        return None  # a key Excel rewrote: the row reader rejects its row
    # Each optional field as text ("" when empty or absent: the fingerprint's form) and as
    # stored (None when empty).
    count = len(keys)
    username_texts = column("username") or [""] * count
    email_texts = column("email")
    if email_texts is None:
        email_texts = [""] * count
    else:
        email_texts = list(map(str.casefold, email_texts))
        if not all(map(EMAIL_PATTERN.match, filter(None, email_texts))):
            return None
    number_texts = (column("student_number") if kind is Kind.STUDENTS else None) or [""] * count
    child_cells = column("child_key") if kind is Kind.PARENTS else None
    if longest > STORED_TEXT_MAX and any(
        max(map(len, texts)) > STORED_TEXT_MAX
        for texts in (keys, first_names, last_names, username_texts, email_texts, number_texts)
        + ((child_cells,) if child_cells else ())
    ):
        return None  # the row reader rejects the row (core.validate.too_long)
    usernames, emails, numbers = (
        _or_none(username_texts),
        _or_none(email_texts),
        _or_none(number_texts),
    )
    attributes, attribute_texts = _attributes(cells, width, columns.attributes, count)
    children = types = None
    tails: Iterable[str] = repeat(_NO_CHILDREN)
    if child_cells is not None:
        children = _children(child_cells)
        types = _types(column("relationship_type"), rules, count)
        if types is None:
            return None
        tails = map(
            "".join,
            zip(
                repeat(UNIT_SEPARATOR + "children:"),
                map(";".join, children),
                repeat(UNIT_SEPARATOR),
                map(attrgetter("_value_"), types),
            ),
        )
    fingerprints = list(
        map(
            xxh3_128_hexdigest,
            map(
                str.encode,
                map(
                    str.__add__,
                    map(
                        str.__add__,
                        map(
                            UNIT_SEPARATOR.join,
                            zip(
                                keys,
                                username_texts,
                                email_texts,
                                first_names,
                                last_names,
                                number_texts,
                                strict=True,
                            ),
                        ),
                        attribute_texts,
                    ),
                    tails,
                ),
                repeat("utf-8"),
                repeat("surrogatepass"),
            ),
        )
    )
    digests = list(
        map(
            rshift,
            map(xxh3_64_intdigest, map(bytes.rstrip, lines, repeat(_LINE_END)), repeat(seed)),
            repeat(1),
        )
    )
    return PersonColumns(
        keys, usernames, emails, first_names, last_names, numbers, attributes, fingerprints,
        digests, children, types,
    )  # fmt: skip


def _unquote(cells: list[str], width: int) -> bool:
    """Take the quotes off cells quoted whole (`"..."`, as the csv module reads them) in
    place, column by column; return False when any quote is elsewhere (the row reader must
    read the line)."""
    for at in range(width):
        column = cells[at::width]
        text = "\n".join(column)
        quotes = text.count('"')
        if not quotes:
            continue
        count = len(column)
        if (
            # Quoted whole in every row (an SIS export's child cells): every cell starts and
            # ends with a quote, has room for both, and holds no other.
            quotes == 2 * count
            and text[0] == text[-1] == '"'
            and text.count('"\n"') == count - 1
            and min(map(len, column)) >= 2
        ):
            cells[at::width] = map(getitem, column, repeat(_INSIDE))
            continue
        quoted = list(compress(range(count), map(str.startswith, column, repeat('"'))))
        # Every quote opens or closes a cell quoted whole: none is left for anywhere else.
        if 2 * len(quoted) != quotes:
            return False
        for row in quoted:
            cell = column[row]
            if len(cell) < 2 or cell[-1] != '"':
                return False
            column[row] = cell[1:-1]
        cells[at::width] = column
    return True


def _children(cells: list[str]) -> list[tuple[str, ...]]:
    """Return each cell's distinct child values, as the row path's split_child_values."""
    text = "\n".join(cells)
    if "," in text or "|" in text:
        text = text.replace(",", ";").replace("|", ";")
    parts = list(map(str.split, text.split("\n"), repeat(";")))
    values = list(chain.from_iterable(parts))
    if (
        "" in values  # an empty cell, or an empty part ("S1;;S2")
        or list(map(str.strip, values)) != values
        or sum(map(len, map(set, parts))) != len(values)  # a value named twice in a cell
    ):
        return list(map(split_child_values, cells))
    return list(map(tuple, parts))


def _types(cells: list[str] | None, rules: RowRules, count: int) -> list[RelType] | None:
    """Return each row's relationship type, or None when a cell names no known type."""
    if cells is None:
        return [RelType.PARENT] * count
    types = list(map(parse_relationship_type, cells, repeat(rules.relationship_types)))
    return None if None in types else types  # type: ignore[return-value]


def _or_none(texts: list[str]) -> list[str | None]:
    return [text or None for text in texts]


def _attributes(
    cells: list[str], width: int, positions: Iterable[tuple[str, int]], count: int
) -> tuple[list[str], list[str]]:
    """Return each row's attributes (non-empty, sorted by name, as the row path keeps them)
    as the attributes column's JSON text, and their part of the fingerprint text
    (`\\x1fname=value` each, as `fingerprint`)."""
    ordered = sorted(positions)
    if not ordered:
        return [attributes_text(())] * count, [""] * count
    names = [name for name, _ in ordered]
    values = zip(*(map(str.strip, cells[at::width]) for _, at in ordered), strict=True)
    # A district's rows share a few combinations (grade and school): each is built once.
    known: dict[tuple[str, ...], tuple[str, str]] = {}
    texts, fingerprint_part = [], []
    for row in values:
        found = known.get(row)
        if found is None:
            pairs = tuple((name, value) for name, value in zip(names, row, strict=True) if value)
            found = known[row] = (
                attributes_text(pairs),
                "".join(UNIT_SEPARATOR + name + "=" + value for name, value in pairs),
            )
        texts.append(found[0])
        fingerprint_part.append(found[1])
    return texts, fingerprint_part
