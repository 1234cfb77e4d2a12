"""Person records parked in a temporary file between reading a file and applying it.

A nightly parents file has a million and a half rows; holding their records until the last
row is read (a parent's later row may add children, a late error may fail the file) would
cost gigabytes. The records wait on disk instead, as marshalled tuples in batches, and come
back in the order they went in.
"""

from __future__ import annotations

import marshal
import struct
import tempfile
from collections.abc import Iterator
from typing import IO, Any

from syncd.model import PersonFields, PersonRecord, RelType

BATCH = 5_000
_LENGTH = struct.Struct("<I")
_TYPES: dict[str, RelType] = {rel_type.value: rel_type for rel_type in RelType}


class RecordSpill:
    """An append-only store of PersonRecords on disk, read back in batches."""

    def __init__(self) -> None:
        self._file: IO[bytes] | None = None
        self._batch: list[tuple[Any, ...]] = []
        self.count = 0

    def add(self, record: PersonRecord) -> None:
        line, fields, password, deleted, children, rel_type, digest, types = record
        # The type's plain value: marshal takes no str subclass, and an Enum hashes slowly.
        self._batch.append(
            (
                line,
                tuple(fields),
                password,
                deleted,
                children,
                rel_type._value_,
                digest,
                None if types is None else tuple(t._value_ for t in types),
            )
        )
        self.count += 1
        if len(self._batch) >= BATCH:
            self._write_batch()

    def _write_batch(self) -> None:
        if self._file is None:
            self._file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        data = marshal.dumps(self._batch)
        self._file.write(_LENGTH.pack(len(data)))
        self._file.write(data)
        self._batch.clear()

    def batches(self) -> Iterator[list[PersonRecord]]:
        """Yield the records in the order they were added, in batches of up to BATCH."""
        if self._file is not None:
            self._file.seek(0)
            while header := self._file.read(_LENGTH.size):
                (size,) = _LENGTH.unpack(header)
                yield [_record(values) for values in marshal.loads(self._file.read(size))]
            self._file.seek(0, 2)
        if self._batch:
            yield [_record(values) for values in self._batch]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._batch.clear()

    def __enter__(self) -> RecordSpill:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _record(values: tuple[Any, ...]) -> PersonRecord:
    line, fields, password, deleted, children, rel_type, digest, types = values
    if types is not None:
        types = tuple(_TYPES[value] for value in types)
    return _make_record(
        (line, _make_fields(fields), password, deleted, children, _TYPES[rel_type], digest, types)
    )


_make_record = PersonRecord._make
_make_fields = PersonFields._make
