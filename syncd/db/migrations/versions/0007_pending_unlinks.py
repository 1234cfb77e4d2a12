"""Manual unlinks of a child value no student has yet.

`syncd unlink` of a pending link used to drop it only until the next file named the value
again; SPEC §1 and §5 promise manual unlinks that file syncs do not undo. The mark keeps
the pair apart until the student arrives, when it becomes a link row marked "unlink".

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "pending_unlinks",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("site", sa.String(length=200), nullable=False),
        sa.Column("parent_id", Id, nullable=False),
        sa.Column("child_field", sa.String(length=20), nullable=False),
        sa.Column("child_value", sa.String(length=500), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pending_unlinks")),
        sa.UniqueConstraint(
            "parent_id", "child_field", "child_value", name="uq_pending_unlinks_parent_id"
        ),
    )


def downgrade() -> None:
    op.drop_table("pending_unlinks")
