"""deposit, withdraw, transfer and the transaction query, over HTTP."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Any

import pytest

from tests.client import DEPOSIT, TRANSFER, WITHDRAW, Api, key


async def test_a_deposit_completes_and_raises_the_balance(api: Api) -> None:
    wallet = await api.new_wallet("1.00")
    client_key = key()

    payload = await api.deposit(wallet, "10", client_key)

    assert payload["errors"] == []
    t = payload["transaction"]
    assert (t["type"], t["status"], t["amount"], t["currency"]) == (
        "DEPOSIT",
        "COMPLETED",
        "10.00",
        "USD",
    )
    assert (t["clientTransactionId"], t["failureCode"], t["errorMessage"]) == (
        client_key,
        None,
        None,
    )
    assert t["senderWallet"] is None
    assert t["receiverWallet"]["id"] == wallet
    assert datetime.fromisoformat(t["completedAt"]) >= datetime.fromisoformat(t["createdAt"])
    assert await api.balance(wallet) == "11.00"
    assert await api.transaction(t["id"]) == t


async def test_a_deposit_sent_again_with_its_key_returns_it_and_adds_nothing(api: Api) -> None:
    wallet = await api.new_wallet()
    client_key = key()
    first = await api.deposit(wallet, "2.50", client_key)
    again = await api.deposit(wallet, "2.50", client_key)

    assert again["transaction"]["id"] == first["transaction"]["id"]
    assert await api.balance(wallet) == "2.50"


async def test_a_withdrawal_completes_and_lowers_the_balance(api: Api) -> None:
    wallet = await api.new_wallet("10.00")

    payload = await api.withdraw(wallet, "3.25")

    assert payload["errors"] == []
    t = payload["transaction"]
    assert (t["type"], t["status"], t["amount"]) == ("WITHDRAWAL", "COMPLETED", "3.25")
    assert t["senderWallet"]["id"] == wallet
    assert t["receiverWallet"] is None
    assert t["completedAt"] is not None
    assert await api.balance(wallet) == "6.75"


async def test_a_withdrawal_of_more_than_the_balance_is_recorded_as_failed(api: Api) -> None:
    wallet = await api.new_wallet("10.00")

    payload = await api.withdraw(wallet, "10.01")

    assert payload["errors"] == [], "it was accepted, then failed"
    t = payload["transaction"]
    assert (t["type"], t["status"], t["failureCode"]) == (
        "WITHDRAWAL",
        "FAILED",
        "INSUFFICIENT_FUNDS",
    )
    assert t["errorMessage"]
    assert t["completedAt"] is not None
    assert await api.balance(wallet) == "10.00"
    assert await api.transaction(t["id"]) == t


async def test_a_transfer_moves_money_from_one_wallet_to_the_other(api: Api) -> None:
    sender = await api.new_wallet("20.00")
    receiver = await api.new_wallet("1.00")

    payload = await api.transfer(sender, receiver, "7.5")

    assert payload["errors"] == []
    t = payload["transaction"]
    assert (t["type"], t["status"], t["amount"]) == ("TRANSFER", "COMPLETED", "7.50")
    assert (t["senderWallet"]["id"], t["receiverWallet"]["id"]) == (sender, receiver)
    assert (await api.balance(sender), await api.balance(receiver)) == ("12.50", "8.50")
    sender_history = await api.history(sender, page_size=10)
    receiver_history = await api.history(receiver, page_size=10)
    assert sender_history[0]["id"] == receiver_history[0]["id"] == t["id"]


async def test_a_transfer_of_more_than_the_sender_holds_fails_and_moves_nothing(api: Api) -> None:
    sender = await api.new_wallet("5.00")
    receiver = await api.new_wallet()

    t = (await api.transfer(sender, receiver, "5.01"))["transaction"]

    assert (t["status"], t["failureCode"]) == ("FAILED", "INSUFFICIENT_FUNDS")
    assert (await api.balance(sender), await api.balance(receiver)) == ("5.00", "0.00")


async def test_a_transfer_sent_again_with_its_key_moves_money_once(api: Api) -> None:
    sender = await api.new_wallet("20.00")
    receiver = await api.new_wallet()
    client_key = key()

    results = await asyncio.gather(
        *(api.transfer(sender, receiver, "4.00", client_key) for _ in range(10))
    )

    assert len({r["transaction"]["id"] for r in results}) == 1
    assert (await api.balance(sender), await api.balance(receiver)) == ("16.00", "4.00")


async def test_deposits_sent_at_once_with_one_key_move_money_once_and_a_changed_one_is_refused(
    api: Api,
) -> None:
    """They reach one API process together, so they meet in one batch of deposits."""
    wallet = await api.new_wallet()
    client_key = key()

    results = await asyncio.gather(
        *(api.deposit(wallet, "2.50", client_key) for _ in range(10)),
        api.deposit(wallet, "9.99", client_key),
    )

    # Whichever amount claimed the key first wins; every request for the other is refused.
    accepted = [r for r in results if r["errors"] == []]
    refused = [r for r in results if r["errors"] != []]
    assert len({r["transaction"]["id"] for r in accepted}) == 1
    (amount,) = {r["transaction"]["amount"] for r in accepted}
    assert len(accepted) == (10 if amount == "2.50" else 1)
    assert all(r["transaction"] is None for r in refused)
    assert {e["code"] for r in refused for e in r["errors"]} <= {"IDEMPOTENCY_KEY_REUSED"}
    assert await api.balance(wallet) == amount


async def test_asking_for_a_transaction_that_does_not_exist_gives_null(api: Api) -> None:
    assert (
        await api.data("query($id: ID!) { transaction(id: $id) { id } }", id=str(uuid.uuid4()))
    ) == {"transaction": None}


async def test_asking_for_a_transaction_by_a_malformed_id_is_invalid_input(api: Api) -> None:
    body = (await api.post("query($id: ID!) { transaction(id: $id) { id } }", id="nope")).json()
    assert body["data"] == {"transaction": None}
    [error] = body["errors"]
    assert error["extensions"] == {"code": "INVALID_INPUT", "field": ["id"]}


# (mutation, field name, input builder from (usd, other usd, eur), expected code, field at fault)
Refusal = tuple[str, str, Any, str, str]
REFUSALS: dict[str, Refusal] = {
    "deposit amount with too many places": (
        DEPOSIT,
        "deposit",
        lambda u, o, e: {"walletId": u, "amount": "1.001"},
        "INVALID_AMOUNT",
        "amount",
    ),
    "deposit of zero": (
        DEPOSIT,
        "deposit",
        lambda u, o, e: {"walletId": u, "amount": "0"},
        "INVALID_AMOUNT",
        "amount",
    ),
    "deposit to a wallet id that is no UUID": (
        DEPOSIT,
        "deposit",
        lambda u, o, e: {"walletId": "w-1", "amount": "1"},
        "INVALID_INPUT",
        "walletId",
    ),
    "deposit to a missing wallet": (
        DEPOSIT,
        "deposit",
        lambda u, o, e: {"walletId": str(uuid.uuid4()), "amount": "1"},
        "WALLET_NOT_FOUND",
        "walletId",
    ),
    "deposit with an empty key": (
        DEPOSIT,
        "deposit",
        lambda u, o, e: {"walletId": u, "amount": "1", "clientTransactionId": ""},
        "INVALID_INPUT",
        "clientTransactionId",
    ),
    "negative withdrawal": (
        WITHDRAW,
        "withdraw",
        lambda u, o, e: {"walletId": u, "amount": "-1.00"},
        "INVALID_AMOUNT",
        "amount",
    ),
    "withdrawal from a missing wallet": (
        WITHDRAW,
        "withdraw",
        lambda u, o, e: {"walletId": str(uuid.uuid4()), "amount": "1"},
        "WALLET_NOT_FOUND",
        "walletId",
    ),
    "transfer to the same wallet": (
        TRANSFER,
        "transfer",
        lambda u, o, e: {"fromWalletId": u, "toWalletId": u, "amount": "1"},
        "SAME_WALLET",
        "toWalletId",
    ),
    "transfer across currencies": (
        TRANSFER,
        "transfer",
        lambda u, o, e: {"fromWalletId": u, "toWalletId": e, "amount": "1"},
        "CURRENCY_MISMATCH",
        "toWalletId",
    ),
    "transfer from a missing wallet": (
        TRANSFER,
        "transfer",
        lambda u, o, e: {"fromWalletId": str(uuid.uuid4()), "toWalletId": u, "amount": "1"},
        "WALLET_NOT_FOUND",
        "fromWalletId",
    ),
    "transfer to a missing wallet": (
        TRANSFER,
        "transfer",
        lambda u, o, e: {"fromWalletId": u, "toWalletId": str(uuid.uuid4()), "amount": "1"},
        "WALLET_NOT_FOUND",
        "toWalletId",
    ),
    "transfer to a wallet id that is no UUID": (
        TRANSFER,
        "transfer",
        lambda u, o, e: {"fromWalletId": u, "toWalletId": "x", "amount": "1"},
        "INVALID_INPUT",
        "toWalletId",
    ),
    "transfer with too many places": (
        TRANSFER,
        "transfer",
        lambda u, o, e: {"fromWalletId": u, "toWalletId": o, "amount": "0.005"},
        "INVALID_AMOUNT",
        "amount",
    ),
}


@pytest.mark.parametrize(
    ("mutation", "name", "build", "code", "field"), REFUSALS.values(), ids=REFUSALS.keys()
)
async def test_a_refused_movement_names_the_input_at_fault_and_moves_nothing(
    api: Api, mutation: str, name: str, build: Any, code: str, field: str
) -> None:
    usd, other, eur = (
        await api.new_wallet("10.00"),
        await api.new_wallet("10.00"),
        await api.new_wallet("10.00", "EUR"),
    )
    fields = {"clientTransactionId": key(), **build(usd, other, eur)}

    payload = (await api.data(mutation, input=fields))[name]

    assert payload["transaction"] is None
    [error] = payload["errors"]
    assert (error["code"], error["field"]) == (code, ["input", field])
    assert error["message"]
    for wallet in (usd, other, eur):
        assert await api.balance(wallet) == "10.00"
        assert len(await api.history(wallet, page_size=10)) == 1


async def test_a_key_reused_for_a_different_movement_is_refused(api: Api) -> None:
    wallet = await api.new_wallet("10.00")
    client_key = key()
    await api.deposit(wallet, "1.00", client_key)

    payload = await api.withdraw(wallet, "1.00", client_key)

    assert payload["transaction"] is None
    assert [(e["code"], e["field"]) for e in payload["errors"]] == [
        ("IDEMPOTENCY_KEY_REUSED", ["input", "clientTransactionId"])
    ]
    assert await api.balance(wallet) == "11.00"


@pytest.mark.parametrize("amount", [12.5, 12.0, True, None, [1], {"value": "1"}])
async def test_an_amount_that_is_not_a_string_or_integer_in_json_is_refused(
    api: Api, amount: object
) -> None:
    wallet = await api.new_wallet()
    fields = {"walletId": wallet, "amount": amount, "clientTransactionId": key()}

    errors = await api.graphql_errors(DEPOSIT, input=fields)

    assert "amount" in errors[0]["message"]
    assert await api.balance(wallet) == "0.00"
    assert await api.history(wallet, page_size=10) == []


async def test_a_float_literal_amount_in_the_document_is_refused(api: Api) -> None:
    wallet = await api.new_wallet()
    document = (
        f'mutation {{ deposit(input: {{walletId: "{wallet}", amount: 12.5, '
        f'clientTransactionId: "{key()}"}}) {{ transaction {{ id }} }} }}'
    )

    errors = await api.graphql_errors(document)

    assert "Decimal" in errors[0]["message"]
    assert await api.balance(wallet) == "0.00"


async def test_a_json_integer_amount_is_read_exactly(api: Api) -> None:
    wallet = await api.new_wallet()
    fields = {"walletId": wallet, "amount": 12, "clientTransactionId": key()}

    payload = (await api.data(DEPOSIT, input=fields))["deposit"]

    assert payload["transaction"]["amount"] == "12.00"
    assert await api.balance(wallet) == "12.00"
