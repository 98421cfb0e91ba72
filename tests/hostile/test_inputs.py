"""Whatever text or number a client puts in an input, the answer names the client's mistake.

Never "Internal error.", and a refused request writes nothing: not a wallet, a transaction,
a ledger entry or an idempotency key.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import tokens
from tests.client import CREATE_WALLET, DEPOSIT, ERRORS, TRANSFER, WITHDRAW
from tests.processes import Process

pytestmark = pytest.mark.timeout(120)

HOLD = "id status amount walletId receiverWalletId expiresAt description"
PLACE_HOLD = f"""
mutation PlaceHold($input: PlaceHoldInput!) {{
  placeHold(input: $input) {{ hold {{ {HOLD} }} {ERRORS} }}
}}"""
CAPTURE_HOLD = f"""
mutation CaptureHold($input: CaptureHoldInput!) {{
  captureHold(input: $input) {{ transaction {{ id status amount }} {ERRORS} }}
}}"""
VOID_HOLD = f"""
mutation VoidHold($input: VoidHoldInput!) {{
  voidHold(input: $input) {{ hold {{ {HOLD} }} {ERRORS} }}
}}"""
REVERSE = f"""
mutation Reverse($input: ReverseTransactionInput!) {{
  reverseTransaction(input: $input) {{ transaction {{ id status amount }} {ERRORS} }}
}}"""
MUTATIONS = {
    "createWallet": CREATE_WALLET,
    "deposit": DEPOSIT,
    "withdraw": WITHDRAW,
    "transfer": TRANSFER,
    "placeHold": PLACE_HOLD,
    "captureHold": CAPTURE_HOLD,
    "voidHold": VOID_HOLD,
    "reverseTransaction": REVERSE,
}
# The fields each mutation's input is sent with.
INPUTS = {
    "createWallet": ("currency", "initialBalance", "clientTransactionId"),
    "deposit": ("walletId", "amount", "clientTransactionId", "description"),
    "withdraw": ("walletId", "amount", "clientTransactionId", "description"),
    "transfer": ("fromWalletId", "toWalletId", "amount", "clientTransactionId", "description"),
    "placeHold": (
        "walletId",
        "receiverWalletId",
        "amount",
        "clientTransactionId",
        "expiresInSeconds",
        "description",
    ),
    "captureHold": ("holdId", "amount", "clientTransactionId"),
    "voidHold": ("holdId", "clientTransactionId"),
    "reverseTransaction": ("transactionId", "amount", "clientTransactionId", "description"),
}
# Every string and amount input of every mutation.
FIELDS = [
    ("createWallet", "currency"),
    ("createWallet", "initialBalance"),
    ("createWallet", "clientTransactionId"),
    ("deposit", "walletId"),
    ("deposit", "amount"),
    ("deposit", "clientTransactionId"),
    ("deposit", "description"),
    ("withdraw", "walletId"),
    ("withdraw", "amount"),
    ("withdraw", "clientTransactionId"),
    ("withdraw", "description"),
    ("transfer", "fromWalletId"),
    ("transfer", "toWalletId"),
    ("transfer", "amount"),
    ("transfer", "clientTransactionId"),
    ("transfer", "description"),
    ("placeHold", "walletId"),
    ("placeHold", "receiverWalletId"),
    ("placeHold", "amount"),
    ("placeHold", "clientTransactionId"),
    ("placeHold", "expiresInSeconds"),
    ("placeHold", "description"),
    ("captureHold", "holdId"),
    ("captureHold", "amount"),
    ("captureHold", "clientTransactionId"),
    ("voidHold", "holdId"),
    ("voidHold", "clientTransactionId"),
    ("reverseTransaction", "transactionId"),
    ("reverseTransaction", "amount"),
    ("reverseTransaction", "clientTransactionId"),
    ("reverseTransaction", "description"),
]
HOSTILE = '"\\u0000hostile"'  # where the generated JSON goes in the request body


def _sent_hostile(
    client: httpx.Client, url: str, body: str, value: str, mutation: str
) -> tuple[httpx.Response, bool]:
    """Post the body with `value` where HOSTILE stands; the answer, which must never be a
    500 or "Internal error.", and whether it refused the request: a 4xx (a body GraphQL
    cannot read), or errors at the top, in the payload or in any of a batch's results."""
    response = client.post(
        url,
        content=body.replace(HOSTILE, value).encode(),
        headers={"content-type": "application/json"},
    )
    assert response.status_code < 500, response.text
    assert "Internal error." not in response.text, response.text
    if response.status_code >= 400:
        return response, True
    answer = response.json()
    payload = (answer.get("data") or {}).get(mutation) or {}
    results = payload.get("results") or []
    refused = (
        bool(answer.get("errors"))
        or bool(payload.get("errors"))
        or any(r["errors"] for r in results)
    )
    return response, refused


