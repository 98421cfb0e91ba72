"""The migrations build exactly the schema tables.py declares: the migrations are what is
deployed, and tables.py is what the code and a reader believe."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import CheckConstraint, Connection, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

from wallet.persistence import tables
from wallet.persistence.database import create_database, create_engine, drop_database, migrate

TABLES = (
    tables.wallets,
    tables.transactions,
    tables.holds,
    tables.ledger_entries,
    tables.idempotency_keys,
)


@pytest.fixture(scope="module")
async def migrated(database_url: str) -> AsyncIterator[AsyncEngine]:
    """A database of its own, built by the migrations alone."""
    name = f"{make_url(database_url).database}_schema"
    url = make_url(database_url).set(database=name).render_as_string(hide_password=False)
    await migrate(url)
    engine = create_engine(url)
    try:
        yield engine
    finally:
        await engine.dispose()
        await drop_database(url)


@pytest.fixture(scope="module")
async def declared(database_url: str) -> AsyncIterator[AsyncEngine]:
    """A database of its own, built from tables.py alone (no migration)."""
    name = f"{make_url(database_url).database}_declared"
    url = make_url(database_url).set(database=name).render_as_string(hide_password=False)
    await create_database(url)
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(SQLModel.metadata.create_all)
        yield engine
    finally:
        await engine.dispose()
        await drop_database(url)


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection,
        opts={
            "compare_type": True,
            "compare_server_default": True,
            # Alembic's own bookkeeping is no table of ours.
            "include_name": lambda name, kind, _: (
                not (kind == "table" and name == "alembic_version")
            ),
        },
    )
    return compare_metadata(context, SQLModel.metadata)


async def test_the_migrated_schema_has_the_declared_tables_columns_keys_and_indexes(
    migrated: AsyncEngine,
) -> None:
    # Tables, columns (types, nullability, server defaults), primary and foreign keys,
    # unique constraints and indexes by their columns. What Alembic cannot see (CHECK
    # constraints, an index's WHERE clause, a deferred foreign key) the next two tests do.
    async with migrated.connect() as connection:
        differences = await connection.run_sync(_differences)
    assert differences == []


async def test_the_migrated_schema_has_the_check_constraints_tables_py_names(
    migrated: AsyncEngine,
) -> None:
    # By name here; what each checks, in the next test.
    names = {
        (table.name, constraint.name)
        for table in TABLES
        for constraint in table.constraints
        if isinstance(constraint, CheckConstraint)
    }
    async with migrated.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT conrelid::regclass::text, conname FROM pg_constraint "
                "WHERE contype = 'c' AND connamespace = 'public'::regnamespace"
            )
        )
        assert {(table, name) for table, name in rows} == names


async def test_the_migrated_indexes_and_constraints_are_those_tables_py_builds(
    migrated: AsyncEngine, declared: AsyncEngine
) -> None:
    # Alembic compares an index's columns but not its WHERE clause, and a foreign key's
    # target but not whether it is deferred; nor CHECK constraints at all. So each index and
    # constraint is compared as PostgreSQL prints it back, in a database the migrations
    # built and one built from tables.py alone: the texts they were written in may differ in
    # spacing, casts and parentheses, what PostgreSQL made of them may not.
    assert await _definitions(migrated) == await _definitions(declared)


async def _definitions(engine: AsyncEngine) -> dict[tuple[str, str], str]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT 'index', indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
                "AND tablename <> 'alembic_version' "
                "UNION ALL "
                "SELECT 'constraint', conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE connamespace = 'public'::regnamespace "
                "AND conrelid::regclass::text <> 'alembic_version'"
            )
        )
        # A primary key or a unique constraint is also an index of the same name.
        return {(kind, name): definition for kind, name, definition in rows}
