"""Plan → database writes, in the caller's transaction, with one audit event per change."""

from __future__ import annotations

import operator
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from itertools import chain, compress, islice, repeat
from json.encoder import encode_basestring as _encode_json_string
from operator import attrgetter
from typing import Any, NamedTuple, TypeVar

import sqlalchemy as sa

from syncd import audit
from syncd.audit import SPOOL_LINES, EventBuffer
from syncd.core.columns import PersonColumns
from syncd.core.plan import (
    ORPHAN,
    ExistingPending,
    ExistingPerson,
    LinkClear,
    LinkPlan,
    LinkSet,
    PendingAdd,
    PersonPlan,
    PersonUpsert,
    StudentRef,
    changed_fields,
    child_lookup_value,
    complete_upsert,
    drained,
    may_be_pending,
)
from syncd.cores import usable_cores
from syncd.db import store
from syncd.db.bulk import IdAllocator, insert_rows, update_rows
from syncd.db.schema import links, pending_links, pending_unlinks, persons
from syncd.model import (
    Counts,
    FileColumns,
    Kind,
    PersonFields,
    PersonKind,
    RelType,
    attributes_text,
)

BATCH = 5000
# Students a file's new links name, kept by id up to this many (a first load names a million:
# past it, one read of the site's inactive students costs less than a set of them all).
CHILDREN_KEPT = 100_000


@dataclass(slots=True)
class OrphanCarry:
    """The parents a batch's files may have left without a child, judged at the end of the
    batch (SPEC §2.4): a later file of the batch may give them a child again (a students
    file drops a child, the parents file after it names the child that replaced it)."""

    parents: set[int] = field(default_factory=set)


def no_checkpoint() -> None:
    """The checkpoint of work no stop interrupts."""


@dataclass(frozen=True, slots=True)
class ApplyContext:
    site: str
    source: str | None
    file_id: int | None
    now: datetime
    pending_ttl: timedelta
    hash_passwords: bool = False
    update_passwords: bool = False
    deactivate_orphan_parents: bool = True
    # The student field the source's parents files name children by (SPEC §2.3).
    child_field: str = "sync_key"
    # The batch's parents left to judge; with defer_orphans (a later file of the batch comes)
    # this file's are added to them instead of judged.
    orphans: OrphanCarry | None = None
    defer_orphans: bool = False
    # A preview: what is applied is also listed as changes (Applied.resolved_changes).
    dry_run: bool = False
    # Called before each piece of long work (a password to check or hash); raises to stop.
    checkpoint: Callable[[], None] = no_checkpoint


@dataclass(slots=True)
class Applied:
    """What the apply changed, for the report."""

    counts: Counts = field(default_factory=Counts)
    pending: list[dict[str, str]] = field(default_factory=list)
    # Ids touched, to find orphan parents and reactivations at the end.
    parents_losing_links: set[int] = field(default_factory=set)
    parents_gaining_links: set[int] = field(default_factory=set)
    deactivated_students: set[int] = field(default_factory=set)
    activated_students: set[int] = field(default_factory=set)
    # Active links a file gave another type (a relationships file reports them as updated).
    links_retyped: int = 0
    # Orphan-deactivated parents a file listed again: active again only with a live link.
    orphans_listed: set[int] = field(default_factory=set)
    # Parents created by this file: born with had_link set where they got a link, and no
    # orphans to bring back.
    new_parents: set[int] = field(default_factory=set)
    # Students the file linked (new or active again), to find the parents it linked only to
    # inactive ones; None when too many to keep (then the site's inactive students are read).
    children_linked: set[int] | None = field(default_factory=set)
    # Pending links a file dropped (counted in links_removed, but no active link went).
    pending_dropped: int = 0
    # The parents left to judge at the end of the batch, this file's included (deferred).
    orphans_deferred: set[int] | None = None
    # Parents settle_parents deactivated as orphans or reactivated: ("deactivate" or
    # "reactivate", sync key), for a dry run's change list.
    orphan_changes: list[tuple[str, str]] = field(default_factory=list)
    # Pending links a students file resolved, as a dry run lists them (only then).
    resolved_changes: list[dict[str, str]] = field(default_factory=list)

    def link_children(self, child_ids: Sequence[int]) -> None:
        """Note students the file linked (see children_linked)."""
        if self.children_linked is None:
            return
        if len(self.children_linked) + len(child_ids) > CHILDREN_KEPT:
            self.children_linked = None  # never a set of a first load's million students
            return
        self.children_linked.update(child_ids)

    def orphan_change_list(self) -> list[dict[str, str]]:
        """Return the orphan changes as a dry run lists changes."""
        return [
            {"action": action, "kind": PersonKind.PARENT.value, "sync_key": key,
             "reason": ORPHAN if action == "deactivate" else "link"}
            for action, key in self.orphan_changes
        ]  # fmt: skip


def _executemany(connection: sa.Connection, statement: Any, rows: Sequence[dict[str, Any]]) -> None:
    for start in range(0, len(rows), BATCH):
        connection.execute(statement, list(rows[start : start + BATCH]))


def hash_passwords(
    passwords: Sequence[str], checkpoint: Callable[[], None] = no_checkpoint
) -> list[str]:
    """Return argon2id hashes of `passwords`, spread over all cores (argon2 drops the GIL);
    `checkpoint` is called before each hash is handed out (it raises to stop)."""
    from argon2 import PasswordHasher

    hasher = PasswordHasher()
    return on_all_cores(hasher.hash, passwords, checkpoint)


# What a preview stores for a new password: rolled back all the same, and argon2 would
# make `import --dry-run` of a district's parents file take hours.
PREVIEW_HASH = "(not hashed in a preview)"


def _new_hashes(passwords: Sequence[str], context: ApplyContext) -> list[str]:
    if context.dry_run:
        return [PREVIEW_HASH] * len(passwords)
    return hash_passwords(passwords, context.checkpoint)


def passwords_differ(
    stored_hashes: Sequence[str | None],
    passwords: Sequence[str],
    checkpoint: Callable[[], None] = no_checkpoint,
) -> list[bool]:
    """Return, for each pair, whether `password` differs from its stored argon2 hash.

    Spread over all cores like hashing: each check costs as much as a hash.
    """
    pairs = list(zip(stored_hashes, passwords, strict=True))
    return on_all_cores(lambda pair: _password_changed(*pair), pairs, checkpoint)


_Item = TypeVar("_Item")
_Done = TypeVar("_Done")
# Items given to each core ahead of the one it works on: none waits for the next (argon2
# drops the GIL, handing out an item does not), and a stop waits for these only.
AHEAD_PER_CORE = 2


