"""One Redis round trip after each commit, shared by every listener that writes to Redis.

The read cache writes what a commit changed and the feed publishes it. Each on a pipeline of
its own, that was two round trips per mutation, a measurable share of an API process's CPU.
Here they stage their commands on one non-transactional pipeline instead, in the order of the
listeners: Redis runs the commands of one connection in the order they were sent, so with the
cache staged first its writes are applied before any subscriber hears of the change.

Each listener stages one script call, so the trip holds two commands however much the
commit changed. A Redis that has lost its scripts (a restart, SCRIPT FLUSH) has lost both, so
it answers both with NOSCRIPT and runs neither; each listener sends its call again whole when
handed its replies, and the listeners are handed theirs one after another, each awaited, so
the cache's resend is answered before the feed's is sent: the order holds then too.

It breaks where the cache's write fails, or its resend does, while the feed's goes out: the
cache remembers the change and reads it from PostgreSQL until it is written again, but other
processes may read the old entry meanwhile (until the TTL, at worst). It breaks too where Redis
loses one script and keeps the other: recent versions evict the least recently used of the
scripts that EVAL loaded once there are many (SCRIPT LOAD's are kept), and a resend after a
SCRIPT FLUSH loads its script by EVAL.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from wallet.domain.model import Transaction, Wallet

log = logging.getLogger(__name__)

# What Redis can throw at us: its own errors, a dropped socket, or our deadline passing.
REDIS_FAILURES = (RedisError, OSError, TimeoutError)


class Staged(Protocol):
    """The commands one listener staged for a commit, waiting for their replies.

    Neither method may raise: the commit has happened whatever Redis says.
    """

    async def answered(self, replies: Sequence[Any]) -> None:
        """Each staged command's reply, in order; the exception for one that failed."""
        ...

    def unanswered(self, error: Exception) -> None:
        """No command was answered: the connection failed, or the deadline passed."""
        ...


class PipelinedListener(Protocol):
    """A commit listener whose Redis commands can share a pipeline with others'."""

    def stage(
        self, pipe: Pipeline, wallets: Sequence[Wallet], transactions: Sequence[Transaction]
    ) -> Staged | None:
        """Stage the commands for what a commit changed; None when there are none."""
        ...


class RedisCommitListener:
    """A CommitListener sending the commands of its listeners in one round trip."""

    def __init__(
        self, redis: Redis, listeners: Sequence[PipelinedListener], *, timeout: float | None
    ) -> None:
        self._redis = redis
        # In the order their commands are to run (bootstrap puts the cache first).
        self.listeners = list(listeners)
        self._timeout = timeout

    async def __call__(
        self, wallets: Sequence[Wallet], transactions: Sequence[Transaction]
    ) -> None:
        staged: list[tuple[Staged, int, int]] = []
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                staged = self._stage(pipe, wallets, transactions)
                if not staged:
                    return
                async with asyncio.timeout(self._timeout):
                    replies = await pipe.execute(raise_on_error=False)
        except Exception as error:
            for each, _, _ in staged:
                each.unanswered(error)
            return
        for each, start, end in staged:
            # In order, each awaited: a listener that sends more (its call again, when Redis
            # had lost its script) is done before the next one's replies are looked at.
            try:
                await each.answered(replies[start:end])
            except Exception:
                log.exception("%r failed on the replies to its commands", each)

    def _stage(
        self, pipe: Pipeline, wallets: Sequence[Wallet], transactions: Sequence[Transaction]
    ) -> list[tuple[Staged, int, int]]:
        """Each listener's staged commands, and where their replies will be."""
        staged: list[tuple[Staged, int, int]] = []
        for listener in self.listeners:
            start = len(pipe)
            try:
                each = listener.stage(pipe, wallets, transactions)
            except Exception:
                # A bug in one listener must not keep the others from hearing of the commit.
                log.exception("%r could not stage its commands for a commit", listener)
                continue
            if each is not None:
                # Counted here, not told, so that no listener can shift another's replies.
                staged.append((each, start, len(pipe)))
        return staged
