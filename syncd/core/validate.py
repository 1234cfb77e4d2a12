"""Step 1 of SPEC §2.5: each raw row becomes a valid record or row errors (pure, no I/O)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, repeat

from syncd.model import (
    DELETE_WORDS,
    EDGE_CHARS,
    STORED_TEXT_MAX,
    ChildBy,
    ErrorList,
    FileColumns,
    Kind,
    LinkRecord,
    ParentBy,
    PersonFields,
    PersonRecord,
    RawRow,
    RelType,
    RowError,
)

# An address as mail systems take it: dot-separated atoms before the @ (no leading, trailing
# or doubled dot), and a domain of two or more labels, none empty or with a hyphen at either
# end; no spaces or the characters that only a quoted address may hold. Any letter is
# allowed (internationalised addresses). Possessive quantifiers: no backtracking, a
# million addresses checked in ~0.6 s.
_ATOM = r'[^@\s.()<>\[\]\\,;:"]'
_LABEL_START = r'[^@\s.()<>\[\]\\,;:"\-]'
EMAIL_PATTERN = re.compile(
    rf"^{_ATOM}++(?:\.{_ATOM}++)*+@(?:{_LABEL_START}{_ATOM}*+(?<!-)\.)++"
    rf"{_LABEL_START}{_ATOM}*+(?<!-)$"
)
# Cells naming several children: `1;2`, `1,2` or `1|2` (SPEC §2.3).
# Between the child values of one cell: `;` `,` `|` (SPEC §2.3), and a line break (Alt+Enter
# in a spreadsheet cell, a quoted multi-line CSV cell).
CHILD_SEPARATORS = re.compile(r"[;,|\r\n]")


@dataclass(frozen=True, slots=True)
class Columns:
    """Where each canonical field sits in a row, and how to name it in an error."""

    fields: Mapping[str, int]
    names: Mapping[str, str]
    attributes: tuple[tuple[str, int], ...] = ()
    # The header's cells: a longer row is rejected (misaligned_row). None: rows are not
    # checked (a sheet's cells never shift).
    width: int | None = None
    # A parents file's child columns after the first (headers.ColumnMap.more_children).
    more_children: tuple[int, ...] = ()

    def get(self, values: Sequence[str], name: str) -> str:
        """Return the trimmed cell of field `name`, or "" when the file has no such column."""
        index = self.fields.get(name)
        if index is None or index >= len(values):
            return ""
        return values[index].strip()

    def has(self, name: str) -> bool:
        return name in self.fields

    def label(self, name: str) -> str:
        return self.names.get(name, name)


@dataclass(frozen=True, slots=True)
class RowRules:
    """The per-source settings validation needs."""

    keep_passwords: bool = False
    relationship_types: Mapping[str, RelType] = field(default_factory=dict)


def normalize_email(value: str) -> str:
    return value.strip().casefold()


_TYPE_NAMES = {rel_type.value.casefold(): rel_type for rel_type in RelType}


def parse_relationship_type(value: str, synonyms: Mapping[str, RelType]) -> RelType | None:
    """Return the type a cell names (missing means Parent), or None when unknown."""
    text = value.strip()
    if not text:
        return RelType.PARENT
    folded = text.casefold()
    if folded in synonyms:
        return synonyms[folded]
    return _TYPE_NAMES.get(folded)


HEADER_AGAIN = (
    "the header row again: a file has one header (delete this row, or split the file here)"
)
# A long number that Excel showed in its General format and then saved so, its last digits
# lost (123456789012 → 1.23457E+11): no SIS writes a key like that. As a sync key it would
# make a person nobody can match again, so the row is rejected, saying why.
EXCEL_NUMBER = re.compile(r"\d(?:\.\d+)?E\+\d+")
EXCEL_REWROTE = (
    "a number Excel rewrote, its last digits lost: format the column as Text in the "
    "spreadsheet and export the file again"
)


def misaligned_row(row: RawRow, columns: Columns) -> RowError | None:
    """Return the error of a row with more (non-blank) cells than the header, or None.

    A value holding the delimiter unquoted moves every later cell under another column:
    none of the row can be trusted, and a password may now stand under E-mail or Last
    name. So the row is rejected whole, its values never shown. The other cause is a last
    column without a header (a header's blank cells at its end are no columns: exports end
    lines with the delimiter), so the message names both. (A short row is taken as padded:
    Excel leaves out the empty cells at the end of rows.)"""
    width = columns.width
    cells = len(row.values)
    if width is None or cells <= width:
        return None
    return RowError(
        row.line,
        "",
        "",
        f"{cells} cells where the header has {width}: quote a value that holds the "
        "delimiter, or give every column a header",
    )


def split_child_values(cell: str) -> tuple[str, ...]:
    """Return the distinct child values of a cell, in order."""
    values = map(str.strip, CHILD_SEPARATORS.split(cell), repeat(EDGE_CHARS))
    return tuple(dict.fromkeys(value for value in values if value))


def _relationship_type(
    row: RawRow, columns: Columns, rules: RowRules, problems: list[RowError]
) -> RelType | None:
    """Return the row's relationship type, or None after adding the row error."""
    cell = columns.get(row.values, "relationship_type")
    parsed = parse_relationship_type(cell, rules.relationship_types)
    if parsed is None:
        problems.append(
            RowError(
                row.line,
                columns.label("relationship_type"),
                cell,
                "unknown relationship type (Parent, Aide, Guardian, Relative, Other)",
            )
        )
    return parsed


