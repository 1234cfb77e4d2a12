"""Links without foreign keys to persons.

Checking links.parent_id and links.child_id against persons costs a random read of the
persons table per inserted link; at a district's million persons (a table larger than the
page cache) that is more than the insert itself: 84 s → 67–74 s for a first load of 1M
students and 1.5M parents with 2.25M links (docs/benchmarks.md). The keys guarded nothing
that happens: persons are never deleted (SPEC §4), and syncd writes a link only for ids it
read or created in the same transaction. sites ← persons and persons ← pending_links keep
theirs (a tiny parent table, and a few rows).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("links", schema=None) as batch_op:
        batch_op.drop_constraint("fk_links_parent_id_persons", type_="foreignkey")
        batch_op.drop_constraint("fk_links_child_id_persons", type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("links", schema=None) as batch_op:
        batch_op.create_foreign_key("fk_links_child_id_persons", "persons", ["child_id"], ["id"])
        batch_op.create_foreign_key("fk_links_parent_id_persons", "persons", ["parent_id"], ["id"])
