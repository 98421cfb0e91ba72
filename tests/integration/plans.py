"""PostgreSQL's own plans for the reads, on a database of their own filled with enough rows
and ANALYZEd, so the planner chooses as it would in production: nothing is forced."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import Select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from wallet.persistence.database import create_engine, drop_database, migrate


@asynccontextmanager
async def filled_database(
    database_url: str, suffix: str, fill: Sequence[str]
) -> AsyncIterator[AsyncEngine]:
    """A migrated database of its own (the run's name and `suffix`), filled by the `fill`
    statements, dropped afterwards."""
    name = f"{make_url(database_url).database}_{suffix}"
    url = make_url(database_url).set(database=name).render_as_string(hide_password=False)
    await migrate(url)
    engine = create_engine(url, pool_size=2)
    try:
        async with engine.connect() as connection:
            for statement in fill:
                await connection.execute(text(statement))
            await connection.commit()
        yield engine
    finally:
        await engine.dispose()
        await drop_database(url)


async def plan(connection: AsyncConnection, statement: Select[Any]) -> dict[str, Any]:
    compiled = statement.compile(
        dialect=connection.dialect, compile_kwargs={"render_postcompile": True}
    )
    assert compiled.positiontup is not None
    parameters = tuple(compiled.params[name] for name in compiled.positiontup)
    result = await connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}", parameters)
    document = result.scalar_one()
    found: dict[str, Any] = (json.loads(document) if isinstance(document, str) else document)[0][
        "Plan"
    ]
    return found


def nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from nodes(child)


def scans(node: dict[str, Any]) -> set[tuple[str, str]]:
    """(node type, index or table) of every scan in the plan."""
    return {
        (n["Node Type"], n.get("Index Name") or n.get("Relation Name", ""))
        for n in nodes(node)
        if "Scan" in n["Node Type"]
    }
