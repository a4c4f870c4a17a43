"""Alembic environment: runs on the connection (and transaction) that Database passes in.

Database holds the migration lock (BEGIN IMMEDIATE on SQLite, an advisory lock on PostgreSQL)
around this, so concurrent first opens cannot both create the schema.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("shipyard migrations run through shipyard.storage.database.Database")

context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