def on_all_cores(
    work: Callable[[_Item], _Done], items: Sequence[_Item], checkpoint: Callable[[], None]
) -> list[_Done]:
    """Return `work` of each item (in order), spread over all cores, `checkpoint` called
    before each item is handed out: a stop asked meanwhile (it raises) is heard within a
    few items' work, not after hours of a district's first passwords, and waits only for
    the items already handed out."""
    if len(items) < 4:
        checkpoint()
        return [work(item) for item in items]
    cores = usable_cores()
    done: list[_Done] = []
    with ThreadPoolExecutor(max_workers=cores) as pool:
        handed_out: deque[Future[_Done]] = deque()
        try:
            for item in items:
                if len(handed_out) >= cores * AHEAD_PER_CORE:
                    done.append(handed_out.popleft().result())
                checkpoint()
                handed_out.append(pool.submit(work, item))
            done.extend(future.result() for future in handed_out)
        except BaseException:
            for future in handed_out:
                future.cancel()  # those not started; the pool waits for the others
            raise
    return done


def _password_changed(stored_hash: str | None, password: str) -> bool:
    from argon2 import PasswordHasher
    from argon2.exceptions import InvalidHashError, VerificationError

    if not stored_hash:
        return True
    try:
        return not PasswordHasher().verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return True


def apply_persons(
    connection: sa.Connection,
    plan: PersonPlan,
    context: ApplyContext,
    events: EventBuffer,
    applied: Applied,
    linked: Collection[str] = (),
    existing: Mapping[str, ExistingPerson] | None = None,
) -> dict[str, int]:
    """Write the person changes of a plan; return the new persons' ids by sync key.

    `linked` names the new parents that get a link now (they are born with had_link set);
    `existing`, the plan's snapshot: its persons' stored fields, where read, are not read
    again.
    """
    kind = plan.kind.person_kind
    creates = [upsert for upsert in plan.upserts if upsert.person_id is None]
    updates = [upsert for upsert in plan.upserts if upsert.person_id is not None]
    new_ids = _create_persons(connection, creates, kind, context, events, linked)
    applied.counts.created += len(creates)
    if kind is PersonKind.PARENT:
        applied.new_parents.update(new_ids.values())
    if updates:
        known = {
            person.person_id: (person.fields, person.inactive_reason)
            for person in (existing or {}).values()
            if person.fields is not None
        }
        _apply_updates(
            connection, updates, kind, context, events, applied, plan.columns, known,
            plan.passwords_changed,
        )  # fmt: skip
    if plan.deactivations:
        ids = [gone.person_id for gone in plan.deactivations]
        _executemany(
            connection,
            persons.update()
            .where(persons.c.id == sa.bindparam("person_id"))
            .values(
                active=False,
                inactive_reason="file",
                row_digest=None,
                updated_at=context.now,
                file_id=context.file_id,
            ),
            [{"person_id": person_id} for person_id in ids],
        )
        for gone in plan.deactivations:
            events.add(
                audit.PERSON_DEACTIVATED,
                person_id=gone.person_id,
                kind=kind.value,
                sync_key=gone.sync_key,
                reason="file",
            )
        applied.counts.deactivated += len(ids)
        if kind is PersonKind.STUDENT:
            applied.deactivated_students.update(ids)
    return new_ids


def forget_row_digests(
    connection: sa.Connection, context: ApplyContext, kind: PersonKind, keys: Collection[str]
) -> None:
    """Clear the row digest of the persons the file wrote whose key is also on a row it
    rejected: no one row of it describes them, so the next file's rows for them are read,
    not skipped (core.plan leaves the digest out where it knows of the rejection already)."""
    for chunk in store.chunked(sorted(keys)):
        connection.execute(
            persons.update()
            .where(
                persons.c.site == context.site,
                persons.c.kind == kind.value,
                persons.c.file_id == context.file_id,
                persons.c.sync_key.in_(chunk),
                persons.c.row_digest.is_not(None),
            )
            .values(row_digest=None)
        )


PERSON_FIELD_COLUMNS = (
    "sync_key", "username", "email", "first_name", "last_name", "student_number", "attributes",
)  # fmt: skip
PERSON_INSERT_COLUMNS = (
    "id", *PERSON_FIELD_COLUMNS, "password_hash", "fingerprint", "row_digest", "had_link",
)  # fmt: skip


def _create_persons(
    connection: sa.Connection,
    creates: Sequence[PersonUpsert],
    kind: PersonKind,
    context: ApplyContext,
    events: EventBuffer,
    linked: Collection[str],
) -> dict[str, int]:
    """Insert new persons with their ids; their person.created events are provenance."""
    if not creates:
        return {}
    hashes: list[str | None] = [None] * len(creates)
    if context.hash_passwords:
        with_password = [i for i, upsert in enumerate(creates) if upsert.record.password]
        passwords = [creates[i].record.password or "" for i in with_password]
        for i, hashed in zip(with_password, _new_hashes(passwords, context), strict=True):
            hashes[i] = hashed
    ids = IdAllocator(connection, persons).take(len(creates))
    rows = []
    for person_id, (_, record, digest, _, _, row_digest), password_hash in zip(
        ids, creates, hashes, strict=True
    ):
        key, username, email, first_name, last_name, number, attributes = record.fields
        rows.append(
            (
                person_id, key, username, email, first_name, last_name, number,
                attributes_json(attributes), password_hash, digest, row_digest,
                1 if key in linked else 0,  # see LINK_INSERT_COLUMNS
            )
        )  # fmt: skip
    keys = [upsert.record.fields.sync_key for upsert in creates]
    _insert_persons(connection, PERSON_INSERT_COLUMNS, rows, kind, context, events, keys, ids)
    return dict(zip(keys, ids, strict=True))


class PlainChildren(NamedTuple):
    """A parents chunk's child values (file order) and the students they name: the id and
    sync key of each, None for a value that names no student yet (a pending link)."""

    values: list[str]
    ids: list[int | None]
    keys: list[str | None]
    child_field: str


