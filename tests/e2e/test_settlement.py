"""Withdrawals and transfers settled by real workers: nothing lost, nothing applied twice."""

from __future__ import annotations

import asyncio
import random
import signal
import time
import uuid

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests import tokens
from tests.client import Api
from tests.invariants import assert_balances_explained, status_counts
from tests.processes import api_server, private_redis, worker
from tests.waits import eventually

pytestmark = pytest.mark.slow


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    """Quick sweeps and a short grace period, so recovery shows within a test's patience."""
    return {**env, "WALLET_SWEEP_AFTER_SECONDS": "2", "WALLET_SHUTDOWN_GRACE_SECONDS": "5"}


async def _submit_transfers(api: Api, wallets: list[str], count: int) -> list[str]:
    rng = random.Random(7)

    async def one() -> str:
        sender, receiver = rng.sample(wallets, 2)
        amount = f"{rng.randint(1, 4000) / 100:.2f}"
        return await api.pending_transfer(sender, receiver, amount)

    ids = []
    for start in range(0, count, 50):  # 50 requests in flight at a time
        ids += await asyncio.gather(*(one() for _ in range(start, min(start + 50, count))))
    return ids


async def _wait_settled(engine: AsyncEngine, ids: list[str], timeout: float) -> dict[str, int]:
    """The transactions' status counts, once none is PENDING."""

    async def settled() -> dict[str, int] | None:
        counts = await status_counts(engine, ids)
        return None if "PENDING" in counts else counts

    return await eventually(settled, f"{len(ids)} transactions settled", timeout, every=0.2)


async def _queued(env: dict[str, str], count: int) -> None:
    """Until `count` settlement jobs wait on the queue."""
    queue = f"{env['WALLET_REDIS_PREFIX']}:settlements"
    redis = Redis.from_url(env["REDIS_URL"])
    try:
        await eventually(lambda: redis.xlen(queue), f"{count} jobs on {queue}")
        assert await redis.xlen(queue) == count
    finally:
        await redis.aclose()


async def test_a_transfer_stays_pending_until_a_worker_runs(
    env: dict[str, str], engine: AsyncEngine
) -> None:
    with api_server(env) as server:
        async with httpx.AsyncClient(timeout=30, headers=tokens.header()) as client:
            api = Api(client, server.url)
            a = await api.new_wallet("10.00")
            b = await api.new_wallet()
            transaction = (await api.transfer(a, b, "2.50", settled=False))["transaction"]
            assert transaction["status"] == "PENDING"
            # Handed to the queue, where nothing takes it: the API does not settle it itself.
            await _queued(env, 1)
            assert (await api.transaction(transaction["id"]))["status"] == "PENDING"
            with worker(env):
                settled = await api.final(transaction)
            assert settled["status"] == "COMPLETED"
            await assert_balances_explained(engine, [a, b])


async def test_sigterm_stops_a_busy_worker_in_time_and_it_drops_nothing(
    env: dict[str, str], engine: AsyncEngine
) -> None:
    with api_server(env) as server:
        async with httpx.AsyncClient(timeout=60, headers=tokens.header()) as client:
            api = Api(client, server.url)
            wallets = [await api.new_wallet("500.00") for _ in range(6)]
            before = sum((await assert_balances_explained(engine, wallets)).values())
            ids = await _submit_transfers(api, wallets, 200)
            with worker(env, concurrency=8) as busy:

                async def busy_settling() -> bool:
                    return (await status_counts(engine, ids)).get("PENDING", 0) <= 150

                await eventually(busy_settling, "the worker settling the first 50", 30)
                took = busy.stop(signal.SIGTERM, timeout=15)
            assert took < 10, f"worker took {took:.1f} s to stop"
            assert busy.popen.returncode == 0, busy.output()
            with worker(env):
                counts = await _wait_settled(engine, ids, timeout=90)
    assert "PENDING" not in counts, counts
    assert sum((await assert_balances_explained(engine, wallets)).values()) == before


