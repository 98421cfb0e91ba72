"""Kill or stop each part of the real service under load: nothing is lost, nothing is applied
twice, and every client that keeps retrying gets its answer.

Every scenario runs the same way on a fresh database: wallets are made, the load starts, the
fault lands once the load is well under way, the load goes on until the service has answered
plenty after the fault, then stops; once the workers have settled everything, the same checks
run (checks.py) and the scenario's line goes into the report printed at the end of the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest
from redis.asyncio import Redis

from tests import tokens
from tests.client import Subscriber
from tests.faults.checks import assert_all_holds, wait_quiet
from tests.faults.load import MUTATIONS, Load, create_wallets, post
from tests.faults.report import REPORT, ReportLine
from tests.faults.servers import PostgresServer, RedisServer
from tests.faults.stack import WORKERS, Stack
from tests.network import Switch
from tests.waits import eventually
from wallet.persistence.database import create_engine
from wallet.resolvers.subscriptions import RECHECK_SECONDS

# Above the sum of the scenario's own deadlines, which fail with a clearer message.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(280)]

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
def stack(postgres: PostgresServer, redis_server: RedisServer) -> Iterator[Stack]:
    stack = Stack(postgres, redis_server, f"scenario_{next(_SCENARIOS)}")
    try:
        yield stack
    finally:
        stack.stop()


@asynccontextmanager
async def under_load(stack: Stack, scenario: str) -> AsyncIterator[Fault]:
    """Load before and after the fault the body brings about (marking when it began and
    ended), then the checks; the scenario's report line whatever the outcome."""
    log_mark = stack.postgres.log_size()
    load = Load(stack.url, await create_wallets(stack.url, WALLETS, "100.00"))
    load.start()
    fault = Fault()
    outcome, slowest = "invariants held", math.nan
    try:
        try:
            await load.answers(ANSWERS_AROUND_FAULT)
            fault.began = time.monotonic()
            yield fault
            assert fault.ended >= fault.began
            await load.answers(ANSWERS_AROUND_FAULT, after=fault.ended)
        except BaseException:
            await load.abort()  # its clients would retry against a service that never comes back
            raise
        await load.stop()
        slowest = await _checked(stack, load, log_mark)
    except BaseException as failure:
        outcome = "FAILED: " + (str(failure).splitlines() or [type(failure).__name__])[0][:80]
        raise
    finally:
        recovered = load.first_answer_after(fault.ended) if fault.ended else None
        REPORT.append(
            ReportLine(
                scenario=scenario,
                requests=len(load.requests),
                reversals=sum(
                    1 for r in load.requests if r.operation == "reverse" and r.transaction_ids
                ),
                attempts=sum(r.attempts for r in load.requests),
                failed_attempts=len(load.failed_at),
                resends=load.resends,
                recovery_seconds=recovered - fault.ended if recovered else math.nan,
                slowest_settlement_seconds=slowest,
                fault_began=fault.began - load.started,
                fault_ended=fault.ended - load.started,
                load_ended=load.stopped - load.started,
                outcome=outcome,
            )
        )


async def _checked(stack: Stack, load: Load, log_mark: int) -> float:
    """Every check, once the workers have caught up; the slowest settlement's seconds."""
    engine = create_engine(stack.database_url)
    try:
        await wait_quiet(engine, timeout=60)
        figures = await assert_all_holds(engine, stack.url, load)
    finally:
        await engine.dispose()
    assert stack.postgres.refused_writes(since=log_mark) == []
    return figures.slowest_settlement_seconds


async def test_a_worker_killed_mid_load_is_replaced_and_nothing_is_lost(stack: Stack) -> None:
    stack.start()
    async with under_load(stack, "1 worker kill -9, another started") as fault:
        await _jobs_in_hand(stack)
        doomed = stack.workers.pop(0)
        doomed.stop(signal.SIGKILL)
        fault.ended = time.monotonic()
        await asyncio.to_thread(stack.start_workers, 1)


async def _jobs_in_hand(stack: Stack) -> None:
    """Until every worker holds jobs it has not acknowledged: killed then, one dies mid-job."""
    prefix = stack.env["WALLET_REDIS_PREFIX"]
    redis = Redis.from_url(stack.redis.url)
    try:

        async def all_hold_jobs() -> bool:
            held = await redis.xpending(f"{prefix}:settlements", f"{prefix}:workers")
            return len(held["consumers"]) == len(stack.workers)

        await eventually(all_hold_jobs, "every worker holding a job", 20, every=0.005)
    finally:
        await redis.aclose()


async def test_an_api_killed_mid_load_comes_back_and_retries_apply_once(stack: Stack) -> None:
    stack.start()
    async with under_load(stack, "2 API kill -9, restarted") as fault:
        assert stack.api is not None
        stack.api.stop(signal.SIGKILL)
        await asyncio.sleep(1.0)  # clients find nobody there, and retry
        fault.ended = time.monotonic()
        await asyncio.to_thread(stack.api.restart)


@pytest.mark.parametrize("keep_data", [True, False], ids=["with-its-data", "empty"])
async def test_redis_stopped_mid_load_and_started_again_loses_nothing(
    stack: Stack, redis_server: RedisServer, keep_data: bool
) -> None:
    stack.start()
    state = "with its data" if keep_data else "empty"
    async with under_load(stack, f"3 Redis down {OUTAGE_SECONDS:g} s, back {state}") as fault:
        redis_server.kill(keep_data=keep_data)
        await asyncio.sleep(OUTAGE_SECONDS)
        fault.ended = time.monotonic()
        await asyncio.to_thread(redis_server.start)


