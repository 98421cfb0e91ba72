"""The settlement queue sends the jobs kicked, and the acknowledgements made, in one turn of the
event loop to Redis in one round trip each; an acknowledged job is no longer pending."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from taskiq import AckableMessage, BrokerMessage
from taskiq_redis import RedisStreamBroker

from wallet.config import Settings
from wallet.tasks.broker import make_broker, settlement_queue

pytestmark = pytest.mark.timeout(30)

JOBS = 3


@pytest.fixture
def settings(redis_url: str, redis_prefix: str) -> Settings:
    return Settings(redis_url=redis_url, redis_prefix=f"{redis_prefix}:{uuid.uuid4().hex[:8]}")


@pytest.fixture
async def broker(settings: Settings) -> AsyncIterator[RedisStreamBroker]:
    broker = make_broker(settings, read_count=JOBS)
    await broker.startup()
    yield broker
    await broker.shutdown()


@pytest.fixture
def pipelines(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The commands of every pipeline this process sends, by name."""
    sent: list[list[str]] = []
    execute = Pipeline.execute

    async def recorded(pipe: Pipeline, *args: Any, **kwargs: Any) -> list[Any]:
        sent.append([str(command[0]) for command, _ in pipe.command_stack])
        return await execute(pipe, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "execute", recorded)
    return sent


async def _received(broker: RedisStreamBroker, count: int) -> list[AckableMessage]:
    received: list[AckableMessage] = []
    async with contextlib.aclosing(broker.listen()) as messages:
        async for message in messages:
            assert isinstance(message, AckableMessage)
            received.append(message)
            if len(received) == count:
                break
    return received


async def test_jobs_kicked_together_are_queued_and_acknowledged_in_one_round_trip_each(
    broker: RedisStreamBroker, settings: Settings, pipelines: list[list[str]], redis_url: str
) -> None:
    jobs = [
        BrokerMessage(task_id=str(i), task_name="t", message=f"job {i}".encode(), labels={})
        for i in range(JOBS)
    ]
    await asyncio.gather(*(broker.kick(job) for job in jobs))
    assert pipelines == [["XADD"] * JOBS]

    received = await _received(broker, JOBS)
    assert sorted(m.data for m in received) == sorted(j.message for j in jobs)
    pipelines.clear()
    await asyncio.gather(*(m.ack() for m in received))  # type: ignore[arg-type]
    # One XACK naming every job: taskiq-redis's own acknowledgement sends one each.
    assert pipelines == [["XACK"]]

    redis = Redis.from_url(redis_url)
    try:
        pending = await redis.xpending(settlement_queue(settings), broker.consumer_group_name)
    finally:
        await redis.aclose()
    assert pending["pending"] == 0