def is_delete(values: Sequence[str], columns: Columns) -> bool:
    return columns.get(values, "status").casefold() in DELETE_WORDS


# The fields a students or parents file may leave out (names are required, see FileColumns).
OPTIONAL_FIELDS = ("username", "email", "student_number")


def file_columns(kind: Kind, columns: Columns) -> FileColumns:
    """Return what a students or parents file with `columns` manages of its persons."""
    return FileColumns(
        # A parents file never has a student number (its parents have none): left alone.
        absent=tuple(name for name in OPTIONAL_FIELDS if not columns.has(name)),
        attributes=frozenset(name for name, _ in columns.attributes),
        leaves_links=kind is Kind.PARENTS and not columns.has("child_key"),
        leaves_types=kind is Kind.PARENTS and not columns.has("relationship_type"),
    )


def validate_persons(
    rows: Iterable[RawRow], kind: Kind, columns: Columns, rules: RowRules, errors: ErrorList
) -> Iterator[PersonRecord]:
    """Yield a record for each valid students/parents row; add the others' errors to `errors`.

    Rows repeating a person merge their child values (a parent on one row per child);
    a repeated student, or a repeat giving another value for a field, is a duplicate
    error. Parents are yielded after the last row (a later row may add children).
    """
    person_rows = PersonRows(kind, columns, rules, errors)
    if kind is not Kind.PARENTS:
        yield from person_rows.read(rows)
        return
    groups: dict[str, list[PersonRecord]] = {}
    for record in person_rows.read(rows):
        groups.setdefault(record.fields.sync_key, []).append(record)
    for group in groups.values():
        yield merge_person_records(group, person_rows.has_children, errors, columns.label)


# The sync key stored for the person a username names in another case (SPEC §2.2), or None.
UsernameKeys = Callable[[str], str | None]


def _no_username_keys(username: str) -> str | None:
    return None


