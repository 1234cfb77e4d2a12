"""KnownRows: the rows a file may skip unread take exactly what a set would, in any order."""

from __future__ import annotations

from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.formats import known_rows
from syncd.formats.known_rows import MAX_MISSES, KnownRows


class _AsASet:
    """What KnownRows must do, whatever the order: a set of the values not taken."""

    def __init__(self, values: list[int]) -> None:
        self.rest = set(values)

    def take(self, digest: int) -> bool:
        if digest in self.rest:
            self.rest.remove(digest)
            return True
        return False


@settings(max_examples=500)
@given(
    values=st.lists(st.integers(-50, 10**6), unique=True, max_size=60),
    data=st.data(),
    max_misses=st.integers(0, 8),
    window=st.integers(1, 8),
)
def test_it_takes_only_what_a_set_would(
    values: list[int], data: st.DataObject, max_misses: int, window: int
) -> None:
    """A line is taken only if it is known and not taken yet (one it does not take is
    parsed, and its person takes it); a person takes and asks exactly as from a set."""
    # Mostly the known values (a file sent again), and some others.
    digests = st.integers(-50, 10**6)
    if values:
        digests = st.one_of(st.sampled_from(values), digests)
    # An operation: a line's digest read (0), a parsed row's person taken (1), or asked (2).
    operations = data.draw(st.lists(st.tuples(st.sampled_from((0, 0, 0, 1, 2)), digests)))
    with (
        mock.patch.object(known_rows, "MAX_MISSES", max_misses),
        mock.patch.object(known_rows, "WINDOW", window),
    ):
        known, model = KnownRows(values), _AsASet(values)
        assert len(known) == len(values)
        for operation, digest in operations:
            if operation == 0:
                if known.take_line(digest):
                    assert model.take(digest)
            elif operation == 1:
                assert known.take(digest) == model.take(digest)
            else:
                assert (digest in known) == (digest in model.rest)
            assert len(known) == len(model.rest) and bool(known) == bool(model.rest)
        assert sorted(known) == sorted(model.rest)


@settings(max_examples=200)
@given(
    values=st.lists(st.integers(0, 10**6), unique=True, max_size=300),
    changed=st.sets(st.integers(0, 299)),
    left_out=st.sets(st.integers(0, 299)),
)
def test_a_file_in_its_old_order_is_read_in_order(
    values: list[int], changed: set[int], left_out: set[int]
) -> None:
    """The file before, some rows changed (new digests) and some left out: every unchanged
    line is found where the order puts it, and the rest is what the file did not list."""
    known = KnownRows(values)
    lines = [
        -1 - position if position in changed else value  # a digest no entry has
        for position, value in enumerate(values)
        if position not in left_out
    ]
    taken = [known.take_line(digest) for digest in lines]
    assert taken == [digest >= 0 for digest in lines]
    unlisted = {value for position, value in enumerate(values) if position in left_out}
    changed_values = {v for p, v in enumerate(values) if p in changed and p not in left_out}
    assert set(known) == unlisted | changed_values
    # The changed rows' persons are then taken by their old digest, as the parsed rows are.
    assert all(known.take(value) for value in changed_values)
    assert set(known) == unlisted


def test_a_file_in_another_order_turns_it_into_a_set() -> None:
    values = list(range(1000))
    known = KnownRows(values)
    lines = values[::-1]
    taken = [known.take_line(digest) for digest in lines]
    # The first MAX_MISSES lines are parsed (found nowhere near), then a set finds the rest.
    assert taken == [False] * MAX_MISSES + [True] * (1000 - MAX_MISSES)
    assert sorted(known) == lines[:MAX_MISSES][::-1]  # what those parsed rows' persons take
    assert all(known.take(value) for value in lines[:MAX_MISSES]) and not known


def test_in_order_no_set_is_made() -> None:
    values = list(range(0, 3000, 3))
    known = KnownRows(values)
    for position, value in enumerate(values):
        if position % 10 == 0:
            assert not known.take_line(value + 1)  # changed
            assert known.take(value)  # its person, parsed
        elif position % 10 != 5:  # left out
            assert known.take_line(value)
    assert known._rest is None
    assert sorted(known) == values[5::10]


def test_new_rows_between_the_old_ones_make_no_set() -> None:
    values = list(range(0, 20_000, 2))
    known = KnownRows(values)
    for value in values:
        assert not known.take_line(-1 - value)  # a new person's row before each old one
        assert known.take_line(value)
    assert known._rest is None and not known


def test_a_parsed_row_takes_its_person_where_the_reading_stands() -> None:
    """A chunk of parsed rows is applied as its last row is read: that row's person is
    still the entry the reading stands at."""
    known = KnownRows(range(10))
    assert known.take_line(0) and not known.take_line(100)  # row 1 changed
    assert 1 in known and known.take(1)
    assert known.take_line(2) and known._rest is None
    assert 1 not in known and sorted(known) == list(range(3, 10))
