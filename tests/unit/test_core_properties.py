"""Property tests of the pure core (SPEC §2.3–2.5), with Hypothesis.

1. Applying the same file twice changes nothing the second time: a file planned against the
   state its own plan leads to plans nothing.
2. A parents row with a cell `a;b` plans the same as two rows `a` and `b` for that parent.
3. The child separators `;`, `,` and `|` are equivalent.

"Applying" a plan here is a few lines of plain Python over the snapshot types, doing what
syncd.db.apply does to the rows those snapshots are read from.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncd.core.plan import (
    ExistingLink,
    ExistingPending,
    ExistingPerson,
    LinkPlan,
    LinkTable,
    PersonPlan,
    link_is_active,
    link_pair,
)
from syncd.model import ChildField, Kind, Mode, RelType, attributes_text
from tests.unit.test_plan import (
    OTHER_SOURCE,
    PARENTS,
    SOURCE,
    STUDENTS,
    parent,
    parent_index,
    plan_parents,
    plan_relationships,
    student_index,
)

PROPERTY_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

PARENT_IDS = {"P1": 101, "P2": 102, "P3": 103}
STUDENT_IDS = [student[0] for student in STUDENTS]
# Known students, students not in the site yet, and a value two students share (username).
CHILD_VALUES = ["S1", "S2", "S3", "S8", "S9", "kid1", "KID1"]
TYPES = ["", "Parent", "guardian", "AIDE", "Mother", "Other"]
STATUSES = ["", "", "", "delete", "Inactive"]
SITE_STUDENTS = [*STUDENTS, (4, "S4", "kid1", "twin@example.org", "1004")]


@dataclass
class State:
    """The site as the store would hand it to the core: persons, links, pending links."""

    persons: dict[str, ExistingPerson] = field(default_factory=dict)
    links: dict[tuple[int, int], ExistingLink] = field(default_factory=dict)
    pending: dict[int, ExistingPending] = field(default_factory=dict)
    next_id: int = 1000

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def apply_persons(self, plan: PersonPlan) -> dict[str, int]:
        new_ids: dict[str, int] = {}
        for upsert in plan.upserts:
            key = upsert.record.fields.sync_key
            person_id = upsert.person_id
            if person_id is None:
                person_id = new_ids[key] = self.new_id()
            before = self.persons.get(key)
            if before is None or before.active or upsert.reactivate:
                self.persons[key] = ExistingPerson(person_id, upsert.fingerprint, True)
            else:  # an orphaned parent whose row changed stays inactive until a link appears
                self.persons[key] = dataclasses.replace(before, fingerprint=upsert.fingerprint)
        for gone in plan.deactivations:
            self.persons[gone.sync_key] = dataclasses.replace(
                self.persons[gone.sync_key], active=False, inactive_reason="file"
            )
        return new_ids

    def apply_links(self, plan: LinkPlan, new_ids: dict[str, int], source: str) -> None:
        for change in plan.sets:
            parent_id = (
                change.parent_id if change.parent_id is not None else new_ids[change.parent_key]
            )
            by_parents = change.origin is Kind.PARENTS
            by_relationships = change.origin is Kind.RELATIONSHIPS
            old = change.existing
            if old is None:
                assert (parent_id, change.child_id) not in self.links, "duplicate link insert"
                self.links[(parent_id, change.child_id)] = ExistingLink(
                    self.new_id(),
                    parent_id,
                    change.child_id,
                    change.type,
                    by_parents,
                    by_relationships,
                    None,
                    source,
                )
            else:
                self.links[(parent_id, change.child_id)] = dataclasses.replace(
                    old,
                    type=change.type,
                    by_parents=old.by_parents or by_parents,
                    by_relationships=old.by_relationships or by_relationships,
                    source=source if by_relationships else old.source,
                )
        for clear in plan.clears:
            old = clear.link
            pair = (old.parent_id, old.child_id)
            assert self.links.get(pair) == old, "a link cleared twice or after a change"
            by_parents = old.by_parents and clear.origin is not Kind.PARENTS
            by_relationships = old.by_relationships and clear.origin is not Kind.RELATIONSHIPS
            if old.manual is None and not (by_parents or by_relationships):
                del self.links[pair]
            else:
                self.links[pair] = dataclasses.replace(
                    old, by_parents=by_parents, by_relationships=by_relationships
                )
        for add in plan.pending_adds:
            parent_id = add.parent_id if add.parent_id is not None else new_ids[add.parent_key]
            pending_id = self.new_id()
            self.pending[pending_id] = ExistingPending(
                pending_id,
                parent_id,
                add.child_field,
                add.child_value,
                add.type,
                add.origin,
                source,
            )
        for pending, rel_type in plan.pending_retypes:
            self.pending[pending.pending_id] = dataclasses.replace(pending, type=rel_type)
        for drop in plan.pending_drops:
            assert self.pending.pop(drop.pending_id, None) is not None, "a pending dropped twice"

    def active_links(self) -> set[tuple[int, int]]:
        return {pair for pair, link in self.links.items() if link.active}


# --- strategies ---

separators = st.sampled_from([";", ",", "|"])
child_lists = st.lists(st.sampled_from(CHILD_VALUES), max_size=4)


@st.composite
def child_cells(draw: st.DrawFn, values: Sequence[str] | None = None) -> str:
    chosen = draw(child_lists) if values is None else list(values)
    cell = ""
    for index, value in enumerate(chosen):
        if index:
            cell += draw(separators) + draw(st.sampled_from(["", " "]))
        cell += value
    return cell


@st.composite
def parent_rows(draw: st.DrawFn) -> tuple[str, ...]:
    return parent(
        draw(st.sampled_from(list(PARENT_IDS))),
        draw(child_cells()),
        first=draw(st.sampled_from(["Ann", "Ann", "Ann", ""])),
        last=draw(st.sampled_from(["Smith", "Smith", "Smyth"])),
        type=draw(st.sampled_from(TYPES)),
        status=draw(st.sampled_from(STATUSES)),
    )


@st.composite
def existing_links(draw: st.DrawFn, parent_ids: Sequence[int]) -> list[ExistingLink]:
    found: list[ExistingLink] = []
    pairs = draw(
        st.lists(
            st.tuples(st.sampled_from(list(parent_ids)), st.sampled_from(STUDENT_IDS)),
            unique=True,
            max_size=6,
        )
    )
    for link_id, (parent_id, child_id) in enumerate(pairs, start=1):
        by_parents = draw(st.booleans())
        by_relationships = draw(st.booleans())
        manual = draw(st.sampled_from([None, None, None, "link", "unlink"]))
        if manual is None and not (by_parents or by_relationships):
            by_parents = True  # a link no file and no admin made does not exist
        found.append(
            ExistingLink(
                link_id,
                parent_id,
                child_id,
                draw(st.sampled_from(list(RelType))),
                by_parents,
                by_relationships,
                manual,
                draw(st.sampled_from([SOURCE, OTHER_SOURCE])),
            )
        )
    return found


@st.composite
def existing_pending(draw: st.DrawFn, parent_ids: Sequence[int]) -> list[ExistingPending]:
    entries = draw(
        st.lists(
            st.tuples(
                st.sampled_from(list(parent_ids)),
                st.sampled_from(["S8", "S9"]),
                st.sampled_from([Kind.PARENTS, Kind.RELATIONSHIPS]),
            ),
            unique=True,
            max_size=4,
        )
    )
    return [
        ExistingPending(
            500 + n,
            parent_id,
            "sync_key",
            value,
            RelType.PARENT,
            origin,
            draw(st.sampled_from([SOURCE, OTHER_SOURCE, None])),
        )
        for n, (parent_id, value, origin) in enumerate(entries)
    ]


@st.composite
def site_states(draw: st.DrawFn) -> State:
    """Return a site some earlier files left: parents (some inactive), links, pending links."""
    state = State()
    for key in draw(st.lists(st.sampled_from(list(PARENT_IDS)), unique=True)):
        active = draw(st.booleans())
        reason = None if active else draw(st.sampled_from(["file", "orphan"]))
        state.persons[key] = ExistingPerson(PARENT_IDS[key], "earlier", active, reason)
    for existing in draw(existing_links(list(PARENT_IDS.values()))):
        state.links[(existing.parent_id, existing.child_id)] = existing
    for waiting in draw(existing_pending(list(PARENT_IDS.values()))):
        state.pending[waiting.pending_id] = waiting
    return state


modes = st.sampled_from([Mode.FULL, Mode.DELTA])


# --- 1. idempotence ---


def _plan_parents_against(
    values: list[tuple[str, ...]], state: State, mode: Mode
) -> tuple[PersonPlan, LinkPlan]:
    result = plan_parents(
        values,
        snapshot=state.persons,
        mode=mode,
        students=student_index(ChildField.SYNC_KEY, SITE_STUDENTS),
        existing_links=list(state.links.values()),
        existing_pending=list(state.pending.values()),
    )
    return result.persons, result.links


@PROPERTY_SETTINGS
@given(values=st.lists(parent_rows(), max_size=8), state=site_states(), mode=modes)
def test_parents_file_applied_twice_plans_nothing_the_second_time(
    values: list[tuple[str, ...]], state: State, mode: Mode
) -> None:
    persons, links = _plan_parents_against(values, state, mode)
    new_ids = state.apply_persons(persons)
    state.apply_links(links, new_ids, SOURCE)

    again_persons, again_links = _plan_parents_against(values, state, mode)
    assert again_persons.upserts == []
    assert again_persons.deactivations == []
    assert again_links.is_empty()

    # Stronger: even re-planning every listed parent's links finds them already as asked.
    stale = State(
        persons={
            key: dataclasses.replace(person, fingerprint="stale")
            for key, person in state.persons.items()
        },
        links=state.links,
        pending=state.pending,
    )
    _, replanned = _plan_parents_against(values, stale, mode)
    assert replanned.sets == [] and replanned.pending_adds == []
    assert replanned.removed == 0


@st.composite
def relationship_rows(draw: st.DrawFn) -> tuple[str, ...]:
    by_email = draw(st.booleans())
    parent_key = draw(st.sampled_from(["P1", "P2", "P3", "P9"]))
    email = {"P1": "Ann@example.org", "P2": "bob@example.org", "P3": "ann@example.org"}.get(
        parent_key, "nobody@example.org"
    )
    child_by_email = draw(st.booleans())
    child = draw(st.sampled_from(["S1", "S2", "S3", "S8"]))
    child_email = {"S1": "kid1@example.org", "S2": "KID2@example.org"}.get(child, "new@example.org")
    return (
        email if by_email else "",
        "" if by_email else parent_key,
        "" if child_by_email else child,
        child_email if child_by_email else "",
        draw(st.sampled_from(TYPES)),
        draw(st.sampled_from(STATUSES)),
    )


RELATIONSHIP_PARENTS = parent_index([*PARENTS, (103, "P3", "ann@example.org", "carl")])


def _plan_relationships_against(
    values: list[tuple[str, ...]], state: State, mode: Mode
) -> LinkPlan:
    plan, _, _ = plan_relationships(
        values,
        mode=mode,
        parents=RELATIONSHIP_PARENTS,
        existing_links=list(state.links.values()),
        existing_pending=list(state.pending.values()),
    )
    return plan


@PROPERTY_SETTINGS
@given(values=st.lists(relationship_rows(), max_size=8), state=site_states(), mode=modes)
def test_relationships_file_applied_twice_plans_nothing_the_second_time(
    values: list[tuple[str, ...]], state: State, mode: Mode
) -> None:
    first = _plan_relationships_against(values, state, mode)
    state.apply_links(first, {}, SOURCE)
    again = _plan_relationships_against(values, state, mode)
    assert again.is_empty(), again


@PROPERTY_SETTINGS
@given(values=st.lists(relationship_rows(), max_size=8), state=site_states(), mode=modes)
def test_relationships_file_never_removes_other_kinds_or_manual_links(
    values: list[tuple[str, ...]], state: State, mode: Mode
) -> None:
    protected = {
        pair
        for pair, link in state.links.items()
        if link.active and (link.manual == "link" or link.by_parents)
    }
    state.apply_links(_plan_relationships_against(values, state, mode), {}, SOURCE)
    assert protected <= state.active_links()


@PROPERTY_SETTINGS
@given(values=st.lists(parent_rows(), max_size=8), state=site_states(), mode=modes)
def test_parents_file_never_removes_relationships_or_manual_links(
    values: list[tuple[str, ...]], state: State, mode: Mode
) -> None:
    protected = {
        pair
        for pair, link in state.links.items()
        if link.active and (link.manual == "link" or link.by_relationships)
    }
    persons, links = _plan_parents_against(values, state, mode)
    state.apply_links(links, state.apply_persons(persons), SOURCE)
    assert protected <= state.active_links()


# --- 2. one cell or one row per child ---


@PROPERTY_SETTINGS
@given(
    children=st.lists(st.sampled_from(CHILD_VALUES), min_size=1, max_size=4),
    separator=separators,
    type=st.sampled_from(TYPES),
    state=site_states(),
    mode=modes,
)
def test_multi_child_cell_plans_the_same_as_one_row_per_child(
    children: list[str], separator: str, type: str, state: State, mode: Mode
) -> None:
    one_cell = [parent("P1", separator.join(children), type=type)]
    one_per_row = [parent("P1", child, type=type) for child in children]
    cell_persons, cell_links = _plan_parents_against(one_cell, state, mode)
    rows_persons, rows_links = _plan_parents_against(one_per_row, state, mode)

    assert [u.fingerprint for u in cell_persons.upserts] == [
        u.fingerprint for u in rows_persons.upserts
    ]
    assert cell_persons.deactivations == rows_persons.deactivations
    assert cell_links == rows_links
    plan = plan_parents(one_cell, students=student_index(ChildField.SYNC_KEY, SITE_STUDENTS))
    again = plan_parents(one_per_row, students=student_index(ChildField.SYNC_KEY, SITE_STUDENTS))
    # The same problems are reported (once per row that has them).
    assert {(e.column, e.value, e.error) for e in plan.errors.errors} == {
        (e.column, e.value, e.error) for e in again.errors.errors
    }


# --- 3. separators ---


@PROPERTY_SETTINGS
@given(
    children=st.lists(st.sampled_from(CHILD_VALUES), max_size=4),
    first=st.data(),
    state=site_states(),
    mode=modes,
)
def test_child_separators_are_equivalent(
    children: list[str], first: st.DataObject, state: State, mode: Mode
) -> None:
    mixed = first.draw(child_cells(children))
    plans = [
        _plan_parents_against([parent("P1", cell)], state, mode)
        for cell in (";".join(children), ",".join(children), "|".join(children), mixed)
    ]
    for persons, links in plans[1:]:
        assert [u.fingerprint for u in persons.upserts] == [
            u.fingerprint for u in plans[0][0].upserts
        ]
        assert persons.link_requests == plans[0][0].link_requests
        assert links == plans[0][1]


def test_link_is_active_rules() -> None:
    """The rule every property above leans on: manual edits win, else any file's mark."""
    assert link_is_active(False, False, "link")
    assert not link_is_active(True, True, "unlink")
    assert link_is_active(True, False, None) and link_is_active(False, True, None)
    assert not link_is_active(False, False, None)


