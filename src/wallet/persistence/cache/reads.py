"""The cache's read side: wallets and history heads as cached, and rows read from PostgreSQL
stored under the generation taken before reading them."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from wallet.domain.batching import Batcher
from wallet.domain.model import Page, Wallet
from wallet.persistence.cache.entries import decoded_wallet, encode_head
from wallet.persistence.cache.link import Link
from wallet.persistence.cache.lua import FILL_HISTORY, FILL_WALLET, OPEN_HISTORY, READ_WALLETS
from wallet.persistence.cache.writes import CommitWriter
from wallet.persistence.codec import text_of, wallet_to_json
from wallet.persistence.redis_commits import REDIS_FAILURES
from wallet.persistence.scripts import ScriptCall, run_calls

log = logging.getLogger(__name__)


@dataclass(slots=True)
class CacheStats:
    """Counts since the process started, for the metrics endpoint to read."""

    hits: int = 0
    misses: int = 0
    # Reads sent to PostgreSQL without asking Redis: it had just failed, or this process
    # holds a change of the entry that Redis has not taken yet.
    bypassed: int = 0
    # Fills refused: a commit came after the reader began, or another reader had already
    # stored that version or a newer one. This is the race that generations and versions stop.
    fills_refused: int = 0


class CacheReads:
    """Reads of the cache, and fills of what readers then read from PostgreSQL.

    Entries that `writer` holds changes of, which Redis has not taken yet, are never read
    from Redis nor filled.
    """

    def __init__(
        self,
        link: Link,
        writer: CommitWriter,
    ) -> None:
        self._link = link
        self._writer = writer
        self._together = WalletReadsTogether(link)
        self.wallet_stats = CacheStats()
        self.history_stats = CacheStats()

    def _trusts_redis(self) -> bool:
        return self._link.breaker.allows() and not self._writer.lost_track

    async def open_wallets(
        self, wallet_ids: Sequence[UUID]
    ) -> tuple[dict[UUID, Wallet], dict[UUID, str]] | None:
        """The cached wallets among these, and the generation to fill each other one under.

        A wallet in neither is to be read from PostgreSQL and not stored. None when Redis
        cannot be asked.
        """
        unwritten = self._writer.unwritten_wallets
        ids = [i for i in wallet_ids if i not in unwritten] if unwritten else list(wallet_ids)
        self.wallet_stats.bypassed += len(wallet_ids) - len(ids)
        if not ids:
            return {}, {}
        if not self._trusts_redis():
            self.wallet_stats.bypassed += len(ids)
            return None
        try:
            entries = await self._together.read(ids)
        except Unanswered:
            self.wallet_stats.bypassed += len(ids)
            return None
        found: dict[UUID, Wallet] = {}
        generations: dict[UUID, str] = {}
        for wallet_id, entry in zip(ids, entries, strict=True):
            if isinstance(entry, Wallet):
                found[wallet_id] = entry
            else:
                generations[wallet_id] = entry
        self.wallet_stats.hits += len(found)
        self.wallet_stats.misses += len(generations)
        return found, generations

    async def fill_wallets(self, fills: Sequence[tuple[str, Wallet]]) -> None:
        """Store rows read from PostgreSQL, each under the generation taken before reading."""
        unwritten = self._writer.unwritten_wallets
        fills = [(g, w) for g, w in fills if w.id not in unwritten]
        if not fills or not self._trusts_redis():
            return
        calls = [
            ScriptCall(
                FILL_WALLET,
                (self._link.keys.wallet(wallet.id),),
                (generation, wallet.version, wallet_to_json(wallet), self._link.ttl_ms),
            )
            for generation, wallet in fills
        ]
        try:
            async with asyncio.timeout(self._link.timeout):
                stored = await run_calls(self._link.redis, calls)
        except REDIS_FAILURES as error:
            self._link.breaker.failed("filling wallets", error)
            return
        failure = next((r for r in stored if isinstance(r, Exception)), None)
        if failure is not None:
            self._link.breaker.failed("filling wallets", failure)
        self.wallet_stats.fills_refused += stored.count(0)

    async def open_history(self, wallet_id: UUID) -> tuple[str, bytes | None] | None:
        """The wallet's history generation and the page cached under it, if any.

        None when Redis cannot be asked, or when this process changed the history and has
        not yet told Redis.
        """
        if wallet_id in self._writer.unwritten_histories or not self._trusts_redis():
            self.history_stats.bypassed += 1
            return None
        try:
            async with asyncio.timeout(self._link.timeout):
                generation, page = await OPEN_HISTORY.run(
                    self._link.redis,
                    [self._link.keys.history(wallet_id)],
                    (uuid.uuid4().hex, self._link.ttl_ms),
                )
        except REDIS_FAILURES as error:
            self._link.breaker.failed("reading a history", error)
            self.history_stats.bypassed += 1
            return None
        return text_of(generation), page

    async def fill_history(self, wallet_id: UUID, generation: str, head: Page) -> None:
        """Store the head read under `generation`, unless a commit has replaced it since."""
        if wallet_id in self._writer.unwritten_histories or not self._trusts_redis():
            return
        try:
            async with asyncio.timeout(self._link.timeout):
                stored = await FILL_HISTORY.run(
                    self._link.redis,
                    [self._link.keys.history(wallet_id)],
                    (generation, encode_head(head), self._link.ttl_ms),
                )
        except REDIS_FAILURES as error:
            self._link.breaker.failed("filling a history", error)
            return
        if not stored:
            self.history_stats.fills_refused += 1

    async def close(self) -> None:
        await self._together.close()


class Unanswered(Exception):
    """Redis gave no answer to a batch of reads (its failure is already counted)."""


class WalletReadsTogether:
    """Wallet reads asked at the same time, sent in one Redis call (domain/batching.py)."""

    def __init__(self, link: Link) -> None:
        self._link = link
        self._reads: Batcher[list[UUID], list[Wallet | str]] = Batcher(
            self._read, max_batch=256, name="read-cache-reads"
        )

    async def read(self, wallet_ids: list[UUID]) -> list[Wallet | str]:
        """Each wallet as cached, or the generation to fill it under; read in one Redis call
        with those of every other request that asks meanwhile.

        Under load many requests want a wallet at the same moment: one round trip for all
        of them costs one send and one receive instead of one each. A request only ever
        joins a call not yet sent, so what it reads is never older than its asking.
        Raises Unanswered when Redis cannot be asked.
        """
        return await self._reads(wallet_ids)

    async def _read(self, asked: list[list[UUID]]) -> list[list[Wallet | str] | Exception]:
        if not self._link.breaker.allows():  # tripped while these waited for the call before
            return [Unanswered() for _ in asked]
        keys = list(dict.fromkeys(i for ids in asked for i in ids))
        try:
            async with asyncio.timeout(self._link.timeout):
                entries = await READ_WALLETS.run(
                    self._link.redis,
                    [self._link.keys.wallet(k) for k in keys],
                    (uuid.uuid4().hex, self._link.ttl_ms),
                )
            # Decoded once for all the requests that asked; readers never change a Wallet.
            by_id: dict[UUID, Wallet | str] = {
                wallet_id: decoded_wallet(value) if cached else text_of(value)
                for wallet_id, (cached, value) in zip(keys, entries, strict=True)
            }
        except Exception as error:
            if isinstance(error, REDIS_FAILURES):
                self._link.breaker.failed("reading wallets", error)
            else:
                log.exception("could not read wallets from the cache")
            return [Unanswered() for _ in asked]
        return [[by_id[i] for i in ids] for ids in asked]

    async def close(self) -> None:
        await self._reads.close()
