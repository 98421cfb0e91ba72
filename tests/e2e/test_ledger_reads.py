"""The ledger over HTTP: Wallet.balanceAt, Wallet.entries page by page, Wallet.statement of a
period, and the new fields of Transaction, as a client of the contract reads them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from tests import tokens
from tests.client import Api, every_page

pytestmark = pytest.mark.timeout(120)

MICROSECOND = timedelta(microseconds=1)
ENTRIES = """
query Entries($id: ID!, $first: Int, $after: String, $since: DateTime, $until: DateTime) {
  wallet(id: $id) {
    entries(first: $first, after: $after, since: $since, until: $until) {
      edges {
        cursor
        node { id amount balanceAfter createdAt transaction { id type status amount } }
      }
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    }
  }
}"""
BALANCE_AT = (
    "query BalanceAt($id: ID!, $time: DateTime!) { wallet(id: $id) { balanceAt(time: $time) } }"
)
STATEMENT = """
query Statement($id: ID!, $since: DateTime!, $until: DateTime!) {
  wallet(id: $id) {
    statement(since: $since, until: $until) {
      since until openingBalance closingBalance totalCredits totalDebits entryCount
    }
  }
}"""


def earlier(instant: str) -> str:
    """The instant a microsecond before `instant`, as the API writes instants."""
    return (datetime.fromisoformat(instant) - MICROSECOND).isoformat()


async def entries_page(api: Api, wallet: str, **arguments: Any) -> dict[str, Any]:
    sent = {name: value for name, value in arguments.items() if value is not None}
    found = (await api.data(ENTRIES, id=wallet, **sent))["wallet"]
    assert found is not None
    return found["entries"]  # type: ignore[no-any-return]


async def every_entry(api: Api, wallet: str, page_size: int, **arguments: Any) -> list[Any]:
    async def page(after: str | None) -> dict[str, Any]:
        return await entries_page(api, wallet, first=page_size, after=after, **arguments)

    return await every_page(page, page_size)


@dataclass(frozen=True)
class Story:
    wallet: str
    other: str
    # The transactions that touched `wallet`, oldest first, as their payloads gave them.
    moved: list[dict[str, Any]]
    # Its entries, oldest first, as the API gives them.
    entries: list[dict[str, Any]]


@pytest.fixture(scope="module")
async def story(api: Api) -> Story:
    wallet = await api.new_wallet("100.00")
    other = await api.new_wallet("50.00")
    moved = []
    for _ in range(3):
        for move in (
            api.deposit(wallet, "10.00"),
            api.withdraw(wallet, "3.10"),
            api.transfer(wallet, other, "7.00"),
            api.transfer(other, wallet, "2.55"),
            api.withdraw(wallet, "10000.00"),  # FAILED: far more than it holds
        ):
            moved.append((await move)["transaction"])
    entries = list(reversed(await every_entry(api, wallet, 100)))
    return Story(wallet, other, moved, entries)


async def test_entries_come_one_per_completed_movement_signed_newest_first_page_by_page(
    api: Api, story: Story
) -> None:
    completed = [t for t in story.moved if t["status"] == "COMPLETED"]
    assert len(story.moved) - len(completed) == 3

    for page_size in (1, 4, 100):
        assert await every_entry(api, story.wallet, page_size) == story.entries[::-1]
    # The wallet's opening deposit, then each COMPLETED movement; a FAILED one has none.
    assert [e["transaction"]["id"] for e in story.entries[1:]] == [t["id"] for t in completed]
    signed = [
        f"-{t['amount']}" if (t["senderWallet"] or {}).get("id") == story.wallet else t["amount"]
        for t in completed
    ]
    assert [e["amount"] for e in story.entries[1:]] == signed
    assert sorted(set(signed)) == ["-3.10", "-7.00", "10.00", "2.55"]
    assert story.entries[0]["amount"] == "100.00"
    running = Decimal(0)
    for entry in story.entries:
        running += Decimal(entry["amount"])
        assert Decimal(entry["balanceAfter"]) == running
    assert story.entries[-1]["balanceAfter"] == await api.balance(story.wallet)


async def test_entries_of_a_period_are_those_since_it_starts_and_before_it_ends(
    api: Api, story: Story
) -> None:
    since = story.entries[3]["createdAt"]
    until = story.entries[9]["createdAt"]

    found = await every_entry(api, story.wallet, 2, since=since, until=until)

    assert found == story.entries[3:9][::-1]


async def test_the_balance_at_an_entrys_time_includes_it_and_before_the_first_is_zero(
    api: Api, story: Story
) -> None:
    async def balance_at(instant: str) -> str:
        found = (await api.data(BALANCE_AT, id=story.wallet, time=instant))["wallet"]
        return str(found["balanceAt"])

    first = story.entries[0]["createdAt"]
    assert await balance_at(earlier(first)) == "0.00"
    assert await balance_at("2000-01-01T00:00:00+00:00") == "0.00"
    for before, entry in zip(story.entries, story.entries[1:], strict=False):
        assert await balance_at(entry["createdAt"]) == entry["balanceAfter"]
        assert await balance_at(earlier(entry["createdAt"])) == before["balanceAfter"]


async def test_many_balances_in_one_document_are_each_the_balance_at_their_instant(
    api: Api, story: Story
) -> None:
    # Aliases resolved together: the loader sends them as one batch.
    picked = story.entries[:: max(1, len(story.entries) // 10)]
    fields = " ".join(f'at{n}: balanceAt(time: "{e["createdAt"]}")' for n, e in enumerate(picked))
    found = (await api.data(f'query {{ wallet(id: "{story.wallet}") {{ {fields} }} }}'))["wallet"]

    assert [found[f"at{n}"] for n in range(len(picked))] == [e["balanceAfter"] for e in picked]


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


# (first, last): from the first entry's time (a microsecond before when both are the same) to
# the last's, or to a far future when None.
@pytest.mark.parametrize(("first", "last"), [(0, None), (1, None), (2, 9), (5, 6), (7, 7)])
async def test_a_statement_opens_and_closes_at_the_balances_just_before_its_ends(
    api: Api, story: Story, first: int, last: int | None
) -> None:
    entries = story.entries
    since = earlier(entries[first]["createdAt"]) if first == last else entries[first]["createdAt"]
    until = "2999-01-01T00:00:00+00:00" if last is None else entries[last]["createdAt"]
    last = len(entries) if last is None else last

    statement = (await api.data(STATEMENT, id=story.wallet, since=since, until=until))["wallet"][
        "statement"
    ]

    inside = [
        Decimal(e["amount"])
        for e in entries
        if instant(since) <= instant(e["createdAt"]) < instant(until)
    ]
    opening = entries[first - 1]["balanceAfter"] if first > 0 else "0.00"
    closing = entries[last - 1]["balanceAfter"] if last > 0 else "0.00"
    assert statement == {
        "since": since,
        "until": until,
        "openingBalance": opening,
        "closingBalance": closing,
        "totalCredits": str(sum((d for d in inside if d > 0), Decimal("0.00"))),
        "totalDebits": str(-sum((d for d in inside if d < 0), Decimal("0.00"))),
        "entryCount": len(inside),
    }
    at_until = (await api.data(BALANCE_AT, id=story.wallet, time=earlier(until)))["wallet"]
    assert statement["closingBalance"] == at_until["balanceAt"]


@pytest.mark.parametrize("shift", [timedelta(0), -MICROSECOND, -timedelta(days=1)])
async def test_a_statement_that_ends_where_or_before_it_starts_is_invalid_input(
    api: Api, story: Story, shift: timedelta
) -> None:
    since = story.entries[2]["createdAt"]
    until = (datetime.fromisoformat(since) + shift).isoformat()

    (error,) = await api.graphql_errors(STATEMENT, id=story.wallet, since=since, until=until)

    assert error["extensions"] == {"code": "INVALID_INPUT", "field": ["until"]}
    assert error["path"] == ["wallet", "statement"]


@pytest.mark.parametrize("instant", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
async def test_an_instant_outside_the_utc_calendar_is_invalid_input_not_internal(
    api: Api, story: Story, instant: str
) -> None:
    (error,) = await api.graphql_errors(BALANCE_AT, id=story.wallet, time=instant)

    assert error["extensions"]["code"] == "INVALID_INPUT", error
    assert "years 1 to 9999" in error["message"]


@pytest.mark.parametrize("cursor", ["nonsense", "transaction"])
async def test_a_cursor_that_is_not_an_entrys_is_invalid_cursor(
    api: Api, story: Story, cursor: str
) -> None:
    if cursor == "transaction":
        # A cursor of the wallet's transactions, not of its entries.
        page = await api.history_page(story.wallet, first=1)
        cursor = page["pageInfo"]["endCursor"]

    (error,) = await api.graphql_errors(ENTRIES, id=story.wallet, first=2, after=cursor)

    assert error["extensions"] == {"code": "INVALID_CURSOR"}
    assert error["path"] == ["wallet", "entries"]


async def test_a_page_asked_larger_than_100_holds_100(api: Api) -> None:
    wallet = await api.new_wallet("1.00")
    await asyncio.gather(*(api.deposit(wallet, "0.01") for _ in range(100)))

    page = await entries_page(api, wallet, first=500)

    assert len(page["edges"]) == 100
    assert page["pageInfo"]["hasNextPage"] is True


async def test_an_outsider_sees_no_wallet_so_no_balance_entries_or_statement(
    api: Api, story: Story
) -> None:
    outsider = api.as_caller(tokens.caller("outsider"), ())
    instant = story.entries[-1]["createdAt"]

    for query, variables in [
        (BALANCE_AT, {"time": instant}),
        (ENTRIES, {}),
        (STATEMENT, {"since": story.entries[0]["createdAt"], "until": instant}),
    ]:
        assert await outsider.data(query, id=story.wallet, **variables) == {"wallet": None}


async def test_a_receivers_owner_reads_its_entry_and_the_transfer_but_not_the_senders_wallet(
    api: Api,
) -> None:
    receiver = api.as_caller(tokens.caller("receiver"), ())
    wallet = await receiver.new_wallet()
    sender = await api.new_wallet("5.00")
    sent = (await api.transfer(sender, wallet, "1.50"))["transaction"]

    (entry,) = await every_entry(receiver, wallet, 20)
    document = """
    query T($id: ID!) { transaction(id: $id) { senderWallet { id } receiverWallet { id } } }"""
    seen = (await receiver.data(document, id=sent["id"]))["transaction"]

    assert entry["amount"] == entry["balanceAfter"] == "1.50"
    assert entry["transaction"]["id"] == sent["id"]
    assert seen == {"senderWallet": None, "receiverWallet": {"id": wallet}}


async def test_a_transaction_never_reversed_has_no_reversals_and_reversed_nothing(
    api: Api, story: Story
) -> None:
    document = """
    query T($id: ID!) {
      transaction(id: $id) { description reversalOf { id } reversals { id } reversedAmount }
    }"""
    for transaction in story.moved[:5]:
        found = (await api.data(document, id=transaction["id"]))["transaction"]
        assert found == {
            "description": None,
            "reversalOf": None,
            "reversals": [],
            "reversedAmount": "0.00",
        }