any_link = st.builds(
    ExistingLink,
    link_id=st.integers(1, 2**62),
    parent_id=st.integers(1, 2**62),
    child_id=st.integers(1, 2**62),
    type=st.sampled_from(RelType),
    by_parents=st.booleans(),
    by_relationships=st.booleans(),
    manual=st.sampled_from([None, "link", "unlink"]),
    source=st.sampled_from([None, "sis", "hand", "nightly-2"]),
)


@given(links=st.lists(any_link, max_size=20, unique_by=lambda x: (x.parent_id, x.child_id)))
def test_a_link_table_gives_back_every_link_it_packed(links: list[ExistingLink]) -> None:
    table = LinkTable.of(links)
    assert len(table) == len(links)
    for link in links:
        pair = link_pair(link.parent_id, link.child_id)
        assert table[pair] == link
        assert table.marked(pair) == (link.by_relationships, link.type)
    for source in ("sis", "hand"):
        of_source = [link for link in links if link.by_relationships and link.source == source]
        assert list(table.file_links_of(source)) == of_source
    for link in links[::2]:  # those a full file lists: no longer its leftovers, the same links
        table.list_pair(link_pair(link.parent_id, link.child_id))
    for source in ("sis", "hand"):
        of_source = [link for link in links if link.by_relationships and link.source == source]
        listed = {link_pair(link.parent_id, link.child_id) for link in links[::2]}
        left = [
            link for link in of_source if link_pair(link.parent_id, link.child_id) not in listed
        ]
        assert list(table.file_links_of(source)) == left
    for link in links:
        pair = link_pair(link.parent_id, link.child_id)
        assert table[pair] == link
        assert table.marked(pair) == (link.by_relationships, link.type)
    assert table.marked(link_pair(0, 0)) is None


@given(
    st.dictionaries(st.text(min_size=1, max_size=8), st.text(min_size=1, max_size=8), max_size=4)
)
def test_attributes_are_stored_as_the_json_document_of_their_pairs(
    attributes: dict[str, str],
) -> None:
    # Quotes, backslashes, control characters, U+2028, lone surrogates: the text is one
    # JSON object whose members are the pairs, whatever they hold.
    pairs = tuple(sorted(attributes.items()))
    assert json.loads(attributes_text(pairs)) == attributes
