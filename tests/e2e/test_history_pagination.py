"""A wallet's history over HTTP: keyset pages forward and backward, filters, and bad cursors."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.client import HISTORY
from tests.e2e.graphql_app import App, app_with_own_cache


@pytest.fixture
async def app(database_url: str, redis_url: str, redis_prefix: str) -> AsyncIterator[App]:
    async with app_with_own_cache(database_url, redis_url, redis_prefix) as app:
        yield app


async def page(app: App, wallet: str, **arguments: Any) -> dict[str, Any]:
    return await app.api.history_page(wallet, **arguments)


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
    everything = ids(await page(app, wallet, first=100))
    assert len(everything) == 25

    seen: list[str] = []
    after = None
    turns = 0
    while True:
        current = await page(app, wallet, first=7, after=after)
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
    everything = ids(await page(app, wallet, first=100))

    seen: list[str] = []
    current = await page(app, wallet, last=6)  # the oldest six
    arrived = []
    while True:
        seen = ids(current) + seen
        if not current["pageInfo"]["hasPreviousPage"]:
            break
        made = await app.api.deposit(wallet, "0.01", f"new-{wallet}-{len(arrived)}")
        arrived.append(made["transaction"])
        current = await page(app, wallet, last=6, before=current["pageInfo"]["startCursor"])

    newest_first_arrivals = [t["id"] for t in reversed(arrived)]
    assert seen == newest_first_arrivals + everything


async def test_the_page_before_a_cursor_is_the_page_that_led_to_it(app: App) -> None:
    wallet = await wallet_with_deposits(app, 12)
    first = await page(app, wallet, first=5)
    second = await page(app, wallet, first=5, after=first["pageInfo"]["endCursor"])

    back = await page(app, wallet, last=5, before=second["pageInfo"]["startCursor"])

    assert ids(back) == ids(first)
    assert back["pageInfo"]["hasNextPage"] is True
    assert back["pageInfo"]["hasPreviousPage"] is False


async def test_filters_page_through_only_the_matching_transactions(app: App) -> None:
    wallet = await app.api.new_wallet("10.00")
    friend = await app.api.new_wallet("10.00")
    for n in range(3):
        made_in = await app.api.transfer(friend, wallet, "1.00", f"in-{wallet}-{n}")
        made_out = await app.api.transfer(wallet, friend, "0.50", f"out-{wallet}-{n}")
        assert made_in["transaction"]["status"] == made_out["transaction"]["status"] == "COMPLETED"
        failed = await app.api.withdraw(wallet, "999.00", f"w-{wallet}-{n}")
        assert failed["transaction"]["status"] == "FAILED"
        await app.api.deposit(wallet, "0.10", f"dep-{wallet}-{n}")
    everything = (await page(app, wallet, first=100))["edges"]

    for filter_, wanted in [
        ({"types": ["TRANSFER"]}, lambda n: n["type"] == "TRANSFER"),
        ({"statuses": ["FAILED"]}, lambda n: n["status"] == "FAILED"),
        (
            {"types": ["DEPOSIT", "WITHDRAWAL"], "statuses": ["COMPLETED"]},
            lambda n: n["type"] in ("DEPOSIT", "WITHDRAWAL") and n["status"] == "COMPLETED",
        ),
    ]:
        expected = [e["node"]["id"] for e in everything if wanted(e["node"])]
        seen: list[str] = []
        after = None
        while True:
            current = await page(app, wallet, first=2, after=after, filter=filter_)
            seen += ids(current)
            if not current["pageInfo"]["hasNextPage"]:
                break
            after = current["pageInfo"]["endCursor"]
        assert seen == expected, filter_
        assert expected, filter_


async def test_first_is_capped_at_100(app: App) -> None:
    wallet = await wallet_with_deposits(app, 105)

    current = await page(app, wallet, first=1000)
    rest = await page(app, wallet, first=1000, after=current["pageInfo"]["endCursor"])

    assert len(current["edges"]) == 100
    assert current["pageInfo"]["hasNextPage"] is True
    assert len(rest["edges"]) == 5
    assert rest["pageInfo"]["hasNextPage"] is False
    oldest = await page(app, wallet, last=1000)
    assert oldest["edges"] == (current["edges"] + rest["edges"])[5:]
    assert oldest["pageInfo"]["hasPreviousPage"] is True


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor",
        "%%%",
        _b64("hello"),
        _b64("v1:2026-01-01T00:00:00|00000000-0000-0000-0000-000000000000"),  # no offset
        _b64("v1:2026-01-01T00:00:00+00:00|not-a-uuid"),
        _b64("v2:2026-01-01T00:00:00+00:00|00000000-0000-0000-0000-000000000000"),
    ],
)
@pytest.mark.parametrize("argument", ["after", "before"])
async def test_an_invalid_cursor_is_a_clean_error(app: App, cursor: str, argument: str) -> None:
    wallet = await wallet_with_deposits(app, 1)

    body = await app.api.answer(HISTORY, id=wallet, **{argument: cursor})

    assert body["data"] == {"wallet": None}
    (error,) = body["errors"]
    assert error["message"].startswith(f"`{argument}`: ")
    assert "is not a cursor this API gave out" in error["message"]
    assert error["extensions"] == {"code": "INVALID_CURSOR"}
    assert error["path"] == ["wallet", "transactions"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"first": -1}, "`first` and `last` must be zero or more"),
        ({"last": -3}, "`first` and `last` must be zero or more"),
        ({"last": 2, "after": "x"}, "page forward with first/after or backward with last/before"),
    ],
)
async def test_a_page_size_or_direction_that_makes_no_sense_is_a_clean_error(
    app: App, arguments: dict[str, Any], message: str
) -> None:
    wallet = await wallet_with_deposits(app, 1)

    body = await app.api.answer(HISTORY, id=wallet, **arguments)

    assert body["data"] == {"wallet": None}
    assert [e["message"] for e in body["errors"]] == [message]


async def test_the_cached_first_page_follows_every_change(app: App) -> None:
    wallet = await wallet_with_deposits(app, 3)
    before = await page(app, wallet)
    assert await page(app, wallet) == before  # from the cache now
    hits = app.cache.history_stats.hits

    failed = await app.api.withdraw(wallet, "50.00", f"big-{wallet}")
    after = await page(app, wallet)
    only_failed = await page(app, wallet, filter={"statuses": ["FAILED"]})

    assert ids(after) == [failed["transaction"]["id"], *ids(before)]
    assert after["edges"][0]["node"]["status"] == "FAILED"
    assert ids(only_failed) == ids(after)[:1]
    assert app.cache.history_stats.hits >= hits + 1
