"""The composition root: what a process opens once, shares, and closes when it stops.

The engine, Redis, the transaction feed, the read cache and the settlement queue are opened
here, for the API's lifespan and the worker's start-up alike, so that a commit made in either
process keeps the cache in step and reaches every subscriber. Here too taskiq's shared broker,
on which tasks/ declares its tasks, is bound to the queue this process opened.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncEngine
from taskiq import async_shared_broker
from taskiq_redis import RedisStreamBroker

from wallet.config import Settings
from wallet.domain.ports import CommitListener, UnitOfWork
from wallet.persistence.cache import ReadCache
from wallet.persistence.database import create_engine
from wallet.persistence.events import RedisTransactionFeed
from wallet.persistence.redis_client import connect
from wallet.persistence.redis_commits import RedisCommitListener
from wallet.persistence.repositories import FactBook
from wallet.persistence.unit_of_work import SqlUnitOfWork
from wallet.tasks.broker import make_broker

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Resources:
    settings: Settings
    engine: AsyncEngine
    redis: Redis
    feed: RedisTransactionFeed
    # The read cache, kept in step with every commit this process makes.
    cache: ReadCache
    # What each commit sends to Redis, in one round trip: the cache's writes, then the feed's.
    redis_commits: RedisCommitListener
    listeners: list[CommitListener] = field(default_factory=list)
    facts: FactBook = field(default_factory=FactBook)

    def unit_of_work(self) -> UnitOfWork:
        return SqlUnitOfWork(self.engine, self.listeners, self.facts)

    def key(self, *parts: str) -> str:
        """A Redis key or channel name under this deployment's prefix."""
        return _key(self.settings, *parts)


def _key(settings: Settings, *parts: str) -> str:
    return ":".join((settings.redis_prefix, *parts))


@contextlib.asynccontextmanager
async def open_resources(settings: Settings) -> AsyncIterator[Resources]:
    engine = create_engine(settings.database_url, pool_size=settings.database_pool_size)
    redis = connect(
        settings.redis_url,
        socket_timeout=settings.redis_timeout,
        socket_connect_timeout=settings.redis_timeout,
        health_check_interval=30,
    )
    feed = RedisTransactionFeed(redis, settings.redis_prefix)
    cache = ReadCache(
        redis,
        _key(settings, "cache", "v5"),
        ttl=settings.cache_ttl,
        timeout=settings.redis_timeout,
    )
    # The cache first: a subscriber told of a change by the feed may read the wallet at once,
    # and must find the cache already holding the new balance.
    redis_commits = RedisCommitListener(redis, [cache, feed], timeout=settings.redis_timeout)
    resources = Resources(
        settings, engine, redis, feed, cache, redis_commits, listeners=[redis_commits]
    )
    await cache.load_scripts()
    await feed.load_scripts()
    try:
        yield resources
    finally:
        await cache.close()
        await feed.close()
        await redis.aclose()
        await engine.dispose()


def _bind_tasks(broker: RedisStreamBroker) -> None:
    # taskiq's shared-broker pattern: tasks/ declares its tasks on async_shared_broker, and
    # each process points it at the broker it opened, here and nowhere else.
    async_shared_broker.default_broker(broker)


@contextlib.asynccontextmanager
async def open_queue(settings: Settings) -> AsyncIterator[RedisStreamBroker]:
    """The settlement queue for a process that kicks jobs and runs none (the API)."""
    broker = make_broker(settings)
    _bind_tasks(broker)
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


def worker_queue(settings: Settings, *, read_count: int) -> RedisStreamBroker:
    """The settlement queue for a worker, which starts it (again after each Redis outage),
    listens on it and shuts it down itself."""
    broker = make_broker(settings, read_count=read_count)
    broker.is_worker_process = True
    _bind_tasks(broker)
    return broker