class PersonRows:
    """Validates the rows of a students or parents file as they stream by.

    Every valid row becomes a record, in file order; a parent named on several rows gives
    one record per row (its keys are in `repeated`), to be merged with
    `merge_person_records`. Per key only its first line is kept (one int), so memory
    grows with the keys, not with the rows.

    A row without a sync key is keyed by its username, which compares case-insensitively:
    its key and username are the key `username_keys` says the person has in another case,
    if it has one, else the file's first spelling of it.
    """

    def __init__(
        self,
        kind: Kind,
        columns: Columns,
        rules: RowRules,
        errors: ErrorList,
        username_keys: UsernameKeys = _no_username_keys,
    ) -> None:
        self.kind = kind
        self.columns = columns
        self.errors = errors
        self.has_children = kind is Kind.PARENTS and columns.has("child_key")
        self.repeated: set[str] = set()
        # Per key: the line of its first valid row.
        self._first: dict[str, int] = {}
        # The keys of plain blocks (take_plain) and each block's first line and keys: the
        # lines go into _first only if rows are read after them.
        self._plain_keys: set[str] = set()
        self._plain_blocks: list[tuple[int, Sequence[str]]] = []
        # Keys of valid rows that a later row of theirs was rejected for.
        self._late: list[str] = []
        self._make_record = _record_maker(
            kind, columns, rules, errors, self.has_children, self._first, self._late,
            _username_identity(username_keys, self._first),
        )  # fmt: skip

    @property
    def needs_merging(self) -> bool:
        """Whether a parent read so far must be merged before it is planned: named on
        several rows, or an earlier valid row of it was followed by a rejected one (a parent
        listed only in part keeps its links)."""
        return self.kind is Kind.PARENTS and bool(self.repeated or self._late)

    def take_plain(self, keys: Sequence[str], line: int) -> bool:
        """Count in the valid rows of persons `keys`, read elsewhere (syncd.core.columns) on
        the lines from `line` on; return False, counting nothing, if any key is named twice.

        A parents key is kept with its line alone: naming that parent again makes it one to
        merge whatever the later row says (needs_merging), and the file is read again.
        """
        # A set of the keys, not a dict of their lines: a district's first night takes a
        # million keys here (a dict with its line ints cost twice the time, 0.4-0.5 s).
        plain = self._plain_keys
        if not plain.isdisjoint(keys) or (self._first and not self._first.keys().isdisjoint(keys)):
            return False
        # Added in place; a key the block names twice shows as fewer new entries, and the
        # block's keys (none there before) are taken out again.
        before = len(plain)
        plain.update(keys)
        if len(plain) - before == len(keys):
            self._plain_blocks.append((line, keys))
            return True
        plain.difference_update(keys)
        return False

    def _lines_of_plain_keys(self) -> None:
        """Give the plain blocks' keys their lines in _first, for the rows read after them."""
        first = self._first
        for line, keys in self._plain_blocks:
            first.update(zip(keys, range(line, line + len(keys)), strict=True))
        self._plain_blocks.clear()
        self._plain_keys.clear()

    def read(self, rows: Iterable[RawRow]) -> Iterator[PersonRecord]:
        """Yield each valid row's record; add the errors of the others (and of repeats)."""
        rows = iter(rows)
        opening = next(rows, None)
        if opening is None:
            return  # no row after the plain blocks: their lines are never asked for
        self._lines_of_plain_keys()
        first = self._first
        make_record = self._make_record
        for row in chain((opening,), rows):
            record = make_record(row)
            if record is None:
                continue
            key = record.fields.sync_key
            seen = first.get(key)
            if seen is None:
                first[key] = row.line
                yield record
            elif self._repeat_is_valid(row, record, seen):
                self.repeated.add(key)
                yield record

    def _repeat_is_valid(self, row: RawRow, record: PersonRecord, first_line: int) -> bool:
        # A parent on several rows is one person (SPEC §2.3): whether its rows agree is
        # merge_person_records's to judge, with every row at hand. A student is one row.
        if self.kind is Kind.PARENTS:
            return True
        key = record.fields.sync_key
        column, cell = _identifier_cell(self.columns, row.values)
        self.errors.add(RowError(row.line, column, cell or key, f"duplicate of row {first_line}"))
        self.errors.rejected_keys.add(key)
        self._late.append(key)
        return False


