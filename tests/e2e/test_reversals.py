"""Reversals and descriptions (issue 16, tests/contract/ledger.graphql), black-box over HTTP.

reverseTransaction returns money of a COMPLETED deposit, withdrawal or transfer, in part or in
whole, as a new REVERSAL that names it (`reversalOf`): a transfer's money goes back from its
receiver to its sender, a deposit's leaves its wallet, a withdrawal's comes back. Its
reversals together never exceed it, even when asked for at the same moment. Only the
receiver's owner (or an admin) reverses a transfer; only admins reverse deposits and
withdrawals; to anyone who may not see the transaction it does not exist.

Most tests speak to the run's `wallet serve`, which settles inline; they still wait for a
reversal to end, since it may be PENDING at first. The one about PENDING transactions starts
an API of its own with no worker, then a worker on the same queue."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from tests import tokens
from tests.client import (
    DEPOSIT,
    ERRORS,
    HISTORY,
    TRANSFER,
    WITHDRAW,
    Api,
    Subscriber,
    key,
)
from tests.processes import api_server, worker

pytestmark = pytest.mark.timeout(120)

REVERSAL = """
  id type status amount currency clientTransactionId failureCode errorMessage description
  createdAt completedAt senderWalletId receiverWalletId
  reversalOf { id type status amount }
  reversals { id type status amount }
  reversedAmount
