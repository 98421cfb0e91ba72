"""Transfers from request to COMPLETED, read from PostgreSQL's own timestamps.

(The transfer phases of `python -m bench`; `--only transfers` runs them alone.)

Every transfer a phase sends carries a clientTransactionId starting with the phase's prefix.
Once none of them is PENDING any more, their rows tell everything, on one clock (the
database's): created_at is when the API recorded the request, completed_at when a worker
applied it. Throughput is the number COMPLETED over the time from the first created_at to the
last completed_at, so a backlog that the workers drain after the load stops counts against
them; latency is completed_at - created_at of each transfer, queueing included.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from bench.ledger import connection, keys_like
from bench.stats import percentile


@dataclass
class Settlement:
    completed: int
    failed: int
    pending: int  # still PENDING when the wait gave up
    seconds: float  # first created_at to last completed_at
    latencies_ms: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)

    @property
    def recorded(self) -> int:
        """Every transfer of the phase the API recorded, whatever became of it."""
        return self.completed + self.failed + self.pending

    @property
    def tps(self) -> float:
        return self.completed / self.seconds if self.seconds > 0 else 0.0

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies_ms, 99)


async def wait_settled(database_url: str, prefix: str, patience: float) -> int:
    """Wait until no transfer of the phase is PENDING; returns how many still are.

    While waiting it asks only whether one is, which stops at the first PENDING row it finds:
    counting a backlog of tens of thousands five times a second would add to the PostgreSQL
    CPU the phase is charged with."""
    deadline = time.monotonic() + patience
    async with connection(database_url) as conn:
        while True:
            waiting: bool = await conn.fetchval(
                "SELECT EXISTS (SELECT FROM transactions"
                " WHERE status = 'PENDING' AND client_transaction_id LIKE $1)",
                keys_like(prefix),
            )
            if not waiting:
                return 0
            if time.monotonic() > deadline:
                pending: int = await conn.fetchval(
                    "SELECT count(*) FROM transactions"
                    " WHERE status = 'PENDING' AND client_transaction_id LIKE $1",
                    keys_like(prefix),
                )
                return pending
            await asyncio.sleep(0.2)


async def settled_since(database_url: str, prefix: str, pending: int) -> Settlement:
    """The phase's figures from its rows, `pending` of them found still PENDING."""
    async with connection(database_url) as conn:
        rows = await conn.fetch(
            "SELECT status, failure_code, extract(epoch FROM created_at)::float8 AS created,"
            " extract(epoch FROM completed_at)::float8 AS completed"
            " FROM transactions WHERE client_transaction_id LIKE $1",
            keys_like(prefix),
        )
    done = [r for r in rows if r["status"] == "COMPLETED"]
    failures: dict[str, int] = {}
    for r in rows:
        if r["status"] == "FAILED":
            failures[r["failure_code"]] = failures.get(r["failure_code"], 0) + 1
    seconds = max(r["completed"] for r in done) - min(r["created"] for r in rows) if done else 0.0
    return Settlement(
        completed=len(done),
        failed=sum(failures.values()),
        pending=pending,
        seconds=seconds,
        latencies_ms=[(r["completed"] - r["created"]) * 1000 for r in done],
        failures=failures,
    )