def merge_person_records(
    records: Sequence[PersonRecord],
    has_children: bool,
    errors: ErrorList | None = None,
    label: Callable[[str], str] = str,
) -> PersonRecord:
    """Return the one record of a person the file names on `records` (same key, file order).

    The rows agree where each gives a value: a cell left empty on one row takes the
    others' (a phone given once); a row giving another value, or another relationship type
    for a child an earlier row named, is rejected (added to `errors`, naming the field by
    `label`) and its children are not taken. The children of all other rows, in order, each
    with its row's type (a Parent of one child and a Guardian of another, one row each);
    deleted only if every such row says so.
    """
    earliest = records[0]
    if len(records) == 1:
        return earliest
    fields = earliest.fields
    # Each child value: (its type, the row that named it first).
    children = {value: (rel_type, earliest.line) for value, rel_type in earliest.typed_children()}
    deleted = earliest.deleted
    password = earliest.password
    for record in records[1:]:
        merged = _merged_row(fields, password, earliest.line, record, children, label)
        if isinstance(merged, RowError):
            if errors is not None:
                errors.add(merged)
                # Listed only in part: a full file keeps the links this row may have named.
                errors.rejected_keys.add(fields.sync_key)
            continue
        fields = merged
        password = password or record.password
        for value, rel_type in record.typed_children():
            children.setdefault(value, (rel_type, record.line))
        deleted = deleted and record.deleted
    rel_type = earliest.relationship_type
    types = tuple(rel_type for rel_type, _ in children.values())
    return PersonRecord(
        line=earliest.line,
        fields=fields,
        password=password,
        deleted=deleted,
        child_values=tuple(children) if has_children else None,
        relationship_type=rel_type,
        digest=None,  # no one row describes this person
        child_types=types if has_children and any(t is not rel_type for t in types) else None,
    )


def _merged_row(
    fields: PersonFields,
    password: str | None,
    earliest: int,
    record: PersonRecord,
    named: Mapping[str, tuple[RelType, int]],
    label: Callable[[str], str],
) -> PersonFields | RowError:
    """Return `fields` with what a later row of the person adds, or that row's error: it
    gives another value for a field or another password than `password` (the password is
    never shown), or another relationship type for a child an earlier row named (`named`:
    each child's type and row; taking either would be a guess)."""
    merged = _agreeing_fields(fields, record.fields)
    if not isinstance(merged, PersonFields):
        name, theirs, ours = merged
        return RowError(
            record.line,
            label(name),
            ours,
            f"duplicate of row {earliest} with another {label(name)} ({theirs!r} there)",
        )
    if password and record.password and record.password != password:
        return RowError(
            record.line, label("password"), "", f"duplicate of row {earliest} with another password"
        )
    for value, rel_type in record.typed_children():
        earlier = named.get(value)
        if earlier is not None and earlier[0] is not rel_type:
            return RowError(
                record.line,
                label("relationship_type"),
                rel_type.value,
                f"relationship type {rel_type.value} differs from {earlier[0].value} for "
                f"{label('child_key')} {value} on row {earlier[1]}",
            )
    return merged


_MERGED_FIELDS = ("username", "email", "first_name", "last_name", "student_number")


def _agreeing_fields(
    first: PersonFields, other: PersonFields
) -> PersonFields | tuple[str, str, str]:
    """Return `first` with the values only `other` gives, or (field, first's value,
    other's value) of the first field where both give different values. Usernames compare
    case-insensitively (SPEC §2.2); emails are case-folded already."""
    if first == other:
        return first
    values: dict[str, str | None] = {}
    for name in _MERGED_FIELDS:
        mine, theirs = getattr(first, name), getattr(other, name)
        if not theirs or mine == theirs:
            continue
        if not mine:
            values[name] = theirs
        elif name != "username" or mine.casefold() != theirs.casefold():
            return name, mine, theirs
    attributes = dict(first.attributes)
    for name, theirs in other.attributes:
        mine = attributes.get(name, "")
        if not theirs or mine == theirs:
            continue
        if mine:
            return name, mine, theirs
        attributes[name] = theirs
    # First and last names are never empty on a valid row: only these can be filled in.
    return first._replace(
        username=values.get("username", first.username),
        email=values.get("email", first.email),
        student_number=values.get("student_number", first.student_number),
        attributes=tuple(sorted(attributes.items())),
    )


def _identifier_cell(columns: Columns, values: Sequence[str]) -> tuple[str, str]:
    """Return the column that identifies the row's person and its cell as written."""
    for name in ("sync_key", "username", "email"):
        if cell := columns.get(values, name):
            return columns.label(name), cell
    return columns.label(_identifier_field(columns)), ""


