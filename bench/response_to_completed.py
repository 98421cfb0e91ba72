"""From a withdraw/transfer mutation's response to COMPLETED, with N concurrent clients.

    python -m bench.response_to_completed [--clients 32] [--seconds 10] [--apis 2]

Each client sends transfers one after another between random wallets (of 1,000) and notes the
wall-clock moment each response arrived. Afterwards every transfer's completed_at is read from
PostgreSQL (the same machine's clock): latency = completed_at - response time, so neither
polling nor a subscription adds to it. This measures latency, not throughput, so a Python
client is fine here; its CPU use is printed so it can be seen not to starve the server.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import statistics
import time
import uuid

import httpx
from sqlalchemy import text
from tests import tokens

from bench.stack import fresh_database, running
from bench.stats import percentile
from wallet.persistence.database import create_engine

TRANSFER = (
    "mutation($i: TransferInput!) { transfer(input: $i) { transaction { id status } "
    "errors { code } } }"
)
CREATE = 'mutation { createWallet(input: {initialBalance: "1000000"}) { wallet { id } } }'


async def measure(url: str, database_url: str, clients: int, seconds: float) -> dict[str, float]:
    async with httpx.AsyncClient(
        timeout=30, limits=httpx.Limits(max_connections=clients), headers=tokens.header()
    ) as c:
        wallets = []
        for _ in range(1000):
            response = await c.post(url, json={"query": CREATE})
            wallets.append(response.json()["data"]["createWallet"]["wallet"]["id"])
        responded: dict[str, float] = {}
        deadline = time.monotonic() + seconds
        cpu_before = resource.getrusage(resource.RUSAGE_SELF)

        async def client(seed: int) -> None:
            rng = random.Random(seed)
            while time.monotonic() < deadline:
                sender, receiver = rng.sample(wallets, 2)
                variables = {
                    "i": {
                        "fromWalletId": sender,
                        "toWalletId": receiver,
                        "amount": "0.01",
                        "clientTransactionId": str(uuid.uuid4()),
                    }
                }
                response = await c.post(url, json={"query": TRANSFER, "variables": variables})
                now = time.time()
                responded[response.json()["data"]["transfer"]["transaction"]["id"]] = now

        started = time.monotonic()
        await asyncio.gather(*(client(n) for n in range(clients)))
        elapsed = time.monotonic() - started
        cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    engine = create_engine(database_url)
    try:
        for _ in range(240):
            async with engine.connect() as conn:
                pending = (
                    await conn.execute(
                        text("SELECT count(*) FROM transactions WHERE status = 'PENDING'")
                    )
                ).scalar_one()
            if pending == 0:
                break
            await asyncio.sleep(0.25)
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT id::text, extract(epoch FROM completed_at) FROM transactions "
                        "WHERE type = 'TRANSFER' AND status = 'COMPLETED'"
                    )
                )
            ).all()
    finally:
        await engine.dispose()
    # Negative when the worker finished before the response reached the client: that wait is 0.
    raw = [(float(done) - responded[i]) * 1000 for i, done in rows if i in responded]
    latencies = [max(0.0, ms) for ms in raw]
    client_cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (
        cpu_before.ru_utime + cpu_before.ru_stime
    )
    return {
        "transfers": len(responded),
        "completed": len(latencies),
        "sent_per_s": len(responded) / elapsed,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "mean_ms": statistics.fmean(latencies),
        "done_by_response": sum(ms <= 0 for ms in raw) / len(raw),
        "client_cores": client_cpu / elapsed,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--apis", type=int, default=2, help="`wallet serve --workers N`")
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    async with fresh_database() as database_url:
        with running(
            database_url,
            api_workers=args.apis,
            concurrency=args.concurrency,
            WALLET_RATE_LIMITS_ENABLED="false",
        ) as stack:
            figures = await measure(stack.url, database_url, args.clients, args.seconds)
    for name, value in figures.items():
        print(f"{name:>12}: {value:,.2f}")


if __name__ == "__main__":
    asyncio.run(main())
