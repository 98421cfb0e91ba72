"""createWallet and the wallet query, over HTTP."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest

from tests.client import GET_WALLET, Api, key


def _when(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    assert moment.tzinfo is not None, f"{text} has no UTC offset"
    return moment


async def test_a_new_wallet_holds_nothing_in_usd_unless_told_otherwise(api: Api) -> None:
    payload = await api.create_wallet()

    assert payload["errors"] == []
    wallet = payload["wallet"]
    uuid.UUID(wallet["id"])
    assert (wallet["currency"], wallet["balance"]) == ("USD", "0.00")
    assert _when(wallet["createdAt"]) <= _when(wallet["updatedAt"])
    assert await api.wallet(wallet["id"]) == wallet
    assert (await api.history_page(wallet["id"]))["edges"] == []


@pytest.mark.parametrize(
    ("currency", "initial", "balance"),
    [
        ("USD", "25.5", "25.50"),
        ("JPY", "1000", "1000"),
        ("KWD", "1.25", "1.250"),
        ("EUR", "0", "0.00"),
    ],
)
async def test_an_initial_balance_is_recorded_as_a_completed_deposit(
    api: Api, currency: str, initial: str, balance: str
) -> None:
    payload = await api.create_wallet(currency=currency, initialBalance=initial)

    assert payload["errors"] == []
    wallet = payload["wallet"]
    assert (wallet["currency"], wallet["balance"]) == (currency, balance)
    nodes = await api.history(wallet["id"], page_size=10)
    if initial == "0":
        assert nodes == []
        return
    assert [(n["type"], n["status"], n["amount"]) for n in nodes] == [
        ("DEPOSIT", "COMPLETED", balance)
    ]
    deposit = await api.transaction(nodes[0]["id"])
    assert deposit["senderWallet"] is None
    assert deposit["receiverWallet"] == {"id": wallet["id"], "balance": balance}
    assert deposit["currency"] == currency
    assert deposit["completedAt"] is not None


async def test_creating_a_wallet_again_with_its_key_returns_the_same_wallet(api: Api) -> None:
    client_key = key()
    first = await api.create_wallet(initialBalance="10.00", clientTransactionId=client_key)
    again = await api.create_wallet(initialBalance="10.00", clientTransactionId=client_key)

    assert again == first
    assert len(await api.history(first["wallet"]["id"], page_size=10)) == 1


async def test_a_wallet_key_sent_with_another_initial_balance_is_refused(api: Api) -> None:
    client_key = key()
    await api.create_wallet(initialBalance="10.00", clientTransactionId=client_key)
    refused = await api.create_wallet(initialBalance="11.00", clientTransactionId=client_key)

    assert refused["wallet"] is None
    assert [(e["code"], e["field"]) for e in refused["errors"]] == [
        ("IDEMPOTENCY_KEY_REUSED", ["input", "clientTransactionId"])
    ]


@pytest.mark.parametrize(
    ("fields", "code", "field"),
    [
        ({"currency": "XAU"}, "UNSUPPORTED_CURRENCY", "currency"),
        ({"currency": "usd"}, "UNSUPPORTED_CURRENCY", "currency"),
        ({"initialBalance": "-1"}, "INVALID_AMOUNT", "initialBalance"),
        ({"initialBalance": "0.001"}, "INVALID_AMOUNT", "initialBalance"),
        ({"currency": "JPY", "initialBalance": "0.5"}, "INVALID_AMOUNT", "initialBalance"),
        ({"clientTransactionId": ""}, "INVALID_INPUT", "clientTransactionId"),
    ],
)
async def test_a_wallet_that_cannot_be_created_is_explained_in_errors(
    api: Api, fields: dict[str, str], code: str, field: str
) -> None:
    refused = await api.create_wallet(**fields)

    assert refused["wallet"] is None
    [error] = refused["errors"]
    assert (error["code"], error["field"]) == (code, ["input", field])
    assert error["message"]


async def test_asking_for_a_wallet_that_does_not_exist_gives_null(api: Api) -> None:
    assert await api.wallet(str(uuid.uuid4())) is None


@pytest.mark.parametrize("wallet_id", ["not-a-uuid", ""])
async def test_asking_for_a_wallet_by_a_malformed_id_is_invalid_input(
    api: Api, wallet_id: str
) -> None:
    body = (await api.post(GET_WALLET, id=wallet_id)).json()
    assert body["data"] == {"wallet": None}
    [error] = body["errors"]
    assert error["extensions"] == {"code": "INVALID_INPUT", "field": ["id"]}
