"""syncd.core.plan: steps 2 and 3 of SPEC §2.5 (resolve references, plan changes), §2.3–2.4.

Everything is plain data: rows are validated with syncd.core.validate, and the site's state
(persons, students, parents, links, pending links) is a hand-built snapshot, as the store would
hand it in. The helpers wire the core the way syncd.pipeline does, without a database.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import pytest

from syncd.core.plan import (
    PARTIAL_MARK,
    ExistingLink,
    ExistingPending,
    ExistingPerson,
    LinkPlan,
    LinkTable,
    ParentIndex,
    ParentRef,
    PersonPlan,
    PersonUpsert,
    ResolvedLink,
    SiteCounts,
    StudentRef,
    Thresholds,
    changed_fields,
    child_lookup_value,
    complete_upsert,
    fingerprint,
    hold_reason,
    plan_parent_links,
    plan_persons,
    plan_relationship_links,
    resolve_links,
    too_many_rejected,
)
from syncd.core.validate import (
    Columns,
    RowRules,
    file_columns,
    link_child_label,
    validate_links,
    validate_persons,
)
from syncd.model import (
    ChildField,
    Counts,
    ErrorList,
    FileColumns,
    Kind,
    Mode,
    PersonFields,
    PersonRecord,
    RelType,
)
from tests.unit.test_validate import PARENT, PERSON, RELATIONSHIP, columns, rows

FULL, DELTA = Mode.FULL, Mode.DELTA
SOURCE = "district-a"
OTHER_SOURCE = "district-b"

STUDENT_COLUMNS = columns(*PERSON, "status")
PARENT_COLUMNS = columns(*PARENT, "relationship_type", "status")
LINK_COLUMNS = columns(*RELATIONSHIP, "status")

# The site's students: (person id, sync key, username, email, student number).
STUDENTS = (
    (1, "S1", "kid1", "kid1@example.org", "1001"),
    (2, "S2", "kid2", "kid2@example.org", "1002"),
    (3, "S3", "kid3", "kid3@example.org", "1003"),
)
# The site's parents: (person id, sync key, email, username).
PARENTS = (
    (101, "P1", "ann@example.org", "ann"),
    (102, "P2", "bob@example.org", "bob"),
)


def student_index(
    child_field: ChildField | str = ChildField.SYNC_KEY,
    students: Iterable[tuple[int, str, str, str, str]] = STUDENTS,
) -> dict[str, list[StudentRef]]:
    """Return the students by `child_field` in lookup form, as store.student_index does."""
    position = {"sync_key": 1, "username": 2, "email": 3, "student_number": 4}
    index: dict[str, list[StudentRef]] = {}
    for student in students:
        if str(child_field) == "internal_id":
            value = str(student[0])
        else:
            value = str(student[position[str(child_field)]])
        key = child_lookup_value(child_field, value)
        index.setdefault(key, []).append(StudentRef(student[0], student[1]))
    return index


def parent_index(parents: Iterable[tuple[int, str, str, str]] = PARENTS) -> ParentIndex:
    by_email: dict[str, list[ParentRef]] = {}
    by_username: dict[str, list[ParentRef]] = {}
    by_sync_key: dict[str, ParentRef] = {}
    for person_id, sync_key, email, username in parents:
        ref = ParentRef(person_id, sync_key)
        by_sync_key[sync_key] = ref
        by_email.setdefault(email.casefold(), []).append(ref)
        by_username.setdefault(username.casefold(), []).append(ref)
    return ParentIndex(by_email, by_sync_key, by_username)


def link(
    link_id: int,
    parent_id: int,
    child_id: int,
    *,
    by_parents: bool = False,
    by_relationships: bool = False,
    manual: str | None = None,
    source: str | None = SOURCE,
    type: RelType = RelType.PARENT,
) -> ExistingLink:
    return ExistingLink(
        link_id, parent_id, child_id, type, by_parents, by_relationships, manual, source
    )


def pending(
    pending_id: int,
    parent_id: int,
    value: str,
    origin: Kind,
    child_field: str = "sync_key",
    type: RelType = RelType.PARENT,
    source: str | None = SOURCE,
) -> ExistingPending:
    return ExistingPending(pending_id, parent_id, child_field, value, type, origin, source)


def records_of(
    kind: Kind, cols: Columns, values: Sequence[Sequence[str]], errors: ErrorList
) -> list[PersonRecord]:
    return list(validate_persons(rows(*values), kind, cols, RowRules(), errors))


def snapshot_of(
    kind: Kind,
    values: Sequence[Sequence[str]],
    ids: Mapping[str, int],
    inactive: Iterable[str] = (),
) -> dict[str, ExistingPerson]:
    """Return the snapshot left by an earlier file with `values` (persons as it stored them)."""
    cols = PARENT_COLUMNS if kind is Kind.PARENTS else STUDENT_COLUMNS
    errors = ErrorList()
    records = records_of(kind, cols, values, errors)
    assert errors.errors == []
    gone = set(inactive)
    return {
        record.fields.sync_key: ExistingPerson(
            ids[record.fields.sync_key], fingerprint(record), record.fields.sync_key not in gone
        )
        for record in records
    }


def student(key: str, first: str = "Kid", last: str = "Smith", status: str = "") -> tuple[str, ...]:
    return (key, "", "", first, last, status)


def parent(
    key: str,
    children: str,
    first: str = "Ann",
    last: str = "Smith",
    type: str = "",
    status: str = "",
    email: str = "",
) -> tuple[str, ...]:
    return (key, "", email, first, last, children, type, status)


@dataclass
class ParentsPlan:
    persons: PersonPlan
    links: LinkPlan
    errors: ErrorList


def plan_students(
    values: Sequence[Sequence[str]],
    *,
    snapshot: Mapping[str, ExistingPerson] | None = None,
    mode: Mode = FULL,
) -> tuple[PersonPlan, ErrorList]:
    errors = ErrorList()
    records = records_of(Kind.STUDENTS, STUDENT_COLUMNS, values, errors)
    return plan_persons(records, Kind.STUDENTS, mode, snapshot or {}, errors), errors


def plan_parents(
    values: Sequence[Sequence[str]],
    *,
    snapshot: Mapping[str, ExistingPerson] | None = None,
    mode: Mode = FULL,
    students: Mapping[str, Sequence[StudentRef]] | None = None,
    child_field: ChildField = ChildField.SYNC_KEY,
    existing_links: Iterable[ExistingLink] = (),
    existing_pending: Iterable[ExistingPending] = (),
    cols: Columns = PARENT_COLUMNS,
) -> ParentsPlan:
    """Plan a parents file as the pipeline does: persons, then the links of those it asks for."""
    errors = ErrorList()
    records = records_of(Kind.PARENTS, cols, values, errors)
    index = student_index(child_field) if students is None else students
    person_plan = plan_persons(
        records, Kind.PARENTS, mode, snapshot or {}, errors, child_field, index, "ChildID"
    )
    ids = {r.parent_id for r in person_plan.link_requests if r.parent_id is not None}
    link_plan = plan_parent_links(
        person_plan.link_requests,
        [existing for existing in existing_links if existing.parent_id in ids],
        [waiting for waiting in existing_pending if waiting.parent_id in ids],
        child_field,
    )
    return ParentsPlan(person_plan, link_plan, errors)


def plan_relationships(
    values: Sequence[Sequence[str]],
    *,
    mode: Mode = FULL,
    source: str = SOURCE,
    parents: ParentIndex | None = None,
    students: Iterable[tuple[int, str, str, str, str]] = STUDENTS,
    child_field: ChildField = ChildField.SYNC_KEY,
    existing_links: Iterable[ExistingLink] = (),
    existing_pending: Iterable[ExistingPending] = (),
    cols: Columns = LINK_COLUMNS,
) -> tuple[LinkPlan, list[ResolvedLink], ErrorList]:
    """Plan a relationships file as the pipeline does (links of named parents and the source)."""
    errors = ErrorList()
    records = list(validate_links(rows(*values), cols, RowRules(), errors))
    labels = {
        "parent_email": "Parent Email",
        "parent_sync_key": "Parent ID",
        "parent_username": "Parent username",
        "student_email": "Student Email",
        "student_id": "Student ID",
    }
    students = list(students)
    resolved = resolve_links(
        records,
        parent_index() if parents is None else parents,
        student_index(child_field, students),
        student_index(ChildField.EMAIL, students),
        child_field,
        errors,
        labels,
        link_child_label(cols),
    )
    ids = {item.parent.person_id for item in resolved}
    all_links = list(existing_links)
    all_pending = list(existing_pending)
    loaded = [existing for existing in all_links if existing.parent_id in ids]
    waiting = [item for item in all_pending if item.parent_id in ids]
    if mode is FULL:
        loaded += [
            existing
            for existing in all_links
            if existing.by_relationships and existing.source == source
        ]
        waiting += [item for item in all_pending if item.origin is Kind.RELATIONSHIPS]
    plan = plan_relationship_links(resolved, mode, source, LinkTable.of(loaded), waiting)
    return plan, resolved, errors


def link_pairs(plan: LinkPlan) -> set[tuple[str, int | None, int, RelType]]:
    return {(s.parent_key, s.parent_id, s.child_id, s.type) for s in plan.sets}


def cleared(plan: LinkPlan) -> list[tuple[int, int]]:
    return sorted((clear.link.parent_id, clear.link.child_id) for clear in plan.clears)


def planned_counts(person_plan: PersonPlan | None, link_plan: LinkPlan | None) -> Counts:
    """Return the threshold inputs as the pipeline counts them from a plan."""
    counts = Counts()
    if person_plan is not None:
        counts.created = sum(1 for u in person_plan.upserts if u.person_id is None)
        counts.updated = sum(1 for u in person_plan.upserts if u.person_id and u.changed)
        counts.deactivated = len(person_plan.deactivations)
    if link_plan is not None:
        counts.links_created = link_plan.created
        counts.links_removed = link_plan.removed
    return counts


# === persons ====================================================================================


def test_new_person_is_created() -> None:
    plan, errors = plan_students([student("S1")])
    assert errors.errors == []
    [upsert] = plan.upserts
    assert (upsert.person_id, upsert.changed, upsert.reactivate) == (None, True, False)
    assert upsert.fingerprint == fingerprint(upsert.record)


def test_unchanged_record_plans_nothing() -> None:
    values = [student("S1"), student("S2", "Bea")]
    plan, _ = plan_students(values, snapshot=snapshot_of(Kind.STUDENTS, values, {"S1": 1, "S2": 2}))
    assert plan.upserts == [] and plan.deactivations == [] and plan.link_requests == []
    assert plan.unchanged == 2


def test_unchanged_parent_with_children_plans_no_link_work() -> None:
    values = [parent("P1", "S1;S2"), parent("P2", "S9")]
    result = plan_parents(
        values,
        snapshot=snapshot_of(Kind.PARENTS, values, {"P1": 101, "P2": 102}),
        existing_links=[link(1, 101, 1, by_parents=True), link(2, 101, 2, by_parents=True)],
        existing_pending=[pending(1, 102, "S9", Kind.PARENTS)],
    )
    assert result.persons.upserts == [] and result.persons.link_requests == []
    assert result.persons.unchanged == 2
    assert result.links.is_empty()


def test_changed_field_is_an_update_of_the_existing_person() -> None:
    snapshot = snapshot_of(Kind.STUDENTS, [student("S1")], {"S1": 1})
    plan, _ = plan_students([student("S1", last="Smyth")], snapshot=snapshot)
    [upsert] = plan.upserts
    assert (upsert.person_id, upsert.changed, upsert.reactivate) == (1, True, False)


def test_email_compared_case_insensitively() -> None:
    """A file that only changes an email's case changes nothing, even where it is the key."""
    earlier = [
        ("S1", "", "ann@example.org", "Ann", "Smith", ""),
        ("", "", "bob@example.org", "Bob", "Jones", ""),
    ]
    snapshot = snapshot_of(Kind.STUDENTS, earlier, {"S1": 1, "bob@example.org": 2})
    plan, errors = plan_students(
        [
            ("S1", "", " ANN@Example.org", "Ann", "Smith", ""),
            ("", "", "Bob@EXAMPLE.org ", "Bob", "Jones", ""),
        ],
        snapshot=snapshot,
    )
    assert errors.errors == []
    assert plan.upserts == [] and plan.deactivations == [] and plan.unchanged == 2


