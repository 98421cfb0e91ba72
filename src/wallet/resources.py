"""What a process opens once and shares: the engine, Redis, and the commit listeners.

The API's lifespan and the worker's start-up both open them here, so that a commit made in
either process keeps the cache in step and reaches every subscriber.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncEngine
from taskiq import BrokerMessage, async_shared_broker
from taskiq_redis import RedisStreamBroker

from wallet.config import Settings
from wallet.domain.ports import CommitListener, UnitOfWork
from wallet.persistence.cache import ReadCache
from wallet.persistence.database import create_engine
from wallet.persistence.events import RedisTransactionFeed
from wallet.persistence.redis_commits import RedisCommitListener
from wallet.persistence.unit_of_work import CurrencyBook, SqlUnitOfWork

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Resources:
    settings: Settings
    engine: AsyncEngine
    redis: Redis
    feed: RedisTransactionFeed
    # What each commit sends to Redis, in one round trip: the cache's writes, then the feed's.
    redis_commits: RedisCommitListener
    listeners: list[CommitListener] = field(default_factory=list)
    cache: ReadCache | None = None
    currencies: CurrencyBook = field(default_factory=CurrencyBook)

    def unit_of_work(self) -> UnitOfWork:
        return SqlUnitOfWork(self.engine, self.listeners, self.currencies)

    def key(self, *parts: str) -> str:
        """A Redis key or channel name under this deployment's prefix."""
        return ":".join((self.settings.redis_prefix, *parts))


@contextlib.asynccontextmanager
async def open_resources(settings: Settings) -> AsyncIterator[Resources]:
    engine = create_engine(settings.database_url, pool_size=settings.database_pool_size)
    redis = Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout,
        socket_connect_timeout=settings.redis_timeout,
        health_check_interval=30,
    )
    feed = RedisTransactionFeed(redis, settings.redis_prefix)
    redis_commits = RedisCommitListener(redis, [feed], timeout=settings.redis_timeout)
    resources = Resources(settings, engine, redis, feed, redis_commits, listeners=[redis_commits])
    cache = install_cache(resources)
    await cache.load_scripts()
    await feed.load_scripts()
    try:
        yield resources
    finally:
        await cache.close()
        await feed.close()
        await redis.aclose()
        await engine.dispose()


def install_cache(resources: Resources) -> ReadCache:
    """The read cache, kept in step with every commit this process makes.

    open_resources() calls it, so the API and the worker both keep the cache current;
    calling it again returns the same cache.
    """
    if resources.cache is None:
        settings = resources.settings
        resources.cache = ReadCache(
            resources.redis,
            resources.key("cache", "v2"),  # v2: entries keyed by field name (persistence/codec.py)
            ttl=settings.cache_ttl,
            timeout=settings.redis_timeout,
        )
        # First: a subscriber told of a change by the feed may read the wallet at once, and
        # must find the cache already holding the new balance.
        resources.redis_commits.listeners.insert(0, resources.cache)
    return resources.cache


T = TypeVar("T")


class SameTurn(Generic[T]):
    """Sends what is asked for in one turn of the event loop to Redis in one round trip.

    Jobs are kicked by many requests at once and acknowledged a settlement batch at a time,
    so they come in bunches; each caller still waits for its own command's answer.
    """

    def __init__(self, send: Callable[[list[T]], Awaitable[None]], name: str) -> None:
        self._send = send
        self._name = name
        self._waiting: list[tuple[T, asyncio.Future[None]]] = []

    async def __call__(self, item: T) -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        if not self._waiting:
            loop.call_soon(self._send_waiting)
        self._waiting.append((item, done))
        await done

    def _send_waiting(self) -> None:
        waiting, self._waiting = self._waiting, []
        sending = asyncio.create_task(self._answer(waiting), name=self._name)
        _sending.add(sending)
        sending.add_done_callback(_sending.discard)

    async def _answer(self, waiting: list[tuple[T, asyncio.Future[None]]]) -> None:
        try:
            await self._send([item for item, _ in waiting])
        except Exception as error:
            for _, done in waiting:
                if not done.done():
                    done.set_exception(error)
        else:
            for _, done in waiting:
                if not done.done():
                    done.set_result(None)


