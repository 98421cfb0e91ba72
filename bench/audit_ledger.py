"""A ledger of about a million entries for timing `wallet audit`, written by SQL alone.

    python -m bench.audit_ledger [--database-url postgresql://.../wallet_audit_bench]
        [--wallets 10000] [--transfers 480000] [--withdrawals 33334]

Migrates the database (creating it), fills it unless it already holds wallets, then runs
`wallet audit` on it and prints how long it took. Each wallet opens with a deposit, then
transfers and withdrawals of 0.01 to 1.00 go round the wallets in time order; every entry's
balance_after is the running sum, as the service writes it, so the audit finds nothing. A
tenth of the withdrawals are FAILED and 100 more PENDING, with no entries. With the defaults:
10,000 + 2 x 480,000 + 30,000 = 1,000,000 entries.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time

import asyncpg

from wallet.persistence.database import migrate

_FILL = [
    """
    CREATE TEMP TABLE numbered AS
    SELECT gen_random_uuid() AS id, n FROM generate_series(0, $1 - 1) AS n
    """,
    """
    INSERT INTO wallets (id, owner_id, currency, balance, created_at, updated_at)
    SELECT id, 'owner-' || n % 1000, 'USD', 0, timestamptz '2026-01-01', timestamptz '2026-01-01'
    FROM numbered
    """,
    # Every movement, in time order: the opening deposits, then transfer g from wallet g to
    # wallet g + 1 and, every 16th second, a withdrawal.
    """
    CREATE TEMP TABLE moves AS
    SELECT gen_random_uuid() AS id, 'DEPOSIT' AS type, 'COMPLETED' AS status,
      100000 AS amount, NULL::uuid AS sender, w.id AS receiver,
      timestamptz '2026-01-01' + w.n * interval '1 microsecond' AS at
    FROM numbered w
    UNION ALL
    SELECT gen_random_uuid(), 'TRANSFER', 'COMPLETED', 1 + g % 100, s.id, r.id,
      timestamptz '2026-01-02' + g * interval '1 second'
    FROM generate_series(0, $2 - 1) AS g
    JOIN numbered s ON s.n = g % $1 JOIN numbered r ON r.n = (g + 1) % $1
    UNION ALL
    SELECT gen_random_uuid(), 'WITHDRAWAL',
      CASE WHEN g % 10 = 0 THEN 'FAILED' ELSE 'COMPLETED' END, 1 + g % 100, s.id, NULL,
      timestamptz '2026-01-02' + g * interval '16 second' + interval '1 millisecond'
    FROM generate_series(0, $3 - 1) AS g JOIN numbered s ON s.n = (g * 7) % $1
    """,
    """
    INSERT INTO transactions (id, type, status, amount, currency, sender_wallet_id,
      receiver_wallet_id, failure_code, created_at, completed_at)
    SELECT id, type, status, amount, 'USD', sender, receiver,
      CASE WHEN status = 'FAILED' THEN 'INSUFFICIENT_FUNDS' END, at, at
    FROM moves
    """,
    # A few PENDING, as a live system always has: no entries yet.
    """
    INSERT INTO transactions (id, type, status, amount, currency, sender_wallet_id, created_at)
    SELECT gen_random_uuid(), 'WITHDRAWAL', 'PENDING', 1, 'USD', id, clock_timestamp()
    FROM numbered WHERE n < 100
    """,
    # One entry per wallet a COMPLETED move touches, numbered in time order.
    """
    INSERT INTO ledger_entries (transaction_id, wallet_id, delta, balance_after, created_at)
    SELECT id, wallet_id, delta,
      sum(delta) OVER (PARTITION BY wallet_id ORDER BY at, side ROWS UNBOUNDED PRECEDING), at
    FROM (
      SELECT id, sender AS wallet_id, -amount AS delta, at, 0 AS side FROM moves
      WHERE status = 'COMPLETED' AND sender IS NOT NULL
      UNION ALL
      SELECT id, receiver, amount, at, 1 FROM moves
      WHERE status = 'COMPLETED' AND receiver IS NOT NULL
    ) AS sides
    ORDER BY at, side
    """,
    """
    UPDATE wallets w SET balance = total
    FROM (SELECT wallet_id, sum(delta) AS total FROM ledger_entries GROUP BY wallet_id) AS e
    WHERE e.wallet_id = w.id
    """,
]


async def fill(database_url: str, wallets: int, transfers: int, withdrawals: int) -> None:
    await migrate(database_url)
    connection = await asyncpg.connect(database_url)
    try:
        if await connection.fetchval("SELECT count(*) FROM wallets"):
            # Filled by an earlier run: its PENDING ones made recent again, as a live
            # system's are, so the audit times a clean ledger.
            await connection.execute(
                "UPDATE transactions SET created_at = clock_timestamp() WHERE status = 'PENDING'"
            )
            return
        started = time.perf_counter()
        async with connection.transaction():
            for statement in _FILL:
                # $1, $2 and $3 in that order; a statement takes those up to the last it names.
                wanted = max((i for i in (1, 2, 3) if f"${i}" in statement), default=0)
                await connection.execute(statement, *[wallets, transfers, withdrawals][:wanted])
        await connection.execute("VACUUM ANALYZE")
        entries = await connection.fetchval("SELECT count(*) FROM ledger_entries")
        print(f"filled: {entries:,} entries in {time.perf_counter() - started:.0f} s")
    finally:
        await connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.audit_ledger", description=__doc__)
    parser.add_argument(
        "--database-url", default="postgresql://postgres@127.0.0.1:5432/wallet_audit_bench"
    )
    parser.add_argument("--wallets", type=int, default=10_000)
    parser.add_argument("--transfers", type=int, default=480_000)
    parser.add_argument("--withdrawals", type=int, default=33_334)
    args = parser.parse_args()
    asyncio.run(fill(args.database_url, args.wallets, args.transfers, args.withdrawals))
    env = {**os.environ, "DATABASE_URL": args.database_url}
    started = time.perf_counter()
    audit = subprocess.run([sys.executable, "-m", "wallet.cli", "audit"], env=env, check=False)
    print(f"wallet audit: exit {audit.returncode} in {time.perf_counter() - started:.1f} s")
    return audit.returncode


if __name__ == "__main__":
    raise SystemExit(main())