def test_inactive_person_listed_again_is_reactivated() -> None:
    snapshot = snapshot_of(Kind.STUDENTS, [student("S1")], {"S1": 1}, inactive=["S1"])
    plan, _ = plan_students([student("S1")], snapshot=snapshot)
    [upsert] = plan.upserts
    assert (upsert.person_id, upsert.changed, upsert.reactivate) == (1, False, True)


def test_listing_an_orphaned_parent_again_does_not_reactivate_it() -> None:
    """Only a link to an active child brings an orphaned parent back (SPEC §2.4)."""
    values = [parent("P1", "S1"), parent("P2", "S2", first="Bob")]
    snapshot = snapshot_of(Kind.PARENTS, values, {"P1": 101, "P2": 102}, inactive=["P1", "P2"])
    snapshot["P1"] = dataclasses.replace(snapshot["P1"], inactive_reason="orphan")
    snapshot["P2"] = dataclasses.replace(snapshot["P2"], inactive_reason="file")
    result = plan_parents(values, snapshot=snapshot)
    assert [(u.person_id, u.reactivate) for u in result.persons.upserts] == [(102, True)]
    assert result.persons.unchanged == 1 and result.persons.deactivations == []

    renamed = plan_parents([parent("P1", "S1", last="Smyth")], snapshot=snapshot)
    assert [(u.person_id, u.changed, u.reactivate) for u in renamed.persons.upserts] == [
        (101, True, False)
    ]


