"""Records parked on disk (syncd/spill.py) come back as they went in, in order."""

from __future__ import annotations

from syncd import spill
from syncd.model import PersonFields, PersonRecord, RelType


def _record(line: int) -> PersonRecord:
    fields = PersonFields(f"P{line}", None, f"p{line}@home.example", "Ann", "Smith", None, ())
    if line % 2:
        return PersonRecord(line, fields, None, False, ("S1",), RelType.AIDE, line * 7)
    types = (RelType.PARENT, RelType.GUARDIAN)  # a parent merged from one row per child
    return PersonRecord(line, fields, "pw", True, ("S1", "S2"), RelType.PARENT, None, types)


def test_records_come_back_whole_and_in_order_from_disk_and_memory() -> None:
    records = [_record(line) for line in range(2, spill.BATCH + 7)]  # a batch on disk, a rest
    with spill.RecordSpill() as parked:
        for record in records:
            parked.add(record)
        back = [record for batch in parked.batches() for record in batch]
    assert back == records
    assert all(type(record.relationship_type) is RelType for record in back)
    assert back[0].child_types == (RelType.PARENT, RelType.GUARDIAN)