async def test_postgres_stopped_immediately_mid_load_loses_nothing(
    stack: Stack, postgres: PostgresServer
) -> None:
    stack.start()
    async with under_load(stack, f"4 PostgreSQL -m immediate {OUTAGE_SECONDS:g} s") as fault:
        await asyncio.to_thread(postgres.stop, "immediate")
        await asyncio.sleep(OUTAGE_SECONDS)
        fault.ended = time.monotonic()
        await asyncio.to_thread(postgres.start)


async def test_a_rolling_deploy_stops_api_and_worker_cleanly_and_drops_nothing(
    stack: Stack,
) -> None:
    stack.start()
    async with under_load(stack, "5 SIGTERM to API and workers") as fault:
        assert stack.api is not None
        everyone = [stack.api, *stack.workers]
        began = time.monotonic()
        for process in everyone:
            process.popen.send_signal(signal.SIGTERM)
        for process in everyone:
            await asyncio.to_thread(process.wait_for_exit, 15)
        took = time.monotonic() - began
        assert took < 10, f"stopping took {took:.1f} s"
        # uvicorn, once it has shut down cleanly, raises the signal it caught again.
        assert stack.api.popen.returncode in (0, -signal.SIGTERM), stack.api.this_run()
        for worker in stack.workers:
            assert worker.popen.returncode == 0, worker.this_run()
        fault.ended = time.monotonic()
        for process in everyone:
            await asyncio.to_thread(process.restart)


SUBSCRIBERS = 8
TRANSACTION_UPDATED = 'subscription {{ transactionUpdated(id: "{}") {{ id status }} }}'


async def test_subscribers_waiting_through_a_postgres_restart_get_the_final_status(
    stack: Stack, postgres: PostgresServer
) -> None:
    # No worker yet: the transfers watched stay PENDING until after PostgreSQL is back. The
    # API logs at info, where it says each recheck that could not reach PostgreSQL.
    stack.start(workers=False, api_log_level="info")
    wallets = await create_wallets(stack.url, 2, "100.00")
    async with httpx.AsyncClient(timeout=30, headers=tokens.header()) as client:
        watched = [
            (
                await post(
                    client,
                    stack.url,
                    MUTATIONS["transfer"],
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
    async with (
        under_load(stack, f"6 PostgreSQL restart, {SUBSCRIBERS} subscribers") as fault,
        contextlib.AsyncExitStack() as subscriptions,
    ):
        subscribers = [
            await subscriptions.enter_async_context(
                Subscriber(stack.url, TRANSACTION_UPDATED.format(i))
            )
            for i in watched
        ]
        firsts = [await s.next() for s in subscribers]
        assert [f and f["transactionUpdated"]["status"] for f in firsts] == ["PENDING"] * len(
            subscribers
        )
        api = stack.api
        assert api is not None
        await asyncio.to_thread(postgres.stop, "immediate")
        # Until each subscriber has asked PostgreSQL while it was down (within RECHECK_SECONDS
        # of its last news), and found it gone.
        await eventually(
            lambda: sum(f"could not recheck {i}" in api.this_run() for i in watched) >= SUBSCRIBERS,
            "every subscriber rechecking in the outage",
            RECHECK_SECONDS + 10,
            every=0.1,
        )
        fault.ended = time.monotonic()
        await asyncio.to_thread(postgres.start)
        await asyncio.to_thread(stack.start_workers, WORKERS)
        finals = await asyncio.gather(*(_final_status(s) for s in subscribers))
    assert finals == ["COMPLETED"] * SUBSCRIBERS


async def _final_status(subscriber: Subscriber) -> str:
    while True:
        event = await subscriber.next(timeout=30)
        assert event is not None, "the subscription ended before a final status"
        status = str(event["transactionUpdated"]["status"])
        if status != "PENDING":
            return status


async def test_a_worker_whose_database_link_stalls_settles_nothing_twice(
    stack: Stack, postgres: PostgresServer
) -> None:
    """The network between one worker and PostgreSQL stalls now and then, mid-settlement.
    Its jobs are handed to the other worker after 0.3 s, which settles them (or waits on the
    locks the stalled one holds). When the link flows again, the stalled worker carries on
    from wherever it was, and must see under its locks that there is nothing left to do."""
    stack.env["WALLET_REDELIVER_AFTER_MS"] = "300"
    async with Switch("127.0.0.1", postgres.port) as link:
        stack.start(workers=False)
        through_link = stack.database_url.replace(f":{postgres.port}/", f":{link.port}/")
        # Started from a thread: the link forwards on this event loop, which must keep going.
        await asyncio.to_thread(stack.start_workers, 1, DATABASE_URL=through_link)
        await asyncio.to_thread(stack.start_workers, 1)
        async with under_load(stack, "7 a worker's link to PostgreSQL stalls 6 x 1 s") as fault:
            for stall in range(6):
                link.pause()
                await asyncio.sleep(1.0)
                if stall == 5:
                    fault.ended = time.monotonic()
                link.resume()
                await asyncio.sleep(0.5)