def test_full_file_deactivates_missing_persons_never_deletes() -> None:
    earlier = [student("S1"), student("S2"), student("S3"), student("S4")]
    snapshot = snapshot_of(
        Kind.STUDENTS, earlier, {"S1": 1, "S2": 2, "S3": 3, "S4": 4}, inactive=["S4"]
    )
    plan, _ = plan_students([student("S1")], snapshot=snapshot)
    assert sorted((gone.person_id, gone.sync_key) for gone in plan.deactivations) == [
        (2, "S2"),
        (3, "S3"),
    ]
    # Deactivation is the only way a file takes a person away; S4, already inactive, is left.
    assert plan.upserts == [] and plan.unchanged == 1


def test_delta_file_never_deactivates_missing_persons() -> None:
    snapshot = snapshot_of(Kind.STUDENTS, [student("S1"), student("S2")], {"S1": 1, "S2": 2})
    plan, _ = plan_students([student("S3")], snapshot=snapshot, mode=DELTA)
    assert plan.deactivations == []
    assert [upsert.record.fields.sync_key for upsert in plan.upserts] == ["S3"]


@pytest.mark.parametrize("mode", [DELTA, FULL])
def test_delta_row_with_status_deleted_deactivates(mode: Mode) -> None:
    earlier = [student("S1"), student("S2")]
    snapshot = snapshot_of(Kind.STUDENTS, earlier, {"S1": 1, "S2": 2})
    plan, _ = plan_students(
        [student("S1", status="deleted"), student("S2")], snapshot=snapshot, mode=mode
    )
    assert [(gone.person_id, gone.sync_key) for gone in plan.deactivations] == [(1, "S1")]
    assert plan.upserts == []


def test_deleted_row_for_unknown_or_inactive_person_changes_nothing() -> None:
    snapshot = snapshot_of(Kind.STUDENTS, [student("S1")], {"S1": 1}, inactive=["S1"])
    plan, _ = plan_students(
        [student("S1", status="delete"), student("S9", status="tobedeleted")],
        snapshot=snapshot,
        mode=DELTA,
    )
    assert plan.deactivations == [] and plan.upserts == []
    assert plan.unchanged == 2


def test_rejected_row_in_full_file_does_not_deactivate_that_person() -> None:
    earlier = [student("S1"), student("S2"), student("S3")]
    snapshot = snapshot_of(Kind.STUDENTS, earlier, {"S1": 1, "S2": 2, "S3": 3})
    plan, errors = plan_students(
        [student("S1"), student("S2", first=""), ("S3", "", "not-an-email", "Kid", "Smith", "")],
        snapshot=snapshot,
    )
    assert errors.rejected_lines == {3, 4}
    assert plan.deactivations == []


def test_rejected_row_keeps_its_person_when_records_are_streamed() -> None:
    """plan_persons may be handed validate_persons' generator: later rejections still count."""
    earlier = [student("S1"), student("S2")]
    snapshot = snapshot_of(Kind.STUDENTS, earlier, {"S1": 1, "S2": 2})
    errors = ErrorList()
    records: Iterator[PersonRecord] = validate_persons(
        rows(student("S1"), student("S2", last="")),
        Kind.STUDENTS,
        STUDENT_COLUMNS,
        RowRules(),
        errors,
    )
    plan = plan_persons(records, Kind.STUDENTS, FULL, snapshot, errors)
    assert errors.rejected_lines == {3}
    assert plan.deactivations == []


def test_rejected_row_identified_by_username_keeps_that_person() -> None:
    cols = columns("username", "first_name", "last_name")
    errors = ErrorList()
    records = records_of(Kind.STUDENTS, cols, [("ASmith", "Ann", "")], errors)
    snapshot = {"ASmith": ExistingPerson(1, "old", True)}
    plan = plan_persons(records, Kind.STUDENTS, FULL, snapshot, errors)
    assert plan.deactivations == []


def test_ambiguous_parent_row_in_full_file_does_not_deactivate_that_parent() -> None:
    twins = [*STUDENTS, (4, "S4", "kid1", "twin@example.org", "1004")]
    snapshot = snapshot_of(Kind.PARENTS, [parent("P1", "kid1")], {"P1": 101})
    result = plan_parents(
        [parent("P1", "kid1", last="Smyth")],
        snapshot=snapshot,
        students=student_index(ChildField.USERNAME, twins),
        child_field=ChildField.USERNAME,
    )
    assert result.errors.rejected_lines == {2}
    assert result.persons.deactivations == [] and result.persons.upserts == []


# === matching children (parents files) ==========================================================


def test_ambiguous_child_value_is_row_error_naming_both_students() -> None:
    twins = [*STUDENTS, (4, "S4", "KID1", "twin@example.org", "1004")]
    result = plan_parents(
        [parent("P1", "kid2"), parent("P2", "S3;kid1", first="Bob")],
        students=student_index(ChildField.USERNAME, twins),
        child_field=ChildField.USERNAME,
    )
    [error] = result.errors.errors
    assert (error.row, error.column, error.value) == (3, "ChildID", "kid1")
    assert "S1" in error.error and "S4" in error.error
    assert "not unique" in error.error
    # Never a guess: the row makes no person and no link, not even to its unambiguous child.
    assert [u.record.fields.sync_key for u in result.persons.upserts] == ["P1"]
    assert link_pairs(result.links) == {("P1", None, 2, RelType.PARENT)}


@pytest.mark.parametrize(
    ("child_field", "cell", "child_id"),
    [
        (ChildField.SYNC_KEY, "S2", 2),
        (ChildField.USERNAME, "KID2", 2),
        (ChildField.EMAIL, "Kid2@Example.org", 2),
        (ChildField.STUDENT_NUMBER, "1002", 2),
        (ChildField.INTERNAL_ID, "3", 3),
    ],
)
def test_child_column_holds_the_sources_child_field(
    child_field: ChildField, cell: str, child_id: int
) -> None:
    result = plan_parents([parent("P1", cell)], child_field=child_field)
    assert result.errors.errors == []
    assert link_pairs(result.links) == {("P1", None, child_id, RelType.PARENT)}
    assert result.links.pending_adds == []


def test_sync_key_child_value_is_compared_exactly() -> None:
    result = plan_parents([parent("P1", "s1")])
    assert link_pairs(result.links) == set()
    assert [add.child_value for add in result.links.pending_adds] == ["s1"]


def test_multi_child_cell_plans_like_one_row_per_child() -> None:
    one_cell = plan_parents([parent("P1", "S1;S2;S9")])
    one_per_row = plan_parents([parent("P1", "S1"), parent("P1", "S2"), parent("P1", "S9")])
    assert one_cell.errors.errors == one_per_row.errors.errors == []
    assert (
        link_pairs(one_cell.links)
        == link_pairs(one_per_row.links)
        == {
            ("P1", None, 1, RelType.PARENT),
            ("P1", None, 2, RelType.PARENT),
        }
    )
    assert one_cell.links.pending_adds == one_per_row.links.pending_adds
    assert [u.fingerprint for u in one_cell.persons.upserts] == [
        u.fingerprint for u in one_per_row.persons.upserts
    ]