async def test_a_withdrawal_made_while_redis_is_down_settles_once_it_is_back(
    env: dict[str, str], engine: AsyncEngine
) -> None:
    with private_redis() as redis:
        own = {**env, "REDIS_URL": redis.url}
        with api_server(own) as server, worker(own):
            async with httpx.AsyncClient(timeout=30, headers=tokens.header()) as client:
                api = Api(client, server.url)
                wallet = await api.new_wallet("100.00")
                redis.stop(signal.SIGKILL)
                started = time.monotonic()
                payload = await api.withdraw(wallet, "40.00", settled=False)
                assert time.monotonic() - started < 5, "a Redis outage must not hang a request"
                if payload["errors"]:  # refused outright: then nothing may have been recorded
                    assert payload["transaction"] is None
                    return
                transaction = payload["transaction"]
                assert transaction["status"] == "PENDING"
                # Redis comes back empty, as a Redis that keeps nothing on disk does.
                redis.restart()
                settled = await api.final(transaction, timeout=30)
                assert settled["status"] == "COMPLETED"
    await assert_balances_explained(engine, [wallet])


async def test_a_job_that_keeps_failing_ends_failed_with_internal_not_pending_forever(
    env: dict[str, str], engine: AsyncEngine
) -> None:
    # A row no code path writes: its wallet's currency is one the domain refuses to load, so
    # every attempt to settle it fails the same way.
    wallet_id, transaction_id = uuid.uuid4(), uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO wallets (id, owner_id, currency, balance) "
                "VALUES (:id, 'someone', 'XAU', 100)"
            ),
            {"id": wallet_id},
        )
        await conn.execute(
            text(
                "INSERT INTO transactions (id, type, status, amount, currency, sender_wallet_id)"
                " VALUES (:id, 'WITHDRAWAL', 'PENDING', 5, 'USD', :wallet)"
            ),
            {"id": transaction_id, "wallet": wallet_id},
        )
    with worker({**env, "WALLET_SWEEP_AFTER_SECONDS": "0.5"}) as stubborn:

        async def ended() -> tuple[str, str, str] | None:
            async with engine.connect() as conn:
                row = (
                    await conn.execute(
                        text(
                            "SELECT status, failure_code, error_message FROM transactions "
                            "WHERE id = :id"
                        ),
                        {"id": transaction_id},
                    )
                ).one()
            return None if row.status == "PENDING" else (row[0], row[1], row[2])

        status, code, message = await eventually(ended, "the job given up", 60, every=0.2)
        assert "gave up settling" in stubborn.output()
    assert (status, code) == ("FAILED", "INTERNAL")
    assert "given up" in message
    async with engine.begin() as conn:  # leave nothing a later sweep would trip over
        await conn.execute(text("DELETE FROM transactions WHERE id = :id"), {"id": transaction_id})
        await conn.execute(text("DELETE FROM wallets WHERE id = :id"), {"id": wallet_id})


async def test_every_settled_job_is_acknowledged_on_the_stream(
    env: dict[str, str], engine: AsyncEngine
) -> None:
    """Acks go out together (one XACK per turn of the loop); none may be left behind."""
    prefix = env["WALLET_REDIS_PREFIX"]
    redis = Redis.from_url(env["REDIS_URL"])
    try:
        with api_server(env) as server, worker(env, concurrency=32):
            async with httpx.AsyncClient(timeout=60, headers=tokens.header()) as client:
                api = Api(client, server.url)
                wallets = [await api.new_wallet("500.00") for _ in range(8)]
                ids = await _submit_transfers(api, wallets, 200)
                await _wait_settled(engine, ids, timeout=60)

                async def all_acknowledged() -> bool:
                    held = await redis.xpending(f"{prefix}:settlements", f"{prefix}:workers")
                    return held["pending"] == 0

                await eventually(all_acknowledged, "every job acknowledged", 10, every=0.1)
                assert await redis.xlen(f"{prefix}:settlements") >= 200
    finally:
        await redis.aclose()
