"""The settlement queue: taskiq-redis's stream broker, sending the kicks and acknowledgements
that arrive together to Redis in one round trip (domain/batching.py).

Only built here; bootstrap opens it, binds taskiq's shared broker to it, and closes it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from redis.asyncio import Redis
from taskiq import BrokerMessage
from taskiq_redis import RedisStreamBroker

from wallet.config import Settings
from wallet.domain.batching import Batcher
from wallet.persistence.redis_client import connection_options


class SettlementBroker(RedisStreamBroker):
    """taskiq-redis's stream broker, kicking and acknowledging through one long-lived client,
    what arrives together in one round trip.

    Its own kick() and ack build a new Redis client object (with its table of response
    callbacks) for every message and send one command each: a measurable share of a
    transfer request's CPU, and a quarter of a busy worker's.
    """

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self._redis = Redis(connection_pool=self.connection_pool)
        self._kicks: Batcher[BrokerMessage, None] = Batcher(
            self._xadd, max_batch=1000, name="settlement-kicks"
        )
        self._acks: Batcher[tuple[str, str], None] = Batcher(
            self._xack, max_batch=1000, name="settlement-acks"
        )

    async def kick(self, message: BrokerMessage) -> None:
        await self._kicks(message)

    # The one private method of taskiq-redis overridden here. listen() hands each message an
    # acknowledgement made by _ack_generator(id, stream), and nothing public reaches it: the
    # message id is not in AckableMessage, taskiq has no acknowledgement middleware, and
    # copying listen() would copy its autoclaim loop too. Checked against taskiq-redis 1.2.4
    # (pinned in the lock files); tests/integration/test_settlement_broker.py fails if a new
    # release stops calling it.
    def _ack_generator(self, id: str, queue_name: str) -> Callable[[], Awaitable[None]]:
        return partial(self._acks, (queue_name, id))

    async def _xadd(self, messages: list[BrokerMessage]) -> list[None]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for message in messages:
                pipe.xadd(
                    message.labels.get("queue_name") or self.queue_name,
                    {b"data": message.message},
                    maxlen=self.maxlen,
                    approximate=self.approximate,
                )
            await pipe.execute()
        return [None] * len(messages)

    async def _xack(self, acks: list[tuple[str, str]]) -> list[None]:
        # Not acknowledged on failure: the job is delivered again, and settling it again is
        # a no-op.
        by_queue: dict[str, list[str]] = {}
        for queue, message_id in acks:
            by_queue.setdefault(queue, []).append(message_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            for queue, ids in by_queue.items():
                pipe.xack(queue, self.consumer_group_name, *ids)
            await pipe.execute()
        return [None] * len(acks)


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
        **connection_options(settings.redis_url),
    )