def test_a_child_may_have_several_parents() -> None:
    result = plan_parents(
        [parent("P1", "S1", type="Parent"), parent("P2", "S1", first="Bob", type="Guardian")]
    )
    assert link_pairs(result.links) == {
        ("P1", None, 1, RelType.PARENT),
        ("P2", None, 1, RelType.GUARDIAN),
    }


def test_new_parent_links_name_it_by_sync_key_until_it_exists() -> None:
    result = plan_parents([parent("P9", "S1;S7")])
    [link_set] = result.links.sets
    assert (link_set.parent_key, link_set.parent_id, link_set.existing) == ("P9", None, None)
    assert link_set.becomes_active and result.links.created == 1
    [add] = result.links.pending_adds
    assert (add.parent_key, add.parent_id) == ("P9", None)


def test_unknown_child_becomes_pending() -> None:
    result = plan_parents([parent("P1", "S1;S7", type="Guardian")])
    assert result.errors.errors == []
    assert result.persons.unresolved_children == 1
    [add] = result.links.pending_adds
    assert (add.child_field, add.child_value, add.type, add.origin) == (
        "sync_key",
        "S7",
        RelType.GUARDIAN,
        Kind.PARENTS,
    )


def test_stored_pending_link_is_not_added_again() -> None:
    snapshot = snapshot_of(Kind.PARENTS, [parent("P1", "S7")], {"P1": 101})
    result = plan_parents(
        [parent("P1", "S7;S1", last="Smyth")],
        snapshot=snapshot,
        existing_pending=[pending(1, 101, "S7", Kind.PARENTS)],
    )
    assert result.links.pending_adds == [] and result.links.pending_drops == []
    assert link_pairs(result.links) == {("P1", 101, 1, RelType.PARENT)}


def test_pending_child_email_in_another_case_is_the_same_pending_link() -> None:
    snapshot = snapshot_of(Kind.PARENTS, [parent("P1", "Kid@School.example")], {"P1": 101})
    result = plan_parents(
        [parent("P1", "kid@school.EXAMPLE")],
        snapshot=snapshot,
        child_field=ChildField.EMAIL,
        existing_pending=[pending(1, 101, "Kid@School.example", Kind.PARENTS, "email")],
    )
    assert result.links.pending_adds == [] and result.links.pending_drops == []


def test_full_parents_file_drops_pending_links_it_no_longer_names() -> None:
    snapshot = snapshot_of(Kind.PARENTS, [parent("P1", "S7;S8")], {"P1": 101})
    stored = [
        pending(1, 101, "S7", Kind.PARENTS),
        pending(2, 101, "S8", Kind.PARENTS),
        pending(3, 101, "S9", Kind.RELATIONSHIPS),
    ]
    result = plan_parents([parent("P1", "S7")], snapshot=snapshot, existing_pending=stored)
    assert [drop.pending_id for drop in result.links.pending_drops] == [2]


# === parents-file links =========================================================================


def test_full_parents_file_removes_links_no_longer_named() -> None:
    snapshot = snapshot_of(Kind.PARENTS, [parent("P1", "S1;S2")], {"P1": 101})
    stored = [link(1, 101, 1, by_parents=True), link(2, 101, 2, by_parents=True)]
    result = plan_parents([parent("P1", "S1")], snapshot=snapshot, existing_links=stored)
    assert result.links.sets == []
    assert cleared(result.links) == [(101, 2)]
    assert result.links.removed == 1


def test_delta_parents_file_only_adds_links() -> None:
    """delta: only upserts; a changed child cell adds links and removes none (SPEC §2.4)."""
    snapshot = snapshot_of(Kind.PARENTS, [parent("P1", "S1;S7")], {"P1": 101})
    result = plan_parents(
        [parent("P1", "S2")],
        snapshot=snapshot,
        mode=DELTA,
        existing_links=[link(1, 101, 1, by_parents=True)],
        existing_pending=[pending(1, 101, "S7", Kind.PARENTS)],
    )
    assert link_pairs(result.links) == {("P1", 101, 2, RelType.PARENT)}
    assert result.links.clears == [] and result.links.pending_drops == []


def test_delta_parents_row_with_status_deleted_removes_that_parents_links() -> None:
    snapshot = snapshot_of(Kind.PARENTS, [parent("P1", "S1")], {"P1": 101})
    result = plan_parents(
        [parent("P1", "S1", status="Deleted")],
        snapshot=snapshot,
        mode=DELTA,
        existing_links=[link(1, 101, 1, by_parents=True)],
        existing_pending=[pending(1, 101, "S7", Kind.PARENTS)],
    )
    assert [gone.person_id for gone in result.persons.deactivations] == [101]
    assert cleared(result.links) == [(101, 1)]
    assert [drop.pending_id for drop in result.links.pending_drops] == [1]


def test_parents_file_never_removes_a_relationships_file_link() -> None:
    snapshot = snapshot_of(Kind.PARENTS, [parent("P1", "S1")], {"P1": 101})
    stored = [link(1, 101, 1, by_parents=True), link(2, 101, 2, by_relationships=True)]
    result = plan_parents([parent("P1", "S3")], snapshot=snapshot, existing_links=stored)
    assert cleared(result.links) == [(101, 1)]
    assert link_pairs(result.links) == {("P1", 101, 3, RelType.PARENT)}


def test_link_named_by_both_kinds_stays_while_either_names_it() -> None:
    both = link(1, 101, 1, by_parents=True, by_relationships=True)
    snapshot = snapshot_of(Kind.PARENTS, [parent("P1", "S1")], {"P1": 101})
    parents_file = plan_parents([parent("P1", "")], snapshot=snapshot, existing_links=[both])
    [clear] = parents_file.links.clears
    assert clear.origin is Kind.PARENTS and not clear.becomes_inactive
    assert parents_file.links.removed == 0

    relationships_file, _, _ = plan_relationships(
        [("bob@example.org", "", "S2", "", "", "")], existing_links=[both]
    )
    [clear] = relationships_file.clears
    assert clear.origin is Kind.RELATIONSHIPS and not clear.becomes_inactive
    assert relationships_file.removed == 0

    only_relationships = link(1, 101, 1, by_relationships=True)
    relationships_file, _, _ = plan_relationships(
        [("bob@example.org", "", "S2", "", "", "")], existing_links=[only_relationships]
    )
    assert relationships_file.removed == 1


def test_full_parents_file_removes_links_of_parents_it_deactivates() -> None:
    earlier = [parent("P1", "S1;S7"), parent("P2", "S2", first="Bob")]
    snapshot = snapshot_of(Kind.PARENTS, earlier, {"P1": 101, "P2": 102})
    result = plan_parents(
        [parent("P2", "S2", first="Bob")],
        snapshot=snapshot,
        existing_links=[
            link(1, 101, 1, by_parents=True),
            link(2, 101, 2, by_relationships=True),
            link(3, 102, 2, by_parents=True),
        ],
        existing_pending=[
            pending(1, 101, "S7", Kind.PARENTS),
            pending(2, 101, "S8", Kind.RELATIONSHIPS),
        ],
    )
    assert [gone.sync_key for gone in result.persons.deactivations] == ["P1"]
    assert cleared(result.links) == [(101, 1)]
    assert [drop.pending_id for drop in result.links.pending_drops] == [1]


