"""ReadCache: the cache's parts put together, as the rest of the process sees it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from uuid import UUID

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from wallet.domain.model import Page, Transaction, Wallet
from wallet.domain.ports import HistoryQuery
from wallet.persistence.cache.breaker import Breaker
from wallet.persistence.cache.entries import Keys
from wallet.persistence.cache.link import Link
from wallet.persistence.cache.lua import SCRIPTS
from wallet.persistence.cache.query import CachedHistoryQuery
from wallet.persistence.cache.reads import CacheReads, CacheStats
from wallet.persistence.cache.writes import CommitWriter, StagedCommit
from wallet.persistence.redis_commits import REDIS_FAILURES, RedisCommitListener
from wallet.persistence.scripts import load

log = logging.getLogger(__name__)


class ReadCache:
    """The cache's state in one process: its Redis, its counters, and what Redis missed.

    It keeps in step with this process's commits by staging its writes on the commit's Redis
    pipeline (`stage`, or `on_commit` on a pipeline of its own); `reads(inner)` wraps a
    HistoryQuery so that its reads go through the cache.
    """

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        *,
        ttl: float,
        timeout: float,
        cooldown: float = 1.0,
    ) -> None:
        self._redis = redis
        self._keys = Keys(prefix)
        self._timeout = timeout
        self._breaker = Breaker(cooldown)
        link = Link(redis, self._keys, max(1, int(ttl * 1000)), timeout, self._breaker)
        self._writer = CommitWriter(link)
        self._reads = CacheReads(link, self._writer)
        self._alone = RedisCommitListener(redis, [self], timeout=timeout)

    @property
    def wallet_stats(self) -> CacheStats:
        return self._reads.wallet_stats

    @property
    def history_stats(self) -> CacheStats:
        return self._reads.history_stats

    @property
    def redis_errors(self) -> int:
        """Redis failures since the process started (for the metrics)."""
        return self._breaker.errors

    @property
    def unwritten(self) -> int:
        """Changes this process made that Redis has not taken yet (for the metrics)."""
        return self._writer.unwritten

    def wallet_key(self, wallet_id: UUID) -> str:
        return self._keys.wallet(wallet_id)

    # -- what readers ask ---------------------------------------------------------------

    def reads(self, inner: HistoryQuery) -> HistoryQuery:
        return CachedHistoryQuery(inner, self._reads)

    async def open_wallets(
        self, wallet_ids: Sequence[UUID]
    ) -> tuple[dict[UUID, Wallet], dict[UUID, str]] | None:
        return await self._reads.open_wallets(wallet_ids)

    async def fill_wallets(self, fills: Sequence[tuple[str, Wallet]]) -> None:
        await self._reads.fill_wallets(fills)

    async def open_history(self, wallet_id: UUID) -> tuple[str, bytes | None] | None:
        return await self._reads.open_history(wallet_id)

    async def fill_history(self, wallet_id: UUID, generation: str, head: Page) -> None:
        await self._reads.fill_history(wallet_id, generation, head)

    # -- what committers tell -----------------------------------------------------------

    async def on_commit(
        self, wallets: Sequence[Wallet], transactions: Sequence[Transaction]
    ) -> None:
        """A CommitListener for the cache alone, in a round trip of its own.

        Processes stage the cache on the RedisCommitListener they share with the feed
        instead (bootstrap.py): one round trip after each commit for both.
        """
        await self._alone(wallets, transactions)

    def stage(
        self, pipe: Pipeline, wallets: Sequence[Wallet], transactions: Sequence[Transaction]
    ) -> StagedCommit | None:
        """Stage the committed wallets' writes and a new generation of each changed history."""
        return self._writer.stage(pipe, wallets, transactions)

    # -- the process's start and end ----------------------------------------------------

    async def load_scripts(self) -> None:
        """Put the cache's scripts in Redis, so that no first call needs to send one again.

        When Redis cannot take them now, each is sent when it is first missed.
        """
        try:
            async with asyncio.timeout(self._timeout):
                await load(self._redis, SCRIPTS)
        except REDIS_FAILURES as error:
            # Debug only: the process's readiness line names Redis and why it is away.
            log.debug("could not load the read cache's scripts into redis (%r)", error)

    async def clear(self) -> None:
        """Delete every entry under this cache's prefix."""
        await self._writer.clear()

    async def close(self) -> None:
        await self._writer.close()
        await self._reads.close()