def _identifier_field(columns: Columns) -> str:
    for name in ("sync_key", "username", "email"):
        if columns.has(name):
            return name
    return "sync_key"


def _username_identity(
    username_keys: UsernameKeys, first: Mapping[str, int]
) -> Callable[[str], str]:
    """Return the function giving a row keyed by its username (trimmed, not empty) its sync
    key, which is also its username: the key stored for it in another case if there is one,
    else the file's first spelling of it (`first`: the keys of the file's valid rows so far).
    A username that only changed case is unchanged, as an email is (compared so, SPEC
    §2.2), and the key and the username stay one spelling."""
    # Usernames not in lower case, by their casefolded form: few in most files, where a
    # dict of every username would cost a district's file as much as its keys do.
    other_case: dict[str, str] = {}

    def identity(username: str) -> str:
        folded = username.casefold()
        found = other_case.get(folded)
        if found is not None:
            return found
        if folded == username:
            return username_keys(username) or username
        found = username_keys(username) or (folded if folded in first else username)
        other_case[folded] = found
        return found

    return identity


TOO_LONG = f"longer than {STORED_TEXT_MAX} characters, the most syncd keeps in this column"


def too_long(line: int, label: str, value: str) -> RowError:
    """The error of a cell longer than its column holds (the value shortened to show)."""
    return RowError(line, label, f"{value[:40]}…", TOO_LONG)


