"""`wallet worker`: settles queued withdrawals and transfers, sweeps up stalled ones, and
releases holds past their expiry.

It runs taskiq's Receiver in this process (no process manager): SIGTERM and SIGINT set the
finish event through the event loop, the receiver stops taking jobs, running ones get
`shutdown_grace_seconds`, and whatever was not acknowledged stays in the stream for another
worker (or is re-queued by the sweeper).

Why not `taskiq worker`: its stop flag is set from a plain signal handler, which does not wake
a stock asyncio loop, so the stop is seen only when the blocking stream read returns; the
cancellation then lands inside redis-py's `asyncio.wait_for`, which on Python 3.11 swallows it,
and the listen loop carries on until the next message arrives (measured: it never exited on an
idle queue). `loop.add_signal_handler` wakes the loop at once: exit took 0.01-0.2 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from taskiq import AsyncBroker
from taskiq.acks import AcknowledgeType
from taskiq.exceptions import SendTaskError
from taskiq.receiver import Receiver

from wallet.bootstrap import Resources, open_resources, worker_queue
from wallet.config import Settings
from wallet.domain.group_commit import run_unattended
from wallet.domain.services import EXPIRY_BATCH, expire_holds
from wallet.persistence.outages import Outage, PostgresOutage, postgres_outage, redis_outage
from wallet.persistence.sweeper import claim_stalled
from wallet.tasks.settlement import TaskDeps, settle_transaction

log = logging.getLogger("wallet.worker")


# Seconds between two looks at a server that is away.
RETRY_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Servers:
    """What the worker needs, each named by address when it goes away and comes back."""

    postgres: PostgresOutage
    redis: Outage

    @classmethod
    def of(cls, settings: Settings) -> Servers:
        return cls(
            postgres_outage(
                settings.database_url, log, meanwhile="jobs wait in the queue until it is back"
            ),
            redis_outage(settings.redis_url, log, meanwhile="listening again once it answers"),
        )


async def sweep_forever(
    resources: Resources, servers: Servers, finish: asyncio.Event, progress: asyncio.Event
) -> None:
    """Queue again the PENDING transactions that no job is settling, until `finish` is set;
    set `progress` after each sweep, done or failed (the heartbeat's proof that the worker is
    not stuck).

    Runs in every worker; SKIP LOCKED keeps two sweepers from handing out the same row.
    """
    settings = resources.settings
    after = timedelta(seconds=settings.sweep_after_seconds)
    while not finish.is_set():
        try:
            stalled = await claim_stalled(resources.engine, after=after)
        except (SQLAlchemyError, OSError) as error:
            if servers.postgres.explains(error):
                servers.postgres.lost(error)
            else:
                log.warning("sweep failed; trying again", exc_info=True)
            stalled = []
        else:
            servers.postgres.back()
        try:
            for transaction_id in stalled:
                await settle_transaction.kiq(str(transaction_id))
            if stalled:
                log.info("re-queued %d stalled transactions", len(stalled))
        except (SendTaskError, RedisError, OSError) as error:
            # They stay PENDING: the next sweep after Redis is back queues them.
            servers.redis.lost(error)
        else:
            if stalled:
                servers.redis.back()
        progress.set()
        await _pause(finish, settings.sweep_interval_seconds)


async def expire_forever(
    resources: Resources, servers: Servers, finish: asyncio.Event, progress: asyncio.Event
) -> None:
    """Release the holds past their expiry, until `finish` is set: a round every
    `hold_expiry_interval_seconds`, and at once again after a full batch (a backlog).

    Runs in every worker; expire_holds() keeps two workers from releasing the same hold, and
    a hold's one way out is taken once, in the unit of work that takes it.
    """
    interval = resources.settings.hold_expiry_interval_seconds
    while not finish.is_set():
        released = 0
        try:
            released = len(await run_unattended(resources.unit_of_work, expire_holds, EXPIRY_BATCH))
        except Exception as error:  # the loop must outlive any one round
            if servers.postgres.explains(error):
                servers.postgres.lost(error)
            else:
                log.warning("releasing expired holds failed; trying again", exc_info=True)
        else:
            servers.postgres.back()
            if released:
                log.info("released %d expired holds", released)
        progress.set()
        if released < EXPIRY_BATCH:
            await _pause(finish, interval)


async def _wait_for_postgres(
    resources: Resources, servers: Servers, finish: asyncio.Event, progress: asyncio.Event
) -> None:
    """Take no job before PostgreSQL answers: each would fail and wait for redelivery."""
    while not finish.is_set():
        progress.set()
        try:
            async with asyncio.timeout(5), resources.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError) as error:
            servers.postgres.lost(error)
            await _pause(finish, RETRY_SECONDS)
        else:
            servers.postgres.back()
            return


async def _pause(finish: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(finish.wait(), seconds)


def _receiver(broker: AsyncBroker, settings: Settings, concurrency: int) -> Receiver:
    return Receiver(
        broker,
        max_async_tasks=concurrency,
        max_prefetch=0,
        run_startup=False,
        # Acknowledged once it has run: a job whose worker dies is delivered again.
        ack_type=AcknowledgeType.WHEN_EXECUTED,
        wait_tasks_timeout=settings.shutdown_grace_seconds,
        propagate_exceptions=False,
    )


# Seconds between two touches of the heartbeat file.
HEARTBEAT_SECONDS = 5.0


async def beat(heartbeat: Path, progress: asyncio.Event) -> None:
    """Touch the file when the worker's loops made progress since the last touch (a sweep,
    a look for PostgreSQL, a return to the queue), at most every HEARTBEAT_SECONDS: a liveness
    check (`wallet check-heartbeat`) reads its age. A turning event loop alone proves nothing
    when the sweeper is stuck. Kept beating while PostgreSQL or Redis is away (those loops go
    on failing): restarting would not bring them back."""
    while True:
        await progress.wait()
        progress.clear()
        await asyncio.to_thread(heartbeat.touch)
        await asyncio.sleep(HEARTBEAT_SECONDS)


async def run_worker(settings: Settings, concurrency: int, heartbeat: Path | None = None) -> None:
    progress = asyncio.Event()
    beating = (
        asyncio.create_task(beat(heartbeat, progress), name="heartbeat") if heartbeat else None
    )
    broker = worker_queue(settings, read_count=concurrency)
    finish = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, finish.set)

    servers = Servers.of(settings)
    async with open_resources(settings) as resources:
        broker.state.deps = TaskDeps(
            uow_factory=resources.unit_of_work,
            redis=resources.redis,
            prefix=settings.redis_prefix,
            max_batch=settings.settle_batch_size,
            postgres=servers.postgres,
        )
        log.info(
            "worker started with concurrency %d; %s, %s",
            concurrency,
            servers.postgres.server,
            servers.redis.server,
        )
        await _wait_for_postgres(resources, servers, finish, progress)
        sweeper = asyncio.create_task(
            sweep_forever(resources, servers, finish, progress), name="sweeper"
        )
        expirer = asyncio.create_task(
            expire_forever(resources, servers, finish, progress), name="expirer"
        )
        try:
            while not finish.is_set():
                try:
                    # Again after an outage too: a Redis that kept nothing lost the group.
                    await broker.startup()
                    servers.redis.back()
                    # The consumer group exists from here on: a job queued now is not missed.
                    log.info("worker listening")
                    await _receiver(broker, settings, concurrency).listen(finish)
                except* (RedisError, OSError) as group:
                    # Redis went away (the receiver's task group raises it in a group): what
                    # was running has finished or stays unacknowledged for redelivery.
                    servers.redis.lost(group.exceptions[0])
                progress.set()
                await _pause(finish, RETRY_SECONDS)
        finally:
            # Told to stop by `finish` as well as cancelled: on Python 3.11 a cancellation that
            # lands in an asyncio.wait_for (asyncpg's, redis-py's) while it completes is lost,
            # and a sweeper told only that way swept on, and this wait with it, for ever.
            finish.set()
            sweeper.cancel()
            expirer.cancel()
            await asyncio.wait({sweeper, expirer}, timeout=settings.shutdown_grace_seconds)
            with contextlib.suppress(RedisError, OSError):
                await broker.shutdown()
            if beating is not None:
                beating.cancel()
            log.info("worker stopped")
