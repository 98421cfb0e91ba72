"""From a withdraw/transfer mutation's response to COMPLETED: p50 and p99 under load.

    python -m bench.settle_latency [--clients 32] [--seconds 15] [--workers 1] [--concurrency 16]

Each of the clients sends transfers one after another between random wallets for the given
time and notes the wall-clock moment each response arrived. Afterwards the completion time
of every transfer is read from PostgreSQL (completed_at, the same machine's clock): the
latency is completed_at minus the response time, so no polling or subscription skews it.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid

import httpx
from sqlalchemy import text

from bench.stack import fresh_database, running
from wallet.persistence.database import create_engine

TRANSFER = (
    "mutation($i: TransferInput!) { transfer(input: $i) { transaction { id status } "
    "errors { code } } }"
)
CREATE = "mutation { createWallet(input: {initialBalance: \"1000000\"}) { wallet { id } } }"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def measure(url: str, database_url: str, clients: int, seconds: float,
                  wallets: int) -> dict[str, float]:
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        ids = []
        for _ in range(wallets):
            response = await client.post(url, json={"query": CREATE})
            ids.append(response.json()["data"]["createWallet"]["wallet"]["id"])
        responded: dict[str, float] = {}
        deadline = time.monotonic() + seconds

        async def one_client(seed: int) -> None:
            rng = random.Random(seed)
            while time.monotonic() < deadline:
                sender, receiver = rng.sample(ids, 2)
                response = await client.post(url, json={"query": TRANSFER, "variables": {"i": {
                    "fromWalletId": sender, "toWalletId": receiver, "amount": "0.01",
                    "clientTransactionId": str(uuid.uuid4())}}})
                now = time.time()
                transaction = response.json()["data"]["transfer"]["transaction"]
                responded[transaction["id"]] = now

        await asyncio.gather(*(one_client(n) for n in range(clients)))
    engine = create_engine(database_url)
    try:
        for _ in range(120):
            async with engine.connect() as conn:
                pending = (await conn.execute(text(
                    "SELECT count(*) FROM transactions WHERE status = 'PENDING'"))).scalar_one()
            if pending == 0:
                break
            await asyncio.sleep(0.5)
        async with engine.connect() as conn:
            rows = (await conn.execute(text(
                "SELECT id::text, extract(epoch FROM completed_at) FROM transactions "
                "WHERE type = 'TRANSFER' AND status = 'COMPLETED'"))).all()
    finally:
        await engine.dispose()
    latencies = [(float(done) - responded[i]) * 1000 for i, done in rows if i in responded]
    return {
        "transfers": len(responded),
        "completed": len(latencies),
        "submit_rps": len(responded) / seconds,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "mean_ms": statistics.fmean(latencies),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--wallets", type=int, default=100)
    parser.add_argument("--apis", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    async with fresh_database() as database_url:
        with running(database_url, apis=args.apis, workers=args.workers,
                     concurrency=args.concurrency) as stack:
            figures = await measure(stack.url, database_url, args.clients, args.seconds,
                                    args.wallets)
    for name, value in figures.items():
        print(f"{name:>12}: {value:,.1f}")


if __name__ == "__main__":
    asyncio.run(main())