def test_parents_file_without_child_column_removes_links_only_of_parents_it_deactivates() -> None:
    cols = columns(*PERSON)
    earlier = [parent("P1", "S1"), parent("P2", "S2", first="Bob")]
    snapshot = snapshot_of(Kind.PARENTS, earlier, {"P1": 101, "P2": 102})
    result = plan_parents(
        [("P2", "", "", "Bob", "Jones")],
        snapshot=snapshot,
        cols=cols,
        existing_links=[link(1, 101, 1, by_parents=True), link(2, 102, 2, by_parents=True)],
    )
    assert cleared(result.links) == [(101, 1)]
    assert result.links.sets == []


@pytest.mark.parametrize("by_parents", [True, False])
def test_manual_link_is_never_removed_by_a_file(by_parents: bool) -> None:
    manual = link(1, 101, 1, by_parents=by_parents, by_relationships=True, manual="link")
    snapshot = snapshot_of(Kind.PARENTS, [parent("P1", "S1")], {"P1": 101})
    parents_file = plan_parents([parent("P1", "S2")], snapshot=snapshot, existing_links=[manual])
    assert parents_file.links.removed == 0
    assert all(not clear.becomes_inactive for clear in parents_file.links.clears)

    deactivating = plan_parents([], snapshot=snapshot, existing_links=[manual])
    assert deactivating.links.removed == 0

    relationships_file, _, _ = plan_relationships(
        [("bob@example.org", "", "S2", "", "", "")], existing_links=[manual]
    )
    assert relationships_file.removed == 0
    delete_row, _, _ = plan_relationships(
        [("ann@example.org", "", "S1", "", "", "delete")], mode=DELTA, existing_links=[manual]
    )
    assert delete_row.removed == 0


def test_manual_link_without_file_marks_is_not_touched_by_a_file() -> None:
    manual = link(1, 101, 1, manual="link", source=None)
    snapshot = snapshot_of(Kind.PARENTS, [parent("P1", "S1")], {"P1": 101})
    result = plan_parents([parent("P1", "S2")], snapshot=snapshot, existing_links=[manual])
    assert result.links.clears == []


def test_manual_unlink_is_not_undone_by_a_file() -> None:
    unlinked = link(1, 101, 1, by_parents=True, manual="unlink")
    snapshot = snapshot_of(Kind.PARENTS, [parent("P1", "S2")], {"P1": 101})
    parents_file = plan_parents([parent("P1", "S1")], snapshot=snapshot, existing_links=[unlinked])
    assert parents_file.links.created == 0
    relationships_file, _, _ = plan_relationships(
        [("ann@example.org", "", "S1", "", "", "")], existing_links=[unlinked]
    )
    assert [s.becomes_active for s in relationships_file.sets] == [False]
    assert relationships_file.created == 0


def test_relationship_type_change_updates_the_link_without_creating_one() -> None:
    snapshot = snapshot_of(Kind.PARENTS, [parent("P1", "S1")], {"P1": 101})
    result = plan_parents(
        [parent("P1", "S1", type="guardian")],
        snapshot=snapshot,
        existing_links=[link(1, 101, 1, by_parents=True)],
    )
    [link_set] = result.links.sets
    assert link_set.type is RelType.GUARDIAN and link_set.existing is not None
    assert result.links.created == 0 and result.links.clears == []


def test_parents_file_marks_a_relationships_file_link_without_creating_it() -> None:
    snapshot = snapshot_of(Kind.PARENTS, [parent("P1", "")], {"P1": 101})
    existing = link(1, 101, 1, by_relationships=True)
    result = plan_parents([parent("P1", "S1")], snapshot=snapshot, existing_links=[existing])
    [link_set] = result.links.sets
    assert link_set.existing == existing and link_set.origin is Kind.PARENTS
    assert result.links.created == 0


def test_rejected_row_of_a_listed_parent_does_not_remove_its_links() -> None:
    """Like a rejected person (not deactivated), a malformed row removes no link."""
    earlier = [parent("P1", "S1"), parent("P1", "S2")]
    snapshot = snapshot_of(Kind.PARENTS, earlier, {"P1": 101})
    stored = [link(1, 101, 1, by_parents=True), link(2, 101, 2, by_parents=True)]
    result = plan_parents(
        [parent("P1", "S1"), parent("P1", "S2", last="Smiht")],
        snapshot=snapshot,
        existing_links=stored,
    )
    assert result.errors.rejected_lines == {3}
    assert result.links.clears == [] and result.persons.deactivations == []
    # What is stored for it must make the next complete file plan its links in full.
    [upsert] = result.persons.upserts
    assert upsert.fingerprint.endswith(PARTIAL_MARK)

    after = {"P1": ExistingPerson(101, upsert.fingerprint, True)}
    next_night = plan_parents([parent("P1", "S1")], snapshot=after, existing_links=stored)
    assert cleared(next_night.links) == [(101, 2)]
    still_broken = plan_parents(
        [parent("P1", "S1"), parent("P1", "S2", last="Smiht")],
        snapshot=after,
        existing_links=stored,
    )
    assert still_broken.persons.upserts == [] and still_broken.links.is_empty()


# === relationships files ========================================================================


def test_relationships_file_creates_links_with_their_type() -> None:
    plan, resolved, errors = plan_relationships(
        [
            ("ann@example.org", "", "S1", "", "Guardian", ""),
            ("", "P2", "", "kid2@example.org", "", ""),
        ]
    )
    assert errors.errors == []
    assert link_pairs(plan) == {("P1", 101, 1, RelType.GUARDIAN), ("P2", 102, 2, RelType.PARENT)}
    assert all(s.origin is Kind.RELATIONSHIPS for s in plan.sets)
    assert plan.created == 2


def test_unknown_parent_in_relationships_is_row_error() -> None:
    plan, _, errors = plan_relationships(
        [("carol@example.org", "", "S1", "", "", ""), ("", "P9", "S1", "", "", "")]
    )
    assert [(e.row, e.column, e.value) for e in errors.errors] == [
        (2, "Parent Email", "carol@example.org"),
        (3, "Parent ID", "P9"),
    ]
    assert all("unknown parent" in e.error for e in errors.errors)
    assert plan.is_empty()


def test_relationships_parent_found_by_sync_key_username_or_email() -> None:
    cols = columns("parent_email", "parent_key", "parent_username", "student_id")
    plan, _, errors = plan_relationships(
        [("", "P1", "", "S1"), ("", "", "BOB", "S2"), ("Ann@Example.ORG", "", "", "S3")], cols=cols
    )
    assert errors.errors == []
    assert {(s.parent_id, s.child_id) for s in plan.sets} == {(101, 1), (102, 2), (101, 3)}