# Sends in flight, kept referenced until done (the loop holds tasks only weakly).
_sending: set[asyncio.Task[None]] = set()


class SettlementBroker(RedisStreamBroker):
    """taskiq-redis's stream broker, kicking and acknowledging through one long-lived client,
    what comes in one turn of the event loop in one round trip.

    Its own kick() and ack build a new Redis client object (with its table of response
    callbacks) for every message and send one command each: a measurable share of a
    transfer request's CPU, and a quarter of a busy worker's.
    """

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self._redis = Redis(connection_pool=self.connection_pool)
        self._kicks: SameTurn[BrokerMessage] = SameTurn(self._xadd, "settlement-kicks")
        self._acks: SameTurn[tuple[str, str]] = SameTurn(self._xack, "settlement-acks")

    async def kick(self, message: BrokerMessage) -> None:
        await self._kicks(message)

    def _ack_generator(self, id: str, queue_name: str) -> Callable[[], Awaitable[None]]:
        return partial(self._acks, (queue_name, id))

    async def _xadd(self, messages: list[BrokerMessage]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for message in messages:
                pipe.xadd(
                    message.labels.get("queue_name") or self.queue_name,
                    {b"data": message.message},
                    maxlen=self.maxlen,
                    approximate=self.approximate,
                )
            await pipe.execute()

    async def _xack(self, acks: list[tuple[str, str]]) -> None:
        # Not acknowledged on failure: the job is delivered again, and settling it again is
        # a no-op.
        by_queue: dict[str, list[str]] = {}
        for queue, message_id in acks:
            by_queue.setdefault(queue, []).append(message_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            for queue, ids in by_queue.items():
                pipe.xack(queue, self.consumer_group_name, *ids)
            await pipe.execute()


def settlement_queue(settings: Settings) -> str:
    """The Redis stream that holds settlement jobs (read by the workers and the metrics)."""
    return f"{settings.redis_prefix}:settlements"


def make_broker(settings: Settings, *, read_count: int = 1) -> RedisStreamBroker:
    """The settlement queue: a Redis stream, so a job is acknowledged only once it has run."""
    return SettlementBroker(
        settings.redis_url,
        queue_name=settlement_queue(settings),
        consumer_group_name=f"{settings.redis_prefix}:workers",
        # Read the stream from its start when the group is first made, so jobs queued before
        # any worker ever ran are not skipped.
        consumer_id="0",
        # Short blocking reads keep the worker responsive to shutdown, and stay under the
        # socket timeout (redis-py would otherwise drop the connection mid-read).
        xread_block=1000,
        # Take only as many jobs as can run at once: the default (100) lets one worker hoard
        # the queue while another idles, and strands them all if it dies.
        xread_count=read_count,
        # A job a dead worker held is handed to another after this long; the sweeper
        # (worker.py) usually re-queues it sooner.
        idle_timeout=settings.redeliver_after_ms,
        unacknowledged_lock_timeout=5,
        maxlen=1_000_000,
        socket_timeout=max(settings.redis_timeout, 2.0),
        socket_connect_timeout=settings.redis_timeout,
    )


@contextlib.asynccontextmanager
async def queue_client(settings: Settings) -> AsyncIterator[RedisStreamBroker]:
    """A broker for kicking jobs from a process that runs none (the API)."""
    broker = make_broker(settings)
    async_shared_broker.default_broker(broker)
    try:
        await broker.startup()
    except (RedisError, OSError):
        # Redis may come back; until then kicks fail and the sweeper queues what they missed.
        # Debug only: the readiness line names Redis and why it is away.
        log.debug("could not reach the queue at start-up", exc_info=True)
    try:
        yield broker
    finally:
        await broker.shutdown()
