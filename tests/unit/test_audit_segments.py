"""A segment's lines come back whole and in order, however they were added and spooled:
whole lines, runs of members between a shared start and end, and another segment's spool
taken into the chain."""

from __future__ import annotations

import pytest

from syncd import audit
from syncd.audit import EventSegment


def _lines(segment: EventSegment) -> list[str]:
    spools, runs = segment.take_lines()
    return list(audit._spooled(spools, runs))


@pytest.mark.parametrize("spool_lines", [1, 2, 3, 1000])
def test_whole_lines_and_member_runs_keep_their_order(
    monkeypatch: pytest.MonkeyPatch, spool_lines: int
) -> None:
    monkeypatch.setattr(audit, "SPOOL_LINES", spool_lines)
    created, linked = ('{"a":1,"event":"x","k":', ',"t":"ü"}\n'), ('{"b":2,', "}\n")
    segment = EventSegment()
    segment.add_line('{"whole":1}\n')
    segment.add_members(*created, ['"S1"', '"S\\n2"'])  # an escaped newline stays a member
    segment.add_members(*created, ['"S3"'])
    segment.add_members(*linked, ['"c":"Zoë"'])
    segment.add_line('{"whole":2}\n')
    held = EventSegment()
    held.add_members(*created, ['"H1"', '"H2"', '"H3"'])
    held.spool_lines()
    segment.append_spooled(held.take_lines()[0])
    segment.add_members(*created, [])
    segment.add_members(*linked, ['"c":"last"'])

    assert _lines(segment) == [
        '{"whole":1}',
        '{"a":1,"event":"x","k":"S1","t":"ü"}',
        '{"a":1,"event":"x","k":"S\\n2","t":"ü"}',
        '{"a":1,"event":"x","k":"S3","t":"ü"}',
        '{"b":2,"c":"Zoë"}',
        '{"whole":2}',
        '{"a":1,"event":"x","k":"H1","t":"ü"}',
        '{"a":1,"event":"x","k":"H2","t":"ü"}',
        '{"a":1,"event":"x","k":"H3","t":"ü"}',
        '{"b":2,"c":"last"}',
    ]