def create_plain_persons(
    connection: sa.Connection,
    people: PersonColumns,
    kind: PersonKind,
    children: PlainChildren | None,
    context: ApplyContext,
    events: EventBuffer,
    applied: Applied,
) -> None:
    """Insert the new persons of a plain file's chunk, read column by column
    (syncd.core.columns), and a parents chunk's links and pending links: the rows and
    events `apply_persons` and `apply_links` write for the same records."""
    count = len(people.sync_keys)
    ids = IdAllocator(connection, persons).take(count)
    per_row = list(map(len, people.children)) if people.children is not None else None
    found = children.ids if children is not None else []
    named = list(map(operator.is_not, found, repeat(None))) if None in found else None
    had_link: Iterable[int] = repeat(0)
    if per_row is not None:
        had_link = map(int, map(bool, per_row))
        if named is not None:  # pending links are no link yet
            flags = iter(named)
            # Each row's flags taken whole: any() would stop at the first.
            had_link = [1 if any(tuple(islice(flags, size))) else 0 for size in per_row]
    values: dict[str, Iterable[Any]] = {
        "id": ids, "sync_key": people.sync_keys, "username": people.usernames,
        "email": people.emails, "first_name": people.first_names, "last_name": people.last_names,
        "student_number": people.student_numbers,
        "attributes": people.attributes,
        "fingerprint": people.fingerprints, "row_digest": people.row_digests, "had_link": had_link,
    }  # fmt: skip
    # A column empty in every row is written as one NULL in the statement, not bound per row:
    # Python's sqlite3 binds a None through its adaptation protocol, a tenth of a row's
    # insert. A plain file's passwords are never kept (core.columns), so none is hashed.
    nulls = ["password_hash"] + [
        name
        for name, column in (
            ("username", people.usernames),
            ("email", people.emails),
            ("student_number", people.student_numbers),
        )
        if column.count(None) == count
    ]
    for name in nulls:
        values.pop(name, None)
    # PostgreSQL takes each COPY in while the caller reads the next block (see insert_rows).
    _insert_persons(
        connection, tuple(values), zip(*values.values(), strict=False),  # had_link may repeat
        kind, context, events, people.sync_keys, ids, leave_open=True, nulls=nulls,
    )  # fmt: skip
    applied.counts.created += count
    if kind is PersonKind.PARENT:
        applied.new_parents.update(ids)
    if children is None or per_row is None or people.types is None:
        return
    # Each child value's parent id, parent key and type.
    parent_ids = list(chain.from_iterable(map(repeat, ids, per_row)))
    parent_keys = list(chain.from_iterable(map(repeat, people.sync_keys, per_row)))
    types = list(chain.from_iterable(map(repeat, people.types, per_row)))
    # The students' ids and keys: only those of named students are written.
    child_ids: list[Any] = children.ids
    child_keys: list[Any] = children.keys
    pending: list[PendingAdd] = []
    if named is not None:
        unknown = list(map(operator.not_, named))
        pending = list(
            map(
                PendingAdd,
                compress(parent_keys, unknown),
                compress(parent_ids, unknown),
                repeat(children.child_field),
                compress(children.values, unknown),
                compress(types, unknown),
                repeat(Kind.PARENTS),
            )
        )
        parent_ids = list(compress(parent_ids, named))
        parent_keys = list(compress(parent_keys, named))
        types = list(compress(types, named))
        child_ids = list(compress(child_ids, named))
        child_keys = list(compress(child_keys, named))
    type_names = list(map(attrgetter("_value_"), types))
    origin = Kind.PARENTS.value
    _insert_links(
        connection,
        zip(parent_ids, child_ids, type_names, repeat(1), repeat(0), type_names, repeat(origin)),
        context,
        leave_open=True,
    )
    start, end = events.line_parts(audit.RELATIONSHIP_CREATED)
    events.add_members(
        start,
        end,
        list(
            map(
                _link_members,
                parent_ids,
                child_ids,
                map(json_string, parent_keys),
                map(json_string, child_keys),
                type_names,
                repeat(origin),
            )
        ),
    )
    applied.counts.links_created += len(child_ids)
    applied.link_children(child_ids)
    _add_pending(connection, pending, context, events, applied)


def _insert_persons(
    connection: sa.Connection,
    columns: Sequence[str],
    rows: Iterable[tuple[Any, ...]],
    kind: PersonKind,
    context: ApplyContext,
    events: EventBuffer,
    keys: Sequence[str],
    ids: Sequence[int],
    leave_open: bool = False,
    nulls: Iterable[str] = (),
) -> None:
    """Insert new persons (rows in `columns` order, the columns in `nulls` NULL in each)
    with their person.created lines, which are their provenance (no audit rows);
    `leave_open` as `insert_rows`."""
    insert_rows(
        connection,
        persons,
        columns,
        rows,
        leave_open=leave_open,
        constants={
            **dict.fromkeys(nulls),
            "site": context.site,
            "kind": kind.value,
            "active": True,
            "inactive_reason": None,
            "source": context.source,
            "file_id": context.file_id,
            "created_file_id": context.file_id,
            "created_at": context.now,
            "updated_at": context.now,
        },
    )
    start, end = events.line_parts(audit.PERSON_CREATED)
    events.add_members(
        start + f'"kind":"{kind.value}","sync_key":',
        end,
        [
            f'{json_string(key)},"person_id":{person_id}'
            for key, person_id in zip(keys, ids, strict=True)
        ],
    )


_ATTRIBUTES_JSON: dict[tuple[tuple[str, str], ...], str] = {}


def attributes_json(attributes: tuple[tuple[str, str], ...]) -> str:
    """Return a person's attributes as the JSON text of the attributes column.

    The same few combinations (grade and school) recur across a district's rows: their
    texts are kept, up to a bound.
    """
    text = _ATTRIBUTES_JSON.get(attributes)
    if text is None:
        text = attributes_text(attributes)
        if len(_ATTRIBUTES_JSON) >= 50_000:
            _ATTRIBUTES_JSON.clear()
        _ATTRIBUTES_JSON[attributes] = text
    return text


