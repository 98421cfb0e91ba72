"""The ledger's reads walk ledger_entries_by_wallet_time and reversals_by_original, shown by
PostgreSQL's own plans on 120,000 entries: a balance at an instant is one index lookup (a
LIMIT 1 over a backward scan), a statement one lookup and one range scan, a page of entries
one backward range; never a sequential scan, never a sum over a wallet's whole history.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tests.integration.plans import filled_database, nodes, plan, scans
from wallet.domain.ledger import BalanceRequest, EntriesRequest, StatementRequest
from wallet.persistence.ledger_queries import (
    balances_statement,
    entries_statement,
    reversals_statement,
    statements_statement,
)
from wallet.persistence.tables import ledger_entries, transactions

START = datetime.fromisoformat("2026-01-01T00:00:00+00:00")
FILL = [
    "INSERT INTO wallets (id, owner_id, currency, balance) "
    "SELECT gen_random_uuid(), 'owner' || n % 100, 'USD', 0 FROM generate_series(1, 2000) AS n",
    "CREATE TEMP TABLE numbered AS SELECT id, row_number() OVER (ORDER BY id) AS n FROM wallets",
    # 60,000 completed transfers among the first 200 wallets, a second apart: 600 entries
    # each way for each of them, 120,000 in all.
    "INSERT INTO transactions (id, type, status, amount, currency, sender_wallet_id, "
    "receiver_wallet_id, created_at, completed_at) "
    "SELECT gen_random_uuid(), 'TRANSFER', 'COMPLETED', 100, 'USD', a.id, b.id, "
    "timestamptz '2026-01-01' + g * interval '1 second', "
    "timestamptz '2026-01-01' + g * interval '1 second' "
    "FROM generate_series(1, 60000) g JOIN numbered a ON a.n = g % 200 + 1 "
    "JOIN numbered b ON b.n = (g + 1) % 200 + 1",
    "INSERT INTO ledger_entries (transaction_id, wallet_id, delta, balance_after, created_at) "
    "SELECT t.id, side.wallet_id, side.delta, 1000000 + side.delta, t.created_at "
    "FROM transactions t, LATERAL (VALUES (t.sender_wallet_id, -t.amount), "
    "(t.receiver_wallet_id, t.amount)) AS side(wallet_id, delta)",
    # A reversal of every 60th transfer: 1,000 in all.
    "INSERT INTO transactions (id, type, status, amount, currency, sender_wallet_id, "
    "receiver_wallet_id, reversal_of, created_at, completed_at) "
    "SELECT gen_random_uuid(), 'REVERSAL', 'COMPLETED', 50, 'USD', receiver_wallet_id, "
    "sender_wallet_id, id, created_at + interval '1 day', created_at + interval '1 day' "
    "FROM (SELECT *, row_number() OVER (ORDER BY created_at) AS n FROM transactions) AS t "
    "WHERE n % 60 = 0",
    "ANALYZE",
]

ENTRIES_BY_TIME = "ledger_entries_by_wallet_time"


@pytest.fixture(scope="module")
async def filled(database_url: str) -> AsyncIterator[AsyncEngine]:
    async with filled_database(database_url, "ledger_plans", FILL) as engine:
        yield engine


async def busy_wallets(connection: AsyncConnection, count: int) -> list[UUID]:
    """Wallets with 1,200 entries each."""
    result = await connection.execute(
        select(ledger_entries.c.wallet_id).group_by(ledger_entries.c.wallet_id).limit(count)
    )
    return list(result.scalars())


def explained(found: dict[str, Any]) -> str:
    return json.dumps(found, indent=1)


def entry_scans(found: dict[str, Any]) -> list[dict[str, Any]]:
    return [n for n in nodes(found) if n.get("Relation Name") == "ledger_entries"]


def assert_no_sequential_scan(found: dict[str, Any]) -> None:
    assert not any(kind == "Seq Scan" for kind, _ in scans(found)), explained(found)


async def test_the_planner_knows_there_are_over_100000_entries(filled: AsyncEngine) -> None:
    # Without statistics of a real size, a plan shown here would prove nothing.
    async with filled.connect() as connection:
        result = await connection.execute(
            text("SELECT reltuples FROM pg_class WHERE relname = 'ledger_entries'")
        )
        assert result.scalar_one() == 120_000


@pytest.mark.timeout(120)
@pytest.mark.parametrize("asked", [1, 50])
async def test_balances_at_instants_are_one_index_lookup_each_with_limit_one(
    filled: AsyncEngine, asked: int
) -> None:
    async with filled.connect() as connection:
        wallet_ids = await busy_wallets(connection, asked)
        requests = [
            BalanceRequest(w, START + timedelta(seconds=1000 * (i + 1)))
            for i, w in enumerate(wallet_ids)
        ]
        found = await plan(connection, balances_statement(requests))

    assert_no_sequential_scan(found)
    (lookup,) = entry_scans(found)
    assert (lookup["Node Type"], lookup["Index Name"]) == ("Index Scan", ENTRIES_BY_TIME)
    assert lookup["Scan Direction"] == "Backward"
    # The wallet and the instant bound the scan itself: no entry is read to be thrown away.
    assert "wallet_id" in lookup["Index Cond"]
    assert "created_at" in lookup["Index Cond"]
    assert "Filter" not in lookup, explained(found)
    # Stopped at the first entry found, the newest at or before the instant.
    limits = [n for n in nodes(found) if n["Node Type"] == "Limit"]
    assert any(lookup in list(nodes(n)) for n in limits), explained(found)
    assert not any(n["Node Type"] == "Aggregate" for n in nodes(found)), explained(found)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("asked", [1, 50])
async def test_a_statement_is_one_lookup_and_one_range_scan_of_the_period(
    filled: AsyncEngine, asked: int
) -> None:
    async with filled.connect() as connection:
        wallet_ids = await busy_wallets(connection, asked)
        requests = [
            StatementRequest(w, START + timedelta(hours=5), START + timedelta(hours=6, seconds=i))
            for i, w in enumerate(wallet_ids)
        ]
        found = await plan(connection, statements_statement(requests))

    assert_no_sequential_scan(found)
    opening, period = sorted(entry_scans(found), key=lambda n: "<=" in n["Index Cond"])
    for scan in (opening, period):
        assert (scan["Node Type"], scan["Index Name"]) == ("Index Scan", ENTRIES_BY_TIME), (
            explained(found)
        )
        assert "Filter" not in scan, explained(found)
    # The period's entries are one range: both of its ends bound the index scan.
    assert "created_at >=" in period["Index Cond"], period["Index Cond"]
    assert "created_at <" in period["Index Cond"], period["Index Cond"]
    # The opening balance is the newest entry before it, not a sum of those before.
    assert opening["Scan Direction"] == "Backward", explained(found)
    aggregates = [n for n in nodes(found) if n["Node Type"] == "Aggregate"]
    assert len(aggregates) == 1, explained(found)
    assert period in list(nodes(aggregates[0])), explained(found)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("shape", ["first page", "after a cursor", "in a period"])
async def test_a_page_of_entries_is_one_backward_range_of_the_index(
    filled: AsyncEngine, shape: str
) -> None:
    async with filled.connect() as connection:
        (wallet_id,) = await busy_wallets(connection, 1)
        middle = (START + timedelta(hours=8), 60_000)
        request = {
            "first page": EntriesRequest(wallet_id, limit=100),
            "after a cursor": EntriesRequest(wallet_id, limit=100, after=middle),
            "in a period": EntriesRequest(
                wallet_id,
                limit=20,
                since=START + timedelta(hours=2),
                until=START + timedelta(hours=3),
            ),
        }[shape]
        found = await plan(connection, entries_statement(request))

    assert_no_sequential_scan(found)
    assert found["Node Type"] == "Limit", explained(found)
    (scan,) = entry_scans(found)
    assert (scan["Node Type"], scan["Index Name"]) == ("Index Scan", ENTRIES_BY_TIME)
    assert scan["Scan Direction"] == "Backward"
    if shape != "first page":
        assert "created_at" in scan["Index Cond"], scan["Index Cond"]


@pytest.mark.timeout(120)
async def test_reversals_are_read_through_reversals_by_original(filled: AsyncEngine) -> None:
    async with filled.connect() as connection:
        originals = (
            await connection.execute(
                select(transactions.c.reversal_of)
                .where(transactions.c.reversal_of.is_not(None))
                .limit(50)
            )
        ).scalars()
        found = await plan(connection, reversals_statement(list(originals)))

    assert_no_sequential_scan(found)
    assert scans(found) & {
        ("Index Scan", "reversals_by_original"),
        ("Bitmap Index Scan", "reversals_by_original"),
    }, explained(found)