any_text = st.text(st.characters(exclude_categories=()), max_size=30)
tricky_text = st.sampled_from(["\x00", "\ud800", "a\udfffb", "12.50\x00", " 1", "", "-0"])
number_text = st.one_of(
    st.integers().map(str),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.integers(1, 6000).map(lambda n: "9" * n),
    st.integers(1, 6000).map(lambda n: "0." + "1" * n),
)
# JSON text, written by hand: json.dumps refuses ints of 4,300 digits or more.
raw_json = st.one_of(
    st.one_of(any_text, tricky_text, number_text).map(json.dumps),
    st.integers().map(str),
    st.integers(1, 6000).map(lambda n: "9" * n),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["true", "null", "[]", "{}", "1e400", '["1"]']),
)


async def _writes(connection: asyncpg.Connection) -> tuple[int, ...]:
    row = await connection.fetchrow(
        "SELECT (SELECT count(*) FROM wallets), (SELECT count(*) FROM transactions),"
        " (SELECT count(*) FROM ledger_entries), (SELECT count(*) FROM idempotency_keys),"
        " (SELECT count(*) FROM holds), (SELECT count(*) FROM holds WHERE status = 'ACTIVE'),"
        " (SELECT coalesce(sum(held), 0) FROM wallets)"
    )
    assert row is not None
    return tuple(row)


@pytest.fixture
def runner() -> Iterator[asyncio.Runner]:
    # Hypothesis calls the test synchronously; the database is read on a loop of its own.
    with asyncio.Runner() as runner:
        yield runner


def test_no_input_a_client_sends_is_an_internal_error_or_a_write_when_refused(
    hostile_api: Process, database_url: str, runner: asyncio.Runner
) -> None:
    client = httpx.Client(timeout=30, headers=tokens.header())
    connection = runner.run(asyncpg.connect(database_url))
    wallets = [_new_wallet(client, hostile_api.url) for _ in range(3)]
    valid: dict[str, Any] = {
        "currency": "USD",
        "initialBalance": "1.00",
        "walletId": wallets[0],
        "fromWalletId": wallets[0],
        "toWalletId": wallets[1],
        "receiverWalletId": wallets[1],
        "amount": "0.01",
        "expiresInSeconds": 3600,
        "description": "a hold",
    }

    def new_hold() -> str:
        """An ACTIVE hold to capture or void, in a wallet of its own that nothing else
        touches, so that it always has the money."""
        given = {
            "walletId": wallets[2],
            "receiverWalletId": wallets[1],
            "amount": "0.01",
            "clientTransactionId": str(uuid.uuid4()),
        }
        answer = client.post(
            hostile_api.url, json={"query": PLACE_HOLD, "variables": {"input": given}}
        ).json()
        assert answer["data"]["placeHold"]["errors"] == [], answer
        return str(answer["data"]["placeHold"]["hold"]["id"])

    def new_transfer() -> str:
        """A COMPLETED transfer to reverse (settled in the request), between the caller's own
        wallets, so the caller is its receiver's owner and may refund it."""
        given = {
            "fromWalletId": wallets[0],
            "toWalletId": wallets[2],
            "amount": "0.01",
            "clientTransactionId": str(uuid.uuid4()),
        }
        answer = client.post(
            hostile_api.url, json={"query": TRANSFER, "variables": {"input": given}}
        ).json()
        assert answer["data"]["transfer"]["transaction"]["status"] == "COMPLETED", answer
        return str(answer["data"]["transfer"]["transaction"]["id"])

    @settings(
        max_examples=300,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(field=st.sampled_from(FIELDS), value=raw_json)
    def check(field: tuple[str, str], value: str) -> None:
        mutation, name = field
        inputs = {**valid, "clientTransactionId": str(uuid.uuid4())}
        if "holdId" in INPUTS[mutation]:
            inputs["holdId"] = new_hold()
        if "transactionId" in INPUTS[mutation]:
            inputs["transactionId"] = new_transfer()
        given_input = {key: inputs[key] for key in INPUTS[mutation]} | {name: "\x00hostile"}
        body = json.dumps({"query": MUTATIONS[mutation], "variables": {"input": given_input}})
        assert HOSTILE in body
        before = runner.run(_writes(connection))
        response, refused = _sent_hostile(client, hostile_api.url, body, value, mutation)
        if refused:
            writes = runner.run(_writes(connection))
            assert writes == before, f"a refused request wrote: {response.text}"

    try:
        check()
    finally:
        client.close()
        runner.run(connection.close())


TRANSFER_BATCH = f"""
mutation TransferBatch($input: TransferBatchInput!) {{
  transferBatch(input: $input) {{
    results {{ transaction {{ id status }} {ERRORS} }}
    {ERRORS}
  }}
}}"""
BATCH_FIELDS = [
    "fromWalletId",
    "toWalletId",
    "amount",
    "clientTransactionId",
    "atomic",
    "transfers",
]


def test_no_input_in_a_transfer_batch_is_an_internal_error_or_a_write_when_refused(
    hostile_api: Process, database_url: str, runner: asyncio.Runner
) -> None:
    """A hostile value in the second transfer of an atomic batch of two, or in the batch's own
    fields: any refusal, of the request, the batch or a transfer, records nothing."""
    client = httpx.Client(timeout=30, headers=tokens.header())
    connection = runner.run(asyncpg.connect(database_url))
    sender, receiver = (_new_wallet(client, hostile_api.url) for _ in range(2))

    @settings(
        max_examples=80,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(field=st.sampled_from(BATCH_FIELDS), value=raw_json)
    def check(field: str, value: str) -> None:
        transfers: list[dict[str, Any]] = [
            {
                "fromWalletId": sender,
                "toWalletId": receiver,
                "amount": "0.01",
                "clientTransactionId": str(uuid.uuid4()),
            }
            for _ in range(2)
        ]
        given_input: dict[str, Any] = {"transfers": transfers, "atomic": True}
        if field in ("atomic", "transfers"):
            given_input[field] = "\x00hostile"
        else:
            transfers[1][field] = "\x00hostile"
        body = json.dumps({"query": TRANSFER_BATCH, "variables": {"input": given_input}})
        assert HOSTILE in body
        before = runner.run(_writes(connection))
        response, refused = _sent_hostile(client, hostile_api.url, body, value, "transferBatch")
        if refused:
            writes = runner.run(_writes(connection))
            assert writes == before, f"a refused batch wrote: {response.text}"

    try:
        check()
    finally:
        client.close()
        runner.run(connection.close())


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ('"key\\u0000"', "INVALID_INPUT"),
        ('"\\ud800"', "INVALID_INPUT"),
        ('"a\\udfffb"', "INVALID_INPUT"),
    ],
)
def test_unstorable_text_in_a_key_is_refused_as_invalid_input(
    hostile_api: Process, value: str, code: str
) -> None:
    with httpx.Client(timeout=30, headers=tokens.header()) as client:
        wallet = _new_wallet(client, hostile_api.url)
        variables = {"input": {"walletId": wallet, "amount": "1.00", "clientTransactionId": "K"}}
        body = json.dumps({"query": MUTATIONS["deposit"], "variables": variables})
        response = client.post(
            hostile_api.url,
            content=body.replace('"K"', value).encode(),
            headers={"content-type": "application/json"},
        )
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == code


