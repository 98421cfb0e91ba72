"""The read cache against real PostgreSQL and Redis: races forced step by step, and outages."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from decimal import Decimal
from urllib.parse import urlsplit
from uuid import UUID

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.callers import ADMIN
from tests.integration import moves
from tests.network import BlackHole, Switch
from tests.waits import eventually
from wallet.domain import services
from wallet.domain.group_commit import run_alone
from wallet.domain.model import HistoryRequest, Page, Transaction, Wallet
from wallet.domain.money import Money
from wallet.domain.ports import HistoryQuery, UnitOfWorkFactory
from wallet.persistence.cache import ReadCache
from wallet.persistence.codec import wallet_from_json
from wallet.persistence.queries import SqlHistoryQuery
from wallet.persistence.unit_of_work import SqlUnitOfWork


def _cache_on(redis: Redis, prefix: str) -> ReadCache:
    return ReadCache(redis, f"{prefix}:cache:{uuid.uuid4().hex[:8]}", ttl=60, timeout=0.5)


@pytest.fixture
async def cache(redis: Redis, redis_prefix: str) -> AsyncIterator[ReadCache]:
    cache = _cache_on(redis, redis_prefix)
    yield cache
    await cache.close()
    await cache.clear()


def writes_through(engine: AsyncEngine, cache: ReadCache) -> UnitOfWorkFactory:
    return lambda: SqlUnitOfWork(engine, [cache.on_commit])


async def new_wallet(uow_factory: UnitOfWorkFactory, balance: str) -> UUID:
    return (await moves.new_wallet(uow_factory, balance)).id


async def put_in(uow_factory: UnitOfWorkFactory, wallet_id: UUID, amount: str) -> Transaction:
    command = services.Deposit(str(wallet_id), amount, moves.fresh_key("deposit"))
    return await run_alone(uow_factory, services.deposit, ADMIN, command)


async def balance_of(reads: HistoryQuery, wallet_id: UUID) -> Decimal:
    (wallet,) = await reads.wallets([wallet_id])
    assert wallet is not None
    return wallet.balance.to_decimal()


class PausedAfterReading:
    """Reads PostgreSQL, then waits for `go` before handing the rows on: a reader stalled
    between its query and its write to the cache."""

    def __init__(self, inner: HistoryQuery) -> None:
        self._inner = inner
        self.has_read = asyncio.Event()
        self.go = asyncio.Event()

    async def wallets(self, wallet_ids: Sequence[UUID]) -> list[Wallet | None]:
        rows = await self._inner.wallets(wallet_ids)
        self.has_read.set()
        await self.go.wait()
        return rows

    async def transactions(self, transaction_ids: Sequence[UUID]) -> list[Transaction | None]:
        return await self._inner.transactions(transaction_ids)

    async def history(self, request: HistoryRequest) -> Page:
        page = await self._inner.history(request)
        self.has_read.set()
        await self.go.wait()
        return page


async def test_a_second_read_of_a_wallet_is_answered_by_redis(
    engine: AsyncEngine, cache: ReadCache
) -> None:
    writes = writes_through(engine, cache)
    wallet_id = await new_wallet(writes, "12.34")
    await cache.clear()
    reads = cache.reads(SqlHistoryQuery(engine))

    assert await balance_of(reads, wallet_id) == Decimal("12.34")
    assert await balance_of(reads, wallet_id) == Decimal("12.34")

    assert (cache.wallet_stats.misses, cache.wallet_stats.hits) == (1, 1)


async def test_a_deposit_is_in_the_cache_before_it_returns(
    engine: AsyncEngine, cache: ReadCache
) -> None:
    writes = writes_through(engine, cache)
    reads = cache.reads(SqlHistoryQuery(engine))
    wallet_id = await new_wallet(writes, "1.00")
    assert await balance_of(reads, wallet_id) == Decimal("1.00")

    await put_in(writes, wallet_id, "2.00")

    assert await balance_of(reads, wallet_id) == Decimal("3.00")
    assert cache.wallet_stats.misses == 0, "the commit wrote the new balance; nothing missed"


@pytest.mark.parametrize("evicted", [False, True], ids=["kept", "evicted"])
async def test_a_row_read_before_a_deposit_is_not_stored_after_it(
    engine: AsyncEngine, cache: ReadCache, redis: Redis, evicted: bool
) -> None:
    writes = writes_through(engine, cache)
    wallet_id = await new_wallet(writes, "10.00")
    await cache.clear()  # the reader below misses and reads PostgreSQL
    paused = PausedAfterReading(SqlHistoryQuery(engine))
    slow_reader = asyncio.create_task(cache.reads(paused).wallets([wallet_id]))
    await paused.has_read.wait()  # it holds the row as it was: 10.00

    await put_in(writes, wallet_id, "5.00")  # committed; the commit told the cache
    if evicted:
        # Redis dropped the new entry (memory pressure, TTL) before the stale write arrives.
        await redis.delete(cache.wallet_key(wallet_id))
    paused.go.set()
    (seen_by_slow_reader,) = await slow_reader

    assert seen_by_slow_reader is not None
    assert seen_by_slow_reader.balance.to_decimal() == Decimal("10.00")  # it began before
    assert await balance_of(cache.reads(SqlHistoryQuery(engine)), wallet_id) == Decimal("15.00")
    assert cache.wallet_stats.fills_refused == 1


async def test_a_fill_never_replaces_a_newer_version_with_an_older_one(
    engine: AsyncEngine, cache: ReadCache
) -> None:
    writes = writes_through(engine, cache)
    wallet_id = await new_wallet(writes, "10.00")
    await cache.clear()
    opened = await cache.open_wallets([wallet_id])
    assert opened is not None
    generation = opened[1][wallet_id]
    (old,) = await SqlHistoryQuery(engine).wallets([wallet_id])
    assert old is not None
    newer = replace(old, version=old.version + 1, updated_at=None)

    # Two readers under one generation; the one holding the newer version stores first.
    await cache.fill_wallets([(generation, newer)])
    await cache.fill_wallets([(generation, old)])

    cached = await cache.open_wallets([wallet_id])
    assert cached is not None
    assert cached[0][wallet_id].version == old.version + 1
    assert cache.wallet_stats.fills_refused == 1


async def test_a_commit_told_late_never_replaces_a_newer_version_of_any_of_its_wallets(
    engine: AsyncEngine, cache: ReadCache
) -> None:
    writes = writes_through(engine, cache)
    wallet_ids = [await new_wallet(writes, "1.00"), await new_wallet(writes, "2.00")]
    old = [w for w in await SqlHistoryQuery(engine).wallets(wallet_ids) if w is not None]
    newer = [
        Wallet(
            w.id,
            w.owner_id,
            w.currency,
            Money(w.balance.minor + 100, w.currency),
            version=w.version + 1,
        )
        for w in old
    ]

    # Two commits of both wallets whose writes reach Redis out of order: the newer first.
    await cache.on_commit(newer, [])
    await cache.on_commit(old, [])

    cached = await cache.open_wallets(wallet_ids)
    assert cached is not None
    assert [cached[0][i] for i in wallet_ids] == newer
    assert (cache.redis_errors, cache.unwritten) == (0, 0)


async def test_a_history_page_read_before_a_deposit_is_not_stored_after_it(
    engine: AsyncEngine, cache: ReadCache
) -> None:
    writes = writes_through(engine, cache)
    wallet_id = await new_wallet(writes, "10.00")
    first_page = HistoryRequest(wallet_id, limit=20)
    paused = PausedAfterReading(SqlHistoryQuery(engine))
    slow_reader = asyncio.create_task(cache.reads(paused).history(first_page))
    await paused.has_read.wait()  # it holds a page with the opening deposit only

    deposit = await put_in(writes, wallet_id, "5.00")
    paused.go.set()
    stale = await slow_reader

    assert len(stale.transactions) == 1
    fresh = await cache.reads(SqlHistoryQuery(engine)).history(first_page)
    assert fresh.transactions[0].id == deposit.id
    assert len(fresh.transactions) == 2
    assert cache.history_stats.fills_refused == 1


async def test_a_cached_first_page_shows_a_transaction_once_it_is_recorded(
    engine: AsyncEngine, cache: ReadCache
) -> None:
    writes = writes_through(engine, cache)
    reads = cache.reads(SqlHistoryQuery(engine))
    wallet_id = await new_wallet(writes, "10.00")
    first_page = HistoryRequest(wallet_id, limit=20)
    await reads.history(first_page)
    assert len((await reads.history(first_page)).transactions) == 1
    hits = cache.history_stats.hits

    deposit = await put_in(writes, wallet_id, "1.00")
    page = await reads.history(first_page)
    assert page.transactions[0].id == deposit.id
    assert (await reads.history(first_page)).transactions == page.transactions
    assert cache.history_stats.hits == hits + 1


@contextlib.asynccontextmanager
async def cache_at(url: str, prefix: str) -> AsyncIterator[ReadCache]:
    client = Redis.from_url(url, socket_timeout=0.3, socket_connect_timeout=0.3)
    cache = ReadCache(client, f"{prefix}:cache:{uuid.uuid4().hex[:8]}", ttl=60, timeout=0.3)
    try:
        yield cache
    finally:
        await cache.close()
        await client.aclose()


@pytest.mark.parametrize("redis_is", ["refusing connections", "not answering"])
async def test_reads_and_deposits_work_from_postgresql_when_redis_is_unusable(
    engine: AsyncEngine, redis_prefix: str, redis_is: str
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        if redis_is == "refusing connections":
            url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
        else:
            url = f"redis://127.0.0.1:{(await stack.enter_async_context(BlackHole())).port}/0"
        cache = await stack.enter_async_context(cache_at(url, redis_prefix))
        writes = writes_through(engine, cache)
        reads = cache.reads(SqlHistoryQuery(engine))

        wallet_id = await new_wallet(writes, "10.00")  # the commit's cache write fails quietly
        await put_in(writes, wallet_id, "2.50")

        assert await balance_of(reads, wallet_id) == Decimal("12.50")
        page = await reads.history(HistoryRequest(wallet_id, limit=20))
        assert len(page.transactions) == 2
        assert cache.redis_errors >= 1
        assert cache.wallet_stats.hits == 0
        # Just after a failure, reads go straight to PostgreSQL instead of waiting on Redis.
        errors, bypassed = cache.redis_errors, cache.wallet_stats.bypassed
        assert await balance_of(reads, wallet_id) == Decimal("12.50")
        assert cache.redis_errors == errors
        assert cache.wallet_stats.bypassed == bypassed + 1


async def test_a_change_redis_missed_is_read_from_postgresql_until_it_is_written(
    engine: AsyncEngine, redis: Redis, redis_url: str, redis_prefix: str
) -> None:
    real = urlsplit(redis_url)
    async with (
        Switch(real.hostname or "127.0.0.1", real.port or 6379) as switch,
        cache_at(f"redis://127.0.0.1:{switch.port}/0", redis_prefix) as cache,
    ):
        writes = writes_through(engine, cache)
        reads = cache.reads(SqlHistoryQuery(engine))
        wallet_id = await new_wallet(writes, "10.00")
        assert await balance_of(reads, wallet_id) == Decimal("10.00")  # cached

        switch.cut()
        await put_in(writes, wallet_id, "1.00")  # Redis never hears of it
        assert cache.unwritten == 2  # the wallet, and its history
        switch.up = True

        # Redis answers again but still holds 10.00: this process knows better.
        assert await balance_of(reads, wallet_id) == Decimal("11.00")
        await eventually(lambda: cache.unwritten == 0, "the missed change written to Redis", 5)
        entry = await redis.hget(cache.wallet_key(wallet_id), "data")
        assert entry is not None
        assert wallet_from_json(entry).balance.minor == 1100
        hits = cache.wallet_stats.hits
        assert await balance_of(reads, wallet_id) == Decimal("11.00")
        assert cache.wallet_stats.hits == hits + 1


class GatedRedis(Redis):
    """Records each EVALSHA's keys; while `gate` is set, holds the calls until it opens."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.evals: list[tuple[object, ...]] = []
        self.gate: asyncio.Event | None = None

    async def evalsha(self, sha: str, numkeys: int, *keys_and_args: object) -> object:  # type: ignore[override]
        self.evals.append(keys_and_args[:numkeys])
        if self.gate is not None:
            await self.gate.wait()
        return await super().evalsha(sha, numkeys, *keys_and_args)  # type: ignore[arg-type]


