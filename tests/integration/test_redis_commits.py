"""What a commit sends to Redis, through the listeners a process opens: one round trip holding
the cache's writes and then the feed's messages; and what a failure in it leaves behind."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline, PubSub
from redis.asyncio.connection import AbstractConnection

from tests.callers import ADMIN
from tests.integration.moves import fresh_key, new_wallet
from tests.network import Switch
from tests.waits import eventually
from wallet.bootstrap import Resources, open_resources
from wallet.config import Settings
from wallet.domain import services
from wallet.domain.group_commit import run_alone, run_unattended
from wallet.domain.model import TransactionStatus
from wallet.persistence import events as events_module
from wallet.persistence.cache import ReadCache
from wallet.persistence.cache import lua as cache_scripts
from wallet.persistence.codec import transaction_to_json, wallet_from_json


@contextlib.asynccontextmanager
async def opened(
    database_url: str, redis_url: str, redis_prefix: str
) -> AsyncIterator[tuple[Resources, ReadCache]]:
    """A process's resources, as the API and the worker open them, under a prefix of its own."""
    settings = Settings(
        database_url=database_url,
        redis_url=redis_url,
        redis_prefix=f"{redis_prefix}:{uuid.uuid4().hex[:8]}",
        redis_timeout=0.3,
    )
    async with open_resources(settings) as resources:
        yield resources, resources.cache


# The scripts a commit runs, named in what Sent records.
SCRIPTS = {cache_scripts.COMMIT: "cache", events_module._PUBLISH: "feed"}


def described(command: tuple[Any, ...]) -> str:
    """A command's name, and for a script call whose script it runs."""
    name = str(command[0])
    for script, what in SCRIPTS.items():
        if (name, command[1]) in {("EVALSHA", script.sha), ("EVAL", script.source)}:
            return f"{name} {what}"
    return name


