"""Persons and links without foreign keys on their bulk paths.

Each foreign key is checked per inserted row, and at a district's size that costs more than
the insert itself:
- links.parent_id / links.child_id → persons: a random read of the persons table per link
  (larger than the page cache at a million persons); a first load of 1M students and 1.5M
  parents with 2.25M links on SQLite went from 84 s to 67–74 s without them;
- persons.site → sites: on PostgreSQL a trigger per row, 2.5 s of server time per million
  persons (COPY of 1M persons: 7.3 s with it, 4.6–5.2 s without).
They guarded nothing that happens: persons are never deleted (SPEC §4), every write of a
file first makes sure of its site, and a link is written only for ids read or created in
the same transaction. pending_links keeps its key to persons (a few rows).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("links", schema=None) as batch_op:
        batch_op.drop_constraint("fk_links_parent_id_persons", type_="foreignkey")
        batch_op.drop_constraint("fk_links_child_id_persons", type_="foreignkey")
    with op.batch_alter_table("persons", schema=None) as batch_op:
        batch_op.drop_constraint("fk_persons_site_sites", type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("persons", schema=None) as batch_op:
        batch_op.create_foreign_key("fk_persons_site_sites", "sites", ["site"], ["name"])
    with op.batch_alter_table("links", schema=None) as batch_op:
        batch_op.create_foreign_key("fk_links_child_id_persons", "persons", ["child_id"], ["id"])
        batch_op.create_foreign_key("fk_links_parent_id_persons", "persons", ["parent_id"], ["id"])