def _record_maker(
    kind: Kind,
    columns: Columns,
    rules: RowRules,
    errors: ErrorList,
    has_children: bool,
    first: Mapping[str, int],
    late: list[str],
    username_identity: Callable[[str], str],
) -> Callable[[RawRow], PersonRecord | None]:
    """Return the function that turns one row into its record (or adds its errors).

    A rejected row of a person `first` holds (a valid row came before) goes to `late`.
    Runs once per row of a million-row file: the column positions are resolved here once.
    """
    fields = columns.fields
    key_at, user_at, email_at = fields.get("sync_key"), fields.get("username"), fields.get("email")
    first_at, last_at = fields.get("first_name"), fields.get("last_name")
    status_at = fields.get("status")
    number_at = fields.get("student_number") if kind is Kind.STUDENTS else None
    password_at = fields.get("password") if rules.keep_passwords else None
    child_at = fields.get("child_key") if has_children else None
    type_at = fields.get("relationship_type") if has_children else None
    # Sorted by name once, so that each row's attributes come out sorted.
    attributes = tuple(sorted(columns.attributes))
    more_children = columns.more_children if child_at is not None else ()
    width = 1 + max([*fields.values(), *(index for _, index in attributes), *more_children, 0])
    padding = ("",) * width
    header_width = columns.width
    email_label, first_label = columns.label("email"), columns.label("first_name")
    last_label = columns.label("last_name")
    identifier_label = columns.label(_identifier_field(columns))
    is_email = EMAIL_PATTERN.match
    synonyms = rules.relationship_types
    make_record_tuple, make_fields = PersonRecord._make, PersonFields._make
    # The header's own cells, to know it again inside the file (two tables pasted into one).
    header_cells = {index: columns.label(name).strip().casefold() for name, index in fields.items()}
    identifier_at = fields.get(_identifier_field(columns))

    def make_record(row: RawRow) -> PersonRecord | None:
        values = row.values
        if header_width is not None and len(values) > header_width:
            misaligned = misaligned_row(row, columns)
            assert misaligned is not None
            errors.add(misaligned)
            # Its key cell (the first columns stand before any shift) is still the file's:
            # a full file does not deactivate the person whose row it could not read.
            key = values[key_at].strip() if key_at is not None and key_at < len(values) else ""
            if key:
                errors.rejected_keys.add(key)
                if key in first:
                    late.append(key)
            return None
        if len(values) < width:
            values = values + padding[len(values) :]
        line = row.line
        if (
            identifier_at is not None
            and values[identifier_at].strip().casefold() == header_cells[identifier_at]
            and all(values[at].strip().casefold() == cell for at, cell in header_cells.items())
        ):
            errors.add(RowError(line, "", "", HEADER_AGAIN))
            return None
        problems: list[RowError] | None = None
        sync_key = values[key_at].strip() if key_at is not None else ""
        username = (values[user_at].strip() or None) if user_at is not None else None
        email_cell = values[email_at].strip() if email_at is not None else ""
        email = email_cell.casefold() if email_cell else None
        first_name = values[first_at].strip() if first_at is not None else ""
        last_name = values[last_at].strip() if last_at is not None else ""
        number = values[number_at].strip() if number_at is not None else ""

        if email is not None and not is_email(email):
            problems = [RowError(line, email_label, email_cell, "invalid email")]
            email = None
        if (
            # An email is stored casefolded, up to 3 times as long (İ, ß).
            len(sync_key) + len(first_name) + len(last_name) + 3 * len(email_cell) + len(number)
            + (len(username) if username else 0)
            > STORED_TEXT_MAX
        ):  # fmt: skip
            cells = (
                ("sync_key", sync_key), ("username", username or ""),
                ("email", email_cell.casefold()),
                ("first_name", first_name), ("last_name", last_name),
                ("student_number", number),
            )  # fmt: skip
            long = [
                too_long(line, columns.label(name), value)
                for name, value in cells
                if len(value) > STORED_TEXT_MAX
            ]
            if long:
                problems = [*(problems or []), *long]
        # SPEC §9: "its username, else its lower-cased email": the username as first written.
        if sync_key:
            identifier: str | None = sync_key
        elif username:
            identifier = username = username_identity(username)
        else:
            identifier = email
        if not identifier:
            problems = problems or []
            problems.append(
                RowError(
                    line, identifier_label, "", "no identifier: needs a sync key, username or email"
                )
            )
        elif sync_key and EXCEL_NUMBER.fullmatch(sync_key):
            # (A sync key is the identifier: identifier_label names its column.)
            rewrote = RowError(line, identifier_label, sync_key, EXCEL_REWROTE)
            problems = [*(problems or []), rewrote]
        deleted = status_at is not None and values[status_at].strip().casefold() in DELETE_WORDS
        # A delete row only has to say who goes: SIS exports of removals often carry the key
        # alone.
        if not deleted and (not first_name or not last_name):
            problems = problems or []
            if not first_name:
                problems.append(RowError(line, first_label, "", "missing first name"))
            if not last_name:
                problems.append(RowError(line, last_label, "", "missing last name"))

        relationship_type = RelType.PARENT
        if type_at is not None:
            cell = values[type_at].strip()
            parsed = parse_relationship_type(cell, synonyms)
            if parsed is None:
                problems = problems or []
                problems.append(
                    RowError(
                        line,
                        columns.label("relationship_type"),
                        cell,
                        "unknown relationship type (Parent, Aide, Guardian, Relative, Other)",
                    )
                )
            else:
                relationship_type = parsed

        if problems:
            for problem in problems:
                errors.add(problem)
            if identifier:
                errors.rejected_keys.add(identifier)
                if identifier in first:
                    late.append(identifier)
            return None

        kept = [(name, values[index].strip()) for name, index in attributes]
        child_values = None
        if child_at is not None:
            cell = values[child_at].strip()
            if more_children:
                cell = ";".join([cell, *(values[at] for at in more_children)])
            if ";" in cell or "," in cell or "|" in cell or "\n" in cell:
                child_values = split_child_values(cell)
            else:
                child_values = (cell,) if cell else ()
            if len(cell) > STORED_TEXT_MAX and any(
                len(value) > STORED_TEXT_MAX for value in child_values
            ):
                label = columns.label("child_key")
                errors.add(too_long(line, label, max(child_values, key=len)))
                if identifier:
                    errors.rejected_keys.add(identifier)
                    if identifier in first:
                        late.append(identifier)
                return None
        # _make: tuple.__new__ itself, a third of the NamedTuple constructor's time.
        return make_record_tuple(
            (
                line,
                make_fields(
                    (
                        identifier or "",
                        username,
                        email,
                        first_name,
                        last_name,
                        number or None,
                        tuple(pair for pair in kept if pair[1]),
                    )
                ),
                (values[password_at].strip() or None) if password_at is not None else None,
                deleted,
                child_values,
                relationship_type,
                row.digest,
                None,  # child_types: one row, one type
            )
        )

    return make_record