def test_two_parents_sharing_an_email_is_ambiguous() -> None:
    family = parent_index([*PARENTS, (103, "P3", "Ann@example.org", "carl")])
    plan, _, errors = plan_relationships(
        [("ann@example.org", "", "S1", "", "", ""), ("", "P3", "S1", "", "", "")], parents=family
    )
    [error] = errors.errors
    assert (error.row, error.column) == (2, "Parent Email")
    assert "P1" in error.error and "P3" in error.error
    assert link_pairs(plan) == {("P3", 103, 1, RelType.PARENT)}


def test_shared_email_with_a_parent_key_resolves_by_the_key() -> None:
    family = parent_index([*PARENTS, (103, "P3", "Ann@example.org", "carl")])
    plan, _, errors = plan_relationships(
        [("ann@example.org", "P3", "S1", "", "", "")], parents=family
    )
    assert errors.errors == []
    assert link_pairs(plan) == {("P3", 103, 1, RelType.PARENT)}


def test_unknown_parent_key_falls_back_to_the_parent_email() -> None:
    plan, _, errors = plan_relationships([("ann@example.org", "NOPE", "S1", "", "", "")])
    assert errors.errors == []
    assert {s.parent_id for s in plan.sets} == {101}


def test_email_compared_case_insensitively_in_relationships() -> None:
    plan, _, errors = plan_relationships(
        [("  ANN@example.ORG", "", "", "KID2@Example.org", "", "")]
    )
    assert errors.errors == []
    assert {(s.parent_id, s.child_id) for s in plan.sets} == {(101, 2)}


def test_ambiguous_child_in_relationships_is_row_error_naming_both() -> None:
    twins = [*STUDENTS, (4, "S4", "kid4", "kid1@example.org", "1004")]
    plan, _, errors = plan_relationships(
        [("ann@example.org", "", "", "kid1@example.org", "", "")], students=twins
    )
    [error] = errors.errors
    assert (error.row, error.column) == (2, "Student Email")
    assert "S1" in error.error and "S4" in error.error
    assert plan.is_empty()


@pytest.mark.parametrize(
    ("row", "child_field", "value"),
    [
        (("ann@example.org", "", "S7", "", "Aide", ""), "sync_key", "S7"),
        (("ann@example.org", "", "", "new@example.org", "Aide", ""), "email", "new@example.org"),
    ],
)
def test_unknown_child_in_relationships_becomes_pending(
    row: tuple[str, ...], child_field: str, value: str
) -> None:
    plan, resolved, errors = plan_relationships([row])
    assert errors.errors == [] and plan.sets == []
    [add] = plan.pending_adds
    assert (add.parent_id, add.child_field, add.child_value, add.type, add.origin) == (
        101,
        child_field,
        value,
        RelType.AIDE,
        Kind.RELATIONSHIPS,
    )
    assert [item.child for item in resolved] == [None]


def test_relationships_link_already_made_by_the_file_plans_nothing() -> None:
    plan, _, _ = plan_relationships(
        [("ann@example.org", "", "S1", "", "", ""), ("ann@example.org", "", "S7", "", "", "")],
        existing_links=[link(1, 101, 1, by_relationships=True)],
        existing_pending=[pending(1, 101, "S7", Kind.RELATIONSHIPS)],
    )
    assert plan.is_empty()


def test_full_relationships_file_removes_only_its_own_sources_links() -> None:
    stored = [
        link(1, 101, 1, by_relationships=True),  # named again: stays
        link(2, 101, 2, by_relationships=True),  # this source's, not named: goes
        link(3, 102, 3, by_relationships=True, source=OTHER_SOURCE),  # another source's
        link(4, 101, 3, by_parents=True),  # a parents-file link
        link(5, 102, 1, by_relationships=True, source=OTHER_SOURCE),  # named parent, other source
    ]
    plan, _, _ = plan_relationships(
        [("ann@example.org", "", "S1", "", "", ""), ("bob@example.org", "", "S2", "", "", "")],
        existing_links=stored,
    )
    assert cleared(plan) == [(101, 2)]
    assert plan.removed == 1


def test_full_relationships_file_drops_its_pending_links_it_no_longer_names() -> None:
    stored = [
        pending(1, 101, "S7", Kind.RELATIONSHIPS),
        pending(2, 102, "S8", Kind.RELATIONSHIPS),
        pending(3, 101, "S9", Kind.PARENTS),
    ]
    plan, _, _ = plan_relationships(
        [("ann@example.org", "", "S7", "", "", "")], existing_pending=stored
    )
    assert [drop.pending_id for drop in plan.pending_drops] == [2]
    assert plan.pending_adds == []


def test_full_relationships_file_keeps_other_sources_pending_links() -> None:
    stored = [
        pending(1, 101, "S8", Kind.RELATIONSHIPS, source=OTHER_SOURCE),
        pending(2, 101, "S9", Kind.RELATIONSHIPS),
    ]
    plan, _, _ = plan_relationships(
        [("ann@example.org", "", "S1", "", "", "")], existing_pending=stored
    )
    assert [drop.pending_id for drop in plan.pending_drops] == [2]


def test_delta_relationships_file_removes_nothing_it_does_not_name() -> None:
    plan, _, _ = plan_relationships(
        [("ann@example.org", "", "S1", "", "", "")],
        mode=DELTA,
        existing_links=[link(2, 101, 2, by_relationships=True)],
        existing_pending=[pending(1, 101, "S7", Kind.RELATIONSHIPS)],
    )
    assert plan.clears == [] and plan.pending_drops == []
    assert link_pairs(plan) == {("P1", 101, 1, RelType.PARENT)}


@pytest.mark.parametrize("status", ["delete", "Deleted", "inactive", "TOBEDELETED"])
def test_delta_relationships_row_with_status_deleted_removes_the_link(status: str) -> None:
    plan, _, _ = plan_relationships(
        [
            ("ann@example.org", "", "S1", "", "", status),
            ("ann@example.org", "", "S7", "", "", status),
        ],
        mode=DELTA,
        existing_links=[link(1, 101, 1, by_relationships=True)],
        existing_pending=[pending(1, 101, "S7", Kind.RELATIONSHIPS)],
    )
    assert cleared(plan) == [(101, 1)] and plan.removed == 1
    assert [drop.pending_id for drop in plan.pending_drops] == [1]
    assert plan.sets == [] and plan.pending_adds == []


def test_relationships_delete_row_never_removes_a_parents_file_link() -> None:
    plan, _, _ = plan_relationships(
        [("ann@example.org", "", "S1", "", "", "delete")],
        mode=DELTA,
        existing_links=[link(1, 101, 1, by_parents=True)],
    )
    assert plan.is_empty()


def test_full_relationships_file_delete_row_removes_the_link_once() -> None:
    plan, _, _ = plan_relationships(
        [
            ("ann@example.org", "", "S1", "", "", "delete"),
            ("ann@example.org", "", "S2", "", "", ""),
        ],
        existing_links=[link(1, 101, 1, by_relationships=True)],
    )
    assert cleared(plan) == [(101, 1)]
    assert plan.removed == 1


