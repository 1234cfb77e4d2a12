"""Operator edits outside files: manual link/unlink, and undoing one applied file."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa

from syncd import audit
from syncd.audit import EventBuffer
from syncd.core.plan import ExistingPending, child_lookup_value, link_is_active
from syncd.db import store
from syncd.db import trail as trail_of
from syncd.db.apply import Applied, ApplyContext, drop_pending, manual_link_row, settle_parents
from syncd.db.schema import audit_events, files, links, pending_links, persons
from syncd.db.trail import TrailEvent
from syncd.errors import FileFailed, UsageError
from syncd.model import FileStatus, PersonKind, RelType


def _person(connection: sa.Connection, site: str, key: str, kind: PersonKind) -> Any:
    rows = store.find_persons(connection, site, key, kind)
    if not rows:
        raise UsageError(f'no {kind.value} "{key}" in site "{site}"')
    if len(rows) > 1:
        keys = ", ".join(row.sync_key for row in rows)
        raise UsageError(
            f'"{key}" matches {len(rows)} {kind.value}s in site "{site}" ({keys}); give a sync key'
        )
    return rows[0]


def _student(connection: sa.Connection, site: str, key: str, child_fields: Collection[str]) -> Any:
    """Return the one student `key` names by any field it may be given as; never a guess
    when it names several (SPEC §2.3), one by one field and another by another."""
    named = store.students_named(connection, site, key, child_fields)
    if not named:
        raise UsageError(f'no student "{key}" in site "{site}"')
    if len(named) > 1:
        which = ", ".join(f"{row.sync_key} (by {how})" for row, how in named)
        raise UsageError(
            f'"{key}" names {len(named)} students in site "{site}": {which}; '
            "name the child by a key only it has"
        )
    return named[0][0]


class ManualEdit(NamedTuple):
    """What `syncd link`/`unlink` did: whether it changed anything, and the sync keys of the
    two persons (a key given as a username or email is resolved)."""

    changed: bool
    parent: str
    child: str
    # The parent's status changed with it (SPEC §2.4): its last child gone, or a first again.
    parent_deactivated: bool = False
    parent_reactivated: bool = False
    # An unlink that dropped a pending link (no student has the child value).
    pending: bool = False
    # Whether the pair was linked (or its link pending) before the edit.
    was_linked: bool = True
    # A link that was there already and is now of another type: its type before and now.
    retyped: tuple[str, str] | None = None
    # The child is an inactive student (a link to it keeps no parent active).
    child_inactive: bool = False
    # The link's type now (None for a pending link's child value).
    type: str | None = None


def manual_link(
    connection: sa.Connection,
    site: str,
    parent_key: str,
    child_key: str,
    rel_type: RelType | None,
    unlink: bool,
    events: EventBuffer,
    child_fields: Collection[str] = (),
) -> ManualEdit:
    """Link (or unlink) a parent and a child by hand; files never undo it. Unlinking a
    child value no student has drops the parent's pending links to it and keeps the two
    apart (store.mark_unlinked): no file makes the link pending again, and the student's
    arrival makes it a link marked "unlink" (apply.resolve_pending). `child_fields`: the
    site's sources' child fields; a child is named by its sync key, username or email, or
    by a student number or internal id where a source matches children so."""
    parent = _person(connection, site, parent_key, PersonKind.PARENT)
    if not store.students_named(connection, site, child_key, child_fields):
        pending = _pending_to(connection, parent.id, child_key)
        if unlink and pending:
            return _drop_pending_by_hand(
                connection, site, parent, child_key, rel_type, pending, events
            )
        if _unlinked_before(connection, site, parent.id, child_key):
            if unlink:
                return ManualEdit(False, parent.sync_key, child_key, pending=True, was_linked=False)
            raise UsageError(
                f'no student "{child_key}" in site "{site}" yet: {parent.sync_key} stays '
                "unlinked from it (syncd unlink); link them once the student has arrived"
            )
    child = _student(connection, site, child_key, child_fields)
    now = events.now
    row = connection.execute(
        sa.select(links).where(links.c.parent_id == parent.id, links.c.child_id == child.id)
    ).first()
    manual = "unlink" if unlink else "link"
    was_active = row is not None and link_is_active(
        row.by_parents, row.by_relationships, row.manual
    )
    # What the link was: its type and who made it ("manual" or "file").
    old_type = row.type if row is not None else None
    old_origin = "manual" if row is not None and row.manual == "link" else "file"
    if unlink and was_active and rel_type is not None and rel_type.value != old_type:
        raise UsageError(
            f"{parent.sync_key} → {child.sync_key} is a {old_type} link, not {rel_type.value}; "
            "leave out --type or give its type"
        )
    if row is None:
        connection.execute(
            links.insert().values(
                manual_link_row(site, parent.id, child.id, rel_type or RelType.PARENT, manual, now)
            )
        )
        current_type = (rel_type or RelType.PARENT).value
    else:
        current_type = rel_type.value if rel_type and not unlink else row.type
        connection.execute(
            links.update()
            .where(links.c.id == row.id)
            .values(manual=manual, type=current_type, updated_at=now)
        )
    is_active = not unlink
    details = {
        "person_id": parent.id,
        "parent_id": parent.id,
        "child_id": child.id,
        "parent": parent.sync_key,
        "child": child.sync_key,
        "type": current_type,
        "origin": "manual",
        # Why, as a revert's and an orphan's events say theirs: an operator's edit (origin
        # names who made the link, which an unlink of a file's link keeps).
        "reason": "manual",
    }
    applied = Applied()
    changed = is_active != was_active
    if is_active and not was_active:
        events.add(audit.RELATIONSHIP_CREATED, **details)
        applied.parents_gaining_links.add(parent.id)
    elif was_active and not is_active:
        details["origin"] = old_origin  # of the link removed
        events.add(audit.RELATIONSHIP_REMOVED, **details)
        applied.parents_losing_links.add(parent.id)
    elif unlink and (row is None or row.manual != "unlink"):
        # Not linked now, but from now on no file links them either: a change of its own,
        # in the trail, so that whoever wonders why a file's link never appears finds it.
        changed = True
        events.add(audit.RELATIONSHIP_REMOVED, **details, was_linked=False)
    elif is_active and (old_type != current_type or old_origin != "manual"):
        # A link that was there already: now of another type, or a file's link now manual
        # (protected from files). Said as files say a new type: created, with what it was.
        changed = True
        events.add(
            audit.RELATIONSHIP_CREATED,
            **details,
            previous_type=old_type,
            previous_origin=old_origin,
        )
    deactivated, reactivated = _settle_edit(connection, site, events, applied)
    return ManualEdit(
        changed,
        parent.sync_key,
        child.sync_key,
        deactivated,
        reactivated,
        was_linked=was_active,
        retyped=(str(old_type), current_type)
        if was_active and is_active and old_type != current_type
        else None,
        child_inactive=not child.active,
        type=current_type,
    )


def _pending_to(
    connection: sa.Connection, parent_id: int, child_value: str
) -> list[ExistingPending]:
    """Return the parent's pending links whose child value is `child_value`, compared as
    their child field compares (emails and usernames in any case)."""
    return [
        pending
        for pending in store.pending_of_parents(connection, [parent_id])
        if child_lookup_value(pending.child_field, pending.child_value)
        == child_lookup_value(pending.child_field, child_value)
    ]


def _unlinked_before(
    connection: sa.Connection, site: str, parent_id: int, child_value: str
) -> bool:
    """Return whether an operator unlinked the parent from `child_value` while no student
    had it (compared as each mark's child field compares)."""
    return any(
        parent == parent_id and value == child_lookup_value(field, child_value)
        for parent, field, value in store.unlinked_values(connection, site)
    )


def _drop_pending_by_hand(
    connection: sa.Connection,
    site: str,
    parent: Any,
    child_value: str,
    rel_type: RelType | None,
    pending: Sequence[ExistingPending],
    events: EventBuffer,
) -> ManualEdit:
    """Drop the parent's pending links to `child_value` (of type `rel_type`, if given, as for
    a live link) and keep the two apart."""
    types = sorted({link.type.value for link in pending})
    if rel_type is not None and rel_type.value not in types:
        raise UsageError(
            f"{parent.sync_key} → {child_value} is a pending {' and '.join(types)} link, "
            f"not {rel_type.value}; leave out --type or give its type"
        )
    drop_pending(connection, pending, events, audit.RELATIONSHIP_REMOVED, reason="manual")
    # No file makes it pending again, nor links the pair when the student arrives.
    store.mark_unlinked(
        connection,
        site,
        parent.id,
        ((link.child_field, link.child_value) for link in pending),
        events.now,
    )
    applied = Applied()
    applied.parents_losing_links.add(parent.id)
    deactivated, _ = _settle_edit(connection, site, events, applied)
    return ManualEdit(
        True, parent.sync_key, child_value, deactivated, pending=True, type=" and ".join(types)
    )


def _settle_edit(
    connection: sa.Connection, site: str, events: EventBuffer, applied: Applied
) -> tuple[bool, bool]:
    """Settle the parent an edit linked or unlinked (SPEC §2.4, at once: an edit is a batch
    of its own); return whether it was deactivated, reactivated."""
    context = ApplyContext(
        site=site, source=None, file_id=None, now=events.now, pending_ttl=timedelta(0)
    )
    settle_parents(connection, context, events, applied)
    return applied.counts.orphans_deactivated > 0, applied.counts.orphans_reactivated > 0


class Reverted(NamedTuple):
    undone: int  # changes undone
    passwords_kept: int  # persons whose new password stays: no earlier one is kept


def revert_file(
    connection: sa.Connection, file_id: int, events: EventBuffer, pending_ttl: timedelta
) -> Reverted:
    """Undo what file `file_id` changed, from its audit events. A pending link the file
    dropped is pending again for `pending_ttl`. A new password stays: syncd keeps no earlier
    password (nor its hash) to put back.

    Raises UsageError when the file was not applied, FileFailed naming the conflict when a
    later file changed the same records.
    """
    ledger = store.file_row(connection, file_id)
    if ledger is None:
        raise UsageError(f"no file {file_id} in the ledger")
    if ledger.status != FileStatus.APPLIED.value:
        raise UsageError(f"file {file_id} is {ledger.status}; only an applied file can be reverted")
    trail = trail_of.events_of_file(connection, file_id)
    later = _later_change(connection, trail)
    if later is not None:
        if later.file_id:
            by, then = f"file {later.file_id}", f"revert file {later.file_id} first"
        else:
            # An operator's edit is not undone by a file's revert, nor is it undone by the
            # opposite edit (which is an edit too, with its own mark): the file's changes
            # are then the operator's to make by hand.
            by, then = (
                "a manual edit",
                "a file whose records an operator edited since is not reverted: send a "
                "corrected file (its links can also be mended by hand, with syncd link or "
                "unlink)",
            )
        raise FileFailed(
            f"cannot revert file {file_id}: {by} changed the same records later "
            f"({later.event} of {_what(later)}); {then}"
        )
    undone = passwords_kept = 0
    now = events.now
    # The commonest undos (a first load's creations) are written a chunk at a time; any other
    # event first writes those queued, so every record sees its undos in trail order.
    batch = _UndoBatch(connection, now, events)
    for row in reversed(trail):
        data = row.data or {}
        if row.event == audit.PERSON_CREATED or row.event == audit.PERSON_REACTIVATED:
            batch.set_active(row.person_id, data, active=False)
        elif row.event == audit.PERSON_DEACTIVATED:
            batch.set_active(row.person_id, data, active=True)
        elif row.event == audit.RELATIONSHIP_CREATED and not data.get("retyped"):
            batch.unlink(data)
        else:
            batch.flush()
            if row.event == audit.PERSON_UPDATED and row.person_id is not None:
                changes = dict(data.get("changes", {}))
                if "password" in (data.get("fields") or ()):
                    passwords_kept += 1
                changes.pop("password", None)
                if not changes:
                    continue  # a new password alone: nothing to put back
                _restore_fields(connection, row.person_id, changes, now)
                events.add(
                    audit.PERSON_UPDATED,
                    person_id=row.person_id,
                    sync_key=data.get("sync_key"),
                    kind=data.get("kind"),
                    fields=[name for name in data.get("fields") or () if name != "password"],
                    reason="revert",
                    changes={
                        name: {"old": change.get("new"), "new": change.get("old")}
                        for name, change in changes.items()
                    },
                )
            elif row.event == audit.RELATIONSHIP_REMOVED and data.get("status") == "pending":
                # A dropped pending link has no child row to link again: it is pending again.
                _restore_pending(connection, data, now + pending_ttl, events)
            elif row.event in (audit.RELATIONSHIP_CREATED, audit.RELATIONSHIP_REMOVED):
                if not _undo_link(connection, row.event, data, now, events):
                    continue
            elif row.event == audit.RELATIONSHIP_PENDING and data.get("previous_type"):
                if not _retype_pending_back(connection, data, events):
                    continue  # gone already (expired after pending_ttl): nothing undone
            elif row.event == audit.RELATIONSHIP_PENDING:
                if not _drop_pending(connection, data, events):
                    continue  # gone already (expired after pending_ttl): nothing undone
            elif row.event == audit.RELATIONSHIP_RESOLVED:
                # The file's student made a pending link; before it the link was pending.
                _undo_link(connection, audit.RELATIONSHIP_CREATED, data, now, events)
                pending = {
                    **data,
                    "child": data.get("child_value"),
                    # Events before child_field was recorded: the default child field.
                    "child_field": data.get("child_field") or "sync_key",
                }
                _restore_pending(connection, pending, now + pending_ttl, events)
            else:
                continue
        undone += 1
    batch.flush()
    undone -= batch.unseen
    _forget_rows(connection, trail)
    connection.execute(
        files.update().where(files.c.id == file_id).values(status=FileStatus.REVERTED.value)
    )
    events.add(audit.FILE_REVERTED, name=ledger.name, changes=undone)
    return Reverted(undone, passwords_kept)


_LINK_FLAGS = {"parents": "by_parents", "relationships": "by_relationships"}
# Undos queued before they are written (one statement per CHUNK of them).
UNDO_BATCH = 18_000
_LINK_DETAILS = ("parent_id", "child_id", "parent", "child", "type", "origin")


class _UndoBatch:
    """Undos of person creations, reactivations and deactivations and of link creations,
    queued and written a chunk at a time (one statement per chunk, not per event: a
    district's first load is millions of them); their events are added in queued order."""

    def __init__(self, connection: sa.Connection, now: datetime, events: EventBuffer) -> None:
        self.connection = connection
        self.now = now
        self.events = events
        # ("person", person_id, data, active) or ("link", data), in trail order.
        self.queued: list[tuple[Any, ...]] = []
        # Link undos that changed nothing one sees: the link was gone already, or another
        # kind of file (or an operator) still keeps it (not counted as undone).
        self.unseen = 0

    def set_active(self, person_id: int | None, data: dict[str, Any], active: bool) -> None:
        self._queue(("person", person_id, data, active))

    def unlink(self, data: dict[str, Any]) -> None:
        """Take back the file's mark on a link it created (the row stays, unmarked: it may
        carry a creation event, db/trail.py); a link it never found is left alone."""
        self._queue(("link", data))

    def _queue(self, op: tuple[Any, ...]) -> None:
        self.queued.append(op)
        if len(self.queued) >= UNDO_BATCH:
            self.flush()

    def flush(self) -> None:
        if not self.queued:
            return
        queued, self.queued = self.queued, []
        # A person undone twice (created, then deactivated as an orphan, by the same file)
        # ends as its last undo in trail order leaves it, as its last event says.
        final = {op[1]: op[3] for op in queued if op[0] == "person"}
        for active in (False, True):
            ids = sorted(person_id for person_id, state in final.items() if state is active)
            for chunk in store.chunked(ids):
                self.connection.execute(
                    persons.update()
                    .where(persons.c.id.in_(chunk))
                    .values(
                        active=active,
                        inactive_reason=None if active else "revert",
                        row_digest=None,
                        updated_at=self.now,
                    )
                )
        removed = self._unmark([op[1] for op in queued if op[0] == "link"])
        for op in queued:
            if op[0] == "person":
                _, person_id, data, active = op
                self.events.add(
                    audit.PERSON_REACTIVATED if active else audit.PERSON_DEACTIVATED,
                    person_id=person_id,
                    sync_key=data.get("sync_key"),
                    kind=data.get("kind"),
                    reason="revert",
                )
            elif (op[1].get("parent_id"), op[1].get("child_id")) not in removed:
                self.unseen += 1
            else:
                data = op[1]
                details = {key: data.get(key) for key in _LINK_DETAILS}
                self.events.add(
                    audit.RELATIONSHIP_REMOVED,
                    person_id=data.get("parent_id"),
                    **details,
                    reason="revert",
                )

    def _unmark(self, created: list[dict[str, Any]]) -> set[tuple[Any, Any]]:
        """Clear the flag of the file's kind (or the manual mark) on each link; return the
        (parent, child) pairs whose link this ends (a link another kind of file still names
        stays, SPEC §2.4: no removal to say)."""
        wanted: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
        for data in created:
            wanted.setdefault((data.get("parent_id"), data.get("child_id")), []).append(data)
        link_ids: dict[str | None, list[int]] = {}
        removed: set[tuple[Any, Any]] = set()
        parents = sorted({parent for parent, _ in wanted if parent is not None})
        for link in store.links_of_parents(self.connection, parents):
            pair = (link.parent_id, link.child_id)
            flags = {_LINK_FLAGS.get(data.get("origin") or "") for data in wanted.get(pair, ())}
            for flag in flags:
                link_ids.setdefault(flag, []).append(link.link_id)
            if flags and _ends_link(link, flags):
                removed.add(pair)
        for flag, ids in link_ids.items():
            for chunk in store.chunked(sorted(ids)):
                self.connection.execute(
                    links.update().where(links.c.id.in_(chunk)).values(_unmarked(flag))
                )
        return removed


def _unmarked(flag: str | None) -> dict[str, Any]:
    """The values that take a mark back from a link: a kind of file's flag, or (None) the
    operator's."""
    return {"manual": None} if flag is None else {flag: False}


def _ends_link(link: Any, flags: Collection[str | None]) -> bool:
    """Return whether taking back the marks `flags` (None: the operator's) ends the active
    `link` (not when another kind of file or the operator still keeps it)."""
    return link_is_active(link.by_parents, link.by_relationships, link.manual) and (
        not link_is_active(
            link.by_parents and "by_parents" not in flags,
            link.by_relationships and "by_relationships" not in flags,
            None if None in flags else link.manual,
        )
    )


def _forget_rows(connection: sa.Connection, trail: Sequence[TrailEvent]) -> None:
    """Make the rows of the reverted file no longer describe whom it touched: the same rows
    sent again are read and applied, not skipped as unchanged. A person's row digest goes;
    the parents whose links it changed also lose their fingerprint (it covers the children
    named), so that their links are planned again."""
    ids = {row.person_id for row in trail if row.person_id is not None}
    parents = {row.data["parent_id"] for row in trail if (row.data or {}).get("parent_id")}
    for chunk in store.chunked(sorted(ids - parents)):
        connection.execute(
            persons.update()
            .where(persons.c.id.in_(chunk), persons.c.row_digest.is_not(None))
            .values(row_digest=None)
        )
    store.replan_parents(connection, parents)


_PENDING_DETAILS = ("parent_id", "parent", "child", "child_field", "type", "origin")


def _pending_named(data: dict[str, Any]) -> tuple[sa.ColumnElement[bool], ...]:
    """The conditions that find the pending link a relationship.* event of a file names."""
    return (
        pending_links.c.parent_id == data.get("parent_id"),
        pending_links.c.child_value == data.get("child"),
        pending_links.c.origin == data.get("origin"),
    )


def _drop_pending(connection: sa.Connection, data: dict[str, Any], events: EventBuffer) -> bool:
    """Drop the pending link a relationship.pending event made, audited as removed; return
    whether it was there."""
    dropped = connection.execute(pending_links.delete().where(*_pending_named(data)))
    if dropped.rowcount:
        details: dict[str, Any] = {key: data.get(key) for key in _PENDING_DETAILS}
        events.add(
            audit.RELATIONSHIP_REMOVED,
            person_id=data.get("parent_id"),
            **details,
            status="pending",
            reason="revert",
        )
    return bool(dropped.rowcount)


def _retype_pending_back(
    connection: sa.Connection, data: dict[str, Any], events: EventBuffer
) -> bool:
    """Give back a pending link the type a file's relationship.pending event (with its
    previous_type) changed; return whether the link was there."""
    changed = connection.execute(
        pending_links.update().where(*_pending_named(data)).values(type=data["previous_type"])
    )
    if changed.rowcount:
        details: dict[str, Any] = {key: data.get(key) for key in _PENDING_DETAILS}
        details.update(type=data["previous_type"], previous_type=data.get("type"))
        events.add(
            audit.RELATIONSHIP_PENDING, person_id=data.get("parent_id"), **details, reason="revert"
        )
    return bool(changed.rowcount)


def _restore_pending(
    connection: sa.Connection, data: dict[str, Any], expires_at: datetime, events: EventBuffer
) -> None:
    """Make the pending link a relationship.removed (status pending) event dropped again."""
    key = (*_pending_named(data), pending_links.c.child_field == data.get("child_field"))
    if connection.execute(sa.select(pending_links.c.id).where(*key)).first() is not None:
        return
    site = events.context.get("site") or ""
    if _unlinked_before(connection, site, data["parent_id"], str(data.get("child"))):
        return  # an operator unlinked them since: that edit stays (SPEC §1)
    connection.execute(
        pending_links.insert().values(
            site=site,
            source=events.context.get("source"),
            parent_id=data.get("parent_id"),
            child_field=data.get("child_field"),
            child_value=data.get("child"),
            type=data.get("type") or RelType.PARENT.value,
            origin=data.get("origin"),
            file_id=events.context.get("file_id"),
            created_at=events.now,
            expires_at=expires_at,
        )
    )
    details: dict[str, Any] = {key: data.get(key) for key in _PENDING_DETAILS}
    events.add(
        audit.RELATIONSHIP_PENDING, person_id=data.get("parent_id"), **details, reason="revert"
    )


def _later_change(connection: sa.Connection, trail: Sequence[TrailEvent]) -> TrailEvent | None:
    """Return the first later audit event that changed a record the file changed, or None.

    A record is a person the file changed (its person.* events), a link the file changed
    (parent and child), the links of a parent whose pending link it changed (a student may
    have come for it since), or a link to a student the file changed (later files link by
    the parent, so those events carry the student as `child_id`). A link event names its
    parent as its person, but another link of that parent is another record. A later file
    that was itself reverted cancels out (its revert events carry its id), so reverting
    files newest first works.
    """
    last_id = max((row.id for row in trail if row.id is not None), default=0)
    pairs = {
        (row.person_id, row.data.get("child_id"))
        for row in trail
        if row.event.startswith("relationship.") and row.data.get("child_id") is not None
    }
    person_ids = sorted(
        {
            row.person_id
            for row in trail
            if row.person_id is not None and (row.person_id, row.data.get("child_id")) not in pairs
        }
    )
    # A person the file only updated (names, email, attributes) is the record of its fields:
    # a later link of that parent is another record. One the file created or whose status it
    # changed is not: its links and its status go together (orphans, SPEC §2.4); nor is a
    # parent whose pending link it changed.
    whole = {
        row.person_id
        for row in trail
        if (row.event.startswith("person.") and row.event != audit.PERSON_UPDATED)
        or (row.event.startswith("relationship.") and row.data.get("child_id") is None)
    }
    fields_only = [person_id for person_id in person_ids if person_id not in whole]
    person_ids = [person_id for person_id in person_ids if person_id in whole]
    students = trail_of.student_ids(row for row in trail if row.person_id in whole)
    reverted = sa.select(files.c.id).where(files.c.status == FileStatus.REVERTED.value)
    changes = (
        sa.select(audit_events)
        .where(
            audit_events.c.id > last_id,
            audit_events.c.event.like("person.%") | audit_events.c.event.like("relationship.%"),
            # A pending link that expired (pending_ttl) went as the revert would take it: no
            # one's change to undo first (and no command could).
            audit_events.c.event != audit.RELATIONSHIP_EXPIRED,
            audit_events.c.file_id.is_(None) | audit_events.c.file_id.not_in(reverted),
        )
        .order_by(audit_events.c.id)
    )
    found: list[TrailEvent] = []

    def first(query: sa.Select[Any], named: Callable[[Any], bool] = lambda _: True) -> None:
        """Add the first event of `query` that `named` and that changed something (a
        manual unlink of a pair that was not linked only blocks it: no record changed)."""
        streamed = connection.execute(query.execution_options(yield_per=1000))
        row = next(
            (r for r in streamed if named(r) and _data(r).get("was_linked") is not False), None
        )
        streamed.close()
        if row is not None:
            found.append(trail_of.explicit_event(row))

    for chunk in store.chunked(person_ids):
        first(changes.where(audit_events.c.person_id.in_(chunk)))
    persons_later = changes.where(audit_events.c.event.like("person.%"))
    for chunk in store.chunked(fields_only):
        first(persons_later.where(audit_events.c.person_id.in_(chunk)))
    links_later = changes.where(audit_events.c.event.like("relationship.%"))
    for chunk in store.chunked(sorted({parent_id for parent_id, _ in pairs})):
        first(
            links_later.where(audit_events.c.person_id.in_(chunk)),
            lambda r: (r.person_id, _data(r).get("child_id")) in pairs,
        )
    if students:
        first(links_later, lambda r: _data(r).get("child_id") in students)
    found += trail_of.later_links_created(
        connection, last_id, reverted, person_ids, sorted(students)
    )
    return min(found, key=lambda row: row.order, default=None)


def _data(row: Any) -> dict[str, Any]:
    data = row.data
    return data if isinstance(data, dict) else json.loads(data or "{}")


def _what(event: TrailEvent) -> str:
    """Name the record an audit event changed, for a message."""
    data = _data(event)
    if data.get("parent") or data.get("child"):
        return f"link {data.get('parent')} → {data.get('child')}"
    return f"{data.get('kind') or 'person'} {data.get('sync_key') or event.person_id}"


def _restore_fields(
    connection: sa.Connection, person_id: int, changes: dict[str, Any], now: Any
) -> None:
    row = connection.execute(sa.select(persons).where(persons.c.id == person_id)).one()
    # No file row describes the person now: the next file's row is read and compared.
    values: dict[str, Any] = {
        "updated_at": now,
        "fingerprint": store.REPLAN_FINGERPRINT,
        "row_digest": None,
    }
    attributes = dict(row.attributes or {})
    for name, change in changes.items():
        if name == "password":
            continue
        old = change.get("old")
        if name.startswith("attributes."):
            key = name.removeprefix("attributes.")
            if old is None:
                attributes.pop(key, None)
            else:
                attributes[key] = old
        else:
            values[name] = old
    values["attributes"] = attributes
    connection.execute(persons.update().where(persons.c.id == person_id).values(**values))


def _undo_link(
    connection: sa.Connection, event: str, data: dict[str, Any], now: Any, events: EventBuffer
) -> bool:
    """Undo a link event of the file; return whether one sees a change (a link the file
    made that another kind of file still names stays, and says nothing)."""
    parent_id, child_id = data.get("parent_id"), data.get("child_id")
    origin = data.get("origin")
    flag = {"parents": "by_parents", "relationships": "by_relationships"}.get(origin or "")
    row = connection.execute(
        sa.select(links).where(links.c.parent_id == parent_id, links.c.child_id == child_id)
    ).first()
    details: dict[str, Any] = {key: data.get(key) for key in _LINK_DETAILS}
    if event == audit.RELATIONSHIP_CREATED and data.get("retyped"):
        _undo_retype(connection, row, data, now, events)
        return True
    if event == audit.RELATIONSHIP_CREATED:
        if row is None:
            return False
        connection.execute(links.update().where(links.c.id == row.id).values(_unmarked(flag)))
        if not _ends_link(row, {flag}):
            return False
        # The row stays (unmarked, inactive): it may carry a creation event (db/trail.py).
        events.add(audit.RELATIONSHIP_REMOVED, person_id=parent_id, **details, reason="revert")
        return True
    if row is None:
        connection.execute(
            links.insert().values(
                site=events.context.get("site") or "",
                parent_id=parent_id,
                child_id=child_id,
                type=data.get("type") or RelType.PARENT.value,
                by_parents=flag == "by_parents",
                by_relationships=flag == "by_relationships",
                manual=None,
                created_at=now,
                updated_at=now,
            )
        )
    elif flag is not None:
        connection.execute(links.update().where(links.c.id == row.id).values({flag: True}))
    events.add(audit.RELATIONSHIP_CREATED, person_id=parent_id, **details, reason="revert")
    return True


def _undo_retype(
    connection: sa.Connection, row: Any, data: dict[str, Any], now: Any, events: EventBuffer
) -> None:
    """Give a link the type it had before a file changed it (the link stays active: another
    kind of file or an operator keeps it), and take back the file's mark where the file
    made it (`marked`): the link then lasts only while what kept it before does."""
    previous = data.get("previous_type")
    if row is None or previous is None:
        return
    values: dict[str, Any] = {"type": previous, "updated_at": now}
    flag = _LINK_FLAGS.get(data.get("origin") or "")
    if data.get("marked") and flag is not None:
        values.update(_unmarked(flag))
    connection.execute(links.update().where(links.c.id == row.id).values(values))
    details: dict[str, Any] = {
        k: data.get(k) for k in ("parent_id", "child_id", "parent", "child", "origin")
    }
    events.add(
        audit.RELATIONSHIP_CREATED,
        person_id=data.get("parent_id"),
        **details,
        type=previous,
        previous_type=data.get("type"),
        retyped=True,
        reason="revert",
    )
