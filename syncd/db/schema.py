"""The database schema (SQLAlchemy Core tables; migrations in db/migrations mirror it)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from syncd.model import STORED_TEXT_MAX

# Stable constraint names so Alembic batch migrations can find them on SQLite.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# The sequence type for ids: BIGINT on PostgreSQL, INTEGER (rowid alias) on SQLite.
Id = BigInteger().with_variant(Integer(), "sqlite")

sites = Table(
    "sites",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

persons = Table(
    "persons",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    # No foreign key to sites (migration 0005): every file makes sure of its site first, and
    # PostgreSQL would run a trigger per inserted person.
    Column("site", String(200), nullable=False),
    Column("kind", String(10), nullable=False),  # student | parent
    Column("sync_key", String(STORED_TEXT_MAX), nullable=False),
    Column("username", String(STORED_TEXT_MAX)),
    Column("email", String(STORED_TEXT_MAX)),
    Column("first_name", String(STORED_TEXT_MAX), nullable=False),
    Column("last_name", String(STORED_TEXT_MAX), nullable=False),
    Column("student_number", String(STORED_TEXT_MAX)),
    Column("attributes", JSON, nullable=False),
    Column("password_hash", String(200)),
    Column("active", Boolean, nullable=False),
    # Why a person is inactive: "file" (missing/deleted in a file), "orphan", "revert".
    Column("inactive_reason", String(20)),
    # Whether the person ever had a link; parents that never had one are not orphans.
    Column("had_link", Boolean, nullable=False, default=False),
    Column("fingerprint", String(64), nullable=False),
    # Digest of the file row (its bytes and how they were read) that last set this person:
    # the same row next time is skipped unread. NULL when no single row describes the person,
    # and whenever a listing would change it (inactive for any reason but "orphan").
    Column("row_digest", BigInteger),
    Column("source", String(200)),
    Column("file_id", Id),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # The file whose person.created event this row is (stored as provenance: db/trail.py).
    Column("created_file_id", Id),
    UniqueConstraint("site", "kind", "sync_key", name="uq_persons_site_kind_sync_key"),
)
# No index by email: every read by email is a whole-site read (indexes in store.py), and the
# random inserts of such an index cost a third of a first load's database time. Nor by
# created_file_id: only `history --file` and `files revert` read by it (a scan).

links = Table(
    "links",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("site", String(200), nullable=False),
    # No foreign keys to persons (migration 0005): persons are never deleted (SPEC §4) and a
    # link is only written for ids read or created in the same transaction, while checking
    # one costs a random read of persons per link: at a million persons, more than the
    # insert itself (a sixth of a district's first load).
    Column("parent_id", Id, nullable=False),
    Column("child_id", Id, nullable=False),
    Column("type", String(20), nullable=False),
    Column("by_parents", Boolean, nullable=False, default=False),
    Column("by_relationships", Boolean, nullable=False, default=False),
    Column("manual", String(10)),  # "link" | "unlink" | NULL: a manual edit wins over files
    Column("source", String(200)),
    Column("file_id", Id),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # The file whose relationship.created event this row is, with the event's type and
    # origin (stored as provenance: db/trail.py). Such a row is never deleted, only unmarked.
    Column("created_file_id", Id),
    Column("created_type", String(20)),
    Column("created_origin", String(20)),
    UniqueConstraint("parent_id", "child_id", name="uq_links_parent_child"),
)
# By child: which parents a deactivated student leaves (orphans). No index by site or by
# created_file_id: their reads are whole-site reads or scans by `history` and `revert`,
# while each index costs a first load a second per million links.
LINKS_BY_CHILD = Index("ix_links_child_id", links.c.child_id)

pending_links = Table(
    "pending_links",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("site", String(200), nullable=False),
    Column("source", String(200)),
    Column("parent_id", Id, ForeignKey("persons.id"), nullable=False),
    Column("child_field", String(20), nullable=False),
    Column("child_value", String(STORED_TEXT_MAX), nullable=False),
    Column("type", String(20), nullable=False),
    Column("origin", String(20), nullable=False),  # parents | relationships
    Column("file_id", Id),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint(
        "parent_id", "child_field", "child_value", "origin", name="uq_pending_links_parent_value"
    ),
)
Index("ix_pending_links_site_value", pending_links.c.site, pending_links.c.child_value)

# Manual unlinks of a child value no student has yet (`syncd unlink` of a pending link): no
# file makes that link pending again, and when the student arrives the pair becomes a link
# row marked "unlink", as an unlink of a present student makes it (SPEC §1, §5).
pending_unlinks = Table(
    "pending_unlinks",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("site", String(200), nullable=False),
    Column("parent_id", Id, nullable=False),
    Column("child_field", String(20), nullable=False),
    Column("child_value", String(STORED_TEXT_MAX), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint(
        "parent_id", "child_field", "child_value", name="uq_pending_unlinks_parent_id"
    ),
)

files = Table(
    "files",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("source", String(200)),
    Column("site", String(200), nullable=False),
    Column("name", String(1000), nullable=False),
    Column("kind", String(20)),
    Column("status", String(20), nullable=False),
    Column("sha256", String(64)),
    Column("size", BigInteger),
    Column("path", Text),  # where the file is now (processing/, held/, archive/, failed/)
    Column("encoding", String(20)),
    Column("delimiter", String(4)),
    Column("counts", JSON),
    Column("reason", Text),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("run_id", String(40)),  # the run that applied it
    # Times taken up again after syncd died with it in hand (pickup.MAX_TAKE_UPS).
    Column("attempts", Integer),
)
Index("ix_files_source_sha256", files.c.source, files.c.sha256)
Index("ix_files_status", files.c.status)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("level", String(10), nullable=False),
    Column("event", String(40), nullable=False),
    Column("source", String(200)),
    Column("site", String(200)),
    Column("file_id", Id),
    Column("run_id", String(40)),
    Column("person_id", Id),
    Column("data", JSON, nullable=False),
)
Index("ix_audit_events_file_id", audit_events.c.file_id)
Index("ix_audit_events_person_id", audit_events.c.person_id)
# Operators ask "every file.failed this week": by event name, then time (migration 0002).
Index("ix_audit_events_event_ts", audit_events.c.event, audit_events.c.ts)

source_state = Table(
    "source_state",
    metadata,
    Column("source", String(200), primary_key=True),
    Column("site", String(200), nullable=False),
    Column("last_poll", DateTime(timezone=True)),
    Column("last_success", DateTime(timezone=True)),
    Column("waiting", Integer, nullable=False, default=0),
    Column("error", Text),
)

# What an SFTP source's files looked like when syncd first listed them so (SPEC §3.2: its
# own clock across its own listings): a cron-driven `run --once` is a new process each time,
# and a file waiting for an earlier kind must still age towards dependency_wait.
seen_files = Table(
    "seen_files",
    metadata,
    Column("source", String(200), primary_key=True),
    Column("name", String(1000), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("mtime", Float, nullable=False),
    Column("first_seen", DateTime(timezone=True), nullable=False),
)