def test_a_nul_in_a_string_literal_is_refused_as_invalid_input(hostile_api: Process) -> None:
    with httpx.Client(timeout=30, headers=tokens.header()) as client:
        wallet = _new_wallet(client, hostile_api.url)
        query = (
            f'mutation {{ deposit(input: {{walletId: "{wallet}", amount: "1.00",'
            ' clientTransactionId: "a\\u0000b"}) { errors { code } } }'
        )
        response = client.post(hostile_api.url, json={"query": query})
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == "INVALID_INPUT"


@pytest.mark.parametrize("digits", [5000, 100])
def test_an_amount_of_thousands_of_digits_is_an_invalid_amount(
    hostile_api: Process, digits: int
) -> None:
    with httpx.Client(timeout=30, headers=tokens.header()) as client:
        wallet = _new_wallet(client, hostile_api.url)
        variables = {
            "input": {"walletId": wallet, "amount": "9" * digits, "clientTransactionId": "big"}
        }
        response = client.post(
            hostile_api.url, json={"query": MUTATIONS["deposit"], "variables": variables}
        )
    payload = response.json()["data"]["deposit"]
    assert payload["transaction"] is None
    assert [error["code"] for error in payload["errors"]] == ["INVALID_AMOUNT"]


def _new_wallet(client: httpx.Client, url: str) -> str:
    variables = {"input": {"initialBalance": "1000.00"}}
    response = client.post(url, json={"query": MUTATIONS["createWallet"], "variables": variables})
    return str(response.json()["data"]["createWallet"]["wallet"]["id"])


def test_a_json_integer_python_will_not_read_is_a_bad_request(hostile_api: Process) -> None:
    body = '{"query": "{ __typename }", "variables": {"n": ' + "9" * 4301 + "}}"
    with httpx.Client(timeout=30, headers=tokens.header()) as client:
        response = client.post(
            hostile_api.url, content=body.encode(), headers={"content-type": "application/json"}
        )
    assert response.status_code == 400, response.text
