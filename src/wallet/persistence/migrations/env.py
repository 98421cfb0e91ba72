"""Alembic environment: runs the migrations over the connection `wallet migrate` hands in."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import wallet.persistence.tables  # noqa: F401 - registers the tables on SQLModel.metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=SQLModel.metadata)
with context.begin_transaction():
    context.run_migrations()
