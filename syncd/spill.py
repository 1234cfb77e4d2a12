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
_TYPES: tuple[RelType, ...] = tuple(RelType)
_TYPE_CODE = {rel_type: code for code, rel_type in enumerate(_TYPES)}


class RecordSpill:
    """An append-only store of PersonRecords on disk, read back in batches."""

    def __init__(self) -> None:
        self._file: IO[bytes] | None = None
        self._batch: list[tuple[Any, ...]] = []
        self.count = 0

    def add(self, record: PersonRecord) -> None:
        fields = record.fields
        self._batch.append(
            (
                record.line,
                fields.sync_key,
                fields.username,
                fields.email,
                fields.first_name,
                fields.last_name,
                fields.student_number,
                fields.attributes,
                record.password,
                record.deleted,
                record.child_values,
                _TYPE_CODE[record.relationship_type],
                record.digest,
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
    (line, key, username, email, first, last, number, attributes, password, deleted,
     children, type_code, digest) = values  # fmt: skip
    return PersonRecord(
        line,
        PersonFields(key, username, email, first, last, number, attributes),
        password,
        deleted,
        children,
        _TYPES[type_code],
        digest,
    )
