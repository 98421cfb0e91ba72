"""Reads over HTTP with the cache in front: never stale, few statements, alive without Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from redis.asyncio import Redis
from sqlalchemy.engine import make_url

from tests import tokens
from tests.e2e.graphql_app import App, app_with_own_cache, running_app, statements_sent
from wallet.config import Settings


@pytest.fixture
async def app(database_url: str, redis_url: str, redis_prefix: str) -> AsyncIterator[App]:
    async with app_with_own_cache(database_url, redis_url, redis_prefix) as app:
        yield app


async def test_after_each_deposit_returns_every_later_read_shows_it(
    app: App, redis_url: str
) -> None:
    """8 readers hammer one wallet while 60 deposits are made one after another.

    A read started after deposit k returned must show at least k deposits, and one that
    ended before deposit k+1 started at most k. An evictor keeps dropping the cached entry
    so that readers keep refilling it from PostgreSQL while deposits commit.
    """
    wallet = await app.api.new_wallet()
    returned = 0  # deposits that have returned
    started = 0  # deposits that have been sent
    done = False
    seen: list[tuple[int, Decimal, int]] = []

    async def read_again_and_again() -> None:
        while not done:
            low = returned
            value = Decimal(await app.api.balance(wallet))
            seen.append((low, value, started))

    async def evict_again_and_again() -> None:
        redis = Redis.from_url(redis_url)
        try:
            while not done:
                await redis.delete(app.cache.wallet_key(uuid.UUID(wallet)))
                await asyncio.sleep(0.002)
        finally:
            await redis.aclose()

    tasks = [asyncio.create_task(read_again_and_again()) for _ in range(8)]
    tasks.append(asyncio.create_task(evict_again_and_again()))
    try:
        for k in range(1, 61):
            started = k
            await app.api.deposit(wallet, "1.00", f"race-{wallet}-{k}")
            returned = k
            assert Decimal(await app.api.balance(wallet)) == k
    finally:
        done = True
        await asyncio.gather(*tasks)

    for low, value, high in seen:
        assert low <= value <= high, f"read {value} while {low}..{high} deposits had committed"
    assert len(seen) >= 8 * 60
    stats = app.cache.wallet_stats
    assert stats.hits > 0, "the cache answered some reads"
    assert stats.misses > 0, "and readers refilled it while deposits committed"


PAGE_WITH_WALLETS = """
query ($id: ID!) {
  wallet(id: $id) {
    balance
    transactions(first: 100) {
      edges { node { id amount
        senderWallet { id balance }
        receiverWallet { id balance } } }
      pageInfo { hasNextPage }
    }
  }
}
"""


async def test_a_page_of_100_transactions_with_both_wallets_costs_at_most_4_statements(
    app: App, database_url: str
) -> None:
    hub = await app.api.new_wallet("1000.00")
    others = [await app.api.new_wallet("1000.00") for _ in range(50)]
    for n in range(100):
        other = others[n % len(others)]
        sender, receiver = (hub, other) if n % 2 else (other, hub)
        made = await app.api.transfer(sender, receiver, "1.00", f"spread-{hub}-{n}")
        assert made["transaction"]["status"] == "COMPLETED", made
    await app.cache.clear()  # nothing cached: every wallet is read from PostgreSQL

    with statements_sent(make_url(database_url).database or "") as cold:
        data = await app.api.data(PAGE_WITH_WALLETS, id=hub)
    with statements_sent(make_url(database_url).database or "") as warm:
        again = await app.api.data(PAGE_WITH_WALLETS, id=hub)

    edges = data["wallet"]["transactions"]["edges"]
    assert len(edges) == 100
    wallets_shown = {
        edge["node"][side]["id"] for edge in edges for side in ("senderWallet", "receiverWallet")
    }
    assert len(wallets_shown) == 51
    assert len(cold.sent) <= 4, cold.sent
    assert again == data
    assert len(warm.sent) == 0, warm.sent


async def test_reads_answer_from_postgresql_while_redis_is_unreachable(
    database_url: str, redis_prefix: str
) -> None:
    settings = Settings(
        jwt_secret=tokens.SECRET,
        database_url=database_url,
        redis_url="redis://127.0.0.1:1/0",  # nothing listens there
        redis_prefix=f"{redis_prefix}:unreachable",
        redis_timeout=0.2,
        settle_inline=True,
        rate_limits_enabled=False,
    )
    async with running_app(settings) as app:
        wallet = await app.api.new_wallet("5.00")
        await app.api.deposit(wallet, "2.25", f"no-redis-{wallet}")
        assert await app.api.balance(wallet) == "7.25"
        history = await app.api.data(
            "query ($id: ID!) { wallet(id: $id) { transactions { edges { node { amount } } } } }",
            id=wallet,
        )
        amounts = [e["node"]["amount"] for e in history["wallet"]["transactions"]["edges"]]
        assert amounts == ["2.25", "5.00"]
        assert app.cache.redis_errors >= 1
        assert app.cache.wallet_stats.hits == 0
