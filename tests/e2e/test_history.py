"""Wallet.transactions: newest first, page by page both ways with opaque cursors, filtered,
at most 100 a page; a cursor or page size that makes no sense is a clean GraphQL error.
(How pages behave while the history changes: test_history_while_it_changes.py.)"""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest

from tests.client import HISTORY, Api

NOT_A_CURSOR = "is not a cursor this API gave out"


@dataclass(frozen=True)
class Story:
    wallet: str
    # Every transaction touching the wallet, oldest first, as (id, type, status).
    recorded: list[tuple[str, str, str]]


@pytest.fixture(scope="module")
async def story(api: Api) -> Story:
    """29 transactions of every type and outcome on one wallet, recorded one after another."""
    wallet = await api.new_wallet("100.00")
    other = await api.new_wallet("100.00")
    recorded = [(n["id"], n["type"], n["status"]) for n in await api.history(wallet, 5)]
    moves = (
        [api.deposit(wallet, "1.00") for _ in range(10)]
        + [api.withdraw(wallet, "1.00") for _ in range(8)]
        + [api.withdraw(wallet, "1000.00") for _ in range(2)]
        + [api.transfer(wallet, other, "1.00") for _ in range(5)]
        + [api.transfer(other, wallet, "2.00") for _ in range(3)]
    )
    for move in moves:  # one at a time, so that their order is known
        t = (await move)["transaction"]
        recorded.append((t["id"], t["type"], t["status"]))
    return Story(wallet, recorded)


def _ids(page: dict[str, Any]) -> list[str]:
    return [edge["node"]["id"] for edge in page["edges"]]


def _newest_first(
    story: Story, types: set[str] | None = None, statuses: set[str] | None = None
) -> list[str]:
    return [
        i
        for i, type_, status in reversed(story.recorded)
        if (types is None or type_ in types) and (statuses is None or status in statuses)
    ]


def test_the_story_has_every_type_and_outcome(story: Story) -> None:
    assert Counter((t, s) for _, t, s in story.recorded) == {
        ("DEPOSIT", "COMPLETED"): 11,
        ("WITHDRAWAL", "COMPLETED"): 8,
        ("WITHDRAWAL", "FAILED"): 2,
        ("TRANSFER", "COMPLETED"): 8,
    }


@pytest.mark.parametrize("page_size", [1, 7, 29, 100])
async def test_pages_read_with_cursors_give_every_transaction_once_newest_first(
    api: Api, story: Story, page_size: int
) -> None:
    nodes = await api.history(story.wallet, page_size)

    assert [n["id"] for n in nodes] == _newest_first(story)
    created = [n["createdAt"] for n in nodes]
    assert created == sorted(created, reverse=True)


async def test_without_first_a_page_holds_20(api: Api, story: Story) -> None:
    page = await api.history_page(story.wallet)
    assert _ids(page) == _newest_first(story)[:20]
    assert page["pageInfo"]["hasNextPage"] is True
    assert page["pageInfo"]["hasPreviousPage"] is False


async def test_the_page_before_a_cursor_is_the_page_that_led_to_it(api: Api, story: Story) -> None:
    first = await api.history_page(story.wallet, first=5)
    second = await api.history_page(story.wallet, first=5, after=first["pageInfo"]["endCursor"])

    back = await api.history_page(story.wallet, last=5, before=second["pageInfo"]["startCursor"])

    assert _ids(back) == _ids(first)
    assert back["pageInfo"]["hasNextPage"] is True
    assert back["pageInfo"]["hasPreviousPage"] is False


async def test_the_page_after_the_last_is_empty(api: Api, story: Story) -> None:
    last = await api.history_page(story.wallet, first=29)
    assert last["pageInfo"]["hasNextPage"] is False
    after = await api.history_page(story.wallet, first=5, after=last["pageInfo"]["endCursor"])
    assert after["edges"] == []
    assert after["pageInfo"] == {
        "hasNextPage": False,
        "hasPreviousPage": True,
        "startCursor": None,
        "endCursor": None,
    }


