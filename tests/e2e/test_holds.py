"""Holds (issue 15, tests/contract/holds.graphql), black-box over HTTP: placeHold reserves money,
availableBalance = balance - what ACTIVE holds reserve, a hold ends exactly once (CAPTURED,
VOIDED or EXPIRED), and only its wallet's owner, its receiver wallet's owner and admins ever
meet it.

Most tests speak to the run's `wallet serve`, which settles withdrawals and transfers inline and
has no worker. The three that need a worker (expiry, settling after a hold) start an API and a
worker of their own, on the test's Redis prefix so that the API's cache hears what the worker
does; the worker shares the run's database, and releases every due hold in it."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests import tokens
from tests.client import ERRORS, TRANSACTION, Api, Subscriber, every_page, key
from tests.processes import api_server, worker
from tests.waits import eventually

HOLD = """
  id status walletId receiverWalletId amount capturedAmount currency clientTransactionId
  description expiresAt createdAt closedAt
  capture { id type status amount }
  wallet { id }
  receiverWallet { id }
"""
PLACE_HOLD = f"""
mutation PlaceHold($input: PlaceHoldInput!) {{
  placeHold(input: $input) {{ hold {{ {HOLD} }} {ERRORS} }}
}}"""
CAPTURE_HOLD = f"""
mutation CaptureHold($input: CaptureHoldInput!) {{
  captureHold(input: $input) {{ transaction {{ {TRANSACTION} hold {{ id }} }} {ERRORS} }}
}}"""
VOID_HOLD = f"""
mutation VoidHold($input: VoidHoldInput!) {{
  voidHold(input: $input) {{ hold {{ {HOLD} }} {ERRORS} }}
}}"""
GET_HOLD = f"query Hold($id: ID!) {{ hold(id: $id) {{ {HOLD} }} }}"
GET_CAPTURE = (
    f"query Capture($id: ID!) {{ transaction(id: $id) {{ {TRANSACTION} hold {{ id }} }} }}"
)
BALANCES = "query Balances($id: ID!) { wallet(id: $id) { balance availableBalance heldBalance } }"
HOLDS = """
query Holds($id: ID!, $first: Int, $after: String, $statuses: [HoldStatus!]) {
  wallet(id: $id) {
    holds(first: $first, after: $after, statuses: $statuses) {
      edges { cursor node { id status amount createdAt } }
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    }
  }
}"""
# Subscriber sends no variables: the id is written into the document.
ACTIVITY = 'subscription { walletActivity(walletId: "%s") { id type status amount } }'
UPDATED = 'subscription { transactionUpdated(id: "%s") { id type status amount } }'

MAX_EXPIRY = 2_592_000  # 30 days, the contract's longest hold
# How far the server's clock may seem from ours, across a request (same machine).
CLOCK_SLACK = timedelta(seconds=2)


class Holds:
    """The hold mutations and reads of the contract, asked by one caller (the Api's)."""

    def __init__(self, api: Api) -> None:
        self.api = api

    async def place(
        self,
        wallet: str,
        amount: str,
        /,
        receiver: str | None = None,
        client_key: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """The placeHold payload; `fields` adds to (or replaces, even `amount`) the input's
        fields."""
        given: dict[str, Any] = {
            "walletId": wallet,
            "amount": amount,
            "clientTransactionId": client_key or key(),
        }
        if receiver is not None:
            given["receiverWalletId"] = receiver
        payload: dict[str, Any] = (await self.api.data(PLACE_HOLD, input={**given, **fields}))[
            "placeHold"
        ]
        return payload

    async def placed(
        self, wallet: str, amount: str, /, receiver: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        """The hold of a placeHold that must be accepted."""
        payload = await self.place(wallet, amount, receiver, **fields)
        assert payload["errors"] == [], payload
        hold: dict[str, Any] = payload["hold"]
        assert hold["status"] == "ACTIVE", hold
        return hold

    async def capture(
        self, hold_id: str, amount: str | None = None, client_key: str | None = None
    ) -> dict[str, Any]:
        """The captureHold payload (the whole hold when `amount` is None)."""
        given: dict[str, Any] = {"holdId": hold_id, "clientTransactionId": client_key or key()}
        if amount is not None:
            given["amount"] = amount
        payload: dict[str, Any] = (await self.api.data(CAPTURE_HOLD, input=given))["captureHold"]
        return payload

    async def captured(self, hold_id: str, amount: str | None = None) -> dict[str, Any]:
        """The transaction of a capture that must be accepted."""
        payload = await self.capture(hold_id, amount)
        assert payload["errors"] == [], payload
        transaction: dict[str, Any] = payload["transaction"]
        return transaction

    async def void(self, hold_id: str, client_key: str | None = None) -> dict[str, Any]:
        """The voidHold payload."""
        given = {"holdId": hold_id, "clientTransactionId": client_key or key()}
        payload: dict[str, Any] = (await self.api.data(VOID_HOLD, input=given))["voidHold"]
        return payload

    async def hold(self, hold_id: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = (await self.api.data(GET_HOLD, id=hold_id))["hold"]
        return found

    async def status(self, hold_id: str) -> str:
        hold = await self.hold(hold_id)
        assert hold is not None, hold_id
        return str(hold["status"])

    async def balances(self, wallet: str) -> tuple[str, str, str]:
        """(balance, availableBalance, heldBalance) of a wallet the caller sees."""
        found = (await self.api.data(BALANCES, id=wallet))["wallet"]
        assert found is not None, wallet
        return found["balance"], found["availableBalance"], found["heldBalance"]

    async def page(self, wallet: str, **arguments: Any) -> dict[str, Any]:
        """One page of the wallet's holds (first, after, statuses)."""
        # An argument left out takes its default; one sent as null would not.
        sent = {name: value for name, value in arguments.items() if value is not None}
        found = (await self.api.data(HOLDS, id=wallet, **sent))["wallet"]
        assert found is not None, wallet
        return found["holds"]  # type: ignore[no-any-return]

    async def every(
        self, wallet: str, page_size: int, statuses: list[str] | None = None
    ) -> list[dict[str, Any]]:
        """Every hold of the wallet, read page by page with cursors."""

        async def page(after: str | None) -> dict[str, Any]:
            return await self.page(wallet, first=page_size, after=after, statuses=statuses)

        return await every_page(page, page_size)


@pytest.fixture
def holds(api: Api) -> Holds:
    """The holds of the run's tester, who owns (and funds) the wallets it creates."""
    return Holds(api)


def _instant(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    assert moment.tzinfo is not None, f"{value} has no UTC offset"
    return moment


def _codes(payload: dict[str, Any]) -> list[str]:
    return [error["code"] for error in payload["errors"]]


# -- placing a hold ------------------------------------------------------------------------


async def test_a_hold_reserves_its_amount_without_touching_the_balance(
    api: Api, holds: Holds
) -> None:
    wallet = await api.new_wallet("10.00")
    receiver = await api.new_wallet()
    client_key = key()
    before = datetime.now(UTC)

    payload = await holds.place(
        wallet, "4.25", receiver, client_key, expiresInSeconds=3600, description="a ride's fare"
    )

    after = datetime.now(UTC)
    assert payload["errors"] == []
    hold = payload["hold"]
    assert (hold["status"], hold["amount"], hold["currency"]) == ("ACTIVE", "4.25", "USD")
    assert (hold["walletId"], hold["receiverWalletId"]) == (wallet, receiver)
    assert (hold["wallet"], hold["receiverWallet"]) == ({"id": wallet}, {"id": receiver})
    assert (hold["clientTransactionId"], hold["description"]) == (client_key, "a ride's fare")
    assert (hold["capturedAmount"], hold["capture"], hold["closedAt"]) == ("0.00", None, None)
    created, expires = _instant(hold["createdAt"]), _instant(hold["expiresAt"])
    assert before - CLOCK_SLACK <= created <= after + CLOCK_SLACK
    assert abs(expires - created - timedelta(seconds=3600)) <= CLOCK_SLACK
    uuid.UUID(hold["id"])
    assert await holds.balances(wallet) == ("10.00", "5.75", "4.25")
    assert await holds.balances(receiver) == ("0.00", "0.00", "0.00")
    assert await holds.hold(hold["id"]) == hold
    assert len(await api.history(wallet, page_size=10)) == 1, "a hold is no transaction"


async def test_a_hold_expires_in_seven_days_by_default_and_may_have_no_receiver(
    api: Api, holds: Holds
) -> None:
    wallet = await api.new_wallet("1.00")

    hold = await holds.placed(wallet, "1")

    assert (hold["amount"], hold["receiverWalletId"], hold["receiverWallet"]) == (
        "1.00",
        None,
        None,
    )
    assert hold["description"] is None
    lasts = _instant(hold["expiresAt"]) - _instant(hold["createdAt"])
    assert abs(lasts - timedelta(days=7)) <= CLOCK_SLACK
    assert await holds.balances(wallet) == ("1.00", "0.00", "1.00")


async def test_a_hold_past_the_available_balance_is_refused_and_records_nothing(
    api: Api, holds: Holds
) -> None:
    wallet = await api.new_wallet("10.00")

    refused = await holds.place(wallet, "10.01")

    assert refused["hold"] is None
    assert _codes(refused) == ["INSUFFICIENT_FUNDS"]
    assert refused["errors"][0]["message"]
    assert (await holds.page(wallet))["edges"] == []
    assert await holds.balances(wallet) == ("10.00", "10.00", "0.00")


async def test_a_refused_hold_leaves_no_trace_so_its_key_may_place_it_once_money_is_there(
    api: Api, holds: Holds
) -> None:
    """A rejected hold must not come back to life (Blnk's users met one that could still be
    committed): nothing of it is kept, not even its key."""
    wallet = await api.new_wallet("5.00")
    client_key = key()
    refused = await holds.place(wallet, "5.01", client_key=client_key)
    assert _codes(refused) == ["INSUFFICIENT_FUNDS"]
    await api.deposit(wallet, "0.01")

    payload = await holds.place(wallet, "5.01", client_key=client_key)

    assert payload["errors"] == []
    assert (payload["hold"]["status"], payload["hold"]["amount"]) == ("ACTIVE", "5.01")
    assert await holds.balances(wallet) == ("5.01", "0.00", "5.01")
    assert [h["id"] for h in await holds.every(wallet, 10)] == [payload["hold"]["id"]]


async def test_holds_are_measured_against_what_earlier_holds_left_available(
    api: Api, holds: Holds
) -> None:
    wallet = await api.new_wallet("10.00")
    first = await holds.placed(wallet, "6.00")

    second = await holds.placed(wallet, "4.00")  # exactly what is left
    third = await holds.place(wallet, "0.01")

    assert third["hold"] is None
    assert _codes(third) == ["INSUFFICIENT_FUNDS"]
    assert await holds.balances(wallet) == ("10.00", "0.00", "10.00")
    assert [h["id"] for h in await holds.every(wallet, 10)] == [second["id"], first["id"]]


async def test_holds_placed_at_once_never_reserve_more_than_the_balance(
    api: Api, holds: Holds
) -> None:
    wallet = await api.new_wallet("10.00")

    payloads = await asyncio.gather(*(holds.place(wallet, "1.00") for _ in range(15)))

    placed = [p for p in payloads if p["errors"] == []]
    refused = [p for p in payloads if p["errors"] != []]
    assert len(placed) == 10
    assert {code for p in refused for code in _codes(p)} == {"INSUFFICIENT_FUNDS"}
    assert all(p["hold"] is None for p in refused)
    assert await holds.balances(wallet) == ("10.00", "0.00", "10.00")
    assert len(await holds.every(wallet, 100)) == 10


async def test_a_hold_in_yen_counts_in_whole_yen(api: Api, holds: Holds) -> None:
    yen = await api.new_wallet("1000", "JPY")

    hold = await holds.placed(yen, "300")
    refused = await holds.place(yen, "0.5")

    assert (hold["amount"], hold["currency"], hold["capturedAmount"]) == ("300", "JPY", "0")
    assert _codes(refused) == ["INVALID_AMOUNT"]
    assert await holds.balances(yen) == ("1000", "700", "300")


# -- withdrawals and transfers meet the available balance ----------------------------------


async def test_a_withdrawal_of_the_whole_balance_under_a_hold_fails_and_moves_nothing(
    api: Api, holds: Holds
) -> None:
    wallet = await api.new_wallet("10.00")
    hold = await holds.placed(wallet, "4.00")

    payload = await api.withdraw(wallet, "10.00")

    assert payload["errors"] == [], "it was accepted, then failed"
    t = payload["transaction"]
    assert (t["type"], t["status"], t["failureCode"]) == (
        "WITHDRAWAL",
        "FAILED",
        "INSUFFICIENT_FUNDS",
    )
    assert await holds.balances(wallet) == ("10.00", "6.00", "4.00")
    assert await holds.status(hold["id"]) == "ACTIVE"
    # What is available may still go.
    fits = (await api.withdraw(wallet, "6.00"))["transaction"]
    assert fits["status"] == "COMPLETED"
    assert await holds.balances(wallet) == ("4.00", "0.00", "4.00")


async def test_a_transfer_of_the_whole_balance_under_a_hold_fails_and_moves_nothing(
    api: Api, holds: Holds
) -> None:
    wallet = await api.new_wallet("10.00")
    other = await api.new_wallet()
    await holds.placed(wallet, "0.01")

    t = (await api.transfer(wallet, other, "10.00"))["transaction"]

    assert (t["type"], t["status"], t["failureCode"]) == (
        "TRANSFER",
        "FAILED",
        "INSUFFICIENT_FUNDS",
    )
    assert await holds.balances(wallet) == ("10.00", "9.99", "0.01")
    assert await holds.balances(other) == ("0.00", "0.00", "0.00")
    fits = (await api.transfer(wallet, other, "9.99"))["transaction"]
    assert fits["status"] == "COMPLETED"
    assert await holds.balances(wallet) == ("0.01", "0.00", "0.01")
    assert await holds.balances(other) == ("9.99", "9.99", "0.00")


# -- capturing -----------------------------------------------------------------------------


async def test_capturing_a_hold_transfers_it_to_its_receiver_at_once(
    api: Api, holds: Holds
) -> None:
    sender = await api.new_wallet("10.00")
    receiver = await api.new_wallet("1.00")
    hold = await holds.placed(sender, "4.00", receiver)
    client_key = key()

    payload = await holds.capture(hold["id"], client_key=client_key)

    assert payload["errors"] == []
    t = payload["transaction"]
    assert (t["type"], t["status"], t["amount"], t["currency"]) == (
        "TRANSFER",
        "COMPLETED",
        "4.00",
        "USD",
    )
    assert (t["senderWallet"]["id"], t["receiverWallet"]["id"]) == (sender, receiver)
    assert (t["clientTransactionId"], t["failureCode"], t["completedAt"] is None) == (
        client_key,
        None,
        False,
    )
    assert t["hold"] == {"id": hold["id"]}
    assert await holds.balances(sender) == ("6.00", "6.00", "0.00")
    assert await holds.balances(receiver) == ("5.00", "5.00", "0.00")
    now = await holds.hold(hold["id"])
    assert now is not None
    assert (now["status"], now["amount"], now["capturedAmount"]) == ("CAPTURED", "4.00", "4.00")
    assert now["capture"] == {
        "id": t["id"],
        "type": "TRANSFER",
        "status": "COMPLETED",
        "amount": "4.00",
    }
    assert _instant(now["closedAt"]) >= _instant(now["createdAt"])
    assert (await api.data(GET_CAPTURE, id=t["id"]))["transaction"] == t
    assert (await api.history(sender, page_size=10))[0]["id"] == t["id"]
    assert (await api.history(receiver, page_size=10))[0]["id"] == t["id"]


async def test_capturing_a_hold_without_receiver_withdraws_it_at_once(
    api: Api, holds: Holds
) -> None:
    wallet = await api.new_wallet("10.00")
    hold = await holds.placed(wallet, "3.30")

    t = await holds.captured(hold["id"])

    assert (t["type"], t["status"], t["amount"]) == ("WITHDRAWAL", "COMPLETED", "3.30")
    assert (t["senderWallet"]["id"], t["receiverWallet"]) == (wallet, None)
    assert t["hold"] == {"id": hold["id"]}
    assert await holds.balances(wallet) == ("6.70", "6.70", "0.00")
    now = await holds.hold(hold["id"])
    assert now is not None
    assert (now["status"], now["capturedAmount"], now["capture"]["id"]) == (
        "CAPTURED",
        "3.30",
        t["id"],
    )


async def test_a_transaction_that_captured_no_hold_has_none(api: Api) -> None:
    wallet = await api.new_wallet("1.00")
    t = (await api.deposit(wallet, "1.00"))["transaction"]

    found = (await api.data(GET_CAPTURE, id=t["id"]))["transaction"]

    assert found["hold"] is None


async def test_a_partial_capture_moves_what_it_names_and_releases_the_rest(
    api: Api, holds: Holds
) -> None:
    sender = await api.new_wallet("10.00")
    receiver = await api.new_wallet()
    hold = await holds.placed(sender, "6.00", receiver)
    other = await holds.placed(sender, "1.00")

    t = await holds.captured(hold["id"], "2.50")

    assert (t["status"], t["amount"]) == ("COMPLETED", "2.50")
    # Only the other hold still reserves anything: the 3.50 not captured is free again.
    assert await holds.balances(sender) == ("7.50", "6.50", "1.00")
    assert await holds.balances(receiver) == ("2.50", "2.50", "0.00")
    now = await holds.hold(hold["id"])
    assert now is not None
    assert (now["status"], now["amount"], now["capturedAmount"]) == ("CAPTURED", "6.00", "2.50")
    assert await holds.status(other["id"]) == "ACTIVE"


async def test_capturing_more_than_a_hold_holds_is_refused_and_moves_nothing(
    api: Api, holds: Holds
) -> None:
    wallet = await api.new_wallet("10.00")
    hold = await holds.placed(wallet, "6.00")
    client_key = key()

    refused = await holds.capture(hold["id"], "6.01", client_key)

    assert refused["transaction"] is None
    assert _codes(refused) == ["CAPTURE_EXCEEDS_HOLD"]
    assert await holds.status(hold["id"]) == "ACTIVE"
    assert await holds.balances(wallet) == ("10.00", "4.00", "6.00")
    assert len(await api.history(wallet, page_size=10)) == 1
    # Even though the wallet holds more, a capture never takes more than its hold; and the
    # refused request kept nothing, not even its key.
    payload = await holds.capture(hold["id"], "6.00", client_key)
    assert (payload["errors"], payload["transaction"]["amount"]) == ([], "6.00")
    assert await holds.balances(wallet) == ("4.00", "4.00", "0.00")


@pytest.mark.parametrize("amount", ["0", "-1.00", "1.001"])
async def test_a_capture_of_an_amount_that_is_no_amount_is_invalid_amount(
    api: Api, holds: Holds, amount: str
) -> None:
    wallet = await api.new_wallet("10.00")
    hold = await holds.placed(wallet, "5.00")

    refused = await holds.capture(hold["id"], amount)

    assert refused["transaction"] is None
    assert [(e["code"], e["field"]) for e in refused["errors"]] == [
        ("INVALID_AMOUNT", ["input", "amount"])
    ]
    assert await holds.status(hold["id"]) == "ACTIVE"
    assert await holds.balances(wallet) == ("10.00", "5.00", "5.00")


# -- voiding -------------------------------------------------------------------------------


async def test_voiding_a_hold_releases_all_of_it_and_moves_nothing(api: Api, holds: Holds) -> None:
    wallet = await api.new_wallet("10.00")
    receiver = await api.new_wallet()
    hold = await holds.placed(wallet, "7.00", receiver)
    assert await holds.balances(wallet) == ("10.00", "3.00", "7.00")

    payload = await holds.void(hold["id"])

    assert payload["errors"] == []
    voided = payload["hold"]
    assert (voided["id"], voided["status"], voided["capturedAmount"], voided["capture"]) == (
        hold["id"],
        "VOIDED",
        "0.00",
        None,
    )
    assert _instant(voided["closedAt"]) >= _instant(voided["createdAt"])
    assert await holds.balances(wallet) == ("10.00", "10.00", "0.00")
    assert await holds.balances(receiver) == ("0.00", "0.00", "0.00")
    assert len(await api.history(wallet, page_size=10)) == 1
    assert await holds.hold(hold["id"]) == voided


# -- a hold ends exactly once --------------------------------------------------------------


async def test_a_captured_hold_can_be_neither_captured_nor_voided_again(
    api: Api, holds: Holds
) -> None:
    wallet = await api.new_wallet("10.00")
    hold = await holds.placed(wallet, "5.00")
    await holds.captured(hold["id"], "1.00")

    again = await holds.capture(hold["id"], "1.00")
    void = await holds.void(hold["id"])

    assert (again["transaction"], _codes(again)) == (None, ["HOLD_NOT_ACTIVE"])
    assert (void["hold"], _codes(void)) == (None, ["HOLD_NOT_ACTIVE"])
    assert await holds.status(hold["id"]) == "CAPTURED"
    assert await holds.balances(wallet) == ("9.00", "9.00", "0.00")


async def test_a_voided_hold_can_be_neither_captured_nor_voided_again(
    api: Api, holds: Holds
) -> None:
    wallet = await api.new_wallet("10.00")
    hold = await holds.placed(wallet, "5.00")
    assert (await holds.void(hold["id"]))["errors"] == []

    capture = await holds.capture(hold["id"])
    again = await holds.void(hold["id"])

    assert (capture["transaction"], _codes(capture)) == (None, ["HOLD_NOT_ACTIVE"])
    assert (again["hold"], _codes(again)) == (None, ["HOLD_NOT_ACTIVE"])
    assert await holds.status(hold["id"]) == "VOIDED"
    assert await holds.balances(wallet) == ("10.00", "10.00", "0.00")
    assert len(await api.history(wallet, page_size=10)) == 1


async def test_past_expires_at_a_hold_can_be_neither_captured_nor_voided_even_unreleased(
    api: Api, holds: Holds
) -> None:
    """The run's API has no worker: nothing releases the holds, yet their time is up. What was
    done before then still replays."""
    sender = await api.new_wallet("10.00")
    receiver = await api.new_wallet()
    late = await holds.placed(sender, "4.00", receiver, expiresInSeconds=1)
    in_time = await holds.placed(sender, "1.00", receiver, expiresInSeconds=1)
    capture_key, void_key = key(), key()
    voided = await holds.placed(sender, "2.00", receiver, expiresInSeconds=1)
    captured = await holds.capture(in_time["id"], client_key=capture_key)
    assert (await holds.void(voided["id"], void_key))["errors"] == []

    await asyncio.sleep(1.2)
    capture = await holds.capture(late["id"])
    void = await holds.void(late["id"])
    captured_again = await holds.capture(in_time["id"], client_key=capture_key)
    voided_again = await holds.void(voided["id"], void_key)

    assert (capture["transaction"], _codes(capture)) == (None, ["HOLD_NOT_ACTIVE"])
    assert (void["hold"], _codes(void)) == (None, ["HOLD_NOT_ACTIVE"])
    assert captured_again["errors"] == voided_again["errors"] == []
    assert captured_again["transaction"]["id"] == captured["transaction"]["id"]
    assert (voided_again["hold"]["id"], voided_again["hold"]["status"]) == (voided["id"], "VOIDED")
    balance, _, _ = await holds.balances(sender)
    assert balance == "9.00"
    assert await holds.balances(receiver) == ("1.00", "1.00", "0.00")
    assert len(await api.history(sender, page_size=10)) == 2
    assert await holds.status(late["id"]) in ("ACTIVE", "EXPIRED"), "never CAPTURED or VOIDED"


async def test_a_capture_racing_a_void_of_one_hold_ends_it_once(api: Api, holds: Holds) -> None:
    pairs = [(await api.new_wallet("10.00"), await api.new_wallet()) for _ in range(5)]
    placed = [await holds.placed(sender, "4.00", receiver) for sender, receiver in pairs]

    raced = await asyncio.gather(
        *(holds.capture(h["id"]) for h in placed), *(holds.void(h["id"]) for h in placed)
    )

    for n, ((sender, receiver), hold) in enumerate(zip(pairs, placed, strict=True)):
        capture, void = raced[n], raced[n + len(placed)]
        outcomes = sorted([_codes(capture), _codes(void)])
        assert outcomes == [[], ["HOLD_NOT_ACTIVE"]], (capture, void)
        if capture["errors"] == []:
            assert await holds.status(hold["id"]) == "CAPTURED"
            assert await holds.balances(sender) == ("6.00", "6.00", "0.00")
            assert await holds.balances(receiver) == ("4.00", "4.00", "0.00")
        else:
            assert await holds.status(hold["id"]) == "VOIDED"
            assert await holds.balances(sender) == ("10.00", "10.00", "0.00")
            assert await holds.balances(receiver) == ("0.00", "0.00", "0.00")


async def test_two_captures_of_one_hold_at_once_move_money_once(api: Api, holds: Holds) -> None:
    sender = await api.new_wallet("10.00")
    receiver = await api.new_wallet()
    hold = await holds.placed(sender, "4.00", receiver)

    one, two = await asyncio.gather(
        holds.capture(hold["id"], "1.00"), holds.capture(hold["id"], "3.00")
    )

    assert sorted([_codes(one), _codes(two)]) == [[], ["HOLD_NOT_ACTIVE"]], (one, two)
    moved = (one if one["errors"] == [] else two)["transaction"]["amount"]
    now = await holds.hold(hold["id"])
    assert now is not None
    assert (now["status"], now["capturedAmount"]) == ("CAPTURED", moved)
    assert await holds.balances(receiver) == (moved, moved, "0.00")
    left = f"{10 - float(moved):.2f}"
    assert await holds.balances(sender) == (left, left, "0.00")


async def test_holds_withdrawals_and_transfers_at_once_never_take_more_than_is_there(
    api: Api, holds: Holds
) -> None:
    wallet = await api.new_wallet("10.00")
    receiver = await api.new_wallet()

    answers = await asyncio.gather(
        *(holds.place(wallet, "1.00", receiver) for _ in range(17)),
        *(api.withdraw(wallet, "1.00") for _ in range(17)),
        *(api.transfer(wallet, receiver, "1.00") for _ in range(16)),
    )

    placed = [a["hold"] for a in answers[:17] if a["errors"] == []]
    moved = [a["transaction"] for a in answers[17:]]
    assert {code for a in answers[:17] for code in _codes(a)} <= {"INSUFFICIENT_FUNDS"}
    assert {t["status"] for t in moved} <= {"COMPLETED", "FAILED"}
    assert {t["failureCode"] for t in moved if t["status"] == "FAILED"} <= {"INSUFFICIENT_FUNDS"}
    withdrawn = sum(t["status"] == "COMPLETED" for t in moved if t["type"] == "WITHDRAWAL")
    sent = sum(t["status"] == "COMPLETED" for t in moved if t["type"] == "TRANSFER")
    assert len(placed) + withdrawn + sent == 10, "each 1.00 taken once, and all of it taken"
    left = f"{10 - withdrawn - sent}.00"
    assert await holds.balances(wallet) == (left, "0.00", f"{len(placed)}.00")
    assert await holds.balances(receiver) == (f"{sent}.00", f"{sent}.00", "0.00")
    assert {h["id"] for h in await holds.every(wallet, 100, ["ACTIVE"])} == {
        h["id"] for h in placed
    }


async def test_a_hold_that_does_not_exist_is_hold_not_found_and_null(
    api: Api, holds: Holds
) -> None:
    missing = str(uuid.uuid4())

    capture = await holds.capture(missing)
    void = await holds.void(missing)

    assert (capture["transaction"], _codes(capture)) == (None, ["HOLD_NOT_FOUND"])
    assert (void["hold"], _codes(void)) == (None, ["HOLD_NOT_FOUND"])
    assert await holds.hold(missing) is None


async def test_a_malformed_hold_id_is_invalid_input_never_an_internal_error(
    api: Api, holds: Holds
) -> None:
    capture = await holds.capture("nope")
    void = await holds.void("nope")
    body = await api.answer(GET_HOLD, id="nope")

    for payload, name in ((capture, "transaction"), (void, "hold")):
        assert payload[name] is None
        assert [(e["code"], e["field"]) for e in payload["errors"]] == [
            ("INVALID_INPUT", ["input", "holdId"])
        ]
        assert payload["errors"][0]["message"] != "Internal error."
    assert body["data"] == {"hold": None}
    [error] = body["errors"]
    assert error["extensions"] == {"code": "INVALID_INPUT", "field": ["id"]}
    assert error["message"] != "Internal error."


# -- clientTransactionId -------------------------------------------------------------------


async def test_a_capture_sent_again_with_its_key_returns_it_and_moves_money_once(
    api: Api, holds: Holds
) -> None:
    sender = await api.new_wallet("10.00")
    receiver = await api.new_wallet()
    hold = await holds.placed(sender, "5.00", receiver)
    client_key = key()

    first = await holds.capture(hold["id"], "3.00", client_key)
    again = await holds.capture(hold["id"], "3.00", client_key)

    assert first["errors"] == again["errors"] == []
    assert again["transaction"]["id"] == first["transaction"]["id"]
    assert again["transaction"]["status"] == "COMPLETED"
    assert await holds.balances(sender) == ("7.00", "7.00", "0.00")
    assert await holds.balances(receiver) == ("3.00", "3.00", "0.00")


async def test_captures_sent_at_once_with_one_key_move_money_once(api: Api, holds: Holds) -> None:
    sender = await api.new_wallet("10.00")
    receiver = await api.new_wallet()
    hold = await holds.placed(sender, "5.00", receiver)
    client_key = key()

    payloads = await asyncio.gather(
        *(holds.capture(hold["id"], "2.00", client_key) for _ in range(8))
    )

    assert [p["errors"] for p in payloads] == [[]] * 8
    assert len({p["transaction"]["id"] for p in payloads}) == 1
    assert await holds.balances(sender) == ("8.00", "8.00", "0.00")
    assert await holds.balances(receiver) == ("2.00", "2.00", "0.00")


async def test_a_capture_key_sent_again_with_another_amount_is_refused(
    api: Api, holds: Holds
) -> None:
    wallet = await api.new_wallet("10.00")
    hold = await holds.placed(wallet, "5.00")
    client_key = key()
    await holds.capture(hold["id"], "3.00", client_key)

    refused = await holds.capture(hold["id"], "4.00", client_key)

    assert refused["transaction"] is None
    assert [(e["code"], e["field"]) for e in refused["errors"]] == [
        ("IDEMPOTENCY_KEY_REUSED", ["input", "clientTransactionId"])
    ]
    assert await holds.balances(wallet) == ("7.00", "7.00", "0.00")


async def test_a_void_sent_again_with_its_key_returns_the_voided_hold(
    api: Api, holds: Holds
) -> None:
    wallet = await api.new_wallet("10.00")
    hold = await holds.placed(wallet, "5.00")
    client_key = key()

    first = await holds.void(hold["id"], client_key)
    again = await holds.void(hold["id"], client_key)

    assert first["errors"] == again["errors"] == []
    assert again["hold"]["id"] == first["hold"]["id"] == hold["id"]
    assert again["hold"]["status"] == "VOIDED"
    assert again["hold"]["closedAt"] == first["hold"]["closedAt"]
    assert await holds.balances(wallet) == ("10.00", "10.00", "0.00")


async def test_a_void_key_sent_again_for_another_hold_is_refused(api: Api, holds: Holds) -> None:
    wallet = await api.new_wallet("10.00")
    voided = await holds.placed(wallet, "5.00")
    other = await holds.placed(wallet, "2.00")
    client_key = key()
    await holds.void(voided["id"], client_key)

    refused = await holds.void(other["id"], client_key)

    assert refused["hold"] is None
    assert [(e["code"], e["field"]) for e in refused["errors"]] == [
        ("IDEMPOTENCY_KEY_REUSED", ["input", "clientTransactionId"])
    ]
    assert await holds.status(other["id"]) == "ACTIVE"
    assert await holds.balances(wallet) == ("10.00", "8.00", "2.00")


async def test_a_hold_placed_again_with_its_key_is_the_same_hold_reserved_once(
    api: Api, holds: Holds
) -> None:
    wallet = await api.new_wallet("10.00")
    client_key = key()

    first = await holds.place(wallet, "4.00", client_key=client_key)
    again = await holds.place(wallet, "4.00", client_key=client_key)
    at_once = await asyncio.gather(
        *(holds.place(wallet, "4.00", client_key=client_key) for _ in range(5))
    )

    assert {p["hold"]["id"] for p in [first, again, *at_once]} == {first["hold"]["id"]}
    assert all(p["errors"] == [] for p in [first, again, *at_once])
    assert await holds.balances(wallet) == ("10.00", "6.00", "4.00")
    assert len(await holds.every(wallet, 10)) == 1


async def test_a_hold_placed_again_with_its_key_after_its_capture_is_that_captured_hold(
    api: Api, holds: Holds
) -> None:
    wallet = await api.new_wallet("10.00")
    client_key = key()
    hold = await holds.placed(wallet, "4.00", client_key=client_key)
    await holds.captured(hold["id"])

    again = await holds.place(wallet, "4.00", client_key=client_key)

    assert again["errors"] == []
    assert (again["hold"]["id"], again["hold"]["status"]) == (hold["id"], "CAPTURED")
    assert await holds.balances(wallet) == ("6.00", "6.00", "0.00")


async def test_two_callers_placing_holds_with_one_key_never_meet(api: Api, holds: Holds) -> None:
    mine = await api.new_wallet("10.00")
    admin = _admin(api)
    theirs = (await admin.api.create_wallet(initialBalance="10.00"))["wallet"]["id"]
    client_key = key()

    my_hold = await holds.placed(mine, "1.00", client_key=client_key)
    their_hold = await admin.placed(theirs, "2.00", client_key=client_key)

    assert my_hold["id"] != their_hold["id"]
    assert await holds.balances(mine) == ("10.00", "9.00", "1.00")
    assert await admin.balances(theirs) == ("10.00", "8.00", "2.00")


# What a second placeHold with the first one's key changes, given (its wallet, another).
CHANGES: dict[str, Any] = {
    "amount": lambda w, o: {"amount": "5.00"},
    "receiver": lambda w, o: {"receiverWalletId": o},
    "expiry": lambda w, o: {"expiresInSeconds": 60},
    "description": lambda w, o: {"description": "another"},
    "wallet": lambda w, o: {"walletId": o},
}


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
async def test_a_hold_key_sent_again_with_anything_changed_is_refused(
    api: Api, holds: Holds, change: Any
) -> None:
    wallet = await api.new_wallet("10.00")
    other = await api.new_wallet("10.00")
    client_key = key()
    await holds.placed(wallet, "4.00", client_key=client_key)

    refused = await holds.place(wallet, "4.00", client_key=client_key, **change(wallet, other))

    assert refused["hold"] is None
    assert [(e["code"], e["field"]) for e in refused["errors"]] == [
        ("IDEMPOTENCY_KEY_REUSED", ["input", "clientTransactionId"])
    ]
    assert await holds.balances(wallet) == ("10.00", "6.00", "4.00")
    assert await holds.balances(other) == ("10.00", "10.00", "0.00")


async def test_a_key_used_by_one_mutation_is_refused_by_another(api: Api, holds: Holds) -> None:
    """As for deposits, withdrawals and transfers: a key names one request, whichever it is."""
    wallet = await api.new_wallet("10.00")
    deposit_key, hold_key = key(), key()
    await api.deposit(wallet, "1.00", deposit_key)
    hold = await holds.placed(wallet, "4.00", client_key=hold_key)

    answers = [
        await holds.place(wallet, "1.00", client_key=deposit_key),
        await holds.capture(hold["id"], client_key=hold_key),
        await holds.void(hold["id"], hold_key),
        await api.withdraw(wallet, "1.00", hold_key),
    ]

    for answer in answers:
        assert _codes(answer) == ["IDEMPOTENCY_KEY_REUSED"], answer
    assert await holds.status(hold["id"]) == "ACTIVE"
    assert await holds.balances(wallet) == ("11.00", "7.00", "4.00")


# -- refused inputs ------------------------------------------------------------------------

# (input fields over the defaults, given (usd, other usd, eur), expected code, field at fault)
Refusal = tuple[Any, str, str]
REFUSALS: dict[str, Refusal] = {
    "amount of zero": (lambda u, o, e: {"amount": "0"}, "INVALID_AMOUNT", "amount"),
    "negative amount": (lambda u, o, e: {"amount": "-1.00"}, "INVALID_AMOUNT", "amount"),
    "amount with too many places": (
        lambda u, o, e: {"amount": "1.001"},
        "INVALID_AMOUNT",
        "amount",
    ),
    "expiry of zero seconds": (
        lambda u, o, e: {"expiresInSeconds": 0},
        "INVALID_INPUT",
        "expiresInSeconds",
    ),
    "negative expiry": (
        lambda u, o, e: {"expiresInSeconds": -60},
        "INVALID_INPUT",
        "expiresInSeconds",
    ),
    "expiry past 30 days": (
        lambda u, o, e: {"expiresInSeconds": MAX_EXPIRY + 1},
        "INVALID_INPUT",
        "expiresInSeconds",
    ),
    "description of 281 characters": (
        lambda u, o, e: {"description": "d" * 281},
        "INVALID_INPUT",
        "description",
    ),
    "receiver in another currency": (
        lambda u, o, e: {"receiverWalletId": e},
        "CURRENCY_MISMATCH",
        "receiverWalletId",
    ),
    "receiver that is the wallet itself": (
        lambda u, o, e: {"receiverWalletId": u},
        "SAME_WALLET",
        "receiverWalletId",
    ),
    "receiver that does not exist": (
        lambda u, o, e: {"receiverWalletId": str(uuid.uuid4())},
        "WALLET_NOT_FOUND",
        "receiverWalletId",
    ),
    "receiver id that is no UUID": (
        lambda u, o, e: {"receiverWalletId": "r-1"},
        "INVALID_INPUT",
        "receiverWalletId",
    ),
    "wallet that does not exist": (
        lambda u, o, e: {"walletId": str(uuid.uuid4())},
        "WALLET_NOT_FOUND",
        "walletId",
    ),
    "wallet id that is no UUID": (
        lambda u, o, e: {"walletId": "w-1"},
        "INVALID_INPUT",
        "walletId",
    ),
    "empty key": (
        lambda u, o, e: {"clientTransactionId": ""},
        "INVALID_INPUT",
        "clientTransactionId",
    ),
}


@pytest.mark.parametrize(("build", "code", "field"), REFUSALS.values(), ids=REFUSALS.keys())
async def test_a_refused_hold_names_the_input_at_fault_and_reserves_nothing(
    api: Api, holds: Holds, build: Any, code: str, field: str
) -> None:
    usd, other, eur = (
        await api.new_wallet("10.00"),
        await api.new_wallet("10.00"),
        await api.new_wallet("10.00", "EUR"),
    )

    payload = await holds.place(usd, "1.00", other, **build(usd, other, eur))

    assert payload["hold"] is None
    [error] = payload["errors"]
    assert (error["code"], error["field"]) == (code, ["input", field])
    assert error["message"]
    for wallet in (usd, other, eur):
        assert await holds.balances(wallet) == ("10.00", "10.00", "0.00")
        assert (await holds.page(wallet))["edges"] == []


@pytest.mark.parametrize("text", ["a\x00b", "\ud800", "a\udfffb"], ids=["nul", "lone", "pair"])
async def test_a_description_no_database_can_store_is_refused_never_an_internal_error(
    api: Api, holds: Holds, text: str
) -> None:
    wallet = await api.new_wallet("10.00")

    fields = {"walletId": wallet, "amount": "1.00", "clientTransactionId": key()}
    variables = {"input": {**fields, "description": text}}
    # json.dumps escapes a lone surrogate (\ud800), as a client's JSON may: httpx would not.
    body = await api.client.post(
        api.url,
        content=json.dumps({"query": PLACE_HOLD, "variables": variables}).encode(),
        headers={**tokens.header(api.token), "content-type": "application/json"},
    )

    assert body.status_code < 500, body.text
    assert "Internal error." not in body.text, body.text
    answer = body.json()
    payload = (answer.get("data") or {}).get("placeHold") or {}
    codes = [e["extensions"]["code"] for e in answer.get("errors", [])] + _codes(
        {"errors": payload.get("errors", [])}
    )
    assert codes == ["INVALID_INPUT"], answer
    assert payload.get("hold") is None
    assert await holds.balances(wallet) == ("10.00", "10.00", "0.00")
    assert (await holds.page(wallet))["edges"] == []


async def test_the_longest_expiry_and_description_the_contract_allows_are_accepted(
    api: Api, holds: Holds
) -> None:
    wallet = await api.new_wallet("10.00")

    hold = await holds.placed(wallet, "1.00", expiresInSeconds=MAX_EXPIRY, description="d" * 280)
    # Characters, not bytes: 280 of them, whatever their encoding takes.
    wide = await holds.placed(wallet, "1.00", description="\U0001f6d2" * 280)

    lasts = _instant(hold["expiresAt"]) - _instant(hold["createdAt"])
    assert abs(lasts - timedelta(seconds=MAX_EXPIRY)) <= CLOCK_SLACK
    assert hold["description"] == "d" * 280
    assert wide["description"] == "\U0001f6d2" * 280


# -- who may do what -----------------------------------------------------------------------


async def _shop(api: Api) -> tuple[Holds, str]:
    """Another caller (no scope) and the USD wallet it owns, to receive captures."""
    shop = Holds(api.as_caller(tokens.caller("shop"), ()))
    made = await shop.api.create_wallet(currency="USD")
    assert made["errors"] == [], made
    return shop, str(made["wallet"]["id"])


def _stranger(api: Api) -> Holds:
    return Holds(api.as_caller(tokens.caller("stranger"), ()))


def _admin(api: Api) -> Holds:
    return Holds(api.as_caller(tokens.caller("admin"), tokens.ADMIN))


async def test_nobody_but_its_owner_places_a_hold_on_a_wallet(api: Api, holds: Holds) -> None:
    wallet = await api.new_wallet("10.00")
    shop, shop_wallet = await _shop(api)

    for caller in (_stranger(api), shop):
        refused = await caller.place(wallet, "1.00", shop_wallet)

        assert refused["hold"] is None
        assert [(e["code"], e["field"]) for e in refused["errors"]] == [
            ("WALLET_NOT_FOUND", ["input", "walletId"])
        ]
    assert await holds.balances(wallet) == ("10.00", "10.00", "0.00")
    assert (await holds.page(wallet))["edges"] == []


async def test_to_a_stranger_a_hold_does_not_exist(api: Api, holds: Holds) -> None:
    wallet = await api.new_wallet("10.00")
    shop, shop_wallet = await _shop(api)
    hold = await holds.placed(wallet, "4.00", shop_wallet)
    stranger = _stranger(api)

    capture = await stranger.capture(hold["id"])
    void = await stranger.void(hold["id"])

    assert (capture["transaction"], _codes(capture)) == (None, ["HOLD_NOT_FOUND"])
    assert (void["hold"], _codes(void)) == (None, ["HOLD_NOT_FOUND"])
    assert await stranger.hold(hold["id"]) is None
    assert (await stranger.api.data(HOLDS, id=wallet))["wallet"] is None
    assert await holds.status(hold["id"]) == "ACTIVE"
    assert await holds.balances(wallet) == ("10.00", "6.00", "4.00")
    assert await shop.balances(shop_wallet) == ("0.00", "0.00", "0.00")


async def test_the_owner_sees_a_hold_whose_receiver_it_may_not_see_by_its_id_only(
    api: Api, holds: Holds
) -> None:
    wallet = await api.new_wallet("10.00")
    _, shop_wallet = await _shop(api)
    hold = await holds.placed(wallet, "4.00", shop_wallet)

    seen = await holds.hold(hold["id"])

    assert seen is not None
    assert (seen["wallet"], seen["walletId"]) == ({"id": wallet}, wallet)
    assert (seen["receiverWallet"], seen["receiverWalletId"]) == (None, shop_wallet)


async def test_the_receiver_s_owner_sees_a_hold_but_not_the_wallet_it_reserves_in(
    api: Api, holds: Holds
) -> None:
    wallet = await api.new_wallet("10.00")
    shop, shop_wallet = await _shop(api)
    hold = await holds.placed(wallet, "4.00", shop_wallet)

    seen = await shop.hold(hold["id"])

    assert seen is not None
    assert (seen["id"], seen["status"], seen["amount"]) == (hold["id"], "ACTIVE", "4.00")
    assert (seen["wallet"], seen["walletId"]) == (None, wallet)
    assert (seen["receiverWallet"], seen["receiverWalletId"]) == ({"id": shop_wallet}, shop_wallet)
    assert (await shop.api.data(HOLDS, id=wallet))["wallet"] is None


async def test_the_receiver_s_owner_may_capture_a_hold(api: Api, holds: Holds) -> None:
    wallet = await api.new_wallet("10.00")
    shop, shop_wallet = await _shop(api)
    hold = await holds.placed(wallet, "4.00", shop_wallet)

    t = await shop.captured(hold["id"], "3.00")

    assert (t["type"], t["status"], t["amount"]) == ("TRANSFER", "COMPLETED", "3.00")
    assert t["senderWallet"] is None, "the shop may not see the wallet paying it"
    assert t["receiverWallet"]["id"] == shop_wallet
    assert t["hold"] == {"id": hold["id"]}
    assert (await shop.api.data(GET_CAPTURE, id=t["id"]))["transaction"] == t
    assert await holds.balances(wallet) == ("7.00", "7.00", "0.00")
    assert await shop.balances(shop_wallet) == ("3.00", "3.00", "0.00")
    assert await holds.status(hold["id"]) == "CAPTURED"


async def test_the_receiver_s_owner_may_void_a_hold(api: Api, holds: Holds) -> None:
    wallet = await api.new_wallet("10.00")
    shop, shop_wallet = await _shop(api)
    hold = await holds.placed(wallet, "4.00", shop_wallet)

    payload = await shop.void(hold["id"])

    assert payload["errors"] == []
    assert (payload["hold"]["status"], payload["hold"]["wallet"]) == ("VOIDED", None)
    assert await holds.balances(wallet) == ("10.00", "10.00", "0.00")
    assert await shop.balances(shop_wallet) == ("0.00", "0.00", "0.00")


async def test_an_admin_sees_captures_and_voids_anyone_s_holds(api: Api, holds: Holds) -> None:
    wallet = await api.new_wallet("10.00")
    _, shop_wallet = await _shop(api)
    captured = await holds.placed(wallet, "4.00", shop_wallet)
    voided = await holds.placed(wallet, "2.00")
    admin = _admin(api)

    seen = await admin.hold(captured["id"])
    t = await admin.captured(captured["id"])
    void = await admin.void(voided["id"])

    assert seen is not None
    assert (seen["wallet"], seen["receiverWallet"]) == ({"id": wallet}, {"id": shop_wallet})
    assert (t["status"], t["amount"], t["receiverWallet"]["id"]) == (
        "COMPLETED",
        "4.00",
        shop_wallet,
    )
    assert (void["errors"], void["hold"]["status"]) == ([], "VOIDED")
    assert await holds.balances(wallet) == ("6.00", "6.00", "0.00")
    assert [h["id"] for h in await admin.every(wallet, 10)] == [voided["id"], captured["id"]]


# -- Wallet.holds --------------------------------------------------------------------------


async def test_wallet_holds_pages_newest_first_with_cursors_and_keeps_the_statuses_asked_for(
    api: Api, holds: Holds
) -> None:
    wallet = await api.new_wallet("100.00")
    placed = [await holds.placed(wallet, f"{n}.00") for n in range(1, 8)]  # one at a time
    await holds.captured(placed[1]["id"])
    await holds.void(placed[4]["id"])
    newest_first = [h["id"] for h in reversed(placed)]
    status = {h["id"]: "ACTIVE" for h in placed}
    status[placed[1]["id"]], status[placed[4]["id"]] = "CAPTURED", "VOIDED"

    for size in (1, 3, 7, 20):
        nodes = await holds.every(wallet, size)
        assert [n["id"] for n in nodes] == newest_first
        assert [n["status"] for n in nodes] == [status[i] for i in newest_first]
        created = [_instant(n["createdAt"]) for n in nodes]
        assert created == sorted(created, reverse=True)
    active = await holds.every(wallet, 2, ["ACTIVE"])
    closed = await holds.every(wallet, 2, ["CAPTURED", "VOIDED"])

    assert [n["id"] for n in active] == [i for i in newest_first if status[i] == "ACTIVE"]
    assert [n["id"] for n in closed] == [placed[4]["id"], placed[1]["id"]]
    first = await holds.page(wallet, first=3)
    assert first["pageInfo"]["hasNextPage"] is True
    rest = await holds.page(wallet, first=3, after=first["pageInfo"]["endCursor"])
    assert [e["node"]["id"] for e in rest["edges"]] == newest_first[3:6]
    default = await holds.page(wallet)
    assert [e["node"]["id"] for e in default["edges"]] == newest_first
    assert default["pageInfo"]["hasNextPage"] is False


async def test_wallet_holds_gives_at_most_100_a_page(api: Api, holds: Holds) -> None:
    wallet = await api.new_wallet("2.00")
    for _ in range(4):  # 104 holds, 26 at a time
        await asyncio.gather(*(holds.placed(wallet, "0.01") for _ in range(26)))

    page = await holds.page(wallet, first=1000)
    rest = await holds.page(wallet, first=1000, after=page["pageInfo"]["endCursor"])

    assert len(page["edges"]) == 100
    assert page["pageInfo"]["hasNextPage"] is True
    assert len(rest["edges"]) == 4
    assert rest["pageInfo"]["hasNextPage"] is False
    assert await holds.balances(wallet) == ("2.00", "0.96", "1.04")


async def test_a_holds_cursor_the_api_did_not_give_out_is_a_clean_graphql_error(
    api: Api, holds: Holds
) -> None:
    wallet = await api.new_wallet("1.00")
    await holds.placed(wallet, "1.00")

    body = await api.answer(HOLDS, id=wallet, after="garbage")

    assert body["data"] == {"wallet": None}
    [error] = body["errors"]
    assert error["extensions"]["code"] == "INVALID_CURSOR"
    assert error["message"] != "Internal error."


@pytest.mark.parametrize("first", [-1, -100])
async def test_a_negative_holds_page_size_is_a_clean_graphql_error(
    api: Api, holds: Holds, first: int
) -> None:
    wallet = await api.new_wallet("1.00")

    body = await api.answer(HOLDS, id=wallet, first=first)

    assert body["data"] == {"wallet": None}
    [error] = body["errors"]
    assert error["message"] != "Internal error."
    assert error["extensions"]["code"] != "INTERNAL"


# -- live updates --------------------------------------------------------------------------


async def _heard(activity: Subscriber, api: Api, wallet: str) -> None:
    """Until the subscription hears the wallet move: walletActivity sends nothing for what was
    recorded before it listened, so a deposit is made again until one comes through."""
    for _ in range(100):
        await api.deposit(wallet, "0.01")
        try:
            if await activity.next(timeout=0.2) is not None:
                return
        except TimeoutError:
            continue
    raise AssertionError(f"walletActivity of {wallet} heard none of 100 deposits")


async def _next_of(activity: Subscriber, transaction_id: str) -> dict[str, Any]:
    """The first walletActivity event of that transaction (the probes' deposits skipped)."""
    while True:
        event = await activity.next()
        assert event is not None, "walletActivity ended"
        if event["walletActivity"]["id"] == transaction_id:
            return event["walletActivity"]  # type: ignore[no-any-return]


async def test_a_capture_is_seen_live_as_a_completed_transaction_by_both_wallets(
    api: Api, holds: Holds, api_url: str
) -> None:
    sender = await api.new_wallet("10.00")
    receiver = await api.new_wallet()
    hold = await holds.placed(sender, "4.00", receiver)

    async with (
        Subscriber(api_url, ACTIVITY % sender) as paying,
        Subscriber(api_url, ACTIVITY % receiver) as paid,
    ):
        await _heard(paying, api, sender)
        await _heard(paid, api, receiver)
        t = await holds.captured(hold["id"])
        seen = [await _next_of(paying, t["id"]), await _next_of(paid, t["id"])]

    expected = {"id": t["id"], "type": "TRANSFER", "status": "COMPLETED", "amount": "4.00"}
    assert seen == [expected, expected], "a capture is COMPLETED at once, never PENDING"
    async with Subscriber(api_url, UPDATED % t["id"]) as updates:
        now = await updates.next()
        assert now == {"transactionUpdated": expected}
        assert await updates.next() is None, "a COMPLETED transaction's updates end at once"


# -- expiry, with a worker -----------------------------------------------------------------


@pytest.mark.slow
async def test_a_worker_expires_a_due_hold_and_gives_back_exactly_its_amount(
    env: dict[str, str],
) -> None:
    """An API and a worker of the test's own, sharing the run's database (the worker expires
    every due hold there) and the test's Redis prefix (so the API's cache hears of it)."""
    with api_server(env) as server, worker(env):
        async with httpx.AsyncClient(timeout=30, headers=tokens.header()) as client:
            holds = Holds(Api(client, server.url))
            wallet = await holds.api.new_wallet("10.00")
            due = await holds.placed(wallet, "3.00", expiresInSeconds=1)
            kept = await holds.placed(wallet, "2.00", expiresInSeconds=3600)
            assert await holds.balances(wallet) == ("10.00", "5.00", "5.00")

            async def expired() -> dict[str, Any] | None:
                hold = await holds.hold(due["id"])
                return hold if hold is not None and hold["status"] == "EXPIRED" else None

            gone: dict[str, Any] = await eventually(
                expired, f"hold {due['id']} EXPIRED", timeout=15, every=0.2
            )

            async def released() -> tuple[str, str, str] | None:
                now = await holds.balances(wallet)
                return now if now == ("10.00", "8.00", "2.00") else None

            await eventually(released, "exactly the expired hold's 3.00 released", timeout=3)
            late = await holds.capture(due["id"])
            expired_ones = await holds.every(wallet, 10, ["EXPIRED"])
            active_ones = await holds.every(wallet, 10, ["ACTIVE"])
            assert await holds.balances(wallet) == ("10.00", "8.00", "2.00")
            assert await holds.status(kept["id"]) == "ACTIVE"
    assert (gone["capturedAmount"], gone["capture"]) == ("0.00", None)
    closed = _instant(gone["closedAt"])
    assert closed >= _instant(gone["expiresAt"]) - CLOCK_SLACK
    assert (late["transaction"], _codes(late)) == (None, ["HOLD_NOT_ACTIVE"])
    assert ([h["id"] for h in expired_ones], [h["id"] for h in active_ones]) == (
        [due["id"]],
        [kept["id"]],
    )


@pytest.mark.slow
async def test_a_withdrawal_settled_after_a_hold_was_placed_is_measured_against_it(
    env: dict[str, str],
) -> None:
    """A withdrawal accepted before the hold, settled by a worker after it, finds only the
    available balance: the worker checks it again under the wallet's lock."""
    with api_server(env) as server:
        async with httpx.AsyncClient(timeout=30, headers=tokens.header()) as client:
            holds = Holds(Api(client, server.url))
            wallet = await holds.api.new_wallet("10.00")
            other = await holds.api.new_wallet()
            # No worker yet: both wait on the queue, PENDING.
            withdrawal = (await holds.api.withdraw(wallet, "10.00", settled=False))["transaction"]
            transfer = (await holds.api.transfer(wallet, other, "7.00", settled=False))[
                "transaction"
            ]
            assert (withdrawal["status"], transfer["status"]) == ("PENDING", "PENDING")
            hold = await holds.placed(wallet, "4.00")
            assert await holds.balances(wallet) == ("10.00", "6.00", "4.00")
            with worker(env):
                withdrawn = await holds.api.final(withdrawal)
                sent = await holds.api.final(transfer)
            assert (withdrawn["status"], withdrawn["failureCode"]) == (
                "FAILED",
                "INSUFFICIENT_FUNDS",
            )
            assert (sent["status"], sent["failureCode"]) == ("FAILED", "INSUFFICIENT_FUNDS")
            assert await holds.balances(wallet) == ("10.00", "6.00", "4.00")
            assert await holds.balances(other) == ("0.00", "0.00", "0.00")
            assert await holds.status(hold["id"]) == "ACTIVE"


@pytest.mark.slow
async def test_a_capture_racing_its_hold_s_expiry_moves_all_of_it_or_nothing(
    env: dict[str, str],
) -> None:
    """Captures sent around the moment their holds expire, while a worker releases due holds:
    each hold ends once, CAPTURED with its money moved or EXPIRED with all of it back."""
    with api_server(env) as server, worker(env):
        async with httpx.AsyncClient(timeout=30, headers=tokens.header()) as client:
            holds = Holds(Api(client, server.url))
            pairs = [
                (await holds.api.new_wallet("10.00"), await holds.api.new_wallet())
                for _ in range(6)
            ]
            placed: list[tuple[dict[str, Any], float]] = []
            for sender, receiver in pairs:
                hold = await holds.placed(sender, "4.00", receiver, expiresInSeconds=1)
                placed.append((hold, time.monotonic()))

            async def capture_at(hold: dict[str, Any], at: float) -> dict[str, Any]:
                await asyncio.sleep(max(0.0, at - time.monotonic()))
                return await holds.capture(hold["id"])

            # From a little before the expiry to a little after it.
            answers = await asyncio.gather(
                *(capture_at(hold, at + 0.85 + 0.06 * n) for n, (hold, at) in enumerate(placed))
            )

            for (sender, receiver), (hold, _), answer in zip(pairs, placed, answers, strict=True):

                async def ended(hold_id: str = hold["id"]) -> str | None:
                    status = await holds.status(hold_id)
                    return None if status == "ACTIVE" else status

                status: str = await eventually(ended, f"hold {hold['id']} ended", timeout=15)
                if answer["errors"] == []:
                    assert answer["transaction"]["status"] == "COMPLETED"
                    assert status == "CAPTURED", answer
                    assert await holds.balances(sender) == ("6.00", "6.00", "0.00")
                    assert await holds.balances(receiver) == ("4.00", "4.00", "0.00")
                else:
                    assert _codes(answer) == ["HOLD_NOT_ACTIVE"], answer
                    assert status == "EXPIRED"

                    async def released(wallet: str = sender) -> tuple[str, str, str] | None:
                        now = await holds.balances(wallet)
                        return now if now == ("10.00", "10.00", "0.00") else None

                    await eventually(released, f"hold {hold['id']} released", timeout=3)
                    assert await holds.balances(receiver) == ("0.00", "0.00", "0.00")
