"""A plain students file read column by column: the first load of a district, in bulk.

A students file whose lines are plain (no quotes, one record a line, the header's number of
cells on every line, nothing the row reader treats specially) splits into its cells with
`str.split`, exactly as the csv module would read it. Its columns are then checked and
prepared with the same functions the row path uses (`str.strip`, `str.casefold`,
`EMAIL_PATTERN`, `fingerprint`'s text), each mapped over a whole column, which costs a
fraction of a row-by-row pass in Python.

Anything else returns None, and the caller reads the file row by row: quotes, lone CRs,
NUL or DOS end-of-file marks, characters that `str.strip` and the row reader treat apart
(\\x1c–\\x1f), blank or short lines, and every row the row path would reject or merge
(invalid or missing values; duplicate keys, which the caller finds across blocks). So a
file read here gives the same records as the row path, or is not read here at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import repeat
from operator import rshift

from xxhash import xxh3_64_intdigest, xxh3_128_hexdigest

from syncd.core.plan import UNIT_SEPARATOR
from syncd.core.validate import EMAIL_PATTERN, Columns, RowRules
from syncd.model import RelType

__all__ = ["StudentColumns", "student_columns"]

# Bytes after which a plain split would read a line differently from the row reader: the
# quote, NUL, the DOS end-of-file mark \x1a (a row of them is blank), and \x1c-\x1f, which
# `str.strip` removes; a CR is allowed only as part of a CRLF line end.
_UNUSUAL = (b'"', b"\x00", b"\x1a", b"\x1c", b"\x1d", b"\x1e", b"\x1f")
_LINE_END = b"\r\n"
# The end of a student's fingerprint text: no children column, the default type.
_TAIL = UNIT_SEPARATOR + "children:-" + UNIT_SEPARATOR + RelType.PARENT.value


@dataclass(slots=True)
class StudentColumns:
    """The records of a chunk of plain student rows, column by column (file order)."""

    sync_keys: list[str]
    usernames: list[str | None]
    emails: list[str | None]
    first_names: list[str]
    last_names: list[str]
    student_numbers: list[str | None]
    attributes: list[tuple[tuple[str, str], ...]]  # non-empty (name, value), sorted
    fingerprints: list[str]
    row_digests: list[int]


def student_columns(
    block: bytes,
    decode: Callable[[bytes], str],
    delimiter: str,
    width: int,
    seed: int,
    columns: Columns,
    rules: RowRules,
    max_line_chars: int,
    max_field_chars: int,
) -> StudentColumns | None:
    """Return the records of `block` (whole data lines of a students file with a header of
    `width` cells), or None when any of its lines must be read row by row. Duplicate keys
    are the caller's to find: it sees every block of the file."""
    fields = columns.fields
    key_at = fields.get("sync_key")
    if (
        not block
        or width < 2
        or key_at is None
        or "status" in fields  # delete rows
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
    # The line ends become delimiters too: the cells of all lines are then one split.
    body = text.replace("\r\n", "\n")
    if body.endswith("\n"):
        body = body[:-1]
    cells = body.replace("\n", delimiter).split(delimiter)
    if len(cells) != len(lines) * width:
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
    usernames = _or_none(column("username"), len(keys))
    email_cells = column("email")
    emails: list[str | None]
    if email_cells is None:
        emails = [None] * len(keys)
    else:
        folded = list(map(str.casefold, email_cells))
        is_email = EMAIL_PATTERN.match
        if not all(is_email(email) for email in folded if email):
            return None
        emails = [email or None for email in folded]
    numbers = _or_none(column("student_number"), len(keys))
    attributes, attribute_texts = _attributes(cells, width, columns.attributes, len(keys))
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
                                (name or "" for name in usernames),
                                (email or "" for email in emails),
                                first_names,
                                last_names,
                                (number or "" for number in numbers),
                                strict=True,
                            ),
                        ),
                        attribute_texts,
                    ),
                    repeat(_TAIL),
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
    return StudentColumns(
        keys, usernames, emails, first_names, last_names, numbers, attributes, fingerprints,
        digests,
    )  # fmt: skip


def _or_none(values: list[str] | None, count: int) -> list[str | None]:
    if values is None:
        return [None] * count
    return [value or None for value in values]


def _attributes(
    cells: list[str], width: int, positions: Iterable[tuple[str, int]], count: int
) -> tuple[list[tuple[tuple[str, str], ...]], list[str]]:
    """Return each row's attributes (non-empty, sorted by name, as the row path keeps them)
    and their part of the fingerprint text (`\\x1fname=value` each, as `fingerprint`)."""
    ordered = sorted(positions)
    if not ordered:
        return [()] * count, [""] * count
    names = [name for name, _ in ordered]
    values = zip(*(map(str.strip, cells[at::width]) for _, at in ordered), strict=True)
    # A district's rows share a few combinations (grade and school): each is built once.
    known: dict[tuple[str, ...], tuple[tuple[tuple[str, str], ...], str]] = {}
    pairs_column, fingerprint_part = [], []
    for row in values:
        found = known.get(row)
        if found is None:
            pairs = tuple((name, value) for name, value in zip(names, row, strict=True) if value)
            found = known[row] = (
                pairs,
                "".join(UNIT_SEPARATOR + name + "=" + value for name, value in pairs),
            )
        pairs_column.append(found[0])
        fingerprint_part.append(found[1])
    return pairs_column, fingerprint_part
