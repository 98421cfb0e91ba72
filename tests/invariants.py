"""What must hold in PostgreSQL whatever the requests did, read straight from the tables."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

LEDGER_TABLES = ("wallets", "transactions", "ledger_entries", "idempotency_keys")


@dataclass(frozen=True)
class TableState:
    rows: int
    checksum: str


async def snapshot(engine: AsyncEngine) -> dict[str, TableState]:
    """Row count and a digest of every row of every ledger table.

    Two equal snapshots mean nothing was inserted, updated or deleted in between; a
    version bump or a touched `updated_at` changes the digest too.
    """
    states = {}
    async with engine.connect() as conn:
        for table in LEDGER_TABLES:
            rows, checksum = (
                await conn.execute(
                    text(
                        f"SELECT count(*), coalesce(md5(string_agg(t::text, E'\\n' "
                        f"ORDER BY t::text)), '') FROM {table} AS t"
                    )
                )
            ).one()
            states[table] = TableState(rows, checksum)
    return states


@dataclass(frozen=True)
class WalletLedger:
    balance: int
    entries: int
    completed: int


async def wallet_ledgers(
    engine: AsyncEngine, wallet_ids: Iterable[UUID | str]
) -> dict[str, WalletLedger]:
    """Each wallet's balance, the sum of its ledger entries, and the net of its COMPLETED
    transactions, all in minor units."""
    ids = [str(i) for i in wallet_ids]
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    """
                    SELECT w.id::text, w.balance,
                      (SELECT coalesce(sum(e.delta), 0) FROM ledger_entries e
                       WHERE e.wallet_id = w.id),
                      (SELECT coalesce(sum(CASE WHEN t.receiver_wallet_id = w.id THEN t.amount
                                                ELSE -t.amount END), 0)
                       FROM transactions t
                       WHERE t.status = 'COMPLETED'
                         AND (t.sender_wallet_id = w.id OR t.receiver_wallet_id = w.id))
                    FROM wallets w WHERE w.id = ANY(CAST(:ids AS uuid[]))
                    """
                ),
                {"ids": ids},
            )
        ).all()
    found = {row[0]: WalletLedger(int(row[1]), int(row[2]), int(row[3])) for row in rows}
    assert sorted(found) == sorted(ids), "every wallet asked for exists"
    return found


async def assert_balances_explained(
    engine: AsyncEngine, wallet_ids: Iterable[UUID | str]
) -> dict[str, int]:
    """Every balance is >= 0 and equals both its ledger entries and its COMPLETED
    transactions; every COMPLETED transaction has one entry per wallet it touches and no
    other transaction has any. Returns the balances."""
    ledgers = await wallet_ledgers(engine, wallet_ids)
    for wallet_id, ledger in ledgers.items():
        assert ledger.balance >= 0, (wallet_id, ledger)
        assert ledger.balance == ledger.entries == ledger.completed, (wallet_id, ledger)
    async with engine.connect() as conn:
        mismatched = (
            await conn.execute(
                text(
                    """
                    SELECT t.id, t.type, t.status, count(e.id)
                    FROM transactions t LEFT JOIN ledger_entries e ON e.transaction_id = t.id
                    GROUP BY t.id
                    HAVING count(e.id) <> CASE
                        WHEN t.status <> 'COMPLETED' THEN 0
                        WHEN t.type = 'TRANSFER' THEN 2 ELSE 1 END
                    """
                )
            )
        ).all()
    assert mismatched == []
    return {wallet_id: ledger.balance for wallet_id, ledger in ledgers.items()}


async def transaction_rows(
    engine: AsyncEngine, where: str, **params: object
) -> list[dict[str, object]]:
    async with engine.connect() as conn:
        result = await conn.execute(text(f"SELECT * FROM transactions WHERE {where}"), params)
        return [dict(row) for row in result.mappings()]


async def status_counts(
    engine: AsyncEngine, transaction_ids: Iterable[UUID | str]
) -> dict[str, int]:
    """How many of the transactions are in each status."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT status, count(*) FROM transactions "
                "WHERE id = ANY(CAST(:ids AS uuid[])) GROUP BY status"
            ),
            {"ids": [str(i) for i in transaction_ids]},
        )
        return {str(status): int(count) for status, count in rows.all()}