"""
REVERSE = f"""
mutation Reverse($input: ReverseTransactionInput!) {{
  reverseTransaction(input: $input) {{ transaction {{ {REVERSAL} }} {ERRORS} }}
}}"""
GET = f"query Transaction($id: ID!) {{ transaction(id: $id) {{ {REVERSAL} }} }}"
ENTRIES = """
query Entries($id: ID!) {
  wallet(id: $id) {
    entries(first: 50) { edges { node { amount balanceAfter transaction { id type } } } }
  }
}"""
MUTATIONS = {"deposit": DEPOSIT, "withdraw": WITHDRAW, "transfer": TRANSFER}


def _codes(payload: dict[str, Any]) -> list[str]:
    return [error["code"] for error in payload["errors"]]


def _errors(payload: dict[str, Any]) -> list[tuple[str, list[str] | None]]:
    return [(error["code"], error["field"]) for error in payload["errors"]]


class Ledger:
    """reverseTransaction, and movements with a description, asked by one caller (the Api's)."""

    def __init__(self, api: Api) -> None:
        self.api = api

    async def reverse(
        self,
        transaction_id: str,
        amount: str | None = None,
        client_key: str | None = None,
        description: str | None = None,
    ) -> dict[str, Any]:
        """The reverseTransaction payload, as answered (the reversal may be PENDING)."""
        given: dict[str, Any] = {
            "transactionId": transaction_id,
            "clientTransactionId": client_key or key(),
        }
        if amount is not None:
            given["amount"] = amount
        if description is not None:
            given["description"] = description
        payload: dict[str, Any] = (await self.api.data(REVERSE, input=given))["reverseTransaction"]
        return payload

    async def reversed(
        self, transaction_id: str, amount: str | None = None, **given: Any
    ) -> dict[str, Any]:
        """A reversal that must be accepted, once it has ended (COMPLETED or FAILED)."""
        payload = await self.reverse(transaction_id, amount, **given)
        assert payload["errors"] == [], payload
        assert payload["transaction"]["type"] == "REVERSAL", payload
        return await self.final(payload["transaction"]["id"])

    async def final(self, transaction_id: str) -> dict[str, Any]:
        await self.api.final({"id": transaction_id, "status": "PENDING"})
        return await self.get(transaction_id)

    async def get(self, transaction_id: str) -> dict[str, Any]:
        found = (await self.api.data(GET, id=transaction_id))["transaction"]
        assert found is not None, transaction_id
        return found  # type: ignore[no-any-return]

    async def move(self, name: str, **fields: Any) -> dict[str, Any]:
        """The deposit, withdraw or transfer payload for these input fields (a key added
        unless given); its transaction as answered."""
        given = {"clientTransactionId": key(), **fields}
        payload: dict[str, Any] = (await self.api.data(MUTATIONS[name], input=given))[name]
        return payload

    async def moved(self, name: str, **fields: Any) -> dict[str, Any]:
        """A movement that must be accepted and COMPLETE, as `get` reads it."""
        payload = await self.move(name, **fields)
        assert payload["errors"] == [], payload
        done = await self.final(payload["transaction"]["id"])
        assert done["status"] == "COMPLETED", done
        return done

    async def balance(self, wallet: str) -> str:
        return await self.api.balance(wallet)

    async def entries(self, wallet: str) -> list[dict[str, Any]]:
        found = (await self.api.data(ENTRIES, id=wallet))["wallet"]
        assert found is not None, wallet
        return [edge["node"] for edge in found["entries"]["edges"]]


@pytest.fixture
def ledger(api: Api) -> Ledger:
    """The run's tester: a funding service that owns (and funds) the wallets it creates."""
    return Ledger(api)


@pytest.fixture
def admin(api: Api) -> Ledger:
    return Ledger(api.as_caller(tokens.caller("admin"), tokens.ADMIN))


async def _shop(api: Api) -> tuple[Ledger, str]:
    """Another caller (no scope) and the empty USD wallet it owns, to be paid by transfers."""
    shop = Ledger(api.as_caller(tokens.caller("shop"), ()))
    return shop, await shop.api.new_wallet()


async def _paid(ledger: Ledger, api: Api, amount: str = "4.00") -> tuple[str, Ledger, str, str]:
    """(sender, shop, shop's wallet, transfer): the tester paid `amount` of its 10.00 to a
    shop, COMPLETED."""
    sender = await api.new_wallet("10.00")
    shop, shop_wallet = await _shop(api)
    paid = await ledger.moved(
        "transfer", fromWalletId=sender, toWalletId=shop_wallet, amount=amount
    )
    return sender, shop, shop_wallet, paid["id"]


# -- transfers -----------------------------------------------------------------------------


async def test_the_receiver_s_owner_reverses_a_whole_transfer_and_the_money_goes_back(
    api: Api, ledger: Ledger
) -> None:
    sender, shop, shop_wallet, paid = await _paid(ledger, api)
    client_key = key()

    payload = await shop.reverse(paid, client_key=client_key, description="returned goods")

    assert payload["errors"] == []
    answered = payload["transaction"]
    assert answered["status"] in ("PENDING", "COMPLETED")
    reversal = await shop.final(answered["id"])
    assert (reversal["type"], reversal["status"], reversal["amount"], reversal["currency"]) == (
        "REVERSAL",
        "COMPLETED",
        "4.00",
        "USD",
    )
    assert (reversal["clientTransactionId"], reversal["description"]) == (
        client_key,
        "returned goods",
    )
    assert (reversal["senderWalletId"], reversal["receiverWalletId"]) == (shop_wallet, sender)
    assert reversal["reversalOf"] == {
        "id": paid,
        "type": "TRANSFER",
        "status": "COMPLETED",
        "amount": "4.00",
    }
    assert (reversal["reversals"], reversal["reversedAmount"]) == ([], "0.00")
    assert (reversal["failureCode"], reversal["errorMessage"]) == (None, None)
    assert datetime.fromisoformat(reversal["completedAt"]) >= datetime.fromisoformat(
        reversal["createdAt"]
    )
    assert await ledger.balance(sender) == "10.00"
    assert await shop.balance(shop_wallet) == "0.00"
    for caller in (ledger, shop):
        original = await caller.get(paid)
        assert (original["status"], original["amount"], original["reversedAmount"]) == (
            "COMPLETED",
            "4.00",
            "4.00",
        )
        assert original["reversals"] == [
            {"id": reversal["id"], "type": "REVERSAL", "status": "COMPLETED", "amount": "4.00"}
        ]
        assert original["reversalOf"] is None
        assert (await caller.get(reversal["id"]))["id"] == reversal["id"], "both see it"


async def test_partial_reversals_return_their_amounts_until_all_is_reversed_and_no_more(
    api: Api, ledger: Ledger
) -> None:
    sender, shop, shop_wallet, paid = await _paid(ledger, api, "10.00")

    first = await shop.reversed(paid, "2.50")
    second = await shop.reversed(paid, "3")
    too_much = await shop.reverse(paid, "4.51")
    rest = await shop.reversed(paid)  # all that is left
    after_all = [await shop.reverse(paid, "0.01"), await shop.reverse(paid)]

    assert [r["amount"] for r in (first, second, rest)] == ["2.50", "3.00", "4.50"]
    assert {r["status"] for r in (first, second, rest)} == {"COMPLETED"}
    for refused in (too_much, *after_all):
        assert refused["transaction"] is None
        assert _errors(refused) == [("REVERSAL_EXCEEDS_ORIGINAL", ["input", "amount"])]
        assert refused["errors"][0]["message"]
    original = await ledger.get(paid)
    assert original["reversedAmount"] == "10.00"
    assert [(r["id"], r["amount"]) for r in original["reversals"]] == [
        (first["id"], "2.50"),
        (second["id"], "3.00"),
        (rest["id"], "4.50"),
    ], "oldest first"
    assert await ledger.balance(sender) == "10.00"
    assert await shop.balance(shop_wallet) == "0.00"


async def test_reversed_amount_counts_each_completed_reversal_as_it_comes(
    api: Api, ledger: Ledger
) -> None:
    sender, shop, shop_wallet, paid = await _paid(ledger, api, "10.00")
    seen = []

    for amount in ("1.00", "0.25", "5.75"):
        await shop.reversed(paid, amount)
        seen.append((await ledger.get(paid))["reversedAmount"])

    assert seen == ["1.00", "1.25", "7.00"]
    assert await ledger.balance(sender) == "7.00"
    assert await shop.balance(shop_wallet) == "3.00"
    too_much = await shop.reverse(paid, "3.01")
    assert _codes(too_much) == ["REVERSAL_EXCEEDS_ORIGINAL"]
    assert (await shop.reversed(paid))["amount"] == "3.00"


async def test_the_sender_of_a_transfer_sees_it_but_may_not_reverse_it(
    api: Api, ledger: Ledger
) -> None:
    sender, shop, shop_wallet, paid = await _paid(ledger, api)

    refused = await ledger.reverse(paid, "1.00")

    assert refused["transaction"] is None
    assert _codes(refused) == ["FORBIDDEN"]
    assert refused["errors"][0]["message"]
    assert await ledger.balance(sender) == "6.00"
    assert await shop.balance(shop_wallet) == "4.00"
    original = await ledger.get(paid)
    assert (original["reversals"], original["reversedAmount"]) == ([], "0.00")


async def test_an_admin_may_reverse_any_transfer(api: Api, ledger: Ledger, admin: Ledger) -> None:
    sender, shop, shop_wallet, paid = await _paid(ledger, api)

    reversal = await admin.reversed(paid, "1.50")

    assert (reversal["status"], reversal["senderWalletId"], reversal["receiverWalletId"]) == (
        "COMPLETED",
        shop_wallet,
        sender,
    )
    assert await ledger.balance(sender) == "7.50"
    assert await shop.balance(shop_wallet) == "2.50"


async def test_a_reversal_writes_one_signed_entry_for_each_wallet_it_touches(
    api: Api, ledger: Ledger, admin: Ledger
) -> None:
    sender, shop, shop_wallet, paid = await _paid(ledger, api)
    deposited = await ledger.moved("deposit", walletId=sender, amount="5.00")

    refund = await shop.reversed(paid, "1.50")
    taken_back = await admin.reversed(deposited["id"], "2.00")

    sender_entries = await ledger.entries(sender)
    shop_entries = await shop.entries(shop_wallet)
    assert [
        (e["transaction"]["id"], e["amount"], e["balanceAfter"]) for e in sender_entries[:3]
    ] == [
        (taken_back["id"], "-2.00", "10.50"),
        (refund["id"], "1.50", "12.50"),
        (deposited["id"], "5.00", "11.00"),
    ], "newest first"
    assert [(e["transaction"]["id"], e["amount"], e["balanceAfter"]) for e in shop_entries] == [
        (refund["id"], "-1.50", "2.50"),
        (paid, "4.00", "4.00"),
    ]
    assert {e["transaction"]["type"] for e in sender_entries[:2]} == {"REVERSAL"}
    for wallet, entries, caller in (
        (sender, sender_entries, ledger),
        (shop_wallet, shop_entries, shop),
    ):
        total = sum(Decimal(e["amount"]) for e in entries)
        assert total == Decimal(await caller.balance(wallet)), "entries add up to the balance"


# -- deposits and withdrawals --------------------------------------------------------------


async def test_an_admin_reverses_a_deposit_in_parts_and_the_money_leaves_its_wallet(
    api: Api, ledger: Ledger, admin: Ledger
) -> None:
    wallet = await api.new_wallet("10.00")
    deposited = await ledger.moved("deposit", walletId=wallet, amount="5.00")

    part = await admin.reversed(deposited["id"], "2.00")
    assert await ledger.balance(wallet) == "13.00"
    rest = await admin.reversed(deposited["id"])

    for reversal, amount in ((part, "2.00"), (rest, "3.00")):
        assert (reversal["type"], reversal["status"], reversal["amount"]) == (
            "REVERSAL",
            "COMPLETED",
            amount,
        )
        assert (reversal["senderWalletId"], reversal["receiverWalletId"]) == (wallet, None)
        assert reversal["reversalOf"]["id"] == deposited["id"]
    assert await ledger.balance(wallet) == "10.00"
    original = await ledger.get(deposited["id"])
    assert original["reversedAmount"] == "5.00"
    assert [r["id"] for r in original["reversals"]] == [part["id"], rest["id"]]
    assert _codes(await admin.reverse(deposited["id"], "0.01")) == ["REVERSAL_EXCEEDS_ORIGINAL"]


async def test_an_admin_reverses_a_withdrawal_and_the_money_comes_back_to_its_wallet(
    api: Api, ledger: Ledger, admin: Ledger
) -> None:
    wallet = await api.new_wallet("10.00")
    withdrawn = await ledger.moved("withdraw", walletId=wallet, amount="4.00")
    assert await ledger.balance(wallet) == "6.00"

    reversal = await admin.reversed(withdrawn["id"])

    assert (reversal["status"], reversal["amount"]) == ("COMPLETED", "4.00")
    assert (reversal["senderWalletId"], reversal["receiverWalletId"]) == (None, wallet)
    assert await ledger.balance(wallet) == "10.00"
    assert (await ledger.get(withdrawn["id"]))["reversedAmount"] == "4.00"
    assert (await ledger.get(reversal["id"]))["reversalOf"]["id"] == withdrawn["id"]


@pytest.mark.parametrize("kind", ["deposit", "withdraw"])
async def test_the_owner_of_a_deposit_or_withdrawal_s_wallet_may_not_reverse_it(
    api: Api, ledger: Ledger, kind: str
) -> None:
    wallet = await api.new_wallet("10.00")
    original = await ledger.moved(kind, walletId=wallet, amount="4.00")
    before = await ledger.balance(wallet)

    refused = await ledger.reverse(original["id"], "1.00")

    assert refused["transaction"] is None
    assert _codes(refused) == ["FORBIDDEN"]
    assert await ledger.balance(wallet) == before
    assert (await ledger.get(original["id"]))["reversals"] == []


# -- who may not see it, and what cannot be reversed ---------------------------------------


async def test_to_an_outsider_a_transaction_to_reverse_does_not_exist_exactly_as_an_unknown_id(
    api: Api, ledger: Ledger
) -> None:
    sender, shop, shop_wallet, paid = await _paid(ledger, api)
    deposited = await ledger.moved("deposit", walletId=sender, amount="1.00")
    stranger = Ledger(api.as_caller(tokens.caller("stranger"), ()))
    unknown = str(uuid.uuid4())

    def told(payload: dict[str, Any], transaction_id: str) -> list[tuple[str, Any, str]]:
        assert payload["transaction"] is None
        return [
            (e["code"], e["field"], e["message"].replace(transaction_id, "<id>"))
            for e in payload["errors"]
        ]

    absent = told(await stranger.reverse(unknown, "1.00"), unknown)
    assert [code for code, _, _ in absent] == ["TRANSACTION_NOT_FOUND"]
    for caller, hidden in ((stranger, paid), (stranger, deposited["id"]), (shop, deposited["id"])):
        assert told(await caller.reverse(hidden, "1.00"), hidden) == absent
        assert told(await caller.reverse(hidden), hidden) == absent
    assert await ledger.balance(sender) == "7.00"
    assert await shop.balance(shop_wallet) == "4.00"
    assert (await ledger.get(paid))["reversals"] == []


async def test_a_malformed_transaction_id_is_invalid_input_never_an_internal_error(
    api: Api, ledger: Ledger
) -> None:
    for malformed in ("nope", "", "1234"):
        refused = await ledger.reverse(malformed, "1.00")

        assert refused["transaction"] is None
        assert _errors(refused) == [("INVALID_INPUT", ["input", "transactionId"])]
        assert refused["errors"][0]["message"] != "Internal error."


@pytest.mark.parametrize("amount", ["0", "-1.00", "1.001", "0.00"])
async def test_a_reversal_of_an_amount_that_is_no_amount_is_invalid_amount(
    api: Api, ledger: Ledger, amount: str
) -> None:
    _, shop, shop_wallet, paid = await _paid(ledger, api)

    refused = await shop.reverse(paid, amount)

    assert refused["transaction"] is None
    assert _errors(refused) == [("INVALID_AMOUNT", ["input", "amount"])]
    assert await shop.balance(shop_wallet) == "4.00"
    assert (await ledger.get(paid))["reversals"] == []


async def _failed_transfer(api: Api, ledger: Ledger, admin: Ledger) -> tuple[Ledger, str]:
    sender = await api.new_wallet("1.00")
    shop, shop_wallet = await _shop(api)
    payload = await ledger.move(
        "transfer", fromWalletId=sender, toWalletId=shop_wallet, amount="1.01"
    )
    failed = await ledger.final(payload["transaction"]["id"])
    assert (failed["status"], failed["failureCode"]) == ("FAILED", "INSUFFICIENT_FUNDS")
    return shop, failed["id"]


async def _failed_withdrawal(api: Api, ledger: Ledger, admin: Ledger) -> tuple[Ledger, str]:
    wallet = await api.new_wallet("1.00")
    payload = await ledger.move("withdraw", walletId=wallet, amount="1.01")
    failed = await ledger.final(payload["transaction"]["id"])
    assert failed["status"] == "FAILED"
    return admin, failed["id"]


async def _completed_reversal(api: Api, ledger: Ledger, admin: Ledger) -> tuple[Ledger, str]:
    _, shop, _, paid = await _paid(ledger, api)
    reversal = await shop.reversed(paid, "1.00")
    assert reversal["status"] == "COMPLETED"
    return admin, reversal["id"]


async def _failed_reversal(api: Api, ledger: Ledger, admin: Ledger) -> tuple[Ledger, str]:
    _, shop, shop_wallet, paid = await _paid(ledger, api)
    await shop.moved("withdraw", walletId=shop_wallet, amount="4.00")  # spent it all
    reversal = await shop.reversed(paid, "1.00")
    assert reversal["status"] == "FAILED"
    return admin, reversal["id"]


# Each made with a caller who could reverse it, were it reversible: so only NOT_REVERSIBLE
# can be the answer, never FORBIDDEN.
NOT_REVERSIBLE = {
    "failed transfer, by its receiver": _failed_transfer,
    "failed withdrawal, by an admin": _failed_withdrawal,
    "completed reversal, by an admin": _completed_reversal,
    "failed reversal, by an admin": _failed_reversal,
}


@pytest.mark.parametrize("make", NOT_REVERSIBLE.values(), ids=NOT_REVERSIBLE.keys())
async def test_a_failed_transaction_or_a_reversal_is_not_reversible(
    api: Api, ledger: Ledger, admin: Ledger, make: Any
) -> None:
    caller, target = await make(api, ledger, admin)

    for reverser in {caller, admin}:
        for amount in ("0.50", None):
            refused = await reverser.reverse(target, amount)

            assert refused["transaction"] is None
            assert _errors(refused) == [("NOT_REVERSIBLE", ["input", "transactionId"])]
            assert refused["errors"][0]["message"]
    seen = await admin.get(target)
    assert (seen["reversals"], seen["reversedAmount"]) == ([], "0.00")


# -- too little money ----------------------------------------------------------------------


async def test_a_reversal_that_finds_the_money_spent_fails_moves_nothing_and_leaves_it_reversible(
    api: Api, ledger: Ledger
) -> None:
    sender, shop, shop_wallet, paid = await _paid(ledger, api)
    await shop.moved("withdraw", walletId=shop_wallet, amount="3.00")  # 1.00 left

    payload = await shop.reverse(paid)

    assert payload["errors"] == [], "accepted, then it failed"
    failed = await shop.final(payload["transaction"]["id"])
    assert (failed["type"], failed["status"], failed["failureCode"], failed["amount"]) == (
        "REVERSAL",
        "FAILED",
        "INSUFFICIENT_FUNDS",
        "4.00",
    )
    assert failed["errorMessage"]
    assert failed["completedAt"] is not None
    assert await ledger.balance(sender) == "6.00"
    assert await shop.balance(shop_wallet) == "1.00"
    original = await ledger.get(paid)
    assert original["reversedAmount"] == "0.00"
    assert [(r["id"], r["status"]) for r in original["reversals"]] == [(failed["id"], "FAILED")]
    assert failed["id"] not in [e["transaction"]["id"] for e in await shop.entries(shop_wallet)]

    # What it claimed is reversible again: the 1.00 the shop has, and no more than the rest.
    fits = await shop.reversed(paid, "1.00")
    too_much = await shop.reverse(paid, "3.01")

    assert fits["status"] == "COMPLETED"
    assert _codes(too_much) == ["REVERSAL_EXCEEDS_ORIGINAL"]
    assert await ledger.balance(sender) == "7.00"
    assert await shop.balance(shop_wallet) == "0.00"
    original = await ledger.get(paid)
    assert original["reversedAmount"] == "1.00"
    assert [r["status"] for r in original["reversals"]] == ["FAILED", "COMPLETED"]


async def test_a_deposit_s_reversal_that_finds_the_money_withdrawn_fails_and_moves_nothing(
    api: Api, ledger: Ledger, admin: Ledger
) -> None:
    wallet = await api.new_wallet()
    deposited = await ledger.moved("deposit", walletId=wallet, amount="5.00")
    await ledger.moved("withdraw", walletId=wallet, amount="4.50")

    failed = await admin.reversed(deposited["id"])

    assert (failed["status"], failed["failureCode"]) == ("FAILED", "INSUFFICIENT_FUNDS")
    assert await ledger.balance(wallet) == "0.50"
    assert (await ledger.get(deposited["id"]))["reversedAmount"] == "0.00"
    assert (await admin.reversed(deposited["id"], "0.50"))["status"] == "COMPLETED"
    assert await ledger.balance(wallet) == "0.00"


# -- keys ----------------------------------------------------------------------------------


async def test_a_reversal_sent_again_with_its_key_returns_it_and_moves_money_once(
    api: Api, ledger: Ledger
) -> None:
    sender, shop, shop_wallet, paid = await _paid(ledger, api)
    client_key = key()
    first = await shop.reversed(paid, "1.25", client_key=client_key, description="refund")

    again = await shop.reverse(paid, "1.25", client_key=client_key, description="refund")

    assert again["errors"] == []
    assert again["transaction"]["id"] == first["id"]
    assert (again["transaction"]["status"], again["transaction"]["amount"]) == (
        "COMPLETED",
        "1.25",
    )
    assert await ledger.balance(sender) == "7.25"
    assert await shop.balance(shop_wallet) == "2.75"
    assert [r["id"] for r in (await ledger.get(paid))["reversals"]] == [first["id"]]


async def test_a_whole_reversal_sent_again_once_nothing_is_left_still_returns_itself(
    api: Api, ledger: Ledger
) -> None:
    sender, shop, shop_wallet, paid = await _paid(ledger, api)
    client_key = key()
    first = await shop.reversed(paid, client_key=client_key)

    again = await shop.reverse(paid, client_key=client_key)

    assert again["errors"] == [], "a replay, not a new reversal of what is left"
    assert (again["transaction"]["id"], again["transaction"]["amount"]) == (first["id"], "4.00")
    assert await ledger.balance(sender) == "10.00"
    assert await shop.balance(shop_wallet) == "0.00"


async def test_reversals_sent_at_once_with_one_key_are_one_reversal(
    api: Api, ledger: Ledger
) -> None:
    sender, shop, shop_wallet, paid = await _paid(ledger, api)
    client_key = key()

    payloads = await asyncio.gather(
        *(shop.reverse(paid, "3.00", client_key=client_key) for _ in range(6))
    )

    assert [p["errors"] for p in payloads] == [[]] * 6
    assert len({p["transaction"]["id"] for p in payloads}) == 1
    await shop.final(payloads[0]["transaction"]["id"])
    assert await ledger.balance(sender) == "9.00"
    assert await shop.balance(shop_wallet) == "1.00"
    original = await ledger.get(paid)
    assert (len(original["reversals"]), original["reversedAmount"]) == (1, "3.00")


@pytest.mark.parametrize(
    "changed",
    [{"amount": "1.01"}, {"amount": None}, {"description": "another"}, {"description": None}],
    ids=["amount", "no amount", "description", "no description"],
)
async def test_a_reversal_key_sent_again_with_anything_changed_is_refused(
    api: Api, ledger: Ledger, changed: dict[str, Any]
) -> None:
    _, shop, shop_wallet, paid = await _paid(ledger, api)
    client_key = key()
    asked = {"amount": "1.00", "description": "refund"}
    first = await shop.reversed(paid, client_key=client_key, **asked)

    refused = await shop.reverse(paid, client_key=client_key, **{**asked, **changed})

    assert refused["transaction"] is None
    assert _errors(refused) == [("IDEMPOTENCY_KEY_REUSED", ["input", "clientTransactionId"])]
    assert await shop.balance(shop_wallet) == "3.00"
    assert [r["id"] for r in (await ledger.get(paid))["reversals"]] == [first["id"]]


async def test_a_reversal_key_used_for_another_transaction_or_mutation_is_refused(
    api: Api, ledger: Ledger
) -> None:
    sender, shop, shop_wallet, paid = await _paid(ledger, api)
    other = (
        await ledger.moved("transfer", fromWalletId=sender, toWalletId=shop_wallet, amount="1.00")
    )["id"]
    client_key = key()
    await shop.reversed(paid, "1.00", client_key=client_key)

    reused = await shop.reverse(other, "1.00", client_key=client_key)
    as_withdrawal = await shop.move(
        "withdraw", walletId=shop_wallet, amount="1.00", clientTransactionId=client_key
    )

    assert _codes(reused) == ["IDEMPOTENCY_KEY_REUSED"]
    assert _codes(as_withdrawal) == ["IDEMPOTENCY_KEY_REUSED"]
    assert (await ledger.get(other))["reversals"] == []
    assert await shop.balance(shop_wallet) == "4.00"


# -- descriptions --------------------------------------------------------------------------


async def test_descriptions_are_kept_on_deposits_withdrawals_transfers_and_reversals(
    api: Api, ledger: Ledger, admin: Ledger
) -> None:
    wallet = await api.new_wallet("10.00")
    shop, shop_wallet = await _shop(api)

    deposited = await ledger.moved("deposit", walletId=wallet, amount="1.00", description="salary")
    withdrawn = await ledger.moved(
        "withdraw", walletId=wallet, amount="1.00", description="cash \U0001f4b5"
    )
    paid = await ledger.moved(
        "transfer",
        fromWalletId=wallet,
        toWalletId=shop_wallet,
        amount="2.00",
        description="d" * 280,
    )
    refund = await shop.reversed(paid["id"], "1.00", description="R" * 280)
    plain = await ledger.moved("deposit", walletId=wallet, amount="1.00")

    assert [t["description"] for t in (deposited, withdrawn, paid, refund, plain)] == [
        "salary",
        "cash \U0001f4b5",
        "d" * 280,
        "R" * 280,
        None,
    ]
    assert (await shop.get(paid["id"]))["description"] == "d" * 280, "the receiver sees it too"
    assert (await admin.get(refund["id"]))["description"] == "R" * 280


@pytest.mark.parametrize("name", ["deposit", "withdraw", "transfer", "reverseTransaction"])
async def test_a_description_of_281_characters_is_invalid_input_and_moves_nothing(
    api: Api, ledger: Ledger, name: str
) -> None:
    sender, shop, shop_wallet, paid = await _paid(ledger, api)
    too_long = "x" * 281

    if name == "reverseTransaction":
        refused = await shop.reverse(paid, "1.00", description=too_long)
    else:
        fields = (
            {"fromWalletId": sender, "toWalletId": shop_wallet}
            if name == "transfer"
            else {"walletId": sender}
        )
        refused = await ledger.move(name, amount="1.00", description=too_long, **fields)

    assert refused["transaction"] is None
    assert _errors(refused) == [("INVALID_INPUT", ["input", "description"])]
    assert await ledger.balance(sender) == "6.00"
    assert await shop.balance(shop_wallet) == "4.00"
    assert (await ledger.get(paid))["reversals"] == []
    assert len(await api.history(sender, page_size=10)) == 2, "the funding and the transfer"


@pytest.mark.parametrize("name", ["deposit", "withdraw", "transfer"])
async def test_a_movement_key_sent_again_with_another_description_is_refused(
    api: Api, ledger: Ledger, name: str
) -> None:
    wallet = await api.new_wallet("10.00")
    other = await api.new_wallet()
    fields = (
        {"fromWalletId": wallet, "toWalletId": other}
        if name == "transfer"
        else {"walletId": wallet}
    )
    client_key = key()
    first = await ledger.moved(
        name, amount="1.00", clientTransactionId=client_key, description="first", **fields
    )

    same = await ledger.move(
        name, amount="1.00", clientTransactionId=client_key, description="first", **fields
    )
    changed = await ledger.move(
        name, amount="1.00", clientTransactionId=client_key, description="second", **fields
    )

    assert (same["errors"], same["transaction"]["id"]) == ([], first["id"])
    assert changed["transaction"] is None
    assert _errors(changed) == [("IDEMPOTENCY_KEY_REUSED", ["input", "clientTransactionId"])]
    assert (await ledger.get(first["id"]))["description"] == "first"
    expected = {"deposit": "11.00", "withdraw": "9.00", "transfer": "9.00"}[name]
    assert await ledger.balance(wallet) == expected


@pytest.mark.parametrize("name", ["deposit", "transfer"])
async def test_movements_sent_at_once_with_one_key_and_two_descriptions_move_money_once(
    api: Api, ledger: Ledger, name: str
) -> None:
    """Requests arriving in the same turn share a unit of work: a key repeated there must
    still tell a replay from another request by its description."""
    wallet = await api.new_wallet("10.00")
    other = await api.new_wallet()
    fields = (
        {"fromWalletId": wallet, "toWalletId": other}
        if name == "transfer"
        else {"walletId": wallet}
    )
    client_key = key()
    asked = ["first", "second"] * 4

    payloads = await asyncio.gather(
        *(
            ledger.move(
                name, amount="1.00", clientTransactionId=client_key, description=d, **fields
            )
            for d in asked
        )
    )

    accepted = {d for d, p in zip(asked, payloads, strict=True) if p["errors"] == []}
    assert len(accepted) == 1, payloads
    (kept,) = accepted
    ids = {p["transaction"]["id"] for p in payloads if p["errors"] == []}
    assert len(ids) == 1
    for d, p in zip(asked, payloads, strict=True):
        if d != kept:
            assert p["transaction"] is None
            assert _codes(p) == ["IDEMPOTENCY_KEY_REUSED"]
    done = await ledger.final(ids.pop())
    assert (done["status"], done["description"]) == ("COMPLETED", kept)
    assert await ledger.balance(wallet) == ("11.00" if name == "deposit" else "9.00")


TRANSFER_BATCH = f"""
mutation TransferBatch($input: TransferBatchInput!) {{
  transferBatch(input: $input) {{
    results {{ transaction {{ id status description }} {ERRORS} }}
    {ERRORS}
  }}
}}"""


@pytest.mark.parametrize("atomic", [False, True], ids=["one by one", "atomic"])
async def test_a_batch_s_transfers_keep_their_descriptions_and_281_characters_are_refused(
    api: Api, ledger: Ledger, atomic: bool
) -> None:
    sender = await api.new_wallet("10.00")
    receiver = await api.new_wallet()
    descriptions = ["rent", None, "x" * 281]
    transfers = [
        {
            "fromWalletId": sender,
            "toWalletId": receiver,
            "amount": "1.00",
            "clientTransactionId": key(),
            **({"description": d} if d is not None else {}),
        }
        for d in descriptions
    ]

    payload = (await api.data(TRANSFER_BATCH, input={"transfers": transfers, "atomic": atomic}))[
        "transferBatch"
    ]

    results = payload["results"]
    assert payload["errors"] == []
    assert _errors(results[2]) == [("INVALID_INPUT", ["input", "transfers", "2", "description"])]
    assert results[2]["transaction"] is None
    if atomic:
        assert [_codes(r) for r in results[:2]] == [["LINKED_TRANSFER_FAILED"]] * 2
        assert await ledger.balance(sender) == "10.00"
        return
    kept = [await ledger.final(r["transaction"]["id"]) for r in results[:2]]
    assert [(t["status"], t["description"]) for t in kept] == [
        ("COMPLETED", "rent"),
        ("COMPLETED", None),
    ]
    assert await ledger.balance(sender) == "8.00"


# -- at once -------------------------------------------------------------------------------


async def test_ten_reversals_of_30_percent_at_once_return_exactly_three_of_them(
    api: Api, ledger: Ledger
) -> None:
    sender, shop, shop_wallet, paid = await _paid(ledger, api, "10.00")

    payloads = await asyncio.gather(*(shop.reverse(paid, "3.00") for _ in range(10)))

    accepted = [p["transaction"] for p in payloads if p["errors"] == []]
    refused = [p for p in payloads if p["errors"] != []]
    # Each refusal says more than 7.00 was taken, so three were accepted: never more.
    assert len(accepted) == 3, payloads
    assert {c for p in refused for c in _codes(p)} == {"REVERSAL_EXCEEDS_ORIGINAL"}
    assert all(p["transaction"] is None for p in refused)
    ended = [await shop.final(t["id"]) for t in accepted]
    assert {t["status"] for t in ended} == {"COMPLETED"}
    assert await ledger.balance(sender) == "9.00"
    assert await shop.balance(shop_wallet) == "1.00"
    original = await ledger.get(paid)
    assert original["reversedAmount"] == "9.00"
    assert sorted(r["id"] for r in original["reversals"]) == sorted(t["id"] for t in accepted)
    assert _codes(await shop.reverse(paid, "1.01")) == ["REVERSAL_EXCEEDS_ORIGINAL"]
    assert (await shop.reversed(paid))["amount"] == "1.00"


# -- other shapes of the same movements ----------------------------------------------------

PLACE_HOLD = f"""
mutation PlaceHold($input: PlaceHoldInput!) {{
  placeHold(input: $input) {{ hold {{ id status }} {ERRORS} }}
}}"""
CAPTURE_HOLD = f"""
mutation CaptureHold($input: CaptureHoldInput!) {{
  captureHold(input: $input) {{ transaction {{ id type status amount }} {ERRORS} }}
}}"""


async def test_a_captured_hold_s_transfer_is_refunded_by_its_receiver_like_any_transfer(
    api: Api, ledger: Ledger
) -> None:
    sender = await api.new_wallet("10.00")
    shop, shop_wallet = await _shop(api)
    placed = (
        await api.data(
            PLACE_HOLD,
            input={
                "walletId": sender,
                "amount": "5.00",
                "receiverWalletId": shop_wallet,
                "clientTransactionId": key(),
            },
        )
    )["placeHold"]
    assert placed["errors"] == [], placed
    captured = (
        await shop.api.data(
            CAPTURE_HOLD,
            input={"holdId": placed["hold"]["id"], "amount": "4.00", "clientTransactionId": key()},
        )
    )["captureHold"]
    assert captured["errors"] == [], captured
    capture = captured["transaction"]
    assert (capture["type"], capture["status"]) == ("TRANSFER", "COMPLETED")

    refund = await shop.reversed(capture["id"], "3.00")

    assert (refund["status"], refund["senderWalletId"], refund["receiverWalletId"]) == (
        "COMPLETED",
        shop_wallet,
        sender,
    )
    assert await ledger.balance(sender) == "9.00"
    assert await shop.balance(shop_wallet) == "1.00"
    assert (await ledger.get(capture["id"]))["reversedAmount"] == "3.00"
    assert _codes(await ledger.reverse(capture["id"], "1.00")) == ["FORBIDDEN"]


async def test_reversals_in_yen_count_in_whole_yen(api: Api, ledger: Ledger) -> None:
    sender = await api.new_wallet("1000", "JPY")
    shop = Ledger(api.as_caller(tokens.caller("shop"), ()))
    shop_wallet = await shop.api.new_wallet(currency="JPY")
    paid = await ledger.moved("transfer", fromWalletId=sender, toWalletId=shop_wallet, amount="300")

    fraction = await shop.reverse(paid["id"], "0.5")
    part = await shop.reversed(paid["id"], "120")
    rest = await shop.reversed(paid["id"])

    assert _errors(fraction) == [("INVALID_AMOUNT", ["input", "amount"])]
    assert [(r["amount"], r["currency"]) for r in (part, rest)] == [("120", "JPY"), ("180", "JPY")]
    assert await ledger.balance(sender) == "1000"
    assert await shop.balance(shop_wallet) == "0"
    assert (await ledger.get(paid["id"]))["reversedAmount"] == "300"


async def test_two_callers_reversing_with_one_key_never_meet(
    api: Api, ledger: Ledger, admin: Ledger
) -> None:
    sender, shop, shop_wallet, paid = await _paid(ledger, api)
    client_key = key()

    by_shop = await shop.reversed(paid, "1.00", client_key=client_key)
    by_admin = await admin.reversed(paid, "2.00", client_key=client_key)

    assert by_shop["id"] != by_admin["id"]
    assert (by_shop["amount"], by_admin["amount"]) == ("1.00", "2.00")
    assert await ledger.balance(sender) == "9.00"
    assert await shop.balance(shop_wallet) == "1.00"


# -- history -------------------------------------------------------------------------------


async def test_a_reversal_shows_in_the_history_of_both_wallets_it_touches(
    api: Api, ledger: Ledger
) -> None:
    sender, shop, shop_wallet, paid = await _paid(ledger, api)
    refund = await shop.reversed(paid, "1.00")

    for caller, wallet in ((ledger, sender), (shop, shop_wallet)):
        reversals = await caller.api.history(wallet, page_size=5, filter={"types": ["REVERSAL"]})
        everything = await caller.api.history(wallet, page_size=5)

        assert [(t["id"], t["type"], t["status"], t["amount"]) for t in reversals] == [
            (refund["id"], "REVERSAL", "COMPLETED", "1.00")
        ]
        assert [t["id"] for t in everything][:2] == [refund["id"], paid], "newest first"
    transfers = await shop.api.history(shop_wallet, page_size=5, filter={"types": ["TRANSFER"]})
    assert [t["id"] for t in transfers] == [paid]
    body = await shop.api.data(HISTORY, id=shop_wallet, filter={"statuses": ["COMPLETED"]})
    assert refund["id"] in [e["node"]["id"] for e in body["wallet"]["transactions"]["edges"]]


# Subscriber sends no variables: the id is written into the document.
ACTIVITY = 'subscription { walletActivity(walletId: "%s") { id type status amount } }'
UPDATED = 'subscription { transactionUpdated(id: "%s") { id type status amount } }'


async def _heard(activity: Subscriber, ledger: Ledger, wallet: str) -> None:
    """Until the subscription hears the wallet move: walletActivity sends nothing for what was
    recorded before it listened, so a withdrawal of a cent is made until one comes through."""
    for _ in range(100):
        await ledger.move("withdraw", walletId=wallet, amount="0.01")
        try:
            if await activity.next(timeout=0.2) is not None:
                return
        except TimeoutError:
            continue
    raise AssertionError(f"walletActivity of {wallet} heard none of 100 withdrawals")


async def _events_of(activity: Subscriber, transaction_id: str) -> list[dict[str, Any]]:
    """The walletActivity events of that transaction until it is COMPLETED or FAILED (the
    probes' withdrawals skipped)."""
    events: list[dict[str, Any]] = []
    while not events or events[-1]["status"] not in ("COMPLETED", "FAILED"):
        event = await activity.next()
        assert event is not None, "walletActivity ended"
        if event["walletActivity"]["id"] == transaction_id:
            events.append(event["walletActivity"])
    return events


async def test_a_reversal_is_heard_live_by_both_wallets_it_touches(
    api: Api, ledger: Ledger, api_url: str
) -> None:
    sender, shop, shop_wallet, paid = await _paid(ledger, api)

    async with (
        Subscriber(api_url, ACTIVITY % sender, token=ledger.api.token) as paying,
        Subscriber(api_url, ACTIVITY % shop_wallet, token=shop.api.token) as paid_to,
    ):
        await _heard(paying, ledger, sender)
        await _heard(paid_to, shop, shop_wallet)
        answered = await shop.reverse(paid, "2.00")
        assert answered["errors"] == []
        reversal = answered["transaction"]["id"]
        heard = [await _events_of(paying, reversal), await _events_of(paid_to, reversal)]

    for events in heard:
        assert events[-1] == {
            "id": reversal,
            "type": "REVERSAL",
            "status": "COMPLETED",
            "amount": "2.00",
        }
        assert {e["status"] for e in events[:-1]} <= {"PENDING"}
    async with Subscriber(api_url, UPDATED % reversal, token=shop.api.token) as updates:
        now = await updates.next()
        assert now is not None
        assert (now["transactionUpdated"]["id"], now["transactionUpdated"]["status"]) == (
            reversal,
            "COMPLETED",
        )
        assert await updates.next() is None, "a COMPLETED transaction's updates end at once"


# -- PENDING, and the worker's queue -------------------------------------------------------


@pytest.mark.slow
async def test_a_pending_transfer_is_not_reversible_and_a_pending_reversal_waits_for_a_worker(
    env: dict[str, str],
) -> None:
    """An API of the test's own with no worker: transfers and reversals wait on the queue,
    PENDING, until a worker on the same queue settles them. A PENDING reversal already
    takes its share of the original, and returns nothing until it COMPLETES."""
    with api_server(env) as server:
        async with httpx.AsyncClient(timeout=30, headers=tokens.header()) as client:
            api = Api(client, server.url)
            ledger = Ledger(api)
            sender = await api.new_wallet("10.00")
            shop, shop_wallet = await _shop(api)
            payload = await ledger.move(
                "transfer", fromWalletId=sender, toWalletId=shop_wallet, amount="4.00"
            )
            paid = payload["transaction"]["id"]
            assert payload["transaction"]["status"] == "PENDING"

            early = await shop.reverse(paid, "1.00")

            assert early["transaction"] is None
            assert _errors(early) == [("NOT_REVERSIBLE", ["input", "transactionId"])]
            with worker(env):
                assert (await ledger.final(paid))["status"] == "COMPLETED"

            # No worker again: the reversal is recorded, and waits.
            first = await shop.reverse(paid, "1.50")
            assert first["errors"] == []
            reversal = first["transaction"]
            assert (reversal["type"], reversal["status"], reversal["completedAt"]) == (
                "REVERSAL",
                "PENDING",
                None,
            )
            more = await shop.reverse(paid, "2.51")  # 2.50 is left: the PENDING one counts
            of_pending = await shop.reverse(reversal["id"], "0.50")
            original = await ledger.get(paid)
            balances = (await ledger.balance(sender), await shop.balance(shop_wallet))

            assert _codes(more) == ["REVERSAL_EXCEEDS_ORIGINAL"]
            assert _codes(of_pending) == ["NOT_REVERSIBLE"]
            assert original["reversedAmount"] == "0.00", "only COMPLETED reversals count"
            assert [(r["id"], r["status"]) for r in original["reversals"]] == [
                (reversal["id"], "PENDING")
            ]
            assert balances == ("6.00", "4.00"), "a PENDING reversal moves nothing yet"

            with worker(env):
                done = await shop.final(reversal["id"])

            assert done["status"] == "COMPLETED"
            assert await ledger.balance(sender) == "7.50"
            assert await shop.balance(shop_wallet) == "2.50"
            assert (await ledger.get(paid))["reversedAmount"] == "1.50"


@pytest.mark.slow
async def test_a_reversal_whose_job_was_lost_is_swept_back_onto_the_queue_and_settled(
    env: dict[str, str],
) -> None:
    """Redis loses the reversal's job before any worker takes it: the worker's sweeper finds
    the PENDING reversal, as it finds a PENDING transfer, and settles it once."""
    env = {**env, "WALLET_SWEEP_AFTER_SECONDS": "1"}
    queue = f"{env['WALLET_REDIS_PREFIX']}:settlements"
    with api_server(env) as server:
        async with httpx.AsyncClient(timeout=30, headers=tokens.header()) as client:
            api = Api(client, server.url)
            ledger = Ledger(api)
            sender = await api.new_wallet("10.00")
            shop, shop_wallet = await _shop(api)
            payload = await ledger.move(
                "transfer", fromWalletId=sender, toWalletId=shop_wallet, amount="4.00"
            )
            with worker(env):
                assert (await ledger.final(payload["transaction"]["id"]))["status"] == "COMPLETED"
            paid = payload["transaction"]["id"]
            answered = await shop.reverse(paid, "2.50")
            assert answered["errors"] == []
            reversal = answered["transaction"]
            assert reversal["status"] == "PENDING"
            redis = Redis.from_url(env["REDIS_URL"])
            try:
                assert await redis.delete(queue) == 1, "the job waited on the queue"
            finally:
                await redis.aclose()

            with worker(env):
                done = await shop.final(reversal["id"])

            assert done["status"] == "COMPLETED"
            assert await ledger.balance(sender) == "8.50"
            assert await shop.balance(shop_wallet) == "1.50"
            original = await ledger.get(paid)
            assert original["reversedAmount"] == "2.50"
            assert [r["id"] for r in original["reversals"]] == [reversal["id"]]
