"""A dry run's batch (`syncd import --dry-run FILE…`): one transaction for all its files,
rolled back at the end, so that each file is planned after the changes of those before it,
as a real run of the batch would apply them (students before their parents)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa


class PreviewConnection:
    """The one connection of a dry run's batch, lent to each file in turn: its transactions
    are savepoints of the batch's, and closing it leaves it open. So each file is planned
    after the changes of the files before it, as a real run of the batch would apply them,
    and the batch rolls them all back at the end."""

    def __init__(self, connection: sa.Connection) -> None:
        self._connection = connection

    def begin(self) -> sa.NestedTransaction:
        return self._connection.begin_nested()

    def close(self) -> None:
        return None  # the batch's, not the file's

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


def keep_preview(transaction: sa.Transaction) -> None:
    """End a dry-run file's transaction keeping its changes for the rest of the batch (a
    savepoint released; only the batch's rollback ends them)."""
    if not isinstance(transaction, sa.NestedTransaction):
        raise RuntimeError("a dry run outside its batch's transaction")  # never a commit
    transaction.commit()