def test_a_row_naming_the_same_link_by_the_same_identifiers_is_a_duplicate() -> None:
    # Emails compare casefolded; the type is not part of what a row names.
    plan, resolved, errors = plan_relationships(
        [
            ("ann@example.org", "", "S1", "", "Parent", ""),
            ("ANN@example.org", "", "S1", "", "Guardian", ""),
        ]
    )
    assert [(e.row, e.column, e.error) for e in errors.errors] == [
        (3, "Student ID", "duplicate of row 2")
    ]
    assert [item.line for item in resolved] == [2]
    assert link_pairs(plan) == {("P1", 101, 1, RelType.PARENT)}


def test_a_repeat_of_a_row_rejected_by_other_identifiers_names_that_row() -> None:
    plan, resolved, errors = plan_relationships(
        [
            ("", "P1", "S1", "", "", ""),
            ("ann@example.org", "", "S1", "", "", ""),
            ("ANN@example.org", "", "S1", "", "", ""),
        ]
    )
    assert [(e.row, e.error) for e in errors.errors] == [
        (3, "duplicate of row 2 (same parent and child)"),
        (4, "duplicate of row 3"),
    ]
    assert [item.line for item in resolved] == [2]


def test_rows_that_do_not_resolve_are_duplicates_by_their_identifiers() -> None:
    plan, resolved, errors = plan_relationships(
        [
            ("", "P9", "S1", "", "", ""),
            ("", "P9", "S1", "", "", ""),
            ("", "P9", "S2", "", "", ""),
        ]
    )
    assert [(e.row, e.error) for e in errors.errors] == [
        (2, "unknown parent: import the parent first"),
        (3, "duplicate of row 2"),
        (4, "unknown parent: import the parent first"),
    ]
    assert resolved == []


def test_one_parent_key_with_other_identifiers_naming_other_parents_is_no_duplicate() -> None:
    # An unknown key falls back to the row's email: the two rows name two parents.
    plan, resolved, errors = plan_relationships(
        [
            ("ann@example.org", "P9", "S1", "", "", ""),
            ("bob@example.org", "P9", "S1", "", "", ""),
        ]
    )
    assert errors.errors == []
    assert link_pairs(plan) == {("P1", 101, 1, RelType.PARENT), ("P2", 102, 1, RelType.PARENT)}


def test_same_link_named_through_two_identifiers_is_a_duplicate_row() -> None:
    plan, resolved, errors = plan_relationships(
        [
            ("ann@example.org", "", "S1", "", "Parent", ""),
            ("", "P1", "", "kid1@example.org", "Guardian", ""),
            ("ann@example.org", "", "S7", "", "", ""),
            ("", "P1", "S7", "", "", ""),
        ]
    )
    assert [(e.row, e.error) for e in errors.errors] == [
        (3, "duplicate of row 2 (same parent and child)"),
        (5, "duplicate of row 4 (same parent and child)"),
    ]
    assert link_pairs(plan) == {("P1", 101, 1, RelType.PARENT)}
    assert len(plan.pending_adds) == 1


# === safety =====================================================================================


@pytest.mark.parametrize("kind", [Kind.STUDENTS, Kind.PARENTS])
def test_header_only_full_file_is_held_when_site_has_active_persons(kind: Kind) -> None:
    site = SiteCounts(active_persons=3, existing_persons=3, active_links=2)
    counts = Counts(deactivated=3)
    reason = hold_reason(kind, FULL, 0, counts, site, Thresholds(max_deactivate=1.0))
    assert reason is not None and "header-only" in reason


@pytest.mark.parametrize("kind", [Kind.STUDENTS, Kind.PARENTS])
def test_header_only_file_is_not_held_when_site_is_empty_or_file_is_delta(kind: Kind) -> None:
    assert hold_reason(kind, FULL, 0, Counts(), SiteCounts(), Thresholds()) is None
    site = SiteCounts(active_persons=3, existing_persons=3)
    assert hold_reason(kind, DELTA, 0, Counts(), site, Thresholds()) is None


def test_header_only_full_relationships_file_is_held_when_source_has_file_links() -> None:
    site = SiteCounts(active_links=50, active_file_links=2)
    reason = hold_reason(Kind.RELATIONSHIPS, FULL, 0, Counts(), site, Thresholds())
    assert reason is not None and "header-only" in reason
    no_file_links = SiteCounts(active_links=50)
    assert hold_reason(Kind.RELATIONSHIPS, FULL, 0, Counts(), no_file_links, Thresholds()) is None


def test_deactivating_more_than_max_deactivate_holds() -> None:
    keys = [f"S{n}" for n in range(1, 21)]
    snapshot = snapshot_of(
        Kind.STUDENTS, [student(key) for key in keys], {key: n for n, key in enumerate(keys, 1)}
    )
    site = SiteCounts(active_persons=20, existing_persons=20)
    at_limit, _ = plan_students([student(key) for key in keys[:18]], snapshot=snapshot)
    counts = planned_counts(at_limit, None)
    assert counts.deactivated == 2  # exactly 10%: not more than max_deactivate
    assert hold_reason(Kind.STUDENTS, FULL, 18, counts, site, Thresholds()) is None

    over, _ = plan_students([student(key) for key in keys[:17]], snapshot=snapshot)
    counts = planned_counts(over, None)
    reason = hold_reason(Kind.STUDENTS, FULL, 17, counts, site, Thresholds())
    assert reason is not None and "max_deactivate" in reason and "3 of 20" in reason


def test_delta_delete_rows_count_towards_max_deactivate() -> None:
    keys = [f"S{n}" for n in range(1, 11)]
    snapshot = snapshot_of(
        Kind.STUDENTS, [student(key) for key in keys], {key: n for n, key in enumerate(keys, 1)}
    )
    plan, _ = plan_students(
        [student("S1", status="delete"), student("S2", status="delete")],
        snapshot=snapshot,
        mode=DELTA,
    )
    site = SiteCounts(active_persons=10, existing_persons=10)
    reason = hold_reason(Kind.STUDENTS, DELTA, 2, planned_counts(plan, None), site, Thresholds())
    assert reason is not None and "max_deactivate" in reason


def test_removing_more_than_max_deactivate_of_active_links_holds() -> None:
    site = SiteCounts(active_links=20)
    at_limit = Counts(links_removed=2)
    assert hold_reason(Kind.RELATIONSHIPS, FULL, 5, at_limit, site, Thresholds()) is None
    reason = hold_reason(Kind.RELATIONSHIPS, FULL, 5, Counts(links_removed=3), site, Thresholds())
    assert reason is not None and "3 of 20 active links" in reason
    # Pending links dropped besides are not weighed, but named: the report counts them too.
    three = Counts(links_removed=3)
    reason = hold_reason(Kind.RELATIONSHIPS, FULL, 5, three, site, Thresholds(), 1)
    assert reason == (
        "would remove 3 of 20 active links (more than max_deactivate 10%), and 1 pending link: "
        "a full relationships file removes the links it does not list (a file of additions "
        'only wants mode = { relationships = "delta" })'
    )
    # A parents file's links, or a delta file's delete rows: no such hint.
    reason = hold_reason(Kind.PARENTS, FULL, 5, three, site, Thresholds())
    assert reason == "would remove 3 of 20 active links (more than max_deactivate 10%)"

    stored = [link(n, 101, n, by_relationships=True) for n in (1, 2, 3)]
    plan, _, _ = plan_relationships(
        [("bob@example.org", "", "S1", "", "", "")], existing_links=stored
    )
    counts = planned_counts(None, plan)
    assert counts.links_removed == 3
    reason = hold_reason(Kind.RELATIONSHIPS, FULL, 1, counts, site, Thresholds())
    assert reason is not None


