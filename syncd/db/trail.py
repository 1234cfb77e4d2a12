"""The audit trail as `history` and `revert` read it: audit rows plus provenance events.

A first load creates a million persons and links; an audit row for each creation would
double what the file writes. A `person.created` or `relationship.created` event is fully
described by the row it created (its immutable id, site, kind and sync key, or parent,
child, type and origin at creation) and by the file that created it, so the bulk paths store
it as that row's provenance (`created_file_id`, and for links `created_type` and
`created_origin`) and this module reads it back as the same event. Such rows are never
deleted (persons never are; a link no file or operator names any more stays as an inactive
row), so the trail never loses an event.

A provenance event sorts right after its file's last `file.validated` event: every change a
file makes happens between that event and its `file.applied`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from syncd.db.schema import audit_events, files, links, persons
from syncd.model import PersonKind

PERSON_CREATED = "person.created"
RELATIONSHIP_CREATED = "relationship.created"
FILE_VALIDATED = "file.validated"

# SQLite before 3.32 allowed 999 bound parameters; stay under it.
_CHUNK = 900


@dataclass(frozen=True, slots=True)
class TrailEvent:
    """One audit event as stored: `id` is None for a provenance event (no audit row)."""

    order: tuple[int, int, int]
    id: int | None
    ts: datetime
    level: str
    event: str
    source: str | None
    site: str | None
    file_id: int | None
    run_id: str | None
    person_id: int | None
    data: dict[str, Any]


def explicit_event(row: Any) -> TrailEvent:
    """Return an audit_events row as a TrailEvent."""
    data = row.data if isinstance(row.data, dict) else {}
    return TrailEvent(
        (row.id, 0, 0),
        row.id,
        row.ts,
        row.level,
        row.event,
        row.source,
        row.site,
        row.file_id,
        row.run_id,
        row.person_id,
        data,
    )


def _anchors(connection: sa.Connection, file_ids: Iterable[int]) -> dict[int, int]:
    """Return, per file, the id of its last file.validated event (where its changes start)."""
    found: dict[int, int] = {}
    ids = sorted(set(file_ids))
    for start in range(0, len(ids), _CHUNK):
        query = (
            sa.select(audit_events.c.file_id, sa.func.max(audit_events.c.id))
            .where(
                audit_events.c.file_id.in_(ids[start : start + _CHUNK]),
                audit_events.c.event == FILE_VALIDATED,
            )
            .group_by(audit_events.c.file_id)
        )
        found.update({int(file_id): int(anchor) for file_id, anchor in connection.execute(query)})
    return found


def _file_context(connection: sa.Connection, file_ids: Iterable[int]) -> dict[int, Any]:
    ids = sorted(set(file_ids))
    found: dict[int, Any] = {}
    for start in range(0, len(ids), _CHUNK):
        query = sa.select(files.c.id, files.c.source, files.c.run_id).where(
            files.c.id.in_(ids[start : start + _CHUNK])
        )
        found.update({row.id: row for row in connection.execute(query)})
    return found


def _provenance_event(
    row: Any,
    rank: int,
    event: str,
    person_id: int,
    data: dict[str, Any],
    context: dict[int, Any],
    anchors: dict[int, int],
) -> TrailEvent:
    """Return the event a created row stands for, sorted after its file's validation
    (`rank` orders a file's persons before its links)."""
    file = context.get(row.created_file_id)
    return TrailEvent(
        (anchors.get(row.created_file_id, 0), rank, row.id),
        None,
        row.created_at,
        "info",
        event,
        file.source if file else None,
        row.site,
        row.created_file_id,
        file.run_id if file else None,
        person_id,
        data,
    )


def _person_created(
    rows: Sequence[Any], context: dict[int, Any], anchors: dict[int, int]
) -> list[TrailEvent]:
    return [
        _provenance_event(
            row,
            1,
            PERSON_CREATED,
            row.id,
            {"kind": row.kind, "sync_key": row.sync_key},
            context,
            anchors,
        )
        for row in rows
    ]


def _relationship_created(
    rows: Sequence[Any], context: dict[int, Any], anchors: dict[int, int]
) -> list[TrailEvent]:
    return [
        _provenance_event(
            row,
            2,
            RELATIONSHIP_CREATED,
            row.parent_id,
            {
                "parent_id": row.parent_id,
                "child_id": row.child_id,
                "parent": row.parent_key,
                "child": row.child_key,
                "type": row.created_type,
                "origin": row.created_origin,
            },
            context,
            anchors,
        )
        for row in rows
    ]


_PERSON_COLUMNS = (
    persons.c.id,
    persons.c.site,
    persons.c.kind,
    persons.c.sync_key,
    persons.c.created_at,
    persons.c.created_file_id,
)


def _link_query() -> sa.Select[Any]:
    parent = persons.alias("parent")
    child = persons.alias("child")
    return (
        sa.select(
            links.c.id,
            links.c.site,
            links.c.parent_id,
            links.c.child_id,
            links.c.created_at,
            links.c.created_file_id,
            links.c.created_type,
            links.c.created_origin,
            parent.c.sync_key.label("parent_key"),
            child.c.sync_key.label("child_key"),
        )
        .join(parent, parent.c.id == links.c.parent_id)
        .join(child, child.c.id == links.c.child_id)
    )


def _provenance(
    connection: sa.Connection, person_rows: Sequence[Any], link_rows: Sequence[Any]
) -> list[TrailEvent]:
    file_ids = {row.created_file_id for row in [*person_rows, *link_rows]}
    context = _file_context(connection, file_ids)
    anchors = _anchors(connection, file_ids)
    return _person_created(person_rows, context, anchors) + _relationship_created(
        link_rows, context, anchors
    )


def events_of_file(connection: sa.Connection, file_id: int) -> list[TrailEvent]:
    """Return every event of file `file_id`, in the order they happened."""
    explicit = connection.execute(
        sa.select(audit_events).where(audit_events.c.file_id == file_id).order_by(audit_events.c.id)
    )
    events = [explicit_event(row) for row in explicit]
    person_rows = list(
        connection.execute(sa.select(*_PERSON_COLUMNS).where(persons.c.created_file_id == file_id))
    )
    link_rows = list(connection.execute(_link_query().where(links.c.created_file_id == file_id)))
    events += _provenance(connection, person_rows, link_rows)
    return sorted(events, key=lambda event: event.order)


def events_of_person(connection: sa.Connection, person_ids: Sequence[int]) -> list[TrailEvent]:
    """Return the events that name the persons `person_ids`: their own, and the link events
    of their parents (stored under the parent's id) that concern them as children."""
    ids = sorted(set(person_ids))
    events: list[TrailEvent] = []
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        explicit = sa.select(audit_events).where(audit_events.c.person_id.in_(chunk))
        events += [explicit_event(row) for row in connection.execute(explicit)]
        events += _link_events_of_children(connection, chunk)
        person_rows = list(
            connection.execute(
                sa.select(*_PERSON_COLUMNS).where(
                    persons.c.id.in_(chunk), persons.c.created_file_id.is_not(None)
                )
            )
        )
        link_rows = list(
            connection.execute(
                _link_query().where(
                    sa.or_(links.c.parent_id.in_(chunk), links.c.child_id.in_(chunk)),
                    links.c.created_file_id.is_not(None),
                )
            )
        )
        events += _provenance(connection, person_rows, link_rows)
    unique = {(event.id, event.order): event for event in events}
    return sorted(unique.values(), key=lambda event: event.order)


_LINK_EVENTS = (
    "relationship.created",
    "relationship.removed",
    "relationship.resolved",
    "relationship.pending",
)


def _link_events_of_children(
    connection: sa.Connection, child_ids: Sequence[int]
) -> list[TrailEvent]:
    """Return the link events that concern `child_ids` as children.

    They are stored under the parent's id (a link event is the parent's), naming the child
    in their data; every parent a child ever had keeps a links row (never deleted), so the
    events are among those parents' link events. A pending link's event names the child by
    the value that a later `relationship.resolved` of the same parent matched.
    """
    children = set(child_ids)
    parents = sa.select(links.c.parent_id).where(links.c.child_id.in_(child_ids)).distinct()
    query = (
        sa.select(audit_events)
        .where(audit_events.c.person_id.in_(parents), audit_events.c.event.in_(_LINK_EVENTS))
        .order_by(audit_events.c.id)
    )
    candidates = [explicit_event(row) for row in connection.execute(query)]
    resolved = {
        (event.person_id, event.data.get("child_value"), event.data.get("origin"))
        for event in candidates
        if event.event == "relationship.resolved" and event.data.get("child_id") in children
    }
    return [
        event
        for event in candidates
        if event.data.get("child_id") in children
        or (
            event.event == "relationship.pending"
            and (event.person_id, event.data.get("child"), event.data.get("origin")) in resolved
        )
    ]


def later_links_created(
    connection: sa.Connection,
    after_event_id: int,
    skip_files: sa.Select[Any],
    parent_ids: Sequence[int],
    child_ids: Sequence[int],
) -> list[TrailEvent]:
    """Return provenance link events of files applied after `after_event_id` that name one
    of `parent_ids` as parent or `child_ids` as child (files in `skip_files` left out)."""
    later_files = sa.select(audit_events.c.file_id).where(
        audit_events.c.event == FILE_VALIDATED,
        audit_events.c.id > after_event_id,
        audit_events.c.file_id.is_not(None),
        audit_events.c.file_id.not_in(skip_files),
    )
    found: list[Any] = []
    for column, values in ((links.c.parent_id, parent_ids), (links.c.child_id, child_ids)):
        values = sorted(set(values))
        for start in range(0, len(values), _CHUNK):
            query = _link_query().where(
                links.c.created_file_id.in_(later_files),
                column.in_(values[start : start + _CHUNK]),
            )
            # The earliest (the same one on every database: a bare LIMIT 1 is any row).
            earliest = query.order_by(links.c.created_file_id, links.c.id).limit(1)
            row = connection.execute(earliest).first()
            if row is not None:
                found.append(row)
    return _provenance(connection, [], found)


def student_ids(events: Iterable[TrailEvent]) -> set[int]:
    """Return the persons the events name as students."""
    return {
        event.person_id
        for event in events
        if event.person_id is not None and event.data.get("kind") == PersonKind.STUDENT.value
    }
