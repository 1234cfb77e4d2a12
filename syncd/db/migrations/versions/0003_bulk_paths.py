"""Bulk paths for district-size files: row digests, creation provenance, run ids.

- persons.row_digest: digest of the file row that last set the person; a row with the same
  digest next time is skipped unread (the unchanged-row fast path).
- persons.created_file_id, links.created_file_id/created_type/created_origin: a creation
  event fully described by the row it created is stored as that row's provenance instead of
  an audit_events row (SPEC §7 scale; history and revert read both, see db/trail.py).
- files.run_id: the run that applied a file (context of those provenance events).
- The email index of persons and the site index of links go: every read by them is a
  whole-site read, and their inserts cost a first load more than the reads they served.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("persons", schema=None) as batch_op:
        batch_op.drop_index("ix_persons_site_kind_email")
        batch_op.add_column(sa.Column("row_digest", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("created_file_id", Id, nullable=True))
    with op.batch_alter_table("links", schema=None) as batch_op:
        batch_op.drop_index("ix_links_site")
        batch_op.add_column(sa.Column("created_file_id", Id, nullable=True))
        batch_op.add_column(sa.Column("created_type", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("created_origin", sa.String(length=20), nullable=True))
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.add_column(sa.Column("run_id", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.drop_column("run_id")
    with op.batch_alter_table("links", schema=None) as batch_op:
        batch_op.drop_column("created_origin")
        batch_op.drop_column("created_type")
        batch_op.drop_column("created_file_id")
        batch_op.create_index("ix_links_site", ["site"], unique=False)
    with op.batch_alter_table("persons", schema=None) as batch_op:
        batch_op.drop_column("created_file_id")
        batch_op.drop_column("row_digest")
        batch_op.create_index("ix_persons_site_kind_email", ["site", "kind", "email"], unique=False)
