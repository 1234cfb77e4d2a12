"""Alembic environment: runs on syncd's own connection (config.attributes["connection"])."""

from __future__ import annotations

from alembic import context

from syncd.db.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - syncd always hands its connection in
    raise RuntimeError("run migrations through `syncd db upgrade`")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=True,  # SQLite cannot ALTER most things; batch mode copies the table
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