def _apply_updates(
    connection: sa.Connection,
    updates: Sequence[PersonUpsert],
    kind: PersonKind,
    context: ApplyContext,
    events: EventBuffer,
    applied: Applied,
    file_columns: FileColumns | None,
    known: Mapping[int, tuple[PersonFields, str | None]],
    passwords_changed: Collection[int] = (),
) -> None:
    """Write the updates (the fields `file_columns` says: complete_upsert), with events;
    `known`: (stored fields, inactive reason) of persons already read; `passwords_changed`:
    persons whose password the plan found changed already."""
    ids = [upsert.person_id for upsert in updates if upsert.person_id is not None]
    stored = dict(known)
    stored.update(store.persons_for_update(connection, [i for i in ids if i not in known]))
    with_passwords = context.hash_passwords and context.update_passwords
    stored_hashes: dict[int, str | None] = {}
    new_hashes: dict[int, str] = {}
    if with_passwords:
        stored_hashes = store.password_hashes(connection, ids)
        new_hashes = _new_password_hashes(updates, stored_hashes, passwords_changed, context)
    # Rows that reactivate set the status too: one statement per set of columns.
    rows: list[tuple[Any, ...]] = []
    reactivations: list[tuple[Any, ...]] = []
    rematched: list[int] = []  # students whose value a parents row may name changed
    for upsert in updates:
        person_id = upsert.person_id
        assert person_id is not None
        old_fields, inactive_reason = stored[person_id]
        completed = complete_upsert(upsert, old_fields, file_columns)
        if completed is not None:
            upsert = completed
        fields = upsert.record.fields
        new_hash = new_hashes.get(person_id)
        changes = changed_fields(old_fields, fields)
        if completed is not None and not (changes or new_hash or upsert.reactivate):
            # A row that says only part of the person and changes nothing: no write (SPEC
            # §2.5). The stored fingerprint still is the stored fields'; the row, its digest
            # not stored, is read again next time (the slower path of a file lacking columns).
            applied.counts.unchanged += 1
            continue
        # A parent deactivated as an orphan is no parent of a current student just because
        # a parents file lists it again: settle_parents reactivates it if a live link appears.
        stays_orphan = kind is PersonKind.PARENT and inactive_reason == ORPHAN
        if stays_orphan:
            applied.orphans_listed.add(person_id)
        reactivated = upsert.reactivate and not stays_orphan
        row: tuple[Any, ...] = (
            person_id,
            *fields[1:6],  # not the sync key: it is what matched (and unchanged, no index work)
            attributes_json(fields.attributes),
            upsert.fingerprint,
            upsert.row_digest,
        )
        if with_passwords:
            row += (new_hash or stored_hashes.get(person_id),)
        if upsert.reactivate:
            reactivations.append((*row, reactivated, ORPHAN if stays_orphan else None))
        else:
            rows.append(row)
        if kind is PersonKind.STUDENT and context.child_field in changes:
            rematched.append(person_id)
        if changes or new_hash:
            described: dict[str, dict[str, Any]] = {
                name: {"old": old, "new": new} for name, (old, new) in changes.items()
            }
            if new_hash:
                described["password"] = {"changed": True}
            events.add(
                audit.PERSON_UPDATED,
                person_id=person_id,
                kind=kind.value,
                sync_key=fields.sync_key,
                fields=sorted(described),
                changes=described,
            )
            applied.counts.updated += 1
        if reactivated:
            events.add(
                audit.PERSON_REACTIVATED,
                person_id=person_id,
                kind=kind.value,
                sync_key=fields.sync_key,
            )
            applied.counts.reactivated += 1
            if kind is PersonKind.STUDENT:
                applied.activated_students.add(person_id)
        if not changes and not new_hash and not reactivated:
            applied.counts.unchanged += 1
    columns: tuple[str, ...] = (*PERSON_FIELD_COLUMNS[1:], "fingerprint", "row_digest")
    if with_passwords:
        columns += ("password_hash",)
    constants = {"file_id": context.file_id, "updated_at": context.now}
    update_rows(connection, persons, columns, rows, constants)
    update_rows(
        connection, persons, (*columns, "active", "inactive_reason"), reactivations, constants
    )
    if rematched:
        # Their value of the source's child field changed (an email, with child_field =
        # "email"): their parents' unchanged rows would be skipped, keeping links the child
        # cell no longer makes.
        store.replan_parents(connection, _parents_of(connection, rematched))


def _new_password_hashes(
    updates: Sequence[PersonUpsert],
    stored_hashes: Mapping[int, str | None],
    passwords_changed: Collection[int],
    context: ApplyContext,
) -> dict[int, str]:
    """Return the new hashes, by person id, of the updates whose password is not the one
    stored: each checked against its stored hash (unless the plan did) and hashed, all on
    every core (each is a tenth of a second or more of argon2)."""
    with_password = [
        (upsert.person_id, upsert.record.password)
        for upsert in updates
        if upsert.person_id is not None and upsert.record.password
    ]
    changed = [(pid, password) for pid, password in with_password if pid in passwords_changed]
    to_check = [(pid, password) for pid, password in with_password if pid not in passwords_changed]
    differ = passwords_differ(
        [stored_hashes.get(pid) for pid, _ in to_check],
        [password for _, password in to_check],
        context.checkpoint,
    )
    changed += compress(to_check, differ)
    hashes = _new_hashes([password for _, password in changed], context)
    return {pid: hashed for (pid, _), hashed in zip(changed, hashes, strict=True)}


def json_string(text: str) -> str:
    """Return `text` as a JSON string literal (no ASCII escaping, as the audit lines)."""
    return _encode_json_string(text)


