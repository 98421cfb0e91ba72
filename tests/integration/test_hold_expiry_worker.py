"""`wallet worker` releases holds past their expiry on its own; killed while it does, it
releases nothing twice, and the next worker leaves nothing ACTIVE past its expiry for long."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import Iterator
from datetime import datetime
from uuid import UUID

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.moves import expire_holds, new_wallet, place_hold
from tests.invariants import assert_balances_explained, assert_holds_explained
from tests.processes import Process, start_worker, worker
from tests.waits import eventually
from wallet.domain.ports import UnitOfWorkFactory
from wallet.domain.services import EXPIRY_BATCH

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

WALLETS = 100
HOLDS_PER_WALLET = 20
TOTAL = WALLETS * HOLDS_PER_WALLET
RELEASED = re.compile(r"released (\d+) expired holds")


@pytest.fixture
def env(service_env: dict[str, str], request: pytest.FixtureRequest) -> dict[str, str]:
    """The run's environment with a Redis prefix of this test's own (its own queue)."""
    prefix = f"{service_env['WALLET_REDIS_PREFIX']}-{request.node.name}"
    return {**service_env, "WALLET_REDIS_PREFIX": prefix}


@pytest.fixture
def own_workers() -> Iterator[list[Process]]:
    """Workers a test starts and kills itself; killed at the end whatever happened."""
    started: list[Process] = []
    yield started
    for process in started:
        if process.popen.poll() is None:
            process.stop(signal.SIGKILL)


async def _counts(engine: AsyncEngine, wallets: list[UUID]) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT status, count(*) FROM holds WHERE wallet_id = ANY(CAST(:ids AS uuid[]))"
                " GROUP BY status"
            ),
            {"ids": [str(w) for w in wallets]},
        )
        return {status: int(count) for status, count in rows}


async def _closed(engine: AsyncEngine, wallets: list[UUID]) -> dict[UUID, datetime]:
    """When each of the wallets' EXPIRED holds was closed."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT id, closed_at FROM holds WHERE wallet_id = ANY(CAST(:ids AS uuid[]))"
                " AND status = 'EXPIRED'"
            ),
            {"ids": [str(w) for w in wallets]},
        )
        return {row[0]: row[1] for row in rows}


def _released(process: Process) -> int:
    """How many holds the worker says it released, over all its rounds."""
    return sum(int(n) for n in RELEASED.findall(process.output()))


async def test_a_worker_killed_while_releasing_expired_holds_releases_none_twice(
    uow_factory: UnitOfWorkFactory,
    engine: AsyncEngine,
    env: dict[str, str],
    own_workers: list[Process],
) -> None:
    # Other tests' holds that fall due while this one runs are released by its workers too,
    # and counted in their logs: at most these.
    while await expire_holds(uow_factory):
        pass
    async with engine.connect() as conn:
        others = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM holds WHERE status = 'ACTIVE'"
                    " AND expires_at < clock_timestamp() + interval '2 minutes'"
                )
            )
        ).scalar_one()

    wallets = [
        w.id
        for w in await asyncio.gather(*(new_wallet(uow_factory, "50.00") for _ in range(WALLETS)))
    ]

    async def holds_of(wallet: UUID) -> None:
        for _ in range(HOLDS_PER_WALLET):
            await place_hold(uow_factory, wallet, "1.00")

    await asyncio.gather(*map(holds_of, wallets))
    assert await _counts(engine, wallets) == {"ACTIVE": TOTAL}

    first = start_worker(env)
    own_workers.append(first)
    # All due at once, long enough ago that the worker waits for any wallet it finds locked;
    # each wallet's holds fall due together and the wallets one after another, so a round
    # (EXPIRY_BATCH holds, the longest due first) releases whole wallets and the backlog
    # takes several rounds.
    async with engine.begin() as conn:
        await conn.execute(
            text(
                """
                UPDATE holds AS h
                SET expires_at = now() - interval '10 seconds'
                    + w.n * interval '1 millisecond'
                FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM wallets
                      WHERE id = ANY(CAST(:ids AS uuid[]))) AS w
                WHERE h.wallet_id = w.id
                """
            ),
            {"ids": [str(w) for w in wallets]},
        )
    assert TOTAL > 2 * EXPIRY_BATCH, "the release takes several rounds"

    async def releasing() -> int:
        return (await _counts(engine, wallets)).get("EXPIRED", 0)

    await eventually(releasing, "the first worker releasing holds", 15, every=0.002)
    first.stop(signal.SIGKILL)
    # A COMMIT the worker sent just before it died may still be finishing in PostgreSQL.
    await asyncio.sleep(0.5)
    at_kill = await _closed(engine, wallets)
    assert 0 < len(at_kill) < TOTAL, f"killed after {len(at_kill)} of {TOTAL} were released"
    # It logs a round once committed: what it logged, it had released (a round committed just
    # before the kill may be missing from its log).
    assert _released(first) <= len(at_kill) + others

    with worker(env) as second:
        started = time.monotonic()

        async def all_released() -> bool:
            return await _counts(engine, wallets) == {"EXPIRED": TOTAL}

        await eventually(all_released, "every due hold released", 20, every=0.1)
        took = time.monotonic() - started
    assert took < 5, f"due holds waited {took:.1f} s for a running worker"
    extra = _released(second) - (TOTAL - len(at_kill))
    assert 0 <= extra <= others, "the second worker released the rest, once"
    # What the first one released stays as it released it.
    after = await _closed(engine, wallets)
    assert {i: after[i] for i in at_kill} == at_kill
    figures = await assert_holds_explained(engine, wallets)
    assert {(f.balance, f.held) for f in figures.values()} == {(50_00, 0)}
    await assert_balances_explained(engine, wallets)
    print(
        f"killed after {len(at_kill)} of {TOTAL} (logged {_released(first)});"
        f" the rest released in {took:.1f} s"
    )
