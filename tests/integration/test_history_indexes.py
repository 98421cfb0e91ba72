"""The history and by-id reads walk indexes, shown by PostgreSQL's own plans.

A database of its own is filled with enough rows (20,000 wallets, 60,000 transactions) and
ANALYZEd, so the planner chooses as it would in production: nothing is forced.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from uuid import UUID

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tests.integration.plans import filled_database, nodes, plan, scans
from wallet.domain.model import HistoryRequest, TransactionStatus, TransactionType
from wallet.persistence.queries import history_statement
from wallet.persistence.tables import transactions, wallets

FILL = [
    "INSERT INTO wallets (id, owner_id, currency, balance) "
    "SELECT gen_random_uuid(), 'owner' || n % 100, 'USD', 0 FROM generate_series(1, 20000) AS n",
    "CREATE TEMP TABLE numbered AS SELECT id, row_number() OVER (ORDER BY id) AS n FROM wallets",
    # 60,000 transfers among the first 200 wallets (600 each way for each), a second apart.
    "INSERT INTO transactions (id, type, status, amount, currency, sender_wallet_id, "
    "receiver_wallet_id, failure_code, created_at, completed_at) "
    "SELECT gen_random_uuid(), 'TRANSFER', "
    "CASE WHEN g % 10 = 0 THEN 'FAILED' ELSE 'COMPLETED' END, 100, 'USD', a.id, b.id, "
    "CASE WHEN g % 10 = 0 THEN 'INSUFFICIENT_FUNDS' END, "
    "timestamptz '2026-01-01' + g * interval '1 second', "
    "timestamptz '2026-01-01' + g * interval '1 second' "
    "FROM generate_series(1, 60000) g JOIN numbered a ON a.n = g % 200 + 1 "
    "JOIN numbered b ON b.n = (g + 1) % 200 + 1",
    "ANALYZE",
]


@pytest.fixture(scope="module")
async def filled(database_url: str) -> AsyncIterator[AsyncEngine]:
    async with filled_database(database_url, "plans", FILL) as engine:
        yield engine


async def busy_wallet(connection: AsyncConnection) -> tuple[UUID, tuple[datetime, UUID]]:
    """A wallet with 600 transactions each way, and a position in the middle of its history."""
    row = (
        await connection.execute(
            select(transactions.c.sender_wallet_id, transactions.c.created_at, transactions.c.id)
            .order_by(transactions.c.created_at)
            .offset(30000)
            .limit(1)
        )
    ).one()
    return row[0], (row[1], row[2])


HISTORY_SCANS = {
    ("Index Scan", "transactions_sender_history"),
    ("Index Scan", "transactions_receiver_history"),
}


@pytest.mark.parametrize(
    "shape",
    ["first page", "after a cursor", "before a cursor", "filtered", "filtered after a cursor"],
)
async def test_a_history_page_is_two_index_scans_and_no_sequential_scan(
    filled: AsyncEngine, shape: str
) -> None:
    async with filled.connect() as connection:
        wallet_id, middle = await busy_wallet(connection)
        request = {
            "first page": HistoryRequest(wallet_id, limit=100),
            "after a cursor": HistoryRequest(wallet_id, limit=100, after=middle),
            "before a cursor": HistoryRequest(wallet_id, limit=100, before=middle, backward=True),
            "filtered": HistoryRequest(
                wallet_id,
                limit=20,
                types=frozenset({TransactionType.TRANSFER}),
                statuses=frozenset({TransactionStatus.FAILED}),
            ),
            "filtered after a cursor": HistoryRequest(
                wallet_id, limit=20, after=middle, statuses=frozenset({TransactionStatus.FAILED})
            ),
        }[shape]
        found = await plan(connection, history_statement(request))

    assert scans(found) == HISTORY_SCANS, json.dumps(found, indent=1)
    # The page's position is an index condition, not a filter applied to rows read.
    if request.after is not None or request.before is not None:
        for node in nodes(found):
            if node["Node Type"] == "Index Scan":
                assert "created_at" in node["Index Cond"], node


async def test_wallets_and_transactions_by_id_are_read_through_their_primary_keys(
    filled: AsyncEngine,
) -> None:
    async with filled.connect() as connection:
        some_wallets = (await connection.execute(select(wallets.c.id).limit(60))).scalars().all()
        some_transactions = (
            (await connection.execute(select(transactions.c.id).limit(100))).scalars().all()
        )
        # The statements SqlHistoryQuery sends for a DataLoader batch.
        by_wallet = await plan(connection, select(wallets).where(wallets.c.id.in_(some_wallets)))
        by_transaction = await plan(
            connection, select(transactions).where(transactions.c.id.in_(some_transactions))
        )

    for found, table in [(by_wallet, "wallets"), (by_transaction, "transactions")]:
        used = scans(found)
        assert not any(kind == "Seq Scan" for kind, _ in used), used
        # An index scan, or a bitmap index scan feeding a bitmap heap scan of the table.
        assert used & {("Index Scan", f"{table}_pkey"), ("Bitmap Index Scan", f"{table}_pkey")}


async def test_the_planner_knows_the_tables_are_large(filled: AsyncEngine) -> None:
    # Without statistics of a real size, a plan shown here would prove nothing.
    async with filled.connect() as connection:
        result = await connection.execute(
            text(
                "SELECT relname, reltuples FROM pg_class "
                "WHERE relname IN ('wallets', 'transactions')"
            )
        )
        sizes = dict(result.all())
    assert sizes == {"wallets": 20000, "transactions": 60000}