def validate_links(
    rows: Iterable[RawRow], columns: Columns, rules: RowRules, errors: ErrorList
) -> Iterator[LinkRecord]:
    """Yield a record for each link a valid relationships row names (a child cell `1;2`
    names two, as in a parents file: SPEC §2.3); add the others' errors to `errors`.

    Rows naming the same link twice are core.plan.resolve_links's to reject: it knows the
    persons behind the identifiers (and keeps one int per row where a check here kept the
    identifiers themselves).
    """
    link_records = _link_maker(columns, rules, errors)
    for row in rows:
        yield from link_records(row)


def link_identity(record: LinkRecord) -> str:
    """Return what identifies a relationships record's link as written: its first parent
    identifier and its child, compared as matching compares them (the type left out). The
    parent value's length makes the joined parts read back one way only."""
    child_value = (
        normalize_email(record.child_value)
        if record.child_by is ChildBy.EMAIL
        else record.child_value
    )
    parent_value = record.parent_value
    return (
        f"{record.parent_by.value} {len(parent_value)}:{parent_value}"
        f"{record.child_by.value} {child_value}"
    )


def link_child_label(columns: Columns) -> str:
    """Return the column a relationships row's duplicate is reported in (its child's)."""
    return columns.label(_child_field(columns))


def _child_field(columns: Columns) -> str:
    return "student_id" if columns.has("student_id") else "student_email"


def _link_maker(
    columns: Columns, rules: RowRules, errors: ErrorList
) -> Callable[[RawRow], Sequence[LinkRecord]]:
    """Return the function that turns one relationships row into its records (or adds its
    errors): `_link_records`, with the plain rows of a district's file (a whole row, a
    parent key and/or a valid email, one child, a known type) made directly, their column
    positions resolved once. Anything else goes to `_link_records`, which has every rule."""
    fields = columns.fields
    width = columns.width

    def slow(row: RawRow) -> list[LinkRecord]:
        return _link_records(row, columns, rules, errors)

    key_at, email_at = fields.get("parent_key"), fields.get("parent_email")
    id_at, child_email_at = fields.get("student_id"), fields.get("student_email")
    type_at, status_at = fields.get("relationship_type"), fields.get("status")
    if width is None or "parent_username" in fields or (key_at is None and email_at is None):
        return slow
    if id_at is None and child_email_at is None:
        return slow
    is_email, synonyms, make = EMAIL_PATTERN.match, rules.relationship_types, LinkRecord._make
    sync_key, by_email, by_field, child_by_email = (
        ParentBy.SYNC_KEY, ParentBy.EMAIL, ChildBy.FIELD, ChildBy.EMAIL,
    )  # fmt: skip

    def fast(row: RawRow) -> Sequence[LinkRecord]:
        values = row.values
        if len(values) != width:
            return slow(row)
        key = values[key_at].strip() if key_at is not None else ""
        email = values[email_at].strip().casefold() if email_at is not None else ""
        if email and not is_email(email):
            return slow(row)
        if key:
            parent_by, parent_value = sync_key, key
            others: tuple[tuple[ParentBy, str], ...] = ((by_email, email),) if email else ()
        elif email:
            parent_by, parent_value, others = by_email, email, ()
        else:
            return slow(row)
        child_email = ""
        if id_at is not None and (child := values[id_at].strip()):
            child_by = by_field
            if child_email_at is not None:
                also = values[child_email_at].strip().casefold()
                child_email = also if is_email(also) else ""
        elif child_email_at is not None and (child := values[child_email_at].strip()):
            child_by = child_by_email
            if not is_email(child.casefold()):
                return slow(row)
        else:
            return slow(row)
        if ";" in child or "," in child or "|" in child or "\n" in child:
            return slow(row)
        if len(child) > STORED_TEXT_MAX:
            return slow(row)
        rel_type = (
            parse_relationship_type(values[type_at], synonyms)
            if type_at is not None
            else RelType.PARENT
        )
        if rel_type is None:
            return slow(row)
        deleted = status_at is not None and values[status_at].strip().casefold() in DELETE_WORDS
        return (
            make(
                (row.line, parent_by, parent_value, child_by, child, rel_type, deleted, others,
                 child_email)
            ),
        )  # fmt: skip

    return fast