def apply_links(
    connection: sa.Connection,
    plan: LinkPlan,
    context: ApplyContext,
    events: EventBuffer,
    applied: Applied,
    parent_ids: dict[str, int],
    names: Mapping[int, str] | None = None,
    provenance: bool = True,
) -> None:
    """Write link changes; `parent_ids` maps sync keys of parents created in this file,
    `names` sync keys of persons the plan names (the rest are read). With `provenance`, a new
    link's row is its relationship.created event (else the caller reports it otherwise)."""
    known = names or {}
    unknown = [
        person_id
        for person_id in (
            [change.child_id for change in plan.sets if not change.child_key]
            + [change.link.child_id for change in plan.clears]
            + [change.link.parent_id for change in plan.clears]
            + [
                change.parent_id
                for change in plan.sets
                if change.parent_id is not None and not change.parent_key
            ]
        )
        if person_id not in known
    ]
    # Not a copy of `known` when it names them all (a first load's millions).
    names = {**known, **_sync_keys(connection, unknown)} if unknown else known
    new_links: list[tuple[int, int, str, int, int, str | None, str | None]] = []
    created = 0
    updates: list[dict[str, Any]] = []
    start, end = events.line_parts(audit.RELATIONSHIP_CREATED)
    lines: list[str] = []
    linked: list[int] = []  # students of links that became active
    # Each change is dropped from the plan once taken, and new links are written as they
    # come: a district's relationships file makes millions, each a LinkSet and a row tuple.
    for change in drained(plan.sets):
        new_parent = change.parent_id is None
        parent_id = parent_ids[change.parent_key] if new_parent else change.parent_id
        assert parent_id is not None
        origin = change.origin
        by_parents = origin is Kind.PARENTS
        by_relationships = origin is Kind.RELATIONSHIPS
        existing = change.existing
        if existing is None:
            # A new link: its relationship.created event is the row's provenance.
            rel_type = change.type._value_
            new_links.append(
                (
                    parent_id,
                    change.child_id,
                    rel_type,
                    1 if by_parents else 0,
                    1 if by_relationships else 0,
                    rel_type if provenance else None,
                    origin._value_ if provenance else None,
                )
            )
            if len(new_links) >= LINK_WRITE_ROWS:
                created += len(new_links)
                _insert_links(connection, new_links, context, provenance)
                new_links.clear()
            if not new_parent:  # a new parent is born with had_link set (apply_persons)
                applied.parents_gaining_links.add(parent_id)
            linked.append(change.child_id)
            if not provenance:
                continue
            parent = change.parent_key if new_parent else names.get(parent_id, change.parent_key)
            lines.append(
                _link_members(
                    parent_id,
                    change.child_id,
                    json_string(parent),
                    json_string(change.child_key or names.get(change.child_id, "")),
                    rel_type,
                    origin._value_,
                )
            )
            if len(lines) >= SPOOL_LINES:  # a district's relationships file: 2M lines
                events.add_members(start, end, lines)
                lines = []
            continue
        if lines:
            events.add_members(start, end, lines)
            lines = []
        updates.append(
            {
                "link_id": existing.link_id,
                "type": _link_type(change).value,
                "by_parents": existing.by_parents or by_parents,
                "by_relationships": existing.by_relationships or by_relationships,
                "source": context.source if by_relationships else existing.source,
                "file_id": context.file_id,
                "updated_at": context.now,
            }
        )
        retyped = is_retype(change)
        # A new type on a link that stays active (revert restores the old type, and takes
        # back this kind's mark where the file made it: `marked`).
        marks: dict[str, Any] = {"retyped": True} if retyped else {}
        if retyped and not (existing.by_parents if by_parents else existing.by_relationships):
            marks["marked"] = True
        if change.becomes_active or retyped:
            if retyped:
                applied.links_retyped += 1
            else:
                applied.counts.links_created += 1
                applied.parents_gaining_links.add(parent_id)
                linked.append(change.child_id)
            events.add(
                audit.RELATIONSHIP_CREATED,
                person_id=parent_id,
                parent_id=parent_id,
                child_id=change.child_id,
                parent=names.get(parent_id, change.parent_key),
                child=change.child_key or names.get(change.child_id),
                type=_link_type(change).value,
                origin=change.origin.value,
                previous_type=existing.type.value,
                **marks,
            )
    events.add_members(start, end, lines)
    applied.counts.links_created += created + len(new_links)
    applied.link_children(linked)
    _insert_links(connection, new_links, context, provenance)
    _executemany(
        connection,
        links.update().where(links.c.id == sa.bindparam("link_id")),
        updates,
    )
    _apply_clears(connection, plan.clears, context, events, applied, names)
    _apply_pending(connection, plan, context, events, applied, parent_ids)


# New links a file makes are written in batches of this many as its plan is taken.
LINK_WRITE_ROWS = 50_000

LINK_INSERT_COLUMNS = (
    "parent_id", "child_id", "type", "by_parents", "by_relationships", "created_type",
    "created_origin",
)  # fmt: skip
# Boolean columns of bulk inserts are given as 0 and 1: Python's sqlite3 binds a bool (an int
# subclass) through its adaptation protocol, measured at 0.6 us a value here, and both
# SQLite's column and PostgreSQL's binary COPY of a bool take the int as it is.


def _insert_links(
    connection: sa.Connection,
    rows: Iterable[tuple[Any, ...]],
    context: ApplyContext,
    provenance: bool = True,
    leave_open: bool = False,
) -> None:
    """Insert new links (rows in LINK_INSERT_COLUMNS order) made by the file; `leave_open`
    as `insert_rows`."""
    insert_rows(
        connection,
        links,
        LINK_INSERT_COLUMNS,
        rows,
        leave_open=leave_open,
        constants={
            "site": context.site,
            "manual": None,
            "source": context.source,
            "file_id": context.file_id,
            "created_file_id": context.file_id if provenance else None,
            "created_at": context.now,
            "updated_at": context.now,
        },
    )


def _link_members(
    parent_id: int, child_id: int, parent: str, child: str, rel_type: str, origin: str
) -> str:
    """Return the members of a new link's relationship.created line (`parent`, `child`:
    JSON strings)."""
    return (
        f'"parent_id":{parent_id},"child_id":{child_id},"parent":{parent},'
        f'"child":{child},"type":"{rel_type}","origin":"{origin}","person_id":{parent_id}'
    )


def _link_type(change: LinkSet) -> RelType:
    """Return the type a named link gets: the file's, unless a manual edit chose one."""
    if change.existing is not None and change.existing.manual is not None:
        return change.existing.type
    return change.type


def is_retype(change: LinkSet) -> bool:
    """Return whether a file gives a link that is and stays active another type."""
    existing = change.existing
    return (
        existing is not None
        and existing.active
        and not change.becomes_active
        and _link_type(change) is not existing.type
    )


def _apply_clears(
    connection: sa.Connection,
    clears: Sequence[LinkClear],
    context: ApplyContext,
    events: EventBuffer,
    applied: Applied,
    names: Mapping[int, str],
) -> None:
    # A link no file or operator names any more stays as an inactive row: it may carry its
    # creation event (db/trail.py), and a later file that names it again marks it again.
    updates: list[dict[str, Any]] = []
    for clear in clears:
        link = clear.link
        updates.append(
            {
                "link_id": link.link_id,
                "by_parents": link.by_parents and clear.origin is not Kind.PARENTS,
                "by_relationships": link.by_relationships
                and clear.origin is not Kind.RELATIONSHIPS,
                "file_id": context.file_id,
                "updated_at": context.now,
            }
        )
        if clear.becomes_inactive:
            applied.counts.links_removed += 1
            applied.parents_losing_links.add(link.parent_id)
            events.add(
                audit.RELATIONSHIP_REMOVED,
                person_id=link.parent_id,
                parent_id=link.parent_id,
                child_id=link.child_id,
                parent=names.get(link.parent_id),
                child=names.get(link.child_id),
                type=link.type.value,
                origin=clear.origin.value,
            )
    _executemany(connection, links.update().where(links.c.id == sa.bindparam("link_id")), updates)


def _apply_pending(
    connection: sa.Connection,
    plan: LinkPlan,
    context: ApplyContext,
    events: EventBuffer,
    applied: Applied,
    parent_ids: dict[str, int],
) -> None:
    adds = [
        add if add.parent_id is not None else replace(add, parent_id=parent_ids[add.parent_key])
        for add in plan.pending_adds
    ]
    _add_pending(connection, adds, context, events, applied)
    _retype_pending(connection, plan.pending_retypes, events, applied)
    drop_pending(connection, plan.pending_drops, events, audit.RELATIONSHIP_REMOVED)
    for dropped in plan.pending_drops:
        applied.counts.links_removed += 1
        applied.pending_dropped += 1
        # A pending link may be all that kept a parent of departed children active.
        applied.parents_losing_links.add(dropped.parent_id)


