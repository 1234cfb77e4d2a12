"""Steps 2 and 3 of SPEC §2.5: resolve references and plan the changes (pure, no I/O).

The plan is made in two phases so that nothing per row has to touch the database:
`plan_persons` compares each record's fingerprint with a snapshot of the site's keys and
says which parents need their links looked at; `plan_links` then diffs the links of just
those parents (loaded in bulk by the caller) against what the file asks for.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol, TypeVar

from xxhash import xxh3_128_hexdigest

from syncd.core.validate import link_identity
from syncd.model import (
    ChildBy,
    ChildField,
    Counts,
    ErrorList,
    FileColumns,
    Kind,
    LinkRecord,
    Mode,
    ParentBy,
    PersonFields,
    PersonRecord,
    RelType,
    RowError,
)

UNIT_SEPARATOR = "\x1f"
# Appended to the fingerprint stored for a parent a full file listed only in part (one of its
# rows was rejected), so that the next file re-plans its links in full.
PARTIAL_MARK = "~partial"
# The fingerprint stored for an orphaned parent a full file left out (its links removed): no
# row's fingerprint, so that the parent's row listed again re-plans its links.
UNLINKED_MARK = "~unlinked"
ORPHAN = "orphan"


def fingerprint(record: PersonRecord) -> str:
    """Return a digest of everything a file says about a person (fields, children, type).

    128 bits of xxh3: not a secret (passwords are left out), just a fast, even spread.
    """
    fields = record.fields
    children = record.child_values
    text = UNIT_SEPARATOR.join(
        [
            fields.sync_key,
            fields.username or "",
            fields.email or "",
            fields.first_name,
            fields.last_name,
            fields.student_number or "",
            *map("=".join, fields.attributes),
            "children:" + ("-" if children is None else ";".join(children)),
            record.relationship_type._value_,
            # Per-child types only where they differ (the text, and so every stored
            # fingerprint, is as before for all other records).
            *(_type_values(record.child_types) if record.child_types else ()),
        ]
    )
    return xxh3_128_hexdigest(text.encode("utf-8", "surrogatepass"))


def _type_values(types: Sequence[RelType]) -> list[str]:
    return [rel_type._value_ for rel_type in types]


# ---------------------------------------------------------------------------------------------
# Snapshots handed in by the caller


@dataclass(frozen=True, slots=True)
class ExistingPerson:
    person_id: int
    fingerprint: str
    active: bool
    # Why an inactive person is inactive: "file", "orphan" (SPEC §2.4: a parent left without
    # a live link), ... None when active or not known.
    inactive_reason: str | None = None
    # The digest of the file row that last set the person (RawRow.digest), if any.
    row_digest: int | None = None
    # The stored fields, where the caller read them with the rest (store.persons_by_keys).
    fields: PersonFields | None = None

    @property
    def listing_reactivates(self) -> bool:
        """Return whether a file listing this person makes it active again.

        An orphaned parent comes back only when a link to an active child appears, not by
        being listed again: else each parents file would undo the orphan rule.
        """
        return not self.active and self.inactive_reason != ORPHAN


class StudentRef(NamedTuple):
    person_id: int
    sync_key: str


@dataclass(frozen=True, slots=True)
class ExistingLink:
    link_id: int
    parent_id: int
    child_id: int
    type: RelType
    by_parents: bool
    by_relationships: bool
    manual: str | None  # "link", "unlink" or None
    source: str | None

    @property
    def active(self) -> bool:
        return link_is_active(self.by_parents, self.by_relationships, self.manual)


def link_pair(parent_id: int, child_id: int) -> int:
    """Return (parent id, child id) packed into one int: the key a relationships file's
    links are planned by (a district's file names millions; a tuple costs three objects)."""
    return (parent_id << 64) | child_id


# A LinkTable link's int, from the lowest bit: the type (3 bits, an index into _TYPES), by
# parents (1), by relationships (1), the manual edit (2, an index into _MANUAL), listed (1),
# the source (24, an index into the table's names), the link id (the rest).
_TYPES = tuple(RelType)
_TYPE_BITS = {rel_type: index for index, rel_type in enumerate(_TYPES)}
_TYPE_MASK = 0b111
_BY_PARENTS = 1 << 3
_BY_RELATIONSHIPS = 1 << 4
_MANUAL = (None, "link", "unlink")
_MANUAL_SHIFT = 5
_MANUAL_BITS = {manual: index << _MANUAL_SHIFT for index, manual in enumerate(_MANUAL)}
_LISTED = 1 << 7  # the full file being planned names the link (LinkTable.list_pair)
_SOURCE_SHIFT = 8
_SOURCE_MASK = (1 << 24) - 1
_ID_SHIFT = 32
_PAIR_CHILD_MASK = (1 << 64) - 1  # link_pair's low half


class LinkTable:
    """The existing links a relationships file is planned against, by link_pair.

    Each link is one int (its id, source, type, marks and manual edit packed together) in
    one dict: a district's site holds millions, and an ExistingLink for each took more than
    twice the memory. An ExistingLink is made only for the links the plan changes.
    """

    __slots__ = ("_codes", "_sources", "_source_index")

    def __init__(self) -> None:
        self._codes: dict[int, int] = {}
        self._sources: list[str | None] = []
        self._source_index: dict[str | None, int] = {}

    @classmethod
    def of(cls, links: Iterable[ExistingLink]) -> LinkTable:
        table = cls()
        table.add_rows(
            (
                link.link_id,
                link.parent_id,
                link.child_id,
                link.type,
                link.by_parents,
                link.by_relationships,
                link.manual,
                link.source,
            )
            for link in links
        )
        return table

    def add_rows(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Add links given as rows (link id, parent id, child id, type, by parents, by
        relationships, manual, source), the type as a RelType or its value."""
        codes, sources, source_index = self._codes, self._sources, self._source_index
        type_bits, manual_bits = _TYPE_BITS, _MANUAL_BITS
        for link_id, parent_id, child_id, rel_type, by_parents, by_rel, manual, source in rows:
            index = source_index.get(source)
            if index is None:
                index = source_index[source] = len(sources)
                sources.append(source)
            codes[(parent_id << 64) | child_id] = (  # link_pair, inlined: millions of rows
                (link_id << _ID_SHIFT)
                | (index << _SOURCE_SHIFT)
                | manual_bits[manual]
                | (_BY_RELATIONSHIPS if by_rel else 0)
                | (_BY_PARENTS if by_parents else 0)
                | type_bits[rel_type]
            )

    def __len__(self) -> int:
        return len(self._codes)

    def __getitem__(self, pair: int) -> ExistingLink:
        return self._link(pair, self._codes[pair])

    def marked(self, pair: int) -> tuple[bool, RelType] | None:
        """Return (whether a relationships file marks the link, its type), or None when there
        is no such link; no ExistingLink is made."""
        code = self._codes.get(pair)
        if code is None:
            return None
        return bool(code & _BY_RELATIONSHIPS), _TYPES[code & _TYPE_MASK]

    def list_pair(self, pair: int) -> None:
        """Note that the full file being planned names the link `pair` (one in the table):
        file_links_of leaves it out. A bit of its int, not a set of the pairs beside the
        table (a district's millions)."""
        self._codes[pair] |= _LISTED

    def file_links_of(self, source: str) -> Iterator[ExistingLink]:
        """Yield each link a relationships file of `source` marks that the file being planned
        does not list (list_pair)."""
        source_index = self._source_index.get(source)
        if source_index is None:
            return
        mask = (_SOURCE_MASK << _SOURCE_SHIFT) | _BY_RELATIONSHIPS | _LISTED
        wanted = (source_index << _SOURCE_SHIFT) | _BY_RELATIONSHIPS
        for pair, code in self._codes.items():
            if code & mask == wanted:
                yield self._link(pair, code)

    def _link(self, pair: int, code: int) -> ExistingLink:
        return ExistingLink(
            code >> _ID_SHIFT,
            pair >> 64,
            pair & _PAIR_CHILD_MASK,
            _TYPES[code & _TYPE_MASK],
            bool(code & _BY_PARENTS),
            bool(code & _BY_RELATIONSHIPS),
            _MANUAL[(code >> _MANUAL_SHIFT) & 3],
            self._sources[(code >> _SOURCE_SHIFT) & _SOURCE_MASK],
        )


def link_is_active(by_parents: bool, by_relationships: bool, manual: str | None) -> bool:
    """A manual link or unlink wins over files; otherwise any file naming the link keeps it."""
    if manual is not None:
        return manual == "link"
    return by_parents or by_relationships


@dataclass(frozen=True, slots=True)
class ExistingPending:
    pending_id: int
    parent_id: int
    child_field: str
    child_value: str
    type: RelType
    origin: Kind
    # The source whose file made it; None when not known (then taken to be the file's own).
    source: str | None = None


@dataclass(frozen=True, slots=True)
class Thresholds:
    max_deactivate: float = 0.10
    max_update: float = 0.75
    max_reject: float = 0.5


@dataclass(frozen=True, slots=True)
class SiteCounts:
    """How big the site is now, for the safety thresholds."""

    active_persons: int = 0
    existing_persons: int = 0
    active_links: int = 0
    active_file_links: int = 0  # links this kind of file made, for the header-only check


# ---------------------------------------------------------------------------------------------
# Phase 1: persons


class PersonUpsert(NamedTuple):
    """A create (person_id None) or an update/reactivation of a person a file lists."""

    person_id: int | None
    record: PersonRecord
    fingerprint: str
    changed: bool
    reactivate: bool
    # What the person's row digest becomes (None: no one file row describes the person).
    row_digest: int | None = None


@dataclass(frozen=True, slots=True)
class Deactivation:
    person_id: int
    sync_key: str


class ParentLinks(NamedTuple):
    """What a parents-file row asks for: resolved children and values still unknown.

    NamedTuples here and below: a district's parents file makes millions of them.
    """

    parent_key: str
    parent_id: int | None
    children: Mapping[int, RelType]
    pending_values: Mapping[str, RelType]
    # Whether links (and pending links) the request no longer names go: only for a full file
    # that lists the parent whole. A delta file only adds, and a parent one of whose rows was
    # rejected is only partly listed: a malformed row must not remove its links.
    replace: bool = True
    # The sync keys of `children` (for the change events).
    child_keys: Mapping[int, str] = MappingProxyType({})


@dataclass(slots=True)
class PersonPlan:
    kind: Kind
    upserts: list[PersonUpsert] = field(default_factory=list)
    # What the file's rows say about a person (its columns): an update sets only that. None:
    # each record says everything (stored fields are replaced whole).
    columns: FileColumns | None = None
    deactivations: list[Deactivation] = field(default_factory=list)
    unchanged: int = 0
    # Parents whose links need diffing in phase 2 (listed and new/changed/reactivated, or
    # deactivated: their parents-file links go).
    link_requests: list[ParentLinks] = field(default_factory=list)
    unresolved_children: int = 0
    # Persons whose password alone changed, found so by argon2 while planning
    # (update_passwords): the apply hashes their new password without checking it again.
    passwords_changed: set[int] = field(default_factory=set)


def child_lookup_value(child_field: ChildField | str, value: str) -> str:
    """Return `value` as it is compared for `child_field` (emails and usernames casefolded)."""
    if child_field in (ChildField.EMAIL, ChildField.USERNAME, "email", "username"):
        return value.strip().casefold()
    return value.strip()


class StudentIndex(Protocol):
    """Students by a child field's value (in lookup form)."""

    def get(self, value: str, default: Sequence[StudentRef], /) -> Sequence[StudentRef]: ...


def resolve_child(
    value: str, field_name: str, index: StudentIndex
) -> tuple[StudentRef | None, str | None]:
    """Return (the one student `value` names, None) or (None, an error naming every match)."""
    matches = index.get(child_lookup_value(field_name, value), ())
    if len(matches) == 1:
        return matches[0], None
    if not matches:
        return None, no_such_child(value, field_name)
    return None, _ambiguous_child(value, field_name, matches)


def may_be_pending(field_name: str) -> bool:
    """Whether a child value of `field_name` that names no student is a pending link (for a
    student who may come later). An internal id is syncd's own: none comes later (a new
    student gets the next free one, which a stale or mistyped value would then name)."""
    return field_name != "internal_id"


def no_such_child(value: str, field_name: str) -> str | None:
    """Return the error of a child value that names no student, or None: it is pending."""
    if may_be_pending(field_name):
        return None
    return (
        f"no student has internal id {value!r} (syncd's own person id: the person_id of the "
        "student's events in syncd history --person KEY --json)"
    )


def _ambiguous_child(value: str, field_name: str, matches: Sequence[StudentRef]) -> str:
    names = ", ".join(sorted(match.sync_key for match in matches))
    return f"{value!r} matches {len(matches)} students ({names}); {field_name} is not unique"


def plan_persons(
    records: Iterable[PersonRecord],
    kind: Kind,
    mode: Mode,
    snapshot: Mapping[str, ExistingPerson],
    errors: ErrorList,
    child_field: ChildField = ChildField.SYNC_KEY,
    student_index: StudentIndex | None = None,
    child_column_label: str = "child",
    columns: FileColumns | None = None,
) -> PersonPlan:
    """Return what a students or parents file changes, given the site's persons of that kind.

    Ambiguous child values reject their row (added to `errors`). A full file deactivates
    the active persons of `snapshot` it does not list.
    """
    seen: set[str] = set()

    def listed() -> Iterator[PersonRecord]:
        for record in records:
            seen.add(record.fields.sync_key)
            yield record

    plan = plan_person_chunk(
        listed(),
        kind,
        mode,
        snapshot,
        errors,
        child_field,
        student_index,
        child_column_label,
        columns,
    )
    if mode is Mode.FULL:
        # Read only now: with streamed records, rows are rejected while they are consumed.
        seen |= errors.rejected_keys
        plan_unlisted(
            plan,
            [
                (existing.person_id, key)
                for key, existing in snapshot.items()
                if existing.active and key not in seen
            ],
        )
    return plan


def plan_person_chunk(
    records: Iterable[PersonRecord],
    kind: Kind,
    mode: Mode,
    snapshot: Mapping[str, ExistingPerson],
    errors: ErrorList,
    child_field: ChildField = ChildField.SYNC_KEY,
    student_index: StudentIndex | None = None,
    child_column_label: str = "child",
    columns: FileColumns | None = None,
) -> PersonPlan:
    """Return what the records of some of a file's persons change (none missing counted).

    `snapshot` must hold the existing persons among `records`; `errors` must already hold
    every rejected row of the file (whether a parent was listed whole depends on it).
    `columns`: what the file's rows say (see complete_upsert); None: everything.

    A person whose stored fingerprint is the record's is unchanged. Any other existing
    person is an update candidate: only the stored fields tell whether a record from a file
    lacking some columns changes anything (complete_upsert, at apply time).
    """
    plan = PersonPlan(kind=kind, columns=columns)
    for record in records:
        key = record.fields.sync_key
        existing = snapshot.get(key)
        links: ParentLinks | None = None
        partial = mode is Mode.FULL and key in errors.rejected_keys
        if kind is Kind.PARENTS and record.child_values is not None and not record.deleted:
            links = _resolve_children(
                record, existing, child_field, student_index or {}, errors, child_column_label
            )
            if links is None:
                continue
            if mode is not Mode.FULL or partial:
                links = links._replace(replace=False)
        if record.deleted:
            if existing is not None and existing.active:
                plan.deactivations.append(Deactivation(existing.person_id, key))
                if kind is Kind.PARENTS:
                    plan.link_requests.append(ParentLinks(key, existing.person_id, {}, {}))
            else:
                plan.unchanged += 1
            continue
        digest = fingerprint(record)
        if links is not None and partial:
            digest += PARTIAL_MARK
        # A partly listed parent has no one row that describes it.
        row_digest = None if partial else record.digest
        if existing is None:
            plan.upserts.append(PersonUpsert(None, record, digest, True, False, row_digest))
        elif existing.fingerprint != digest or existing.listing_reactivates:
            plan.upserts.append(
                PersonUpsert(
                    existing.person_id,
                    record,
                    digest,
                    existing.fingerprint != digest,
                    existing.listing_reactivates,
                    row_digest,
                )
            )
        else:
            plan.unchanged += 1
            continue
        if links is not None:
            plan.link_requests.append(links)
            plan.unresolved_children += len(links.pending_values)
    return plan


def complete_upsert(
    upsert: PersonUpsert, stored: PersonFields, columns: FileColumns | None
) -> PersonUpsert | None:
    """Return the update of a person stored as `stored` that `upsert` is once what its
    file has no column for is taken from `stored`, with the fingerprint of the result; None
    when the file's row says all there is about the person (the upsert stands as planned).

    The fingerprint is that of the fields the update stores, as a whole row's is: a later
    file saying the same values in every column is unchanged by fingerprint, and one lacking
    columns matches it only when the fields it leaves alone are empty (then it changes
    nothing either).
    """
    if columns is None or columns.describes(stored):
        return None
    record = upsert.record
    record = record._replace(fields=columns.merged(stored, record.fields))
    digest = fingerprint(record)
    if upsert.fingerprint.endswith(PARTIAL_MARK):
        digest += PARTIAL_MARK
    return upsert._replace(record=record, fingerprint=digest)


def plan_unlisted(plan: PersonPlan, unlisted: Iterable[tuple[int, str]]) -> None:
    """Add to `plan` what a full file does to the active persons it does not list
    (person id, sync key): deactivate them and, for parents, drop their parents-file links."""
    for person_id, key in unlisted:
        plan.deactivations.append(Deactivation(person_id, key))
        if plan.kind is Kind.PARENTS:
            plan.link_requests.append(ParentLinks(key, person_id, {}, {}))


def _resolve_children(
    record: PersonRecord,
    existing: ExistingPerson | None,
    child_field: ChildField,
    index: StudentIndex,
    errors: ErrorList,
    label: str,
) -> ParentLinks | None:
    children: dict[int, RelType] = {}
    child_keys: dict[int, str] = {}
    pending: dict[str, RelType] = {}
    problems = []
    # resolve_child inlined: this runs for each of the millions of children of a parents file.
    field_name = child_field.value
    casefold = field_name in ("email", "username")
    find = index.get
    for value, rel_type in record.typed_children():
        matches = find(value.strip().casefold() if casefold else value.strip(), ())
        if len(matches) == 1:
            person_id, sync_key = matches[0]
            children[person_id] = rel_type
            child_keys[person_id] = sync_key
        elif not matches:
            if (problem := no_such_child(value, field_name)) is not None:
                problems.append(RowError(record.line, label, value, problem))
            else:
                pending[value] = rel_type
        else:
            problems.append(
                RowError(record.line, label, value, _ambiguous_child(value, field_name, matches))
            )
    if problems:
        for problem_row in problems:
            errors.add(problem_row)
        return None
    return ParentLinks(
        record.fields.sync_key,
        existing.person_id if existing else None,
        children,
        pending,
        child_keys=child_keys,
    )


# ---------------------------------------------------------------------------------------------
# Phase 2: links


class LinkSet(NamedTuple):
    """Make (or keep) the link parent→child named by a file of kind `origin`."""

    parent_key: str  # the parent's sync key ("": read by its id)
    parent_id: int | None
    child_id: int
    type: RelType
    origin: Kind
    existing: ExistingLink | None
    # The child's sync key when the plan knows it ("": read or given by the caller).
    child_key: str = ""

    @property
    def becomes_active(self) -> bool:
        if self.existing is None:
            return True
        before = self.existing.active
        after = link_is_active(
            self.existing.by_parents or self.origin is Kind.PARENTS,
            self.existing.by_relationships or self.origin is Kind.RELATIONSHIPS,
            self.existing.manual,
        )
        return after and not before


@dataclass(frozen=True, slots=True)
class LinkClear:
    """A file of kind `origin` no longer names this link: drop its mark."""

    link: ExistingLink
    origin: Kind

    @property
    def becomes_inactive(self) -> bool:
        after = link_is_active(
            self.link.by_parents and self.origin is not Kind.PARENTS,
            self.link.by_relationships and self.origin is not Kind.RELATIONSHIPS,
            self.link.manual,
        )
        return self.link.active and not after


@dataclass(frozen=True, slots=True)
class PendingAdd:
    parent_key: str
    parent_id: int | None
    child_field: str
    child_value: str
    type: RelType
    origin: Kind

    def report_line(self) -> dict[str, str]:
        """The link as a report's `pending` list names it."""
        return {
            "parent": self.parent_key,
            "child": self.child_value,
            "child_field": self.child_field,
        }


@dataclass(slots=True)
class LinkPlan:
    sets: list[LinkSet] = field(default_factory=list)
    clears: list[LinkClear] = field(default_factory=list)
    pending_adds: list[PendingAdd] = field(default_factory=list)
    pending_drops: list[ExistingPending] = field(default_factory=list)
    # Pending links a relationships file names with another type: (the link, its new type).
    pending_retypes: list[tuple[ExistingPending, RelType]] = field(default_factory=list)
    # Sync keys by person id of the persons in the changes whose rows named them (their
    # audit lines name them; the others' are read).
    names: dict[int, str] = field(default_factory=dict)
    # Delete rows naming a link that stays: another kind of file or `syncd link` made it
    # (SPEC §2.4). Said in the report, so that the admin who asked knows why.
    kept: list[dict[str, Any]] = field(default_factory=list)

    @property
    def created(self) -> int:
        return sum(1 for change in self.sets if change.becomes_active)

    @property
    def removed(self) -> int:
        return sum(1 for change in self.clears if change.becomes_inactive)

    def is_empty(self) -> bool:
        return not (
            self.sets or self.clears or self.pending_adds or self.pending_drops
            or self.pending_retypes
        )  # fmt: skip


_Item = TypeVar("_Item")


def drained(items: list[_Item]) -> Iterator[_Item]:
    """Yield the items of `items` in order, each dropped from the list as it is taken: what
    is made of a district's millions of rows replaces them in memory, not adds to them."""
    items.reverse()
    take = items.pop
    while items:
        yield take()


def _wanted_change(existing: ExistingLink | None, origin: Kind, rel_type: RelType) -> bool:
    """Return whether a named link needs a write: not marked by `origin` yet, or a new type."""
    if existing is None:
        return True
    marked = existing.by_parents if origin is Kind.PARENTS else existing.by_relationships
    return not marked or existing.type != rel_type


def plan_parent_links(
    requests: Sequence[ParentLinks],
    existing_links: Iterable[ExistingLink],
    existing_pending: Iterable[ExistingPending],
    child_field: ChildField,
    keep_types: bool = False,
    kept_apart: Container[tuple[int, str, str]] = frozenset(),
) -> LinkPlan:
    """Return the link changes that make each requested parent's parents-file links match.

    `keep_types`: the file gives no types (FileColumns.leaves_types): its new links are
    Parent links, a live link keeps its type (one a file removed is made anew: Parent).
    `kept_apart`: (parent id, child field, lookup value) an operator unlinked while no
    student had the value: no pending link for them.
    """
    plan = LinkPlan()
    by_parent: dict[int, dict[int, ExistingLink]] = {}
    for link in existing_links:
        by_parent.setdefault(link.parent_id, {})[link.child_id] = link
    pending_by_parent: dict[int, dict[str, ExistingPending]] = {}
    for pending in existing_pending:
        if pending.origin is Kind.PARENTS:
            pending_by_parent.setdefault(pending.parent_id, {})[pending.child_value] = pending
    for request in requests:
        current = by_parent.get(request.parent_id, {}) if request.parent_id is not None else {}
        for child_id, rel_type in request.children.items():
            named = current.get(child_id)
            if named is not None and keep_types and named.active:
                rel_type = named.type
            if _wanted_change(named, Kind.PARENTS, rel_type):
                plan.sets.append(
                    LinkSet(
                        request.parent_key,
                        request.parent_id,
                        child_id,
                        rel_type,
                        Kind.PARENTS,
                        named,
                    )
                )
        if request.replace:
            for child_id, link in current.items():
                if link.by_parents and child_id not in request.children:
                    plan.clears.append(LinkClear(link, Kind.PARENTS))
        stored = (
            pending_by_parent.get(request.parent_id, {}) if request.parent_id is not None else {}
        )
        if not (stored or request.pending_values):
            continue
        # Compared as the child field compares (an email in another case is the same child:
        # the stored pending link stays as first written, no drop and add).
        current_pending = {child_lookup_value(child_field, v): p for v, p in stored.items()}
        wanted = {child_lookup_value(child_field, v) for v in request.pending_values}
        for value, rel_type in request.pending_values.items():
            lookup = child_lookup_value(child_field, value)
            if lookup not in current_pending and (
                (request.parent_id, child_field.value, lookup) not in kept_apart
            ):
                plan.pending_adds.append(
                    PendingAdd(
                        request.parent_key,
                        request.parent_id,
                        child_field.value,
                        value,
                        rel_type,
                        Kind.PARENTS,
                    )
                )
        if request.replace:
            for lookup, pending in current_pending.items():
                if lookup not in wanted:
                    plan.pending_drops.append(pending)
    return plan


# ---------------------------------------------------------------------------------------------
# Relationships files


_UNKNOWN_PARENT = "unknown parent: import the parent first"


@dataclass(frozen=True, slots=True)
class ParentRef:
    person_id: int
    sync_key: str


@dataclass(frozen=True, slots=True)
class ParentIndex:
    """The site's parents by each identifier a relationships file may use."""

    by_email: Mapping[str, Sequence[ParentRef]]
    by_sync_key: Mapping[str, ParentRef]
    by_username: Mapping[str, Sequence[ParentRef]]

    def find(self, by: ParentBy, value: str) -> tuple[ParentRef | None, str | None]:
        """Return (the parent, None) or (None, why not: unknown or ambiguous)."""
        if by is ParentBy.SYNC_KEY:
            found = self.by_sync_key.get(value)
            return (found, None) if found else (None, _UNKNOWN_PARENT)
        matches = (self.by_email if by is ParentBy.EMAIL else self.by_username).get(value, ())
        if len(matches) == 1:
            return matches[0], None
        if not matches:
            return None, _UNKNOWN_PARENT
        names = ", ".join(sorted(match.sync_key for match in matches))
        return None, f"{value!r} matches {len(matches)} parents ({names}); use a parent key"

    def contradiction(
        self, parent: ParentRef, others: Sequence[tuple[ParentBy, str]]
    ) -> tuple[ParentBy, str, str] | None:
        """Return (identifier, value, why) for the first of a row's further identifiers that
        names other parents than `parent` (its key's), or None: never a guess which one is
        meant, as for a child's. One that names no parent (a new address) is no conflict."""
        for by, value in others:
            matches = (self.by_email if by is ParentBy.EMAIL else self.by_username).get(value, ())
            if matches and all(match.person_id != parent.person_id for match in matches):
                names = " and ".join(sorted(f"{match.sync_key}'s" for match in matches))
                return (
                    by,
                    value,
                    f"names {parent.sync_key}, but its parent {by.value} {value} is {names}; "
                    "correct one of them",
                )
        return None


@dataclass(slots=True)
class RelationshipPlan:
    links: LinkPlan
    rows: int = 0
    unchanged: int = 0
    unresolved_children: int = 0
    # Parents the file names, so that the caller can load just their links.
    parent_ids: set[int] = field(default_factory=set)


class ResolvedLink(NamedTuple):
    """A valid relationships row with its parent and (if known) child: what planning needs
    of it, and no more (a district's file holds millions; its LinkRecords are not kept)."""

    # The row's line, with the hash of its identifiers above it (resolve_links: which of a
    # duplicate's two messages a later row naming the same link gets). One int, not two.
    marked_line: int
    parent: ParentRef
    child: StudentRef | None
    child_field: str
    type: RelType
    deleted: bool
    # The child value as written, for a pending link (no student yet); "" when resolved.
    child_value: str

    @property
    def line(self) -> int:
        return self.marked_line & _LINE_MASK


def resolve_links(
    records: Iterable[LinkRecord],
    parents: ParentIndex,
    students_by_field: Mapping[str, Sequence[StudentRef]],
    students_by_email: Mapping[str, Sequence[StudentRef]],
    child_field: ChildField,
    errors: ErrorList,
    labels: Mapping[str, str],
    duplicate_label: str = "child",
) -> list[ResolvedLink]:
    """Return each valid relationships row with its parent and (if known) child resolved.

    Unknown or ambiguous parents and ambiguous children reject their row (added to `errors`),
    and so does a row naming the same parent and child as an earlier one: "duplicate of row
    N" when it names them by the same identifiers (reported in `duplicate_label`'s column),
    "... (same parent and child)" when by others.
    """
    # The first row of each link, by (parent, child id) for a known child, (parent, field,
    # value) for a pending one; a known pair packed into one int (a district's file names
    # millions). Its marked_line holds the hash of its identifiers, which tells a later
    # duplicate's two messages apart (rows with the same identifiers resolve alike, so the
    # hash only picks the wording). In the order the rows came: the resolved rows.
    first_of: dict[int | tuple[int, str, str], ResolvedLink] = {}
    # Rows that did not resolve, and rows rejected as another's duplicate by other
    # identifiers, by their identifiers: a repeat is that row's duplicate (few rows).
    unresolved: dict[str, int] = {}
    repeated: dict[str, int] = {}
    by_sync_key, field_name = parents.by_sync_key, child_field.value
    fold_field = field_name in ("email", "username")  # as child_lookup_value compares them
    make = ResolvedLink._make
    for record in records:
        identity = link_identity(record)
        if record.parent_by is ParentBy.SYNC_KEY:  # ParentIndex.find, inlined: millions
            parent = by_sync_key.get(record.parent_value)
            problem = None if parent is not None else _UNKNOWN_PARENT
        else:
            parent, problem = parents.find(record.parent_by, record.parent_value)
        if parent is None:
            for by, value in record.other_parent_ids:
                parent, _ = parents.find(by, value)
                if parent is not None:
                    break
        elif record.other_parent_ids:
            contradiction = parents.contradiction(parent, record.other_parent_ids)
            if contradiction is not None:
                if not _repeats_unresolved(record, identity, unresolved, errors, duplicate_label):
                    by, value, problem = contradiction
                    column = labels.get(f"parent_{by.value}", "parent")
                    errors.add(RowError(record.line, column, value, problem))
                continue
        if parent is None:
            if not _repeats_unresolved(record, identity, unresolved, errors, duplicate_label):
                column = labels.get(f"parent_{record.parent_by.value}", "parent")
                errors.add(RowError(record.line, column, record.parent_value, problem or "unknown"))
            continue
        if record.child_by is ChildBy.EMAIL:
            child, problem = resolve_child(record.child_value, "email", students_by_email)
            row_field = "email"
        else:
            # resolve_child, inlined: a validated value is trimmed already.
            value = record.child_value.casefold() if fold_field else record.child_value
            matches = students_by_field.get(value, ())
            if len(matches) == 1:
                child, problem = matches[0], None
            elif not matches:
                child, problem = None, no_such_child(record.child_value, field_name)
            else:
                child, problem = None, _ambiguous_child(record.child_value, field_name, matches)
            row_field = field_name
        if child is not None and record.child_email:
            other, _ = resolve_child(record.child_email, "email", students_by_email)
            if other is not None and other.person_id != child.person_id:
                problem = (
                    f"names {child.sync_key}, but its student email {record.child_email} is "
                    f"{other.sync_key}'s; correct one of them"
                )
        if problem is not None:
            if not _repeats_unresolved(record, identity, unresolved, errors, duplicate_label):
                column = labels.get(
                    "student_email" if record.child_by is ChildBy.EMAIL else "student_id", "child"
                )
                errors.add(RowError(record.line, column, record.child_value, problem))
            continue
        pair: int | tuple[int, str, str] = (
            link_pair(parent.person_id, child.person_id)
            if child is not None
            else (parent.person_id, row_field, child_lookup_value(row_field, record.child_value))
        )
        identity_hash = hash(identity) & _HASH_MASK
        first = first_of.get(pair)
        if first is not None:
            # The first row with the same identifiers, if any: the pair's first row, or one
            # rejected as its duplicate by other identifiers.
            same = repeated.get(identity)
            if same is None and first.marked_line >> _LINE_BITS == identity_hash:
                same = first.line
            if same is not None:
                error = RowError(
                    record.line, duplicate_label, record.child_value, f"duplicate of row {same}"
                )
            else:
                column = labels.get(
                    "student_email" if record.child_by is ChildBy.EMAIL else "student_id", "child"
                )
                error = RowError(
                    record.line,
                    column,
                    record.child_value,
                    f"duplicate of row {first.line} (same parent and child)",
                )
                repeated[identity] = record.line
            errors.add(error)
            continue
        first_of[pair] = make(
            (
                (identity_hash << _LINE_BITS) | record.line,
                parent,
                child,
                row_field,
                record.type,
                record.deleted,
                "" if child is not None else record.child_value,
            )
        )
    return list(first_of.values())


_LINE_BITS = 40
_LINE_MASK = (1 << _LINE_BITS) - 1
_HASH_MASK = (1 << 64) - 1


def _repeats_unresolved(
    record: LinkRecord, identity: str, unresolved: dict[str, int], errors: ErrorList, label: str
) -> bool:
    """Return whether an unresolved row repeats an earlier one's identifiers (then reject it
    as that row's duplicate); else remember it."""
    first = unresolved.get(identity)
    if first is None:
        unresolved[identity] = record.line
        return False
    errors.add(RowError(record.line, label, record.child_value, f"duplicate of row {first}"))
    return True


def plan_relationship_links(
    resolved: Iterable[ResolvedLink],
    mode: Mode,
    source: str,
    links: LinkTable,
    existing_pending: Iterable[ExistingPending],
    kept_apart: Container[tuple[int, str, str]] = frozenset(),
) -> LinkPlan:
    """Return the changes a relationships file makes.

    `links` must hold every link of the parents the file names and, for a full file, every
    relationships-file link of `source` (the plan notes in it the links the full file
    lists); `existing_pending` likewise. `kept_apart` as for plan_parent_links.
    """
    plan = LinkPlan()
    # Pending links keep the value as written; a value is the same link in any case where
    # the child field compares so (emails, usernames).
    pendings = {
        (
            pending.parent_id,
            pending.child_field,
            child_lookup_value(pending.child_field, pending.child_value),
        ): pending
        for pending in existing_pending
        if pending.origin is Kind.RELATIONSHIPS
    }
    full = mode is Mode.FULL
    named_pending: set[tuple[int, str, str]] = set()
    names = plan.names
    for item in resolved:
        parent = item.parent
        if item.child is None:
            pending_key = (
                parent.person_id,
                item.child_field,
                child_lookup_value(item.child_field, item.child_value),
            )
            named_pending.add(pending_key)
            existing_pending_link = pendings.get(pending_key)
            if item.deleted:
                if existing_pending_link is not None:
                    plan.pending_drops.append(existing_pending_link)
            elif existing_pending_link is not None:
                if existing_pending_link.type is not item.type:  # as a live link's retype
                    plan.pending_retypes.append((existing_pending_link, item.type))
            elif pending_key not in kept_apart:
                plan.pending_adds.append(
                    PendingAdd(
                        parent.sync_key,
                        parent.person_id,
                        item.child_field,
                        item.child_value,
                        item.type,
                        Kind.RELATIONSHIPS,
                    )
                )
            continue
        child = item.child
        pair = link_pair(parent.person_id, child.person_id)
        marked = links.marked(pair)  # (marked by a relationships file, type) or None
        if item.deleted:
            if marked is not None and marked[0]:
                plan.clears.append(LinkClear(links[pair], Kind.RELATIONSHIPS))
                if full:
                    links.list_pair(pair)
                names[parent.person_id], names[child.person_id] = parent.sync_key, child.sync_key
            if marked is not None and (why := _kept_by(links[pair])) is not None:
                plan.kept.append(
                    {"row": item.line, "parent": parent.sync_key, "child": child.sync_key,
                     "kept": why}
                )  # fmt: skip
            continue
        if marked is not None and full:
            links.list_pair(pair)  # (a new link needs no place there: a first load's millions)
        if marked != (True, item.type):  # as _wanted_change, without making the link
            plan.sets.append(
                LinkSet(
                    parent.sync_key,
                    parent.person_id,
                    child.person_id,
                    item.type,
                    Kind.RELATIONSHIPS,
                    None if marked is None else links[pair],
                    child.sync_key,
                )
            )
    if full:
        plan.clears += (LinkClear(link, Kind.RELATIONSHIPS) for link in links.file_links_of(source))
        for key, pending in pendings.items():
            if key not in named_pending and pending.source in (None, source):
                plan.pending_drops.append(pending)
    return plan


# ---------------------------------------------------------------------------------------------
# Safety


def _kept_by(link: ExistingLink) -> str | None:
    """Why a relationships file's delete row leaves `link` active, or None if it does not."""
    if link.by_parents:
        return "a parents file names this link; it stays while that file names it"
    if link.manual == "link":
        return "linked by hand (syncd link); only syncd unlink removes it"
    return None


def hold_reason(
    kind: Kind,
    mode: Mode,
    data_rows: int,
    counts: Counts,
    site: SiteCounts,
    thresholds: Thresholds,
    pending_removed: int = 0,
) -> str | None:
    """Return why a planned file must be held (SPEC §2.4 safety threshold), or None.
    `pending_removed`: pending links the file would drop besides, not weighed but named (its
    report's links_removed counts them too)."""
    if mode is Mode.FULL and data_rows == 0:
        if kind is Kind.RELATIONSHIPS and site.active_file_links > 0:
            # Those a parents file names too stay (the plan knows): the count it would remove.
            removed = counts.links_removed or site.active_file_links
            return f"header-only full file would remove all {removed} relationships-file links"
        if kind is not Kind.RELATIONSHIPS and site.active_persons > 0:
            return f"header-only full file would deactivate all {site.active_persons} {kind}"
    if site.active_persons and counts.deactivated / site.active_persons > thresholds.max_deactivate:
        return (
            f"would deactivate {counts.deactivated} of {site.active_persons} active {kind} "
            f"(more than max_deactivate {thresholds.max_deactivate:.0%})"
        )
    if site.active_links and counts.links_removed / site.active_links > thresholds.max_deactivate:
        besides = (
            f", and {pending_removed} pending link{'s' if pending_removed > 1 else ''}"
            if pending_removed
            else ""
        )
        # A hand-made sheet of new links, sent as the default full file, removes the rest.
        hint = (
            ": a full relationships file removes the links it does not list (a file of "
            'additions only wants mode = { relationships = "delta" })'
            if kind is Kind.RELATIONSHIPS and mode is Mode.FULL
            else ""
        )
        return (
            f"would remove {counts.links_removed} of {site.active_links} active links "
            f"(more than max_deactivate {thresholds.max_deactivate:.0%}){besides}{hint}"
        )
    if site.existing_persons and counts.updated / site.existing_persons > thresholds.max_update:
        return (
            f"would update {counts.updated} of {site.existing_persons} {kind} "
            f"(more than max_update {thresholds.max_update:.0%})"
        )
    return None


def too_many_rejected(rows: int, rejected: int, max_reject: float) -> str | None:
    """Return the failure reason when more than `max_reject` of the rows were rejected."""
    if rows and rejected / rows > max_reject:
        return (
            f"{rejected} of {rows} rows rejected (more than max_reject {max_reject:.0%}); "
            "see the rows' errors"
        )
    return None


def changed_fields(
    old: PersonFields, new: PersonFields
) -> dict[str, tuple[str | None, str | None]]:
    """Return {field: (old, new)} for every field that differs, named as in the export."""
    before, after = old.as_dict(), new.as_dict()
    return {
        name: (before.get(name), after.get(name))
        for name in sorted(before.keys() | after.keys())
        if before.get(name) != after.get(name)
    }
