"""A wallet's history while it changes, on the app in-process (its cache in view): pages read
one after another show each transaction once as new ones arrive, and the cached first page
follows every change. (The rules of a page: test_history.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.e2e.graphql_app import App, app_with_own_cache


@pytest.fixture
async def app(database_url: str, redis_url: str, redis_prefix: str) -> AsyncIterator[App]:
    async with app_with_own_cache(database_url, redis_url, redis_prefix) as app:
        yield app


def ids(connection: dict[str, Any]) -> list[str]:
    return [edge["node"]["id"] for edge in connection["edges"]]


async def wallet_with_deposits(app: App, count: int) -> str:
    wallet = await app.api.new_wallet("1.00")  # its first transaction
    for n in range(count - 1):
        made = await app.api.deposit(wallet, "1.00", f"fill-{wallet}-{n}")
        assert made["errors"] == [], made
    return wallet


async def test_paging_forward_shows_each_transaction_once_in_order_while_new_ones_arrive(
    app: App,
) -> None:
    wallet = await wallet_with_deposits(app, 25)
    everything = ids(await app.api.history_page(wallet, first=100))
    assert len(everything) == 25

    seen: list[str] = []
    after = None
    turns = 0
    while True:
        current = await app.api.history_page(wallet, first=7, after=after)
        assert not set(ids(current)) & set(seen), "a page repeated what came before"
        seen += ids(current)
        assert current["pageInfo"]["hasPreviousPage"] is (after is not None)
        if not current["pageInfo"]["hasNextPage"]:
            break
        after = current["pageInfo"]["endCursor"]
        turns += 1
        # Newer than every page yet to come: they belong before the first page, not in these.
        await app.api.deposit(wallet, "0.01", f"between-{wallet}-{turns}")

    assert seen == everything
    assert turns == 3


async def test_paging_backward_shows_each_transaction_once_and_new_ones_only_at_the_end(
    app: App,
) -> None:
    wallet = await wallet_with_deposits(app, 20)
    everything = ids(await app.api.history_page(wallet, first=100))

    seen: list[str] = []
    current = await app.api.history_page(wallet, last=6)  # the oldest six
    arrived = []
    while True:
        assert not set(ids(current)) & set(seen), "a page repeated what came after"
        seen = ids(current) + seen
        if not current["pageInfo"]["hasPreviousPage"]:
            break
        made = await app.api.deposit(wallet, "0.01", f"new-{wallet}-{len(arrived)}")
        arrived.append(made["transaction"])
        current = await app.api.history_page(
            wallet, last=6, before=current["pageInfo"]["startCursor"]
        )

    newest_first_arrivals = [t["id"] for t in reversed(arrived)]
    assert seen == newest_first_arrivals + everything


async def test_the_cached_first_page_follows_every_change(app: App) -> None:
    wallet = await wallet_with_deposits(app, 3)
    before = await app.api.history_page(wallet)
    assert await app.api.history_page(wallet) == before  # from the cache now
    hits = app.cache.history_stats.hits

    failed = await app.api.withdraw(wallet, "50.00", f"big-{wallet}")
    after = await app.api.history_page(wallet)
    only_failed = await app.api.history_page(wallet, filter={"statuses": ["FAILED"]})

    assert ids(after) == [failed["transaction"]["id"], *ids(before)]
    assert after["edges"][0]["node"]["status"] == "FAILED"
    assert ids(only_failed) == ids(after)[:1]
    assert app.cache.history_stats.hits >= hits + 1
