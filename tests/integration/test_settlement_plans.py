"""Settlement finds its transactions one primary-key lookup each, whatever the backlog, and
whether or not PostgreSQL has statistics for the table, shown by its own plans.

With `id = ANY($1) AND status = 'PENDING'`, a backlog of 60,000 PENDING transactions made the
planner walk all of them through transactions_pending (no statistics) or read the whole table
(analyzed): 8 to 37 ms a statement for 1,024 ids, against 2 for 1,024 lookups. Each statement
is planned seven times, past the fifth run that may switch it to a generic plan.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.plans import filled_database, nodes
from wallet.persistence import statements as sql

FILL = [
    "INSERT INTO wallets (id, owner_id, currency, balance) "
    "SELECT gen_random_uuid(), 'owner', 'USD', 0 FROM generate_series(1, 1000)",
    # 90,000 transfers, two in three still PENDING (a settlement backlog), every seventh in
    # one of 130 atomic batches.
    "INSERT INTO transactions (id, type, status, amount, currency, sender_wallet_id, "
    "receiver_wallet_id, created_at, completed_at, batch_id) "
    "SELECT gen_random_uuid(), 'TRANSFER', CASE WHEN g % 3 = 0 THEN 'COMPLETED' ELSE "
    "'PENDING' END, 100, 'USD', (SELECT id FROM wallets ORDER BY id LIMIT 1), "
    "(SELECT id FROM wallets ORDER BY id DESC LIMIT 1), "
    "timestamptz '2026-01-01' + g * interval '1 millisecond', "
    "CASE WHEN g % 3 = 0 THEN timestamptz '2026-01-01' + g * interval '1 millisecond' END, "
    "CASE WHEN g % 7 = 0 THEN md5((g / 700)::text)::uuid END "
    "FROM generate_series(1, 90000) g",
]


@pytest.fixture(scope="module", params=["analyzed", "never analyzed"])
async def backlog(request: pytest.FixtureRequest, database_url: str) -> AsyncIterator[AsyncEngine]:
    analyzed = request.param == "analyzed"
    fill = [*FILL, "ANALYZE"] if analyzed else FILL
    suffix = "settle_plans" if analyzed else "settle_plans_raw"
    async with filled_database(database_url, suffix, fill) as engine:
        yield engine


async def _plans(engine: AsyncEngine, statement: str, column: str) -> list[dict[str, Any]]:
    """The scans of the statement's seventh plan, asked for 1,024 ids (or 5 batches)."""
    async with engine.connect() as pooled:
        connection: asyncpg.Connection = (await pooled.get_raw_connection()).driver_connection
        limit = 5 if column == "batch_id" else 1024
        asked = [
            row[0]
            for row in await connection.fetch(
                f"SELECT DISTINCT {column} FROM transactions "
                f"WHERE status = 'PENDING' AND {column} IS NOT NULL LIMIT {limit}"
            )
        ]
        async with connection.transaction():  # FOR UPDATE needs one
            for _ in range(7):
                document = await connection.fetchval(f"EXPLAIN (FORMAT JSON) {statement}", asked)
        await pooled.rollback()
    plan = (orjson.loads(document) if isinstance(document, str) else document)[0]["Plan"]
    return [n for n in nodes(plan) if "Scan" in n["Node Type"]]


def _relation_scans(scans: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {
        (n["Node Type"], n.get("Index Name") or n["Relation Name"])
        for n in scans
        if n["Node Type"] not in ("Function Scan", "Subquery Scan")
    }


@pytest.mark.parametrize(
    "statement",
    [sql.ASKED, sql.LOCK_ASKED],
    ids=["asked", "locked"],
)
async def test_each_asked_transaction_is_one_primary_key_lookup(
    backlog: AsyncEngine, statement: str
) -> None:
    scans = _relation_scans(await _plans(backlog, statement, "id"))
    assert scans == {("Index Scan", "transactions_pkey")}


async def test_the_rest_of_atomic_batches_is_found_by_their_index(backlog: AsyncEngine) -> None:
    scans = _relation_scans(await _plans(backlog, sql.ASKED_BATCHES, "batch_id"))
    assert {index for kind, index in scans if "Index" in kind} == {"transactions_by_batch"}
    assert not any(kind == "Seq Scan" for kind, _ in scans), scans
