"""What the benchmark reads back from PostgreSQL after the load: rows recorded, ledger sound."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from sqlalchemy.engine import make_url


@asynccontextmanager
async def connection(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection to the database a SQLAlchemy URL names, whatever its driver."""
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        yield conn
    finally:
        await conn.close()


def keys_like(prefix: str) -> str:
    """The LIKE pattern of the clientTransactionIds a phase sent under `prefix`."""
    assert prefix.replace("-", "").isalnum(), prefix  # no LIKE wildcards in it
    return prefix + "-%"


async def count_recorded(database_url: str, prefix: str) -> int:
    """How many transactions carry a clientTransactionId starting with `prefix`-."""
    async with connection(database_url) as conn:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM transactions WHERE client_transaction_id LIKE $1",
            keys_like(prefix),
        )
    return count


async def ledger_problem(database_url: str) -> str | None:
    """Why the ledger is wrong after the load, or None: every balance is its entries' sum,
    none is negative, and the money in the wallets is the money deposited."""
    async with connection(database_url) as conn:
        unexplained = await conn.fetchval(
            "SELECT count(*) FROM wallets w WHERE w.balance < 0 OR w.balance <> coalesce("
            "(SELECT sum(delta) FROM ledger_entries l WHERE l.wallet_id = w.id), 0)"
        )
        total = await conn.fetchval("SELECT coalesce(sum(balance), 0) FROM wallets")
        deposited = await conn.fetchval(
            "SELECT coalesce(sum(amount), 0) FROM transactions"
            " WHERE type = 'DEPOSIT' AND status = 'COMPLETED'"
        )
    if unexplained == 0 and total == deposited:
        return None
    return f"ledger: {unexplained} unexplained balances, total {total} vs deposited {deposited}"