class Sent:
    """What this process sends to Redis: each send is one round trip's request."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sends = 0
        self.pipelines: list[list[str]] = []
        send = AbstractConnection.send_packed_command
        execute = Pipeline.execute

        async def counted_send(connection: AbstractConnection, *args: Any, **kwargs: Any) -> None:
            self.sends += 1
            await send(connection, *args, **kwargs)

        async def recorded_execute(pipe: Pipeline, *args: Any, **kwargs: Any) -> list[Any]:
            self.pipelines.append([described(command) for command, _ in pipe.command_stack])
            return await execute(pipe, *args, **kwargs)

        monkeypatch.setattr(AbstractConnection, "send_packed_command", counted_send)
        monkeypatch.setattr(Pipeline, "execute", recorded_execute)

    def clear(self) -> None:
        self.sends = 0
        self.pipelines.clear()


def deposit(resources: Resources, wallet_id: UUID, amount: str) -> Awaitable[Any]:
    return run_alone(
        resources.unit_of_work,
        services.deposit,
        ADMIN,
        services.Deposit(str(wallet_id), amount, fresh_key("deposit")),
    )


async def cached_balance(redis: Redis, cache: ReadCache, wallet_id: UUID) -> int | None:
    entry = await redis.hget(cache.wallet_key(wallet_id), "data")
    return None if entry is None else wallet_from_json(entry).balance.minor


async def heard(pubsub: PubSub, count: int) -> list[dict[str, Any]]:
    """The next `count` messages; fails when they do not all come."""
    messages: list[dict[str, Any]] = []
    deadline = asyncio.get_running_loop().time() + 5.0
    while len(messages) < count and asyncio.get_running_loop().time() < deadline:
        # None too for each subscription's own confirmation, hence the loop.
        message = await pubsub.get_message(timeout=0.1)
        if message is not None:
            messages.append(message)
    assert len(messages) == count, f"{len(messages)} messages heard, not {count}"
    return messages


async def test_a_deposit_sends_its_cache_writes_and_then_its_messages_in_one_round_trip(
    database_url: str,
    redis_url: str,
    redis_prefix: str,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with opened(database_url, redis_url, redis_prefix) as (resources, cache):
        wallet = await new_wallet(resources.unit_of_work, "1.00")
        sent = Sent(monkeypatch)

        await deposit(resources, wallet.id, "2.00")

        assert sent.sends == 1
        # The wallet's entry and its history's generation, then the message on the
        # transaction's channel and the wallet's: Redis runs them in this order.
        assert sent.pipelines == [["EVALSHA cache", "EVALSHA feed"]]
        assert await cached_balance(redis, cache, wallet.id) == 300
        assert (cache.redis_errors, cache.unwritten) == (0, 0)
        await cache.clear()


async def test_a_script_redis_lacks_is_sent_whole_and_the_commit_still_lands_in_the_cache(
    database_url: str,
    redis_url: str,
    redis_prefix: str,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with opened(database_url, redis_url, redis_prefix) as (resources, cache):
        wallet = await new_wallet(resources.unit_of_work, "1.00")
        # A digest Redis never saw: it answers NOSCRIPT, as after a restart or SCRIPT FLUSH.
        monkeypatch.setattr(cache_scripts.COMMIT, "sha", "0" * 40)
        sent = Sent(monkeypatch)

        await deposit(resources, wallet.id, "2.00")

        assert sent.sends == 2
        assert sent.pipelines[1] == ["EVAL cache"]
        assert await cached_balance(redis, cache, wallet.id) == 300
        assert (cache.redis_errors, cache.unwritten) == (0, 0)
        await cache.clear()


async def test_a_redis_that_lost_both_scripts_gets_the_cache_writes_again_before_the_messages(
    database_url: str,
    redis_url: str,
    redis_prefix: str,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with opened(database_url, redis_url, redis_prefix) as (resources, cache):
        wallet = await new_wallet(resources.unit_of_work, "1.00")
        # Digests Redis never saw, as after a restart or SCRIPT FLUSH (which, on the Redis
        # the tests share, would reach other processes too).
        monkeypatch.setattr(cache_scripts.COMMIT, "sha", "0" * 40)
        monkeypatch.setattr(events_module._PUBLISH, "sha", "1" * 40)
        channel = resources.key("events", events_module.FORMAT, "wallet", str(wallet.id))
        async with redis.pubsub(ignore_subscribe_messages=True) as pubsub:
            await pubsub.subscribe(channel)
            sent = Sent(monkeypatch)

            await deposit(resources, wallet.id, "2.00")

            # Neither ran the first time; the feed's call is sent again only once the
            # cache's has been answered.
            assert sent.pipelines == [
                ["EVALSHA cache", "EVALSHA feed"],
                ["EVAL cache"],
                ["EVAL feed"],
            ]
            assert sent.sends == 3
            (message,) = await heard(pubsub, 1)
            assert message["channel"] == channel.encode()
        assert await cached_balance(redis, cache, wallet.id) == 300
        assert (cache.redis_errors, cache.unwritten) == (0, 0)
        await cache.clear()


async def test_a_settlement_batch_sends_two_commands_in_one_round_trip_heard_on_every_channel(
    database_url: str,
    redis_url: str,
    redis_prefix: str,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with opened(database_url, redis_url, redis_prefix) as (resources, cache):
        uow = resources.unit_of_work
        wallets = [(await new_wallet(uow, "100.00")).id for _ in range(4)]
        submitted = [
            await run_alone(
                uow,
                services.transfer,
                ADMIN,
                services.Transfer(
                    str(wallets[n % 4]), str(wallets[(n + 1) % 4]), "1.00", fresh_key()
                ),
            )
            for n in range(20)
        ]
        channels = {
            t.id: resources.key("events", events_module.FORMAT, "transaction", str(t.id))
            for t in submitted
        }
        channels |= {
            i: resources.key("events", events_module.FORMAT, "wallet", str(i)) for i in wallets
        }
        async with redis.pubsub(ignore_subscribe_messages=True) as pubsub:
            await pubsub.subscribe(*channels.values())
            sent = Sent(monkeypatch)

            settled = await run_unattended(uow, services.settle, [t.id for t in submitted])

            assert sent.sends == 1
            assert sent.pipelines == [["EVALSHA cache", "EVALSHA feed"]]
            # One on each transaction's channel and one on each of its two wallets'.
            messages = await heard(pubsub, 20 * 3)
        by_channel: dict[str, list[bytes]] = {channel: [] for channel in channels.values()}
        for message in messages:
            by_channel[message["channel"].decode()].append(message["data"])
        assert [t.status for t in settled] == [TransactionStatus.COMPLETED] * 20
        expected = {t.id: transaction_to_json(t).encode() for t in settled}
        # Each message as one PUBLISH per channel sent it, in the order of the commit.
        for transaction in settled:
            assert by_channel[channels[transaction.id]] == [expected[transaction.id]]
        for wallet_id in wallets:
            assert by_channel[channels[wallet_id]] == [
                expected[t.id] for t in settled if wallet_id in t.wallet_ids
            ]
        assert await cached_balance(redis, cache, wallets[0]) == 10_000
        assert (cache.redis_errors, cache.unwritten) == (0, 0)
        await cache.clear()


async def test_a_failed_cache_write_is_remembered_whole_and_repaired_entry_by_entry(
    database_url: str, redis_url: str, redis_prefix: str, redis: Redis
) -> None:
    async with opened(database_url, redis_url, redis_prefix) as (resources, cache):
        wallet = await new_wallet(resources.unit_of_work, "1.00")
        # Not a hash: the commit's script fails (WRONGTYPE) at the wallet's entry.
        await redis.set(cache.wallet_key(wallet.id), "in the way")
        channel = resources.key("events", events_module.FORMAT, "wallet", str(wallet.id))
        async with redis.pubsub(ignore_subscribe_messages=True) as pubsub:
            await pubsub.subscribe(channel)

            await deposit(resources, wallet.id, "2.00")  # does not raise

            await heard(pubsub, 1)  # the feed's message went out all the same
        assert cache.redis_errors == 1
        assert cache.unwritten == 2, "the one call carried the wallet and its history"

        async def history_repaired() -> bool:
            return cache.unwritten == 1

        await eventually(history_repaired, "the key in the way held back the history's repair")
        await redis.delete(cache.wallet_key(wallet.id))

        async def repaired() -> bool:
            return cache.unwritten == 0

        await eventually(repaired, "the failed write was never repaired")
        assert await cached_balance(redis, cache, wallet.id) == 300
        await cache.clear()


async def test_a_redis_lost_during_the_round_trip_leaves_the_commit_and_repairs_the_cache(
    database_url: str,
    redis_url: str,
    redis_prefix: str,
    redis: Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    real = urlsplit(redis_url)
    async with (
        Switch(real.hostname or "127.0.0.1", real.port or 6379) as switch,
        opened(database_url, f"redis://127.0.0.1:{switch.port}/0", redis_prefix) as (
            resources,
            cache,
        ),
    ):
        wallet = await new_wallet(resources.unit_of_work, "1.00")
        assert await cached_balance(redis, cache, wallet.id) == 100

        switch.cut()
        transaction = await deposit(resources, wallet.id, "2.00")  # does not raise
        assert transaction.status is TransactionStatus.COMPLETED
        assert cache.redis_errors >= 1
        assert cache.unwritten == 2  # the wallet, and its history
        assert "could not publish 1 transaction changes" in caplog.text
        switch.up = True

        async def repaired() -> bool:
            return cache.unwritten == 0

        await eventually(repaired, "the missed change was never written to Redis")
        assert await cached_balance(redis, cache, wallet.id) == 300
        await cache.clear()
