"""What a process opens once and shares: the engine, Redis, and the commit listeners.

The API's lifespan and the worker's start-up both open them here, so that a commit made in
either process keeps the cache in step and reaches every subscriber.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from wallet.config import Settings
from wallet.domain.ports import CommitListener, UnitOfWork
from wallet.persistence.database import create_engine
from wallet.persistence.events import RedisTransactionFeed
from wallet.persistence.unit_of_work import SqlUnitOfWork


@dataclass(slots=True)
class Resources:
    settings: Settings
    engine: AsyncEngine
    redis: Redis
    feed: RedisTransactionFeed
    listeners: list[CommitListener] = field(default_factory=list)

    def unit_of_work(self) -> UnitOfWork:
        return SqlUnitOfWork(self.engine, self.listeners)

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
    try:
        yield Resources(settings=settings, engine=engine, redis=redis, feed=feed, listeners=[feed])
    finally:
        await feed.close()
        await redis.aclose()
        await engine.dispose()