@pytest.fixture
async def gated(redis_url: str, redis_prefix: str) -> AsyncIterator[tuple[GatedRedis, ReadCache]]:
    client = GatedRedis.from_url(redis_url)
    cache = _cache_on(client, redis_prefix)
    await cache.load_scripts()  # so that no call is sent twice, the second time whole
    yield client, cache
    await cache.close()
    await cache.clear()
    await client.aclose()


async def calls_made(client: GatedRedis, count: int) -> None:
    await eventually(lambda: len(client.evals) >= count, f"{count} Redis calls", 1, every=0.002)


async def test_wallet_reads_asked_together_go_to_redis_in_one_call(
    engine: AsyncEngine, gated: tuple[GatedRedis, ReadCache]
) -> None:
    client, cache = gated
    writes = writes_through(engine, cache)
    reads = cache.reads(SqlHistoryQuery(engine))
    wallet_ids = [await new_wallet(writes, f"{n}.00") for n in range(1, 21)]
    client.evals.clear()

    balances = await asyncio.gather(*(balance_of(reads, i) for i in wallet_ids))

    assert balances == [Decimal(n) for n in range(1, 21)]
    assert len(client.evals) == 1
    assert len(client.evals[0]) == 20


async def test_a_read_begun_after_a_deposit_never_joins_a_redis_call_sent_before_it(
    engine: AsyncEngine, gated: tuple[GatedRedis, ReadCache]
) -> None:
    client, cache = gated
    writes = writes_through(engine, cache)
    reads = cache.reads(SqlHistoryQuery(engine))
    wallet_id = await new_wallet(writes, "10.00")
    assert await balance_of(reads, wallet_id) == Decimal("10.00")  # cached
    client.gate = asyncio.Event()
    early = asyncio.create_task(balance_of(reads, wallet_id))
    await calls_made(client, 2)  # the call for `early` is on its way, held at the gate

    await put_in(writes, wallet_id, "5.00")  # returned: every later read must show it
    late = asyncio.create_task(balance_of(reads, wallet_id))
    await asyncio.sleep(0.05)  # the point: time to join the held call, were that allowed
    client.gate.set()

    # Its own call, sent after the held one: a seat in that one would have read 10.00.
    assert await late == Decimal("15.00")
    assert await early in (Decimal("10.00"), Decimal("15.00"))
    assert len(client.evals) == 3
