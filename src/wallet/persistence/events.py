"""Transaction changes over Redis pub/sub, so any API process hears what any worker committed.

Publishing runs after the commit, its command staged on the round trip that the commit's
listeners share (redis_commits.py), after the read cache's writes. A Redis failure there is
logged, not raised (the money has moved; subscribers also re-read PostgreSQL when they hear
nothing).

A commit's messages go out in one script call, each message sent once however many channels
it goes to: a PUBLISH per channel carried each message again and cost a reply each, a large
share of the settlement worker's CPU when it commits a batch.

Each process holds one pub/sub connection, shared by all of its subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from typing import Any
from uuid import UUID

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline, PubSub
from redis.exceptions import RedisError

from wallet.domain.model import Transaction, Wallet
from wallet.persistence.codec import transaction_from_json, transaction_to_json
from wallet.persistence.redis_commits import REDIS_FAILURES
from wallet.persistence.scripts import Script, ScriptCall, load, rerun_missing

log = logging.getLogger(__name__)

FORMAT = "v2"

# ARGV for each transaction: its message, the number of its channels, then its channels, in
# the order to publish them. Channels are not keys, so they travel as ARGV.
_PUBLISH = Script(
    """
local i = 1
while i <= #ARGV do
  local message, channels = ARGV[i], tonumber(ARGV[i + 1])
  for j = i + 2, i + 1 + channels do
    redis.call('PUBLISH', ARGV[j], message)
  end
  i = i + 2 + channels
end
"""
)


class _Subscription:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Transaction] = asyncio.Queue(maxsize=1000)

    async def next(self, wait: float) -> Transaction | None:
        try:
            return await asyncio.wait_for(self.queue.get(), wait)
        except TimeoutError:
            return None


class _Published:
    def __init__(self, redis: Redis, call: ScriptCall, changes: int) -> None:
        self._redis = redis
        self._call = call
        self._changes = changes

    async def answered(self, replies: Sequence[Any]) -> None:
        # A Redis that lost the script has published nothing: the call is sent again whole,
        # after the cache's own resend (the listeners' replies are handled in their order).
        # The client's socket timeout bounds it.
        try:
            (reply,) = await rerun_missing(self._redis, [self._call], replies)
        except Exception as error:
            reply = error
        if isinstance(reply, Exception):
            self.unanswered(reply)

    def unanswered(self, error: Exception) -> None:
        log.warning("could not publish %d transaction changes (%r)", self._changes, error)


class RedisTransactionFeed:
    """Publishes committed transactions and fans them out to this process's subscribers."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix
        self._subscribers: dict[str, set[_Subscription]] = defaultdict(set)
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    # The channels carry codec.py's format, and are named after its version: a process
    # running an older format during a rolling deploy neither sends nor reads these.
    def _transaction_channel(self, transaction_id: UUID) -> str:
        return f"{self._prefix}:events:{FORMAT}:transaction:{transaction_id}"

    def _wallet_channel(self, wallet_id: UUID) -> str:
        return f"{self._prefix}:events:{FORMAT}:wallet:{wallet_id}"

    def stage(
        self, pipe: Pipeline, wallets: Sequence[Wallet], transactions: Sequence[Transaction]
    ) -> _Published | None:
        """Stage a message for each changed transaction, on its channel and its wallets'."""
        if not transactions:
            return None
        args: list[str | int] = []
        for transaction in transactions:
            channels = [self._transaction_channel(transaction.id)]
            channels += (self._wallet_channel(wallet_id) for wallet_id in transaction.wallet_ids)
            args += (transaction_to_json(transaction), len(channels), *channels)
        call = ScriptCall(_PUBLISH, (), tuple(args))
        call.stage(pipe)
        return _Published(self._redis, call, len(transactions))

    async def load_scripts(self) -> None:
        """Put the feed's script in Redis, so that no first publish needs to send it again.

        When Redis cannot take it now, it is sent when it is first missed.
        """
        try:
            await load(self._redis, [_PUBLISH])
        except REDIS_FAILURES as error:
            # Debug only: the process's readiness line names Redis and why it is away.
            log.debug("could not load the feed's script into redis (%r)", error)

    def transaction(self, transaction_id: UUID) -> contextlib.AbstractAsyncContextManager[Any]:
        return self._listen(self._transaction_channel(transaction_id))

    def wallet(self, wallet_id: UUID) -> contextlib.AbstractAsyncContextManager[Any]:
        return self._listen(self._wallet_channel(wallet_id))

    @contextlib.asynccontextmanager
    async def _listen(self, channel: str) -> AsyncIterator[_Subscription]:
        subscription = _Subscription()
        async with self._lock:
            first = not self._subscribers[channel]
            self._subscribers[channel].add(subscription)
            if first:
                await self._subscribe(channel)
        try:
            yield subscription
        finally:
            async with self._lock:
                self._subscribers[channel].discard(subscription)
                if not self._subscribers[channel]:
                    del self._subscribers[channel]
                    if self._pubsub is not None:
                        with contextlib.suppress(RedisError, OSError):
                            await self._pubsub.unsubscribe(channel)

    async def _subscribe(self, channel: str) -> None:
        if self._pubsub is None:
            self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            await self._pubsub.subscribe(channel)
        except (RedisError, OSError):
            # The reader resubscribes when Redis is back; until then subscribers poll.
            log.warning("could not subscribe to %s", channel)
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read(), name="transaction-feed")

    async def _read(self) -> None:
        # Runs until close(): stopping when the last subscriber leaves would race a new one.
        while True:
            pubsub = self._pubsub
            assert pubsub is not None
            if not self._subscribers:
                await asyncio.sleep(0.2)
                continue
            try:
                if not pubsub.subscribed:
                    async with self._lock:
                        channels = list(self._subscribers)
                    if channels:
                        await pubsub.subscribe(*channels)
                message = await pubsub.get_message(timeout=1.0)
            except (RedisError, OSError):
                log.warning("transaction feed lost Redis; retrying")
                await asyncio.sleep(1.0)
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.reset()
                continue
            if message is None or message.get("type") != "message":
                continue
            channel = message["channel"]
            channel = channel.decode() if isinstance(channel, bytes) else channel
            try:
                transaction = transaction_from_json(message["data"])
            except (ValueError, TypeError, KeyError):
                log.exception("skipped a message on %s that does not decode", channel)
                continue
            for subscription in list(self._subscribers.get(channel, ())):
                with contextlib.suppress(asyncio.QueueFull):
                    subscription.queue.put_nowait(transaction)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]
