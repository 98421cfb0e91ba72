"""A worker killed (SIGKILL) while it settles batches of transfers: the next worker finishes
the job, by redelivery or the sweeper; nothing is applied twice, nothing is lost, and every
atomic batch ends all COMPLETED or all FAILED."""

from __future__ import annotations

import asyncio
import random
import signal
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from tests import tokens
from tests.client import Api, key
from tests.invariants import assert_balances_explained, status_counts, transaction_rows
from tests.processes import Process, api_server, start_worker, worker
from tests.waits import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

SUBMIT = """
mutation TransferBatch($input: TransferBatchInput!) {
  transferBatch(input: $input) {
    results { transaction { id status } errors { code } }
    errors { code }
  }
}"""
WALLETS = 20
START = 50_00
ATOMIC_BATCHES, ATOMIC_SIZE = 80, 5
PLAIN_BATCHES, PLAIN_SIZE = 80, 20


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    """Quick redelivery and sweeps, so that what the killed worker held comes back within
    seconds (the defaults are 60 s and 5 s)."""
    return {
        **env,
        "WALLET_REDELIVER_AFTER_MS": "1500",
        "WALLET_SWEEP_AFTER_SECONDS": "1",
        "WALLET_SWEEP_INTERVAL_SECONDS": "0.5",
    }


@pytest.fixture
def own_workers() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        if process.popen.poll() is None:
            process.stop(signal.SIGKILL)


async def _submit(
    api: Api, wallets: list[str], size: int, atomic: bool, rng: random.Random
) -> list[str]:
    transfers = []
    for _ in range(size):
        sender, receiver = rng.sample(wallets, 2)
        transfers.append(
            {
                "fromWalletId": sender,
                "toWalletId": receiver,
                "amount": f"{rng.randint(1, 1500) / 100:.2f}",
                "clientTransactionId": key(),
            }
        )
    payload: dict[str, Any] = (
        await api.data(SUBMIT, input={"transfers": transfers, "atomic": atomic})
    )["transferBatch"]
    assert payload["errors"] == [], payload
    assert all(r["errors"] == [] for r in payload["results"]), payload
    return [r["transaction"]["id"] for r in payload["results"]]


async def test_a_worker_killed_mid_batch_applies_nothing_twice_and_loses_nothing(
    env: dict[str, str], engine: AsyncEngine, own_workers: list[Process]
) -> None:
    rng = random.Random(17)
    with api_server(env) as server:
        async with httpx.AsyncClient(timeout=60, headers=tokens.header()) as client:
            api = Api(client, server.url)
            wallets = [await api.new_wallet(f"{START / 100:.2f}") for _ in range(WALLETS)]
            # Queued with no worker running: the first worker finds them all waiting.
            atomic = await asyncio.gather(
                *(_submit(api, wallets, ATOMIC_SIZE, True, rng) for _ in range(ATOMIC_BATCHES))
            )
            plain = await asyncio.gather(
                *(_submit(api, wallets, PLAIN_SIZE, False, rng) for _ in range(PLAIN_BATCHES))
            )
    ids = [i for batch in (*atomic, *plain) for i in batch]
    assert await status_counts(engine, ids) == {"PENDING": len(ids)}

    first = start_worker(env, concurrency=4)
    own_workers.append(first)

    async def settling() -> bool:
        # Well into the queue: it has jobs in hand, and several batches are half way.
        return (await status_counts(engine, ids)).get("PENDING", 0) <= len(ids) - 300

    await eventually(settling, "the first worker settling", 20, every=0.002)
    first.stop(signal.SIGKILL)
    await asyncio.sleep(0.3)  # a COMMIT sent just before the kill may still be finishing
    at_kill = await status_counts(engine, ids)
    assert at_kill.get("PENDING", 0) > 0, f"killed too late: {at_kill}"
    prefix = env["WALLET_REDIS_PREFIX"]
    redis = Redis.from_url(env["REDIS_URL"])
    try:
        held = await redis.xpending(f"{prefix}:settlements", f"{prefix}:workers")
    finally:
        await redis.aclose()
    assert held["pending"] > 0, "the killed worker held jobs it had not finished"

    with worker(env, concurrency=4):

        async def all_final() -> dict[str, int] | None:
            counts = await status_counts(engine, ids)
            return None if "PENDING" in counts else counts

        final: dict[str, int] = await eventually(
            all_final, f"{len(ids)} transfers final", 30, every=0.2
        )

    assert sum(final.values()) == len(ids)
    rows = {
        str(r["id"]): r
        for r in await transaction_rows(engine, "id = ANY(CAST(:ids AS uuid[]))", ids=ids)
    }
    for batch in atomic:
        statuses = {rows[i]["status"] for i in batch}
        assert statuses in ({"COMPLETED"}, {"FAILED"}), [
            (rows[i]["status"], rows[i]["failure_code"]) for i in batch
        ]
        if statuses == {"FAILED"}:
            own = [rows[i]["failure_code"] for i in batch]
            assert own.count("LINKED_TRANSFER_FAILED") == ATOMIC_SIZE - 1, own
    balances = await assert_balances_explained(engine, wallets)
    assert sum(balances.values()) == WALLETS * START, "money neither made nor lost"
    print(f"killed at {at_kill}; finally {final}")
