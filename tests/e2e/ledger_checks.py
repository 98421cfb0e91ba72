"""Invariants checked straight in PostgreSQL after a run: the ledger explains every balance."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


async def assert_ledger_consistent(engine: AsyncEngine, wallet_ids: list[str]) -> None:
    """Every balance equals its entries and its COMPLETED transactions; none is negative;
    a COMPLETED transaction has one entry per wallet it touches, any other has none."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    """
                    SELECT w.id, w.balance,
                      (SELECT coalesce(sum(delta), 0) FROM ledger_entries e
                       WHERE e.wallet_id = w.id),
                      (SELECT coalesce(sum(CASE WHEN t.receiver_wallet_id = w.id THEN t.amount
                                                ELSE -t.amount END), 0)
                       FROM transactions t
                       WHERE t.status = 'COMPLETED'
                         AND (t.sender_wallet_id = w.id OR t.receiver_wallet_id = w.id))
                    FROM wallets w WHERE w.id = ANY(CAST(:ids AS uuid[]))
                    """
                ),
                {"ids": wallet_ids},
            )
        ).all()
        assert len(rows) == len(wallet_ids)
        for wallet_id, balance, entries, completed in rows:
            assert balance >= 0, wallet_id
            assert balance == entries == completed, (wallet_id, balance, entries, completed)
        mismatched = (
            await conn.execute(
                text(
                    """
                    SELECT t.id, t.status, count(e.id)
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


async def statuses(engine: AsyncEngine, transaction_ids: list[str]) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT status, count(*) FROM transactions "
                "WHERE id = ANY(CAST(:ids AS uuid[])) GROUP BY status"
            ),
            {"ids": transaction_ids},
        )
        return {str(status): int(count) for status, count in rows.all()}


async def total_balance(engine: AsyncEngine, wallet_ids: list[str]) -> int:
    async with engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    text("SELECT sum(balance) FROM wallets WHERE id = ANY(CAST(:ids AS uuid[]))"),
                    {"ids": wallet_ids},
                )
            ).scalar_one()
        )