def _add_pending(
    connection: sa.Connection,
    adds: Sequence[PendingAdd],
    context: ApplyContext,
    events: EventBuffer,
    applied: Applied,
) -> None:
    """Write pending links (their parents' ids set) with their events and report lines."""
    rows = []
    for add in adds:
        parent_id = add.parent_id
        rows.append(
            {
                "site": context.site,
                "source": context.source,
                "parent_id": parent_id,
                "child_field": add.child_field,
                "child_value": add.child_value,
                "type": add.type.value,
                "origin": add.origin.value,
                "file_id": context.file_id,
                "created_at": context.now,
                "expires_at": context.now + context.pending_ttl,
            }
        )
        applied.pending.append(add.report_line())
        applied.counts.pending += 1
        events.add(
            audit.RELATIONSHIP_PENDING,
            person_id=parent_id,
            parent_id=parent_id,
            parent=add.parent_key,
            child=add.child_value,
            child_field=add.child_field,
            type=add.type.value,
            origin=add.origin.value,
        )
    _executemany(connection, pending_links.insert(), rows)


def _retype_pending(
    connection: sa.Connection,
    retypes: Sequence[tuple[ExistingPending, RelType]],
    events: EventBuffer,
    applied: Applied,
) -> None:
    """Give pending links the type a relationships file names them with now: said as a
    pending link with its previous type, counted as an update (as a live link's retype)."""
    if not retypes:
        return
    parent_keys = _sync_keys(connection, {pending.parent_id for pending, _ in retypes})
    for pending, rel_type in retypes:
        connection.execute(
            pending_links.update()
            .where(pending_links.c.id == pending.pending_id)
            .values(type=rel_type.value)
        )
        applied.links_retyped += 1
        _say_pending(
            events,
            audit.RELATIONSHIP_PENDING,
            pending,
            parent_keys.get(pending.parent_id),
            type=rel_type.value,
            previous_type=pending.type.value,
        )


def drop_pending(
    connection: sa.Connection,
    dropped: Sequence[ExistingPending],
    events: EventBuffer,
    event: str,
    reason: str | None = None,
) -> None:
    """Drop pending links (one DELETE per chunk), each with its event, which names the
    parent by id and sync key (and why, when not a file's: `reason`)."""
    why = {"reason": reason} if reason is not None else {}
    for chunk in store.chunked([pending.pending_id for pending in dropped]):
        connection.execute(pending_links.delete().where(pending_links.c.id.in_(chunk)))
    parent_keys = _sync_keys(connection, {pending.parent_id for pending in dropped})
    for pending in dropped:
        _say_pending(
            events, event, pending, parent_keys.get(pending.parent_id), status="pending", **why
        )


def _say_pending(
    events: EventBuffer, event: str, pending: ExistingPending, parent_key: str | None, **more: Any
) -> None:
    """Add `event` for a pending link, naming its parent by id and sync key; `more` adds
    to its details (or replaces its type)."""
    events.add(
        event,
        person_id=pending.parent_id,
        parent_id=pending.parent_id,
        parent=parent_key,
        child=pending.child_value,
        child_field=pending.child_field,
        **{"type": pending.type.value, "origin": pending.origin.value, **more},
    )


def _sync_keys(connection: sa.Connection, person_ids: Iterable[int]) -> dict[int, str]:
    return store.sync_keys(connection, person_ids)


def resolve_pending(
    connection: sa.Connection,
    context: ApplyContext,
    events: EventBuffer,
    applied: Applied,
) -> None:
    """Turn pending links whose child now exists into links (after a students file)."""
    students = _PendingStudents(connection, context.site)
    # First the operator's unlinks of such values, so that a pending link of the same pair
    # meets a link already marked "unlink" (and stays inactive).
    _settle_unlinks(connection, context, students)
    query = sa.select(pending_links).where(pending_links.c.site == context.site)
    waiting = list(connection.execute(query))
    if not waiting:
        return
    students.prepare(waiting)
    resolved: list[tuple[Any, StudentRef]] = []
    for row in waiting:
        child = students.named(row.child_field, row.child_value)
        if child is not None:
            resolved.append((row, child))
    for chunk in store.chunked([row.id for row, _ in resolved]):
        connection.execute(pending_links.delete().where(pending_links.c.id.in_(chunk)))
    parents = _sync_keys(connection, {row.parent_id for row, _ in resolved})
    # A pair an operator unlinked (by this value or another naming the same student) stays
    # apart: its pending link is dropped as the unlink's, not resolved into a link.
    apart = {
        (link.parent_id, link.child_id)
        for link in store.links_of_parents(connection, {row.parent_id for row, _ in resolved})
        if link.manual == "unlink"
    }
    if apart:
        for row, child in resolved:
            if (row.parent_id, child.person_id) in apart:
                _say_pending(
                    events,
                    audit.RELATIONSHIP_REMOVED,
                    store._existing_pending(row),
                    parents.get(row.parent_id),
                    status="pending",
                    reason="manual",
                )
        resolved = [
            pair for pair in resolved if (pair[0].parent_id, pair[1].person_id) not in apart
        ]
    # The links in rounds of one per parent and child: a second pending link of the same
    # pair (the other kind of file named it too) marks the link the first one made.
    rest = resolved
    while rest:
        this_round: dict[tuple[int, int], tuple[Any, StudentRef]] = {}
        later: list[tuple[Any, StudentRef]] = []
        for row, child in rest:
            pair = (row.parent_id, child.person_id)
            if pair in this_round:
                later.append((row, child))
            else:
                this_round[pair] = (row, child)
        existing = {
            (link.parent_id, link.child_id): link
            for link in store.links_of_parents(connection, {pair[0] for pair in this_round})
        }
        sets = [
            LinkSet(
                parent_key="",
                parent_id=row.parent_id,
                child_id=child.person_id,
                type=RelType(row.type),
                origin=Kind(row.origin),
                existing=existing.get(pair),
            )
            for pair, (row, child) in this_round.items()
        ]
        # Counted in the file's links_created: the file's arrival made them (its report
        # says so beside the relationship.resolved events).
        plan = LinkPlan(sets=sets)
        apply_links(connection, plan, context, _Silent(), applied, {}, provenance=False)
        rest = later
    for row, child in resolved:
        if context.dry_run:
            applied.resolved_changes.append(
                {
                    "action": "link",
                    "parent": parents.get(row.parent_id, ""),
                    "child": child.sync_key,
                    "type": row.type,
                    "resolved": row.child_value,
                }
            )
        events.add(
            audit.RELATIONSHIP_RESOLVED,
            person_id=row.parent_id,
            parent_id=row.parent_id,
            parent=parents.get(row.parent_id),
            child_id=child.person_id,
            child=child.sync_key,
            child_value=row.child_value,
            child_field=row.child_field,
            type=row.type,
            origin=row.origin,
        )


