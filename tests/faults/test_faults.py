"""Kill or stop each part of the real service under load: nothing is lost, nothing is applied
twice, and every client that keeps retrying gets its answer.

Every scenario runs the same way on a fresh database: wallets are made, the load starts, the
fault lands once the load is well under way, the load goes on until the service has answered
plenty after the fault, then stops; once the workers have settled everything, the same checks
run (checks.py) and the scenario's line goes into the report printed at the end of the run.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest
from redis.asyncio import Redis

from tests.e2e.graphql_client import Subscriber
from tests.faults.checks import assert_all_holds, wait_quiet
from tests.faults.conftest import REPORT, ReportLine
from tests.faults.load import Load, create_wallets, post
from tests.faults.servers import PostgresServer, RedisServer
from tests.faults.stack import Stack
from wallet.persistence.database import create_engine

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

WALLETS = 40
# Answers the load must have had before the fault lands, and again after it has ended: the
# fault falls well inside the load, and the service is shown to carry on after it.
ANSWERS_AROUND_FAULT = 300
# Long enough for an API request and a worker's jobs to fail while it lasts.
OUTAGE_SECONDS = 4.0


@dataclass
class Fault:
    began: float = 0.0
    ended: float = 0.0


_SCENARIOS = itertools.count(1)


@pytest.fixture
def stack(postgres: PostgresServer, redis_server: RedisServer) -> AsyncIterator[Stack]:
    stack = Stack(postgres, redis_server, f"scenario_{next(_SCENARIOS)}")
    try:
        yield stack  # type: ignore[misc]
    finally:
        stack.stop()


@asynccontextmanager
async def under_load(stack: Stack, scenario: str) -> AsyncIterator[Fault]:
    """Load before and after the fault the body brings about (marking when it began and
    ended), then the checks and the report line."""
    wallets = await create_wallets(stack.url, WALLETS, "100.00")
    load = Load(stack.url, wallets)
    load.start()
    fault = Fault()
    try:
        await load.answers(ANSWERS_AROUND_FAULT)
        fault.began = time.monotonic()
        yield fault
        assert fault.ended >= fault.began
        await load.answers(ANSWERS_AROUND_FAULT, after=fault.ended)
    except BaseException:
        await load.abort()  # its clients would retry against a service that is not coming back
        raise
    await load.stop()
    engine = create_engine(stack.database_url)
    try:
        await wait_quiet(engine, timeout=60)
        figures = await assert_all_holds(engine, stack.url, load)
    finally:
        await engine.dispose()
    recovered = load.first_answer_after(fault.ended)
    assert recovered is not None
    REPORT.append(
        ReportLine(
            scenario=scenario,
            requests=len(load.requests),
            attempts=sum(r.attempts for r in load.requests),
            failed_attempts=len(load.failed_at),
            resends=load.resends,
            recovery_seconds=recovered - fault.ended,
            slowest_settlement_seconds=figures.slowest_settlement_seconds,
            fault_began=fault.began - load.started,
            fault_ended=fault.ended - load.started,
            load_ended=load.stopped - load.started,
        )
    )


async def test_a_worker_killed_mid_load_is_replaced_and_nothing_is_lost(stack: Stack) -> None:
    stack.start()
    async with under_load(stack, "1 worker kill -9, another started") as fault:
        assert stack.worker is not None
        await _jobs_in_hand(stack)
        stack.worker.stop(signal.SIGKILL)
        stack.start_worker()
        fault.ended = time.monotonic()


async def _jobs_in_hand(stack: Stack) -> None:
    """Until the worker holds jobs it has not acknowledged: killed then, it dies mid-job."""
    prefix = stack.env["WALLET_REDIS_PREFIX"]
    redis = Redis.from_url(stack.redis.url)
    try:
        deadline = time.monotonic() + 10
        while (await redis.xpending(f"{prefix}:settlements", f"{prefix}:workers"))["pending"] == 0:
            assert time.monotonic() < deadline, "the worker never held a job"
            await asyncio.sleep(0.005)
    finally:
        await redis.aclose()


async def test_an_api_killed_mid_load_comes_back_and_retries_apply_once(stack: Stack) -> None:
    stack.start()
    async with under_load(stack, "2 API kill -9, restarted") as fault:
        assert stack.api is not None
        stack.api.stop(signal.SIGKILL)
        await asyncio.sleep(1.0)  # clients find nobody there, and retry
        await asyncio.to_thread(stack.api.restart)
        fault.ended = time.monotonic()


@pytest.mark.parametrize("keep_data", [True, False], ids=["with-its-data", "empty"])
async def test_redis_stopped_mid_load_and_started_again_loses_nothing(
    stack: Stack, redis_server: RedisServer, keep_data: bool
) -> None:
    stack.start()
    state = "with its data" if keep_data else "empty"
    async with under_load(stack, f"3 Redis down {OUTAGE_SECONDS:g} s, back {state}") as fault:
        redis_server.kill(keep_data=keep_data)
        await asyncio.sleep(OUTAGE_SECONDS)
        await asyncio.to_thread(redis_server.start)
        fault.ended = time.monotonic()


async def test_postgres_stopped_immediately_mid_load_loses_nothing(
    stack: Stack, postgres: PostgresServer
) -> None:
    stack.start()
    async with under_load(stack, f"4 PostgreSQL -m immediate {OUTAGE_SECONDS:g} s") as fault:
        await asyncio.to_thread(postgres.stop, "immediate")
        await asyncio.sleep(OUTAGE_SECONDS)
        await asyncio.to_thread(postgres.start)
        fault.ended = time.monotonic()


async def test_a_rolling_deploy_stops_api_and_worker_cleanly_and_drops_nothing(
    stack: Stack,
) -> None:
    stack.start()
    async with under_load(stack, "5 SIGTERM to API and worker") as fault:
        api, worker = stack.api, stack.worker
        assert api is not None
        assert worker is not None
        api.popen.send_signal(signal.SIGTERM)
        worker.popen.send_signal(signal.SIGTERM)
        took = await asyncio.to_thread(lambda: max(api.exit(timeout=15), worker.exit(timeout=15)))
        # uvicorn, once it has shut down cleanly, raises the signal it caught again.
        assert api.popen.returncode in (0, -signal.SIGTERM), api.this_run()
        assert worker.popen.returncode == 0, worker.this_run()
        assert took < 10, f"stopping took {took:.1f} s"
        await asyncio.to_thread(api.restart)
        await asyncio.to_thread(worker.restart)
        fault.ended = time.monotonic()


SUBSCRIBERS = 8
TRANSACTION_UPDATED = 'subscription {{ transactionUpdated(id: "{}") {{ id status }} }}'
TRANSFER = """
mutation($input: TransferInput!) { transfer(input: $input) { transaction { id status } } }"""


async def test_subscribers_waiting_through_a_postgres_restart_get_the_final_status(
    stack: Stack, postgres: PostgresServer
) -> None:
    # No worker yet: the transfers watched stay PENDING until after PostgreSQL is back.
    stack.start(worker=False)
    wallets = await create_wallets(stack.url, 2, "100.00")
    async with httpx.AsyncClient(timeout=30) as client:
        watched = [
            (
                await post(
                    client,
                    stack.url,
                    TRANSFER,
                    input={
                        "fromWalletId": wallets[0],
                        "toWalletId": wallets[1],
                        "amount": "1.00",
                        "clientTransactionId": f"watched-{n}",
                    },
                )
            )["transfer"]["transaction"]["id"]
            for n in range(SUBSCRIBERS)
        ]
    async with under_load(stack, "6 PostgreSQL restart, 8 subscribers") as fault:
        subscribers = [Subscriber(stack.url, TRANSACTION_UPDATED.format(i)) for i in watched]
        for subscriber in subscribers:
            await subscriber.__aenter__()
        try:
            firsts = [await s.next() for s in subscribers]
            assert {f["transactionUpdated"]["status"] for f in firsts if f} == {"PENDING"}
            await asyncio.to_thread(postgres.stop, "immediate")
            # Past the subscribers' recheck: each of them asks PostgreSQL while it is down.
            await asyncio.sleep(6.5)
            await asyncio.to_thread(postgres.start)
            fault.ended = time.monotonic()
            stack.start_worker()
            finals = await asyncio.gather(*(_final_status(s) for s in subscribers))
        finally:
            for subscriber in subscribers:
                await subscriber.__aexit__(None, None, None)
    assert finals == ["COMPLETED"] * SUBSCRIBERS


async def _final_status(subscriber: Subscriber) -> str:
    while True:
        event = await subscriber.next(timeout=30)
        assert event is not None, "the subscription ended before a final status"
        status = str(event["transactionUpdated"]["status"])
        if status != "PENDING":
            return status
