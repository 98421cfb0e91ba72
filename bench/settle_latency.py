"""Transfers from request to COMPLETED, read from PostgreSQL's own timestamps.

    python -m bench.settle_latency [bench options]   (the transfer phases of `python -m bench`)

Every transfer a phase sends carries a clientTransactionId starting with the phase's prefix.
Once none of them is PENDING any more, their rows tell everything, on one clock (the
database's): created_at is when the API recorded the request, completed_at when a worker
applied it. Throughput is the number COMPLETED over the time from the first created_at to the
last completed_at, so a backlog that the workers drain after the load stops counts against
them; latency is completed_at - created_at of each transfer, queueing included.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from dataclasses import dataclass, field

import asyncpg


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of `values` (p in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Settlement:
    completed: int
    failed: int
    pending: int  # still PENDING when the wait gave up
    seconds: float  # first created_at to last completed_at
    latencies_ms: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)

    @property
    def tps(self) -> float:
        return self.completed / self.seconds if self.seconds > 0 else 0.0

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies_ms, 99)


def _pattern(prefix: str) -> str:
    assert prefix.replace("-", "").isalnum(), prefix  # no LIKE wildcards in it
    return prefix + "-%"


async def wait_settled(dsn: str, prefix: str, patience: float) -> int:
    """Wait until no transfer of the phase is PENDING; returns how many still are."""
    deadline = time.monotonic() + patience
    conn = await asyncpg.connect(dsn)
    try:
        while True:
            pending: int = await conn.fetchval(
                "SELECT count(*) FROM transactions"
                " WHERE status = 'PENDING' AND client_transaction_id LIKE $1",
                _pattern(prefix),
            )
            if pending == 0 or time.monotonic() > deadline:
                return pending
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def settlement(dsn: str, prefix: str, patience: float) -> Settlement:
    """The phase's figures, once it has settled or `patience` seconds have passed."""
    pending = await wait_settled(dsn, prefix, patience)
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT status, failure_code, extract(epoch FROM created_at)::float8 AS created,"
            " extract(epoch FROM completed_at)::float8 AS completed"
            " FROM transactions WHERE client_transaction_id LIKE $1",
            _pattern(prefix),
        )
    finally:
        await conn.close()
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


if __name__ == "__main__":
    from bench.__main__ import main

    raise SystemExit(main([*sys.argv[1:], "--only", "transfers"]))