@pytest.mark.parametrize(
    ("types", "statuses"),
    [
        (["WITHDRAWAL"], None),
        (None, ["FAILED"]),
        (["TRANSFER"], ["COMPLETED"]),
        (["DEPOSIT", "TRANSFER"], None),
        (["WITHDRAWAL"], ["COMPLETED", "PENDING"]),
        (["DEPOSIT", "WITHDRAWAL"], ["COMPLETED"]),
        (["DEPOSIT"], ["FAILED"]),
    ],
)
async def test_a_filter_keeps_only_the_types_and_statuses_asked_for_across_pages(
    api: Api, story: Story, types: list[str] | None, statuses: list[str] | None
) -> None:
    wanted = {"types": types, "statuses": statuses}

    nodes = await api.history(story.wallet, 3, filter=wanted)

    assert [n["id"] for n in nodes] == _newest_first(
        story, set(types) if types else None, set(statuses) if statuses else None
    )


@pytest.fixture(scope="module")
async def busy_wallet(api: Api) -> str:
    """A wallet with 105 transactions."""
    wallet = await api.new_wallet("1.00")
    for _ in range(4):  # the initial deposit, then 4 x 26
        await asyncio.gather(*(api.deposit(wallet, "0.01") for _ in range(26)))
    return wallet


@pytest.mark.parametrize("size", [100, 101, 1000, 2**31 - 1])
async def test_a_page_holds_at_most_100_transactions_forward_or_backward(
    api: Api, busy_wallet: str, size: int
) -> None:
    page = await api.history_page(busy_wallet, first=size)
    rest = await api.history_page(busy_wallet, first=size, after=page["pageInfo"]["endCursor"])
    oldest = await api.history_page(busy_wallet, last=size)

    assert len(page["edges"]) == 100
    assert page["pageInfo"]["hasNextPage"] is True
    assert len(rest["edges"]) == 5
    assert rest["pageInfo"]["hasNextPage"] is False
    assert oldest["edges"] == (page["edges"] + rest["edges"])[5:]
    assert oldest["pageInfo"]["hasPreviousPage"] is True


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "",
        "!!!!",
        "%%%",
        "x" * 5000,
        _b64("hello"),
        _b64("\x00\xff"),
        _b64("v1:yesterday|not-a-uuid"),
        _b64("v1:2026-01-01T00:00:00|00000000-0000-0000-0000-000000000000"),  # no offset
        _b64("v1:2026-01-01T00:00:00+00:00|not-a-uuid"),
        _b64("v0:2026-01-01T00:00:00+00:00|00000000-0000-0000-0000-000000000000"),
        _b64("v2:2026-01-01T00:00:00+00:00|00000000-0000-0000-0000-000000000000"),
    ],
)
@pytest.mark.parametrize("argument", ["after", "before"])
async def test_a_cursor_the_api_did_not_give_out_is_a_clean_graphql_error(
    api: Api, story: Story, cursor: str, argument: str
) -> None:
    body = await api.answer(HISTORY, id=story.wallet, **{argument: cursor})

    assert body["data"] == {"wallet": None}
    (error,) = body["errors"]
    assert error["message"].startswith(f"`{argument}`: ")
    assert NOT_A_CURSOR in error["message"]
    assert error["extensions"] == {"code": "INVALID_CURSOR"}
    assert error["path"] == ["wallet", "transactions"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"first": -1}, "`first` and `last` must be zero or more"),
        ({"first": -100}, "`first` and `last` must be zero or more"),
        ({"last": -3}, "`first` and `last` must be zero or more"),
        ({"last": 2, "after": "x"}, "page forward with first/after or backward with last/before"),
    ],
)
async def test_a_page_size_or_direction_that_makes_no_sense_is_a_clean_graphql_error(
    api: Api, story: Story, arguments: dict[str, Any], message: str
) -> None:
    body = await api.answer(HISTORY, id=story.wallet, **arguments)

    assert body["data"] == {"wallet": None}
    assert [error["message"] for error in body["errors"]] == [message]


async def test_a_page_size_beyond_a_graphql_int_is_a_clean_graphql_error(
    api: Api, story: Story
) -> None:
    errors = await api.graphql_errors(HISTORY, id=story.wallet, first=2**31)
    assert "Int" in errors[0]["message"]
