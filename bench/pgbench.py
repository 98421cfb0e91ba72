"""The database's own limit: one transfer per transaction, in pgbench, on the same PostgreSQL.

The script is the least a transfer can do: lock both accounts in id order, update both
balances, write one ledger row for each. It runs in a scratch database of its own (dropped
afterwards) with as many accounts as the uniform transfer phase has wallets, so both pick
from the same number of rows.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from bench.cpu import CpuMeter
from wallet.persistence.database import create_database, drop_database

SCHEMA = """
CREATE TABLE accounts (
    id bigint PRIMARY KEY,
    balance bigint NOT NULL CHECK (balance >= 0),
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE ledger (
    id bigserial PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES accounts (id),
    delta bigint NOT NULL,
    balance_after bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX ledger_by_account ON ledger (account_id, id);
"""

# :b is :a plus 1..accounts-1, wrapped: never :a, and uniform over the others. Both rows are
# locked in ascending id order whichever way the money moves, as the wallet's worker does.
SCRIPT = r"""
\set a random(1, :accounts)
\set b 1 + (:a + random(0, :accounts - 2)) % :accounts
\set lo least(:a, :b)
\set hi greatest(:a, :b)
BEGIN;
SELECT id FROM accounts WHERE id IN (:lo, :hi) ORDER BY id FOR UPDATE;
UPDATE accounts SET balance = balance - 1, updated_at = clock_timestamp() WHERE id = :a
    RETURNING balance AS from_balance \gset
UPDATE accounts SET balance = balance + 1, updated_at = clock_timestamp() WHERE id = :b
    RETURNING balance AS to_balance \gset
INSERT INTO ledger (account_id, delta, balance_after)
    VALUES (:a, -1, :from_balance), (:b, 1, :to_balance);
END;
"""

START_BALANCE = 1_000_000_000


@dataclass
class Baseline:
    tps: float
    transactions: int
    failed: int
    latency_ms: float
    clients: int
    mode: str
    consistent: bool  # the ledger explains every balance and nothing was created or lost
    database: str
    output: str
    # CPU by group while pgbench itself ran (not the scratch database's setup or check): the
    # average cores, and the CPU seconds; empty without a meter.
    cores: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)


def scratch_name() -> str:
    return f"wallet_pgbench_{uuid.uuid4().hex[:8]}"


def pgbench() -> str | None:
    return shutil.which("pgbench")


async def run_baseline(
    base_url: str,
    *,
    accounts: int,
    clients: int,
    threads: int,
    seconds: int,
    mode: str,
    scratch: Path,
    name: str | None = None,
    meter: Callable[[], CpuMeter] | None = None,
) -> Baseline:
    """pgbench on a scratch database; `meter`, when given, starts a CpuMeter just before the
    load and is stopped just after it."""
    binary = pgbench()
    if binary is None:
        raise RuntimeError("pgbench is missing: apt-get install -y postgresql-client")
    name = name or scratch_name()
    url = make_url(base_url).set(database=name)
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    await create_database(dsn)
    try:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(SCHEMA)
            await conn.execute(
                "INSERT INTO accounts (id, balance) SELECT g, $1 FROM generate_series(1, $2) g",
                START_BALANCE,
                accounts,
            )
            await conn.execute("VACUUM ANALYZE")
            await conn.execute("CHECKPOINT")  # as before each of the stack's phases
        finally:
            await conn.close()
        script = scratch / "pgbench-transfer.sql"
        script.write_text(SCRIPT.lstrip())
        # TCP, as the API and workers connect; no vacuum (the tables are our own).
        command = [
            binary,
            "--no-vacuum",
            f"--protocol={mode}",
            f"--client={clients}",
            f"--jobs={threads}",
            f"--time={seconds}",
            f"--define=accounts={accounts}",
            f"--file={script}",
            "--host",
            url.host or "127.0.0.1",
            "--port",
            str(url.port or 5432),
            "--username",
            url.username or "postgres",
            name,
        ]
        env = {**os.environ, "PGPASSWORD": url.password or ""}
        running = meter() if meter is not None else None
        done = await asyncio.to_thread(
            subprocess.run, command, capture_output=True, text=True, env=env, check=False
        )
        cores = running.stop() if running is not None else {}
        cpu_seconds = running.seconds if running is not None else {}
        output = done.stdout + done.stderr
        if done.returncode != 0:
            raise RuntimeError(f"pgbench failed ({done.returncode}):\n{output}")
        conn = await asyncpg.connect(dsn)
        try:
            total = await conn.fetchval("SELECT sum(balance) FROM accounts")
            explained = await conn.fetchval(
                "SELECT count(*) FROM accounts a WHERE a.balance <> $1 + coalesce("
                "(SELECT sum(delta) FROM ledger l WHERE l.account_id = a.id), 0)",
                START_BALANCE,
            )
        finally:
            await conn.close()
    finally:
        await drop_database(dsn)
    return Baseline(
        tps=_number(r"tps = ([\d.]+) \(without initial connection time\)", output),
        transactions=int(_number(r"number of transactions actually processed: (\d+)", output)),
        failed=int(_number(r"number of failed transactions: (\d+)", output, default=0)),
        latency_ms=_number(r"latency average = ([\d.]+) ms", output),
        clients=clients,
        mode=mode,
        consistent=total == START_BALANCE * accounts and explained == 0,
        database=name,
        output=output,
        cores=cores,
        cpu_seconds=cpu_seconds,
    )


def _number(pattern: str, text: str, default: float | None = None) -> float:
    match = re.search(pattern, text)
    if match is None:
        if default is not None:
            return default
        raise RuntimeError(f"pgbench printed no /{pattern}/:\n{text}")
    return float(match.group(1))
