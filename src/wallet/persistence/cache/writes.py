"""What commits tell the cache: their writes staged on the commit's Redis pipeline, and the
changes Redis missed, remembered and written again until they land."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any
from uuid import UUID

from redis.asyncio.client import Pipeline

from wallet.domain.model import Transaction, Wallet
from wallet.persistence.cache.link import Link
from wallet.persistence.cache.lua import COMMIT
from wallet.persistence.codec import wallet_to_json
from wallet.persistence.redis_commits import REDIS_FAILURES
from wallet.persistence.scripts import ScriptCall, rerun_missing, run_calls

log = logging.getLogger(__name__)

# A process that lost track of more changes than this stops trusting the cache at all and,
# once Redis answers, empties it.
MAX_UNWRITTEN = 10_000


class CommitWriter:
    """Writes each commit's changes to the cache, and remembers those Redis did not take.

    Until a remembered change is written, reads of its entries go to PostgreSQL
    (`unwritten_wallets`, `unwritten_histories`); past MAX_UNWRITTEN it loses track
    (`lost_track`) and reads skip Redis until it has emptied the cache.
    """

    def __init__(self, link: Link) -> None:
        self._link = link
        # Changes that Redis has not taken: the newest wallet rows, and the wallets whose
        # history changed, each with a sequence number so a retry never drops a newer one.
        self._unwritten_wallets: dict[UUID, Wallet] = {}
        self._unwritten_histories: dict[UUID, int] = {}
        self._sequence = 0
        self._lost_track = False
        self._repairer: asyncio.Task[None] | None = None

    @property
    def unwritten_wallets(self) -> Mapping[UUID, Wallet]:
        return self._unwritten_wallets

    @property
    def unwritten_histories(self) -> Mapping[UUID, int]:
        return self._unwritten_histories

    @property
    def lost_track(self) -> bool:
        return self._lost_track

    @property
    def unwritten(self) -> int:
        """Changes this process made that Redis has not taken yet (for the metrics)."""
        return len(self._unwritten_wallets) + len(self._unwritten_histories)

    def stage(
        self, pipe: Pipeline, wallets: Sequence[Wallet], transactions: Sequence[Transaction]
    ) -> StagedCommit | None:
        """Stage the committed wallets' writes and a new generation of each changed history.

        Staged even while reads skip Redis: a change left out would be stale for every other
        process.
        """
        histories = sorted({i for t in transactions for i in t.wallet_ids})
        if not wallets and not histories:
            return None
        try:
            call = self._commit_call(wallets, histories)
        except Exception:
            log.exception("could not update the read cache after a commit")
            self._remember(wallets, histories)
            return None
        call.stage(pipe)
        return StagedCommit(self, wallets, histories, call)

    def _commit_call(self, wallets: Sequence[Wallet], histories: Sequence[UUID]) -> ScriptCall:
        """The writes of these wallets and new generations of these histories, in one call."""
        keys = [self._link.keys.wallet(w.id) for w in wallets] + [
            self._link.keys.history(h) for h in histories
        ]
        args: list[str | int] = [uuid.uuid4().hex, self._link.ttl_ms, len(wallets)]
        for wallet in wallets:
            args += (wallet.version, wallet_to_json(wallet))
        return ScriptCall(COMMIT, tuple(keys), tuple(args))

    async def committed(
        self,
        wallets: Sequence[Wallet],
        histories: Sequence[UUID],
        call: ScriptCall,
        replies: Sequence[Any],
    ) -> None:
        """Remember the whole commit when its call failed: Redis may have taken any part of it,
        and writing again what it took is safe."""
        try:
            async with asyncio.timeout(self._link.timeout):
                (reply,) = await rerun_missing(self._link.redis, [call], replies)
        except Exception as error:
            reply = error
        if isinstance(reply, Exception):
            self.uncommitted(wallets, histories, reply)

    def uncommitted(
        self, wallets: Sequence[Wallet], histories: Sequence[UUID], error: Exception
    ) -> None:
        """Redis did not take the commit's writes: remember them, to write them again."""
        if isinstance(error, REDIS_FAILURES):
            self._link.breaker.failed("writing committed changes", error)
        else:
            log.error(
                "could not update the read cache while writing committed changes", exc_info=error
            )
        self._remember(wallets, histories)

    def _remember(self, wallets: Sequence[Wallet], histories: Sequence[UUID]) -> None:
        for wallet in wallets:
            known = self._unwritten_wallets.get(wallet.id)
            if known is None or known.version < wallet.version:
                self._unwritten_wallets[wallet.id] = wallet
        for wallet_id in histories:
            self._sequence += 1
            self._unwritten_histories[wallet_id] = self._sequence
        if self.unwritten > MAX_UNWRITTEN:
            log.error("lost track of the changes Redis missed; the cache will be emptied")
            self._lost_track = True
            self._unwritten_wallets.clear()
            self._unwritten_histories.clear()
        if self._repairer is None or self._repairer.done():
            self._repairer = asyncio.create_task(self._repair(), name="read-cache-repair")

    def _has_unwritten(self) -> bool:
        return bool(self._lost_track or self.unwritten)

    async def _repair(self) -> None:
        # Writing again is always safe: the scripts keep the newer version and a fresh
        # generation only ever discards a page.
        delay = 0.1
        while self._has_unwritten():
            await asyncio.sleep(delay)
            try:
                async with asyncio.timeout(max(self._link.timeout, 5.0)):
                    await self._write_unwritten()
            except REDIS_FAILURES:
                self._link.breaker.errors += 1
                delay = min(delay * 2, 5.0)
                continue
            self._link.breaker.reset()
            log.info("the read cache has caught up with the changes Redis missed")

    async def _write_unwritten(self) -> None:
        if self._lost_track:
            await self.clear()
            self._lost_track = False
            return
        wallets = dict(self._unwritten_wallets)
        histories = dict(self._unwritten_histories)
        # A call per change, not one for all: an entry Redis refuses (a key in the way) then
        # holds back no other.
        calls = [self._commit_call([wallet], []) for wallet in wallets.values()] + [
            self._commit_call([], [wallet_id]) for wallet_id in histories
        ]
        replies = await run_calls(self._link.redis, calls)
        wallet_replies, history_replies = replies[: len(wallets)], replies[len(wallets) :]
        for (wallet_id, wallet), reply in zip(wallets.items(), wallet_replies, strict=True):
            if (
                not isinstance(reply, Exception)
                and self._unwritten_wallets.get(wallet_id) is wallet
            ):
                del self._unwritten_wallets[wallet_id]
        for (wallet_id, sequence), reply in zip(histories.items(), history_replies, strict=True):
            if (
                not isinstance(reply, Exception)
                and self._unwritten_histories.get(wallet_id) == sequence
            ):
                del self._unwritten_histories[wallet_id]
        failure = next((r for r in replies if isinstance(r, Exception)), None)
        if failure is not None:
            raise failure

    async def clear(self) -> None:
        """Delete every entry under the cache's prefix."""
        keys = self._link.redis.scan_iter(match=f"{self._link.keys.prefix}:*", count=500)
        async for batch in _batches(keys):
            await self._link.redis.unlink(*batch)

    async def close(self) -> None:
        if self._repairer is not None:
            self._repairer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._repairer


class StagedCommit:
    """A commit's writes staged on a pipeline: what the cache does with their replies."""

    def __init__(
        self,
        writer: CommitWriter,
        wallets: Sequence[Wallet],
        histories: Sequence[UUID],
        call: ScriptCall,
    ) -> None:
        self._writer = writer
        self._wallets = wallets
        self._histories = histories
        self._call = call

    async def answered(self, replies: Sequence[Any]) -> None:
        await self._writer.committed(self._wallets, self._histories, self._call, replies)

    def unanswered(self, error: Exception) -> None:
        self._writer.uncommitted(self._wallets, self._histories, error)


async def _batches(keys: AsyncIterator[Any], size: int = 500) -> AsyncIterator[list[Any]]:
    batch: list[Any] = []
    async for key in keys:
        batch.append(key)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