# The cells that say which parent and which child a relationships row links.
_LINK_IDENTIFIERS = ("parent_key", "parent_username", "parent_email", "student_id", "student_email")


def without_empty_links(rows: Iterable[RawRow], columns: Columns) -> Iterator[RawRow]:
    """Leave out the relationships rows that name no parent and no child: a template's rows
    left with only a type (a dropdown dragged down) are empty, as blank rows are, not two
    errors each (enough of them failed the file by max_reject)."""
    at = [columns.fields[name] for name in _LINK_IDENTIFIERS if name in columns.fields]
    for row in rows:
        values = row.values
        width = len(values)
        # The first identifier is there in almost every row: one look, then on.
        if any(i < width and values[i].strip() for i in at):
            yield row
        elif misaligned_row(row, columns) is not None:
            yield row  # its own error: its cells are not where the header says


def _link_records(
    row: RawRow, columns: Columns, rules: RowRules, errors: ErrorList
) -> list[LinkRecord]:
    """Return the links a relationships row names, or none after adding its errors (a row
    with an invalid value is rejected whole)."""
    values = row.values
    misaligned = misaligned_row(row, columns)
    if misaligned is not None:
        errors.add(misaligned)
        return []
    problems: list[RowError] = []

    # Every parent identifier the row gives, most precise first.
    parent_ids: list[tuple[ParentBy, str]] = []
    if key := columns.get(values, "parent_key"):
        parent_ids.append((ParentBy.SYNC_KEY, key))
    if username := columns.get(values, "parent_username"):
        parent_ids.append((ParentBy.USERNAME, username.casefold()))
    if parent_email := columns.get(values, "parent_email"):
        if EMAIL_PATTERN.match(normalize_email(parent_email)):
            parent_ids.append((ParentBy.EMAIL, normalize_email(parent_email)))
        else:
            problems.append(
                RowError(row.line, columns.label("parent_email"), parent_email, "invalid email")
            )
    parent = parent_ids[0] if parent_ids else None
    if parent is None and not problems:
        label = "parent_email" if columns.has("parent_email") else "parent_key"
        problems.append(RowError(row.line, columns.label(label), "", "missing parent"))

    children: list[tuple[ChildBy, str]] = []
    child_email = ""
    if student_id := columns.get(values, "student_id"):
        children = [(ChildBy.FIELD, value) for value in split_child_values(student_id)]
        also = normalize_email(columns.get(values, "student_email"))
        if len(children) == 1 and EMAIL_PATTERN.match(also):
            child_email = also
    elif student_email := columns.get(values, "student_email"):
        for email in split_child_values(student_email):
            if not EMAIL_PATTERN.match(normalize_email(email)):
                problems.append(
                    RowError(row.line, columns.label("student_email"), email, "invalid email")
                )
            # As written: a pending link shows it so (SPEC §9); it is compared casefolded.
            children.append((ChildBy.EMAIL, email))
    if not children:
        problems.append(
            RowError(row.line, columns.label(_child_field(columns)), "", "missing child")
        )
    problems.extend(
        too_long(row.line, columns.label(_child_field(columns)), value)
        for _, value in children
        if len(value) > STORED_TEXT_MAX
    )

    rel_type = _relationship_type(row, columns, rules, problems)

    if problems or parent is None or not children or rel_type is None:
        for problem in problems:
            errors.add(problem)
        return []
    deleted = is_delete(values, columns)
    return [
        LinkRecord(
            line=row.line,
            parent_by=parent[0],
            parent_value=parent[1],
            child_by=child_by,
            child_value=child_value,
            type=rel_type,
            deleted=deleted,
            other_parent_ids=tuple(parent_ids[1:]),
            child_email=child_email,
        )
        for child_by, child_value in children
    ]