def manual_link_row(
    site: str, parent_id: int, child_id: int, rel_type: RelType, manual: str, now: datetime
) -> dict[str, Any]:
    """Return a new link row that only an operator's edit marks ("link" or "unlink")."""
    return {
        "site": site,
        "parent_id": parent_id,
        "child_id": child_id,
        "type": rel_type.value,
        "by_parents": False,
        "by_relationships": False,
        "manual": manual,
        "source": None,
        "created_at": now,
        "updated_at": now,
    }


class _PendingStudents:
    """The students that pending child values name, per child field. Sync keys are looked up
    by key while few are asked for (StudentLookup): a nightly students file resolving a
    handful of pending links does not read a district's million students."""

    def __init__(self, connection: sa.Connection, site: str) -> None:
        self._connection, self._site = connection, site
        self._lookups: dict[str, store.StudentLookup] = {}

    def prepare(self, rows: Iterable[Any]) -> None:
        """Read the students the `child_field` and `child_value` of `rows` may name."""
        wanted: dict[str, list[str]] = {}
        for row in rows:
            if may_be_pending(row.child_field):
                value = child_lookup_value(row.child_field, row.child_value)
                wanted.setdefault(row.child_field, []).append(value)
        for child_field, values in wanted.items():
            lookup = self._lookups.get(child_field)
            if lookup is None:
                lookup = self._lookups[child_field] = store.StudentLookup(
                    self._connection, self._site, child_field, store.WHOLE_STUDENT_INDEX,
                    store.WHOLE_STUDENT_SHARE,
                )  # fmt: skip
            lookup.prepare(values)

    def named(self, child_field: str, child_value: str) -> StudentRef | None:
        """Return the one student the value names (prepared), or None: none, or several."""
        if not may_be_pending(child_field):
            return None  # an internal id an earlier syncd left pending: it would name a stranger
        lookup = self._lookups.get(child_field)
        matches = lookup.get(child_lookup_value(child_field, child_value)) if lookup else ()
        return matches[0] if len(matches) == 1 else None


def _settle_unlinks(
    connection: sa.Connection, context: ApplyContext, students: _PendingStudents
) -> None:
    """Turn the manual unlinks of values a student now has into link rows marked "unlink",
    as `syncd unlink` of a present student makes them: no file links the pair."""
    query = sa.select(pending_unlinks).where(pending_unlinks.c.site == context.site)
    unlinks = list(connection.execute(query))
    if not unlinks:
        return
    students.prepare(unlinks)
    arrived = [
        (row, child)
        for row in unlinks
        if (child := students.named(row.child_field, row.child_value)) is not None
    ]
    if not arrived:
        return
    existing = {
        (link.parent_id, link.child_id)
        for link in store.links_of_parents(connection, {row.parent_id for row, _ in arrived})
    }
    rows = {
        (row.parent_id, child.person_id): manual_link_row(
            context.site, row.parent_id, child.person_id, RelType.PARENT, "unlink", context.now
        )
        for row, child in arrived
        if (row.parent_id, child.person_id) not in existing
    }
    _executemany(connection, links.insert(), list(rows.values()))
    for chunk in store.chunked([row.id for row, _ in arrived]):
        connection.execute(pending_unlinks.delete().where(pending_unlinks.c.id.in_(chunk)))


class _Silent(EventBuffer):
    """An event buffer that drops events (a resolution is reported as one resolved event)."""

    def __init__(self) -> None:
        super().__init__(context={}, now=datetime(2000, 1, 1, tzinfo=UTC))

    def add(
        self, event: str, *, level: str = "info", person_id: int | None = None, **data: Any
    ) -> None:
        return None

    def add_members(self, start: str, end: str, members: list[str]) -> None:
        return None


def expire_pending(
    connection: sa.Connection,
    site: str,
    now: datetime,
    events: EventBuffer,
    deactivate_orphan_parents: bool = True,
    ttl: tuple[str | None, timedelta] | None = None,
) -> int:
    """Drop pending links past their TTL, each with a relationship.expired event, and
    deactivate the parents that this leaves orphaned; return how many expired.

    `ttl`: (a source, its pending_ttl now). Its pending links made under a longer one
    expire by the shorter (an operator lowering it to clear them out); a longer one
    applies to the links made from then on."""
    if ttl is not None:
        _shorten_pending(connection, site, now, *ttl)
    query = sa.select(pending_links).where(
        pending_links.c.site == site, pending_links.c.expires_at < now
    )
    expired = [store._existing_pending(row) for row in connection.execute(query)]
    drop_pending(connection, expired, events, audit.RELATIONSHIP_EXPIRED)
    # The parents' rows still name those children: sent again unchanged, they make the
    # links pending again (or links, where the student came) instead of being skipped.
    store.replan_parents(connection, (pending.parent_id for pending in expired))
    # An expired link may have been all that kept a parent of departed children active.
    if deactivate_orphan_parents and expired:
        _deactivate_orphans(connection, {pending.parent_id for pending in expired}, now, events)
    return len(expired)


def _shorten_pending(
    connection: sa.Connection, site: str, now: datetime, source: str | None, length: timedelta
) -> None:
    """Bring the expiry of `source`'s pending links made under a longer TTL to `length`
    after their making (in Python: SQLite has no date arithmetic on these columns). Only
    links due later than `length` from now can be such: none while the TTL is unchanged."""
    columns = (pending_links.c.id, pending_links.c.created_at, pending_links.c.expires_at)
    same_source = (
        pending_links.c.source.is_(None) if source is None else pending_links.c.source == source
    )
    query = sa.select(*columns).where(
        pending_links.c.site == site, same_source, pending_links.c.expires_at > now + length
    )
    shorter = []
    for pending_id, created_at, expires_at in connection.execute(query):
        due = store.aware(created_at) + length
        if store.aware(expires_at) > due:
            shorter.append({"pending_id": pending_id, "expires_at": due})
    if shorter:
        connection.execute(
            pending_links.update()
            .where(pending_links.c.id == sa.bindparam("pending_id"))
            .values(expires_at=sa.bindparam("expires_at")),
            shorter,
        )


