"""Find PENDING transactions that nobody is settling, so they can be queued again.

A job can be lost between the commit and the enqueue (Redis down), or die with its worker.
Either way its transaction stays PENDING in PostgreSQL, which is where this looks.
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

# SKIP LOCKED: rows a worker is settling right now (locked FOR UPDATE) are not stalled, and
# two sweepers never hand out the same row twice.
_CLAIM_STALLED = text(
    """
    UPDATE transactions SET swept_at = clock_timestamp()
    WHERE id IN (
        SELECT id FROM transactions
        WHERE status = 'PENDING'
          AND created_at < clock_timestamp() - CAST(:after AS interval)
          AND (swept_at IS NULL OR swept_at < clock_timestamp() - CAST(:after AS interval))
        ORDER BY created_at
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )
    RETURNING id
    """
)

_PENDING_STATS = text(
    """
    SELECT count(*), coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0)
    FROM transactions WHERE status = 'PENDING'
    """
)


async def claim_stalled(engine: AsyncEngine, *, after: timedelta, limit: int = 500) -> list[UUID]:
    """PENDING transactions older than `after` and not re-queued within `after`."""
    async with engine.begin() as connection:
        result = await connection.execute(_CLAIM_STALLED, {"after": after, "limit": limit})
        return [row[0] for row in result]


async def pending_stats(engine: AsyncEngine) -> tuple[int, float]:
    """How many transactions are PENDING, and the age in seconds of the oldest."""
    async with engine.connect() as connection:
        count, age = (await connection.execute(_PENDING_STATS)).one()
        return int(count), float(age)
