"""How many times a file was taken up again after syncd died with it in hand.

A file that kills the process that applies it (out of memory, say) is taken up again at
each restart (SPEC §3.2); after a few such take-ups it is failed, so that it no longer
stops its source (pickup.MAX_TAKE_UPS).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attempts", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.drop_column("attempts")