def settle_parents(
    connection: sa.Connection, context: ApplyContext, events: EventBuffer, applied: Applied
) -> None:
    """Mark parents that gained links, reactivate orphans that did, deactivate new orphans."""
    gaining = sorted(applied.parents_gaining_links - applied.new_parents)
    # Through the driver: a district's first relationships file gives a million parents
    # their first link, a thousand statements that SQLAlchemy would each expand again.
    store.driver_execute_in(
        connection,
        "UPDATE persons SET had_link = TRUE WHERE had_link = FALSE AND id IN",
        (),
        gaining,
    )
    candidates_back = set(gaining) | applied.orphans_listed
    if applied.activated_students:
        candidates_back |= _parents_of(connection, applied.activated_students)
    _reactivate_orphans(connection, sorted(candidates_back), context, events, applied)

    if not context.deactivate_orphan_parents:
        return
    candidates = set(applied.parents_losing_links) | _linked_to_inactive(
        connection, context, applied
    )
    if context.orphans is not None:
        candidates |= context.orphans.parents
    if applied.deactivated_students:
        candidates |= _parents_of(connection, applied.deactivated_students)
    if context.defer_orphans:
        applied.orphans_deferred = candidates
        return
    orphans = _deactivate_orphans(connection, candidates, context.now, events)
    applied.counts.orphans_deactivated += len(orphans)
    applied.orphan_changes += [("deactivate", sync_key) for _, sync_key in orphans]


def carry_orphans(context: ApplyContext, applied: Applied) -> None:
    """After a file's transaction committed: keep the parents it deferred for the rest of
    the batch, or forget those it judged."""
    if context.orphans is not None and context.deactivate_orphan_parents:
        context.orphans.parents = applied.orphans_deferred or set()


def settle_carried_orphans(
    connection: sa.Connection, orphans: OrphanCarry, now: datetime, events: EventBuffer
) -> None:
    """Deactivate the orphans among the parents a batch deferred that no later file of it
    judged (it failed, was held or was a duplicate): no file's report counts them, their
    events say so."""
    _deactivate_orphans(connection, orphans.parents, now, events)
    orphans.parents = set()


def _deactivate_orphans(
    connection: sa.Connection, candidates: Iterable[int], now: datetime, events: EventBuffer
) -> list[tuple[int, str]]:
    """Deactivate the active parents among `candidates` that are orphans; return them (id,
    sync key)."""
    ids = sorted(set(candidates))
    pending = {link.parent_id for link in store.pending_of_parents(connection, ids)}
    kept = _with_live_links(connection, ids) | pending
    orphans = _active_parents(connection, [pid for pid in ids if pid not in kept])
    _set_parents_active(connection, orphans, False, now, events)
    return orphans


def _set_parents_active(
    connection: sa.Connection,
    parents: Sequence[tuple[int, str]],
    active: bool,
    now: datetime,
    events: EventBuffer,
) -> None:
    """Reactivate (a live link appeared) or deactivate as orphans the given parents (id,
    sync key), each with its event."""
    for chunk in store.chunked([person_id for person_id, _ in parents]):
        connection.execute(
            persons.update()
            .where(persons.c.id.in_(chunk))
            .values(active=active, inactive_reason=None if active else ORPHAN, updated_at=now)
        )
    event = audit.PERSON_REACTIVATED if active else audit.PERSON_DEACTIVATED
    reason = "link" if active else ORPHAN
    for person_id, sync_key in parents:
        events.add(
            event,
            person_id=person_id,
            kind=PersonKind.PARENT.value,
            sync_key=sync_key,
            reason=reason,
        )


def _linked_to_inactive(
    connection: sa.Connection, context: ApplyContext, applied: Applied
) -> set[int]:
    """Return the parents the file linked to a student who is not active: a parent whose
    only child left is an orphan from the start (SPEC §2.4), a new parent included."""
    if applied.children_linked is not None and not applied.children_linked:
        return set()
    inactive = store.inactive_students(connection, context.site, applied.children_linked)
    if not inactive:
        return set()
    linked = applied.parents_gaining_links | applied.new_parents
    return {parent for parent in _parents_of(connection, inactive) if parent in linked}


def _parents_of(connection: sa.Connection, child_ids: Iterable[int]) -> set[int]:
    found: set[int] = set()
    for chunk in store.chunked(sorted(child_ids)):
        query = sa.select(links.c.parent_id).where(links.c.child_id.in_(chunk))
        found.update(row.parent_id for row in connection.execute(query))
    return found


def _with_live_links(connection: sa.Connection, parent_ids: Sequence[int]) -> set[int]:
    """Return the parents among `parent_ids` with an active link to an active student (one
    query per chunk: a full students file may leave tens of thousands of parents to judge)."""
    child = persons.alias("child")
    found: set[int] = set()
    for chunk in store.chunked(parent_ids):
        query = (
            sa.select(links.c.parent_id)
            .distinct()
            .select_from(links.join(child, child.c.id == links.c.child_id))
            .where(
                links.c.parent_id.in_(chunk),
                store.active_link_clause(),
                child.c.active.is_(True),
            )
        )
        found.update(connection.execute(query).scalars())
    return found


def _active_parents(connection: sa.Connection, ids: Sequence[int]) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for chunk in store.chunked(list(ids)):
        query = sa.select(persons.c.id, persons.c.sync_key).where(
            persons.c.id.in_(chunk),
            persons.c.active.is_(True),
            persons.c.had_link.is_(True),
            persons.c.kind == PersonKind.PARENT.value,
        )
        found.extend((row.id, row.sync_key) for row in connection.execute(query))
    return found


def _reactivate_orphans(
    connection: sa.Connection,
    parent_ids: Sequence[int],
    context: ApplyContext,
    events: EventBuffer,
    applied: Applied,
) -> None:
    # Read through the driver: a district's first relationships file names a million
    # parents, of whom few if any are orphans.
    orphans = list(
        store.driver_rows_in(
            connection,
            "SELECT id, sync_key FROM persons WHERE inactive_reason = ? AND id IN",
            (ORPHAN,),
            list(parent_ids),
        )
    )
    live = _with_live_links(connection, [person_id for person_id, _ in orphans])
    back = [(person_id, sync_key) for person_id, sync_key in orphans if person_id in live]
    _set_parents_active(connection, back, True, context.now, events)
    applied.counts.orphans_reactivated += len(back)
    applied.orphan_changes += [("reactivate", sync_key) for _, sync_key in back]