def test_updating_more_than_max_update_holds() -> None:
    keys = ["S1", "S2", "S3", "S4"]
    snapshot = snapshot_of(
        Kind.STUDENTS, [student(key) for key in keys], {key: n for n, key in enumerate(keys, 1)}
    )
    site = SiteCounts(active_persons=4, existing_persons=4)
    three = [student(key, last="Renamed") for key in keys[:3]] + [student("S4")]
    counts = planned_counts(plan_students(three, snapshot=snapshot)[0], None)
    assert counts.updated == 3  # exactly 75%
    assert hold_reason(Kind.STUDENTS, FULL, 4, counts, site, Thresholds()) is None
    everyone = [student(key, last="Renamed") for key in keys]
    counts = planned_counts(plan_students(everyone, snapshot=snapshot)[0], None)
    reason = hold_reason(Kind.STUDENTS, FULL, 4, counts, site, Thresholds())
    assert reason is not None and "max_update" in reason and "4 of 4" in reason


def test_thresholds_are_the_sources_settings() -> None:
    site = SiteCounts(active_persons=10, existing_persons=10)
    counts = Counts(deactivated=3)
    assert hold_reason(Kind.PARENTS, FULL, 7, counts, site, Thresholds()) is not None
    assert hold_reason(Kind.PARENTS, FULL, 7, counts, site, Thresholds(max_deactivate=0.3)) is None


def test_creating_many_persons_is_never_held() -> None:
    site = SiteCounts(active_persons=1, existing_persons=1)
    assert hold_reason(Kind.STUDENTS, FULL, 1000, Counts(created=999), site, Thresholds()) is None


@pytest.mark.parametrize(
    ("rows_", "rejected", "fails"),
    [(10, 5, False), (10, 6, True), (1, 1, True), (0, 0, False), (3, 0, False)],
)
def test_more_than_max_reject_fails(rows_: int, rejected: int, fails: bool) -> None:
    reason = too_many_rejected(rows_, rejected, 0.5)
    assert (reason is not None) is fails
    if reason:
        assert f"{rejected} of {rows_}" in reason and "max_reject" in reason


def test_max_reject_counts_rejected_rows_not_errors() -> None:
    _, errors = plan_students([("S1", "", "bad", "", "", ""), student("S2"), student("S3")])
    assert len(errors.errors) == 3
    assert too_many_rejected(3, len(errors.rejected_lines), 0.5) is None


# === change descriptions ========================================================================


def test_changed_fields_names_fields_as_in_the_export() -> None:
    old = PersonFields("S1", "ann", "ann@example.org", "Ann", "Smith", None, (("grade", "4"),))
    new = PersonFields("S1", "ann", None, "Ann", "Smyth", None, (("grade", "5"), ("room", "B")))
    assert changed_fields(old, new) == {
        "attributes.grade": ("4", "5"),
        "attributes.room": (None, "B"),
        "email": ("ann@example.org", None),
        "last_name": ("Smith", "Smyth"),
    }
    assert changed_fields(old, old) == {}


def test_fingerprint_covers_what_the_file_says_but_not_the_password() -> None:
    base = PersonRecord(2, PersonFields("P1", None, None, "Ann", "Smith"), child_values=("S1",))
    same = PersonRecord(9, base.fields, password="secret", child_values=("S1",))
    assert fingerprint(base) == fingerprint(same)
    other_child = PersonRecord(2, base.fields, child_values=("S2",))
    other_type = PersonRecord(2, base.fields, child_values=("S1",), relationship_type=RelType.AIDE)
    no_column = PersonRecord(2, base.fields, child_values=None)
    no_children = PersonRecord(2, base.fields, child_values=())
    digests = {fingerprint(r) for r in (base, other_child, other_type, no_column, no_children)}
    assert len(digests) == 5


# --- a file lacking columns (SPEC §2.4: a file manages the fields it has columns for) ------

STORED = PersonFields("S1", "lena", "lena@example.org", "Lena", "Müller", "1001",
                      (("grade", "5"), ("school", "North")))  # fmt: skip


def test_file_columns_name_what_a_file_leaves_alone() -> None:
    names_only = file_columns(Kind.STUDENTS, columns("sync_key", "first_name", "last_name"))
    assert names_only == FileColumns(("username", "email", "student_number"), frozenset())
    every = file_columns(Kind.STUDENTS, columns(*PERSON, "student_number", attributes=["grade"]))
    assert every == FileColumns((), frozenset({"grade"}))
    assert file_columns(Kind.PARENTS, columns(*PERSON)).leaves_links
    assert not file_columns(Kind.PARENTS, columns(*PARENT)).leaves_links


def test_a_row_lacking_columns_keeps_the_stored_fields_and_attributes() -> None:
    names_only = FileColumns(("username", "email", "student_number"), frozenset({"school"}))
    given = PersonFields("S1", None, None, "Lena", "Muller-X", None, (("school", "South"),))
    assert names_only.merged(STORED, given) == STORED._replace(
        last_name="Muller-X", attributes=(("grade", "5"), ("school", "South"))
    )
    # A present column with an empty cell empties the field (the record has no value).
    emptied = FileColumns((), frozenset({"grade", "school"}))
    blank = PersonFields("S1", "lena", None, "Lena", "Müller", None, ())
    assert emptied.merged(STORED, blank) == blank
    assert emptied.describes(STORED) and not names_only.describes(STORED)
    assert names_only.describes(PersonFields("S1", None, None, "Lena", "Müller", None, ()))


def test_a_completed_update_has_the_fingerprint_of_what_is_stored() -> None:
    """A later file with every column and the same values is unchanged by fingerprint."""
    names_only = FileColumns(("username", "email", "student_number"), frozenset())
    record = PersonRecord(2, PersonFields("S1", None, None, "Lena", "Muller-X"), digest=7)
    upsert = PersonUpsert(1, record, fingerprint(record), True, False, 7)
    completed = complete_upsert(upsert, STORED, names_only)
    assert completed is not None
    whole = PersonRecord(5, STORED._replace(last_name="Muller-X"))
    assert completed.record.fields == whole.fields
    assert completed.fingerprint == fingerprint(whole)
    assert completed.row_digest == 7  # that row sent again changes nothing
    assert complete_upsert(upsert, STORED, None) is None
    every = FileColumns((), frozenset({"grade", "school"}))
    assert complete_upsert(upsert, STORED, every) is None
