"""The rows a file may skip unread: a site's row digests, in the order they were written."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import chain, islice

# This many lines in a row found nowhere near where the file's order puts them: the file is
# in another order than the one before (sorted anew), and KnownRows turns into a set.
MAX_MISSES = 256
# How far ahead a line is looked for: persons the file left out since (or changed, and
# listed elsewhere) make its lines come this many entries later at most.
WINDOW = 64


class KnownRows:
    """The values of store.row_digest_snapshot (a person's row digest, or -id when no line
    can match it), in the order the database keeps them, less those taken so far.

    A file sent again is mostly the file before, its lines in the order their persons were
    written. So a line's digest is compared with the entry after the last one taken, then
    with the entries passed over untaken (a small set), then looked for among the next
    WINDOW entries (those before it are passed over).
    Against a set of millions, with a cache miss a lookup, that is half the time, and the
    big set is never built. When MAX_MISSES lines in a row are found nowhere, the file is in
    another order, and the entries not taken become that set.

    A line is only ever taken if a set would take it. One whose entry is further away is
    not (its row is parsed, which changes nothing but the time); its person then takes it
    (`take`), wherever it is.
    """

    __slots__ = ("_values", "_next", "_passed", "_rest", "_misses")

    def __init__(self, values: Iterable[int] = ()) -> None:
        self._values = values if isinstance(values, list) else list(values)
        self._next = 0  # every entry before it is taken, or in _passed; none after it is
        self._passed: set[int] = set()
        self._rest: set[int] | None = None  # once the file left the order: all not taken
        self._misses = 0

    def take_line(self, digest: int) -> bool:
        """Take a line's `digest` if it is known and not taken yet (see the class); return
        whether it was."""
        rest = self._rest
        if rest is not None:
            if digest in rest:
                rest.remove(digest)
                return True
            return False
        values, at, passed = self._values, self._next, self._passed
        if at < len(values) and values[at] == digest:
            self._next = at + 1
        elif digest in passed:
            passed.remove(digest)
        elif not self._take_ahead(digest):
            # A new or changed row, most likely: the next line is looked for from the same
            # entry on.
            self._misses += 1
            if self._misses > MAX_MISSES:
                return self._as_set().take_line(digest)
            return False
        self._misses = 0
        return True

    def take(self, digest: int) -> bool:
        """Take `digest` wherever it is (a parsed row's person); return whether it was
        there, not taken yet."""
        if self._rest is None:
            if digest in self._passed:
                self._passed.remove(digest)
                return True
            if self._take_ahead(digest):
                return True
        rest = self._as_set()._rest
        assert rest is not None
        if digest in rest:
            rest.remove(digest)
            return True
        return False

    def __contains__(self, digest: object) -> bool:
        """Whether `digest` is known and not taken yet (a parked parsed row's person)."""
        if self._rest is None:
            if digest in self._passed:
                return True
            values, at = self._values, self._next
            if digest in values[at : at + WINDOW]:
                return True
        rest = self._as_set()._rest
        assert rest is not None
        return digest in rest

    def _take_ahead(self, digest: int) -> bool:
        """Take `digest` if it is among the next WINDOW entries, passing over those before."""
        values, at = self._values, self._next
        try:
            found = values.index(digest, at, at + WINDOW)
        except ValueError:
            return False
        self._passed.update(values[at:found])
        self._next = found + 1
        return True

    def __iter__(self) -> Iterator[int]:
        """The values not taken (for a full file: whom it did not list)."""
        if self._rest is not None:
            return iter(self._rest)
        return chain(self._passed, islice(self._values, self._next, None))

    def __len__(self) -> int:
        if self._rest is not None:
            return len(self._rest)
        return len(self._passed) + len(self._values) - self._next

    def __bool__(self) -> bool:
        return len(self) > 0

    def _as_set(self) -> KnownRows:
        if self._rest is None:
            rest = set(islice(self._values, self._next, None))
            rest.update(self._passed)
            self._rest = rest
            self._values, self._passed = [], set()
        return self
