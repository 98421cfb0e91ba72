"""transferBatch (issue 17, tests/contract/batches.graphql), black-box over HTTP: one result per
transfer in the order sent; not atomic, each decided as if alone; atomic, all or none; a batch
sent again replays; an empty or oversized one is refused whole; 1,000 transfers fit the edge's
limits, which stay tight for every other document.

Most tests speak to the run's `wallet serve`, which settles inline. The last one starts an
API and a worker of its own, to see a batch go to the queue as one job."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from tests import tokens
from tests.client import ERRORS, TRANSACTION, Api, key
from tests.processes import api_server, worker

TRANSFER_BATCH = f"""
mutation TransferBatch($input: TransferBatchInput!) {{
  transferBatch(input: $input) {{
    results {{ transaction {{ {TRANSACTION} }} {ERRORS} }}
    {ERRORS}
  }}
}}"""
BALANCE = "query Balance($id: ID!) { wallet(id: $id) { balance } }"
SMALL_BODY = 64 * 1024


def transfer(sender: str, receiver: str, amount: str, client_key: str = "") -> dict[str, str]:
    return {
        "fromWalletId": sender,
        "toWalletId": receiver,
        "amount": amount,
        "clientTransactionId": client_key or key(),
    }


async def send_batch(
    api: Api, transfers: list[dict[str, str]], atomic: bool | None = None
) -> dict[str, Any]:
    given: dict[str, Any] = {"transfers": transfers}
    if atomic is not None:
        given["atomic"] = atomic
    payload: dict[str, Any] = (await api.data(TRANSFER_BATCH, input=given))["transferBatch"]
    return payload


async def post_named(api: Api, query: str, name: str, **variables: Any) -> httpx.Response:
    """The raw response to the operation `name` of the document, as Api.post sends it."""
    request = api.client.build_request(
        "POST", api.url, json={"query": query, "operationName": name, "variables": variables}
    )
    request.headers.pop("Authorization", None)
    request.headers.update(tokens.header(api.token))
    return await api.client.send(request)


def outcomes(payload: dict[str, Any]) -> list[tuple[str | None, str | None]]:
    """(status, failureCode) of each accepted transfer; (None, its codes) of each refused."""
    seen: list[tuple[str | None, str | None]] = []
    for result in payload["results"]:
        if result["transaction"] is None:
            seen.append((None, ",".join(e["code"] for e in result["errors"])))
        else:
            assert result["errors"] == [], result
            seen.append((result["transaction"]["status"], result["transaction"]["failureCode"]))
    return seen


async def settled(api: Api, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The batch's accepted transactions, each once final."""
    return [
        await api.final(r["transaction"])
        for r in payload["results"]
        if r["transaction"] is not None
    ]


async def balances(api: Api, *wallets: str) -> list[str]:
    return [await api.balance(w) for w in wallets]


async def recorded(api: Api, wallet: str) -> int:
    """How many transactions the wallet's history holds."""
    return len(await api.history(wallet, 100))


# -- results, in order -----------------------------------------------------------------------


async def test_a_batch_answers_one_result_per_transfer_in_the_order_sent(api: Api) -> None:
    a, b, c = await api.new_wallet("20.00"), await api.new_wallet(), await api.new_wallet()
    sent = [
        transfer(a, b, "1.00"),
        transfer(a, c, "2.00"),
        transfer(a, b, "3.00"),
        transfer(a, c, "4.00"),
    ]

    payload = await send_batch(api, sent)

    assert payload["errors"] == []
    results = [r["transaction"] for r in payload["results"]]
    assert [(t["clientTransactionId"], t["amount"]) for t in results] == [
        (s["clientTransactionId"], s["amount"]) for s in sent
    ]
    assert [(t["senderWallet"]["id"], t["receiverWallet"]["id"]) for t in results] == [
        (a, b),
        (a, c),
        (a, b),
        (a, c),
    ]
    assert {t["status"] for t in await settled(api, payload)} == {"COMPLETED"}
    assert await balances(api, a, b, c) == ["10.00", "4.00", "6.00"]


async def test_a_refused_transfer_names_its_field_by_its_place_in_the_batch(api: Api) -> None:
    a, b = await api.new_wallet("10.00"), await api.new_wallet()
    sent = [
        transfer(a, b, "1.00"),
        transfer(a, b, "0.001"),
        transfer(a, "not-a-wallet", "1.00"),
        transfer(a, b, "1.00", " spaced "),
        transfer(a, a, "1.00"),
    ]

    payload = await send_batch(api, sent)

    assert payload["errors"] == []
    fields = [[e["field"] for e in r["errors"]] for r in payload["results"]]
    assert fields == [
        [],
        [["input", "transfers", "1", "amount"]],
        [["input", "transfers", "2", "toWalletId"]],
        [["input", "transfers", "3", "clientTransactionId"]],
        [["input", "transfers", "4", "toWalletId"]],
    ]
    assert [codes for _, codes in outcomes(payload)[1:]] == [
        "INVALID_AMOUNT",
        "INVALID_INPUT",
        "INVALID_INPUT",
        "SAME_WALLET",
    ]


# -- not atomic: each as if alone ------------------------------------------------------------


async def test_a_bad_transfer_in_a_batch_that_is_not_atomic_stops_none_of_the_others(
    api: Api,
) -> None:
    a, b = await api.new_wallet("10.00"), await api.new_wallet()
    stranger = Api(api.client, api.url).as_caller(f"stranger-{uuid.uuid4()}")
    theirs = await stranger.new_wallet()

    payload = await send_batch(
        api,
        [
            transfer(a, b, "1.00"),
            transfer(theirs, b, "1.00"),
            transfer(a, b, "-2"),
            transfer(a, b, "2.00"),
        ],
    )

    assert payload["errors"] == []
    assert [status is None for status, _ in outcomes(payload)] == [False, True, True, False]
    final = await settled(api, payload)
    assert [t["status"] for t in final] == ["COMPLETED", "COMPLETED"]
    assert [codes for status, codes in outcomes(payload) if status is None] == [
        "WALLET_NOT_FOUND",
        "INVALID_AMOUNT",
    ]
    assert await balances(api, a, b) == ["7.00", "3.00"]


async def test_transfers_of_a_batch_competing_for_the_same_funds_are_decided_in_the_order_sent(
    api: Api,
) -> None:
    a, b = await api.new_wallet("10.00"), await api.new_wallet()

    payload = await send_batch(
        api, [transfer(a, b, "6.00"), transfer(a, b, "6.00"), transfer(a, b, "3.00")]
    )

    final = await settled(api, payload)
    assert [(t["status"], t["failureCode"]) for t in final] == [
        ("COMPLETED", None),
        ("FAILED", "INSUFFICIENT_FUNDS"),
        ("COMPLETED", None),
    ]
    assert await balances(api, a, b) == ["1.00", "9.00"]


# -- atomic: all or none ---------------------------------------------------------------------


async def test_an_atomic_batch_with_one_refused_transfer_records_none_and_links_the_rest(
    api: Api,
) -> None:
    a, b = await api.new_wallet("10.00"), await api.new_wallet()
    sent = [transfer(a, b, "1.00"), transfer(a, b, "abc"), transfer(a, b, "2.00")]

    payload = await send_batch(api, sent, atomic=True)

    assert payload["errors"] == []
    assert [r["transaction"] for r in payload["results"]] == [None, None, None]
    assert outcomes(payload) == [
        (None, "LINKED_TRANSFER_FAILED"),
        (None, "INVALID_AMOUNT"),
        (None, "LINKED_TRANSFER_FAILED"),
    ]
    assert [e["field"] for e in payload["results"][1]["errors"]] == [
        ["input", "transfers", "1", "amount"]
    ]
    assert await balances(api, a, b) == ["10.00", "0.00"]
    assert (await recorded(api, a), await recorded(api, b)) == (1, 0)
    # No key was kept: the batch, corrected, goes through with the same keys.
    sent[1]["amount"] = "3.00"
    again = await send_batch(api, sent, atomic=True)
    assert [t["status"] for t in await settled(api, again)] == ["COMPLETED"] * 3
    assert await balances(api, a, b) == ["4.00", "6.00"]


async def test_an_atomic_batch_with_one_short_of_funds_fails_whole_and_moves_nothing(
    api: Api,
) -> None:
    a, b, c = await api.new_wallet("10.00"), await api.new_wallet(), await api.new_wallet()

    payload = await send_batch(
        api,
        [transfer(a, b, "4.00"), transfer(a, c, "7.00"), transfer(b, c, "1.00")],
        atomic=True,
    )

    final = await settled(api, payload)
    assert [(t["status"], t["failureCode"]) for t in final] == [
        ("FAILED", "LINKED_TRANSFER_FAILED"),
        ("FAILED", "INSUFFICIENT_FUNDS"),
        ("FAILED", "LINKED_TRANSFER_FAILED"),
    ]
    assert await balances(api, a, b, c) == ["10.00", "0.00", "0.00"]


async def test_an_atomic_batch_that_fits_completes_whole(api: Api) -> None:
    a, b, c = await api.new_wallet("10.00"), await api.new_wallet(), await api.new_wallet()

    payload = await send_batch(
        api,
        # b pays c out of what a sends it in the same batch.
        [transfer(a, b, "4.00"), transfer(b, c, "3.00"), transfer(a, c, "6.00")],
        atomic=True,
    )

    assert [t["status"] for t in await settled(api, payload)] == ["COMPLETED"] * 3
    assert await balances(api, a, b, c) == ["0.00", "1.00", "9.00"]


async def test_no_balance_ever_shows_part_of_an_atomic_batch(api: Api) -> None:
    a, b = await api.new_wallet("30.00"), await api.new_wallet()
    seen: dict[str, set[str]] = {a: set(), b: set()}
    done = asyncio.Event()

    async def watch(wallet: str) -> None:
        while not done.is_set():
            seen[wallet].add(await api.balance(wallet))

    async def send() -> None:
        try:
            for _ in range(4):
                parts = [transfer(a, b, amount) for amount in ("1.00", "2.00", "3.00")]
                payload = await send_batch(api, parts, atomic=True)
                await settled(api, payload)
        finally:
            done.set()

    await asyncio.gather(send(), *(watch(w) for w in (a, b) for _ in range(3)))

    assert seen[a] <= {"30.00", "24.00", "18.00", "12.00", "6.00"}, seen[a]
    assert seen[b] <= {"0.00", "6.00", "12.00", "18.00", "24.00"}, seen[b]
    assert await balances(api, a, b) == ["6.00", "24.00"]


# -- sent again ------------------------------------------------------------------------------


@pytest.mark.parametrize("atomic", [False, True])
async def test_a_batch_sent_again_whole_replays_it_and_moves_no_money_twice(
    api: Api, atomic: bool
) -> None:
    a, b = await api.new_wallet("10.00"), await api.new_wallet()
    sent = [transfer(a, b, "1.00"), transfer(a, b, "2.00"), transfer(a, b, "20.00")]
    first = await send_batch(api, sent, atomic=atomic)
    first_final = await settled(api, first)
    after_first = await balances(api, a, b)

    again = await send_batch(api, sent, atomic=atomic)

    assert again["errors"] == []
    again_final = await settled(api, again)
    assert [t["id"] for t in again_final] == [t["id"] for t in first_final]
    assert [(t["status"], t["failureCode"]) for t in again_final] == [
        (t["status"], t["failureCode"]) for t in first_final
    ]
    assert await balances(api, a, b) == after_first
    assert await recorded(api, a) == 4
    expected = ["10.00", "0.00"] if atomic else ["7.00", "3.00"]
    assert after_first == expected


async def test_a_key_used_before_by_a_single_transfer_refuses_an_atomic_batch_and_links_the_rest(
    api: Api,
) -> None:
    a, b = await api.new_wallet("10.00"), await api.new_wallet()
    used = key()
    await api.transfer(a, b, "1.00", used)

    payload = await send_batch(
        api, [transfer(a, b, "2.00"), transfer(a, b, "1.00", used), transfer(a, b, "3.00")], True
    )

    assert outcomes(payload) == [
        (None, "LINKED_TRANSFER_FAILED"),
        (None, "IDEMPOTENCY_KEY_REUSED"),
        (None, "LINKED_TRANSFER_FAILED"),
    ]
    assert [e["field"] for e in payload["results"][1]["errors"]] == [
        ["input", "transfers", "1", "clientTransactionId"]
    ]
    assert await balances(api, a, b) == ["9.00", "1.00"]


async def test_a_key_used_before_refuses_only_its_own_transfer_in_a_batch_that_is_not_atomic(
    api: Api,
) -> None:
    a, b = await api.new_wallet("10.00"), await api.new_wallet()
    used = key()
    await api.transfer(a, b, "1.00", used)

    payload = await send_batch(api, [transfer(a, b, "2.00"), transfer(a, b, "5.00", used)])

    assert [status for status, _ in outcomes(payload)] == ["COMPLETED", None]
    assert outcomes(payload)[1] == (None, "IDEMPOTENCY_KEY_REUSED")
    assert await balances(api, a, b) == ["7.00", "3.00"]


# -- batches refused whole, and the edge's limits --------------------------------------------


@pytest.mark.parametrize("size", [0, 1001])
async def test_an_empty_or_oversized_batch_is_refused_whole_and_records_nothing(
    api: Api, size: int
) -> None:
    a, b = await api.new_wallet("100.00"), await api.new_wallet()
    for atomic in (False, True):
        payload = await send_batch(api, [transfer(a, b, "0.01") for _ in range(size)], atomic)

        assert payload["results"] == []
        assert [(e["code"], e["field"]) for e in payload["errors"]] == [
            ("INVALID_INPUT", ["input", "transfers"])
        ]
    assert await balances(api, a, b) == ["100.00", "0.00"]
    assert (await recorded(api, a), await recorded(api, b)) == (1, 0)


@pytest.mark.parametrize("atomic", [False, True])
async def test_a_batch_of_1000_transfers_in_its_variables_passes_the_edge_and_answers_each(
    api: Api, atomic: bool
) -> None:
    a, b = await api.new_wallet("10.00"), await api.new_wallet()
    sent = [transfer(a, b, "0.01") for _ in range(1000)]
    given = {"transfers": sent, "atomic": atomic}
    body = json.dumps({"query": TRANSFER_BATCH, "variables": {"input": given}})
    assert len(body.encode()) > 2 * SMALL_BODY, "the batch is far over other documents' limit"

    response = await api.post(TRANSFER_BATCH, input=given)

    assert response.status_code == 200, response.text[:2000]
    answer = response.json()
    assert "errors" not in answer, answer.get("errors")
    payload = answer["data"]["transferBatch"]
    assert payload["errors"] == []
    results = payload["results"]
    assert [r["transaction"]["clientTransactionId"] for r in results] == [
        s["clientTransactionId"] for s in sent
    ]
    assert {r["transaction"]["status"] for r in results} <= {"PENDING", "COMPLETED"}
    assert [t["status"] for t in await settled(api, payload)] == ["COMPLETED"] * 1000
    assert await balances(api, a, b) == ["0.00", "10.00"]


async def test_any_other_document_over_64_kb_is_refused_while_a_transfer_batch_as_big_is_not(
    api: Api,
) -> None:
    a, b = await api.new_wallet("10.00"), await api.new_wallet()
    # Sent as a variable no operation declares: GraphQL ignores it, the edge counts its bytes.
    padding = "x" * (100 * 1024)
    one = transfer(a, b, "1.00")
    mixed = f"""
    mutation Mixed($input: TransferBatchInput!, $one: TransferInput!) {{
      transferBatch(input: $input) {{ {ERRORS} }}
      transfer(input: $one) {{ {ERRORS} }}
    }}"""
    refused = {
        "a query": await api.post("query Q { __typename }", pad=padding),
        "a transfer": await api.post(
            f"mutation T($input: TransferInput!) {{ transfer(input: $input) {{ {ERRORS} }} }}",
            input=one,
            pad=padding,
        ),
        "transferBatch with another mutation": await api.post(
            mixed, input={"transfers": [transfer(a, b, "1.00")]}, one=one, pad=padding
        ),
        "another operation of a document holding a transferBatch": await post_named(
            api,
            f"""
            mutation B($input: TransferBatchInput!) {{
              transferBatch(input: $input) {{ {ERRORS} }}
            }}
            mutation T($one: TransferInput!) {{ transfer(input: $one) {{ {ERRORS} }} }}""",
            "T",
            one=one,
            pad=padding,
        ),
    }
    batch = (
        "mutation B($input: TransferBatchInput!) "
        f"{{ transferBatch(input: $input) {{ {ERRORS} results {{ {ERRORS} }} }} }}"
    )
    accepted = await api.post(batch, input={"transfers": [transfer(a, b, "1.00")]}, pad=padding)

    assert {what: r.status_code for what, r in refused.items()} == dict.fromkeys(refused, 413)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["data"]["transferBatch"]["errors"] == [], accepted.text
    assert await balances(api, a, b) == ["9.00", "1.00"]
    # Over the batch limit (512 KB), even a batch is refused.
    too_big = await api.post(
        batch, input={"transfers": [transfer(a, b, "1.00")]}, pad="x" * (600 * 1024)
    )
    assert too_big.status_code == 413


@pytest.mark.parametrize("size", [10, 1000])
async def test_a_batch_s_allowance_per_transfer_does_not_pay_for_reading_histories(
    api: Api, size: int
) -> None:
    """Each transfer adds room for its own result, not for each sender's history of 100."""
    a, b = await api.new_wallet("10.00"), await api.new_wallet()
    costly = """
    mutation Costly($input: TransferBatchInput!) {
      transferBatch(input: $input) {
        results { transaction { id senderWallet { transactions(first: 100) {
          edges { node { id amount status senderWallet { id balance } } } } } } }
      }
    }"""

    errors = await api.graphql_errors(
        costly, input={"transfers": [transfer(a, b, "0.01") for _ in range(size)]}
    )

    assert [e["extensions"]["code"] for e in errors] == ["QUERY_TOO_COSTLY"]
    assert await balances(api, a, b) == ["10.00", "0.00"]


# -- with a worker ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_a_batch_goes_to_the_worker_as_one_job_and_an_atomic_one_fails_whole(
    env: dict[str, str],
) -> None:
    """An API without inline settlement, and a worker started once both batches are queued: a
    batch of 100 is one job on the stream, and ends all COMPLETED; an atomic batch with one
    transfer short of funds ends all FAILED."""
    queue = f"{env['WALLET_REDIS_PREFIX']}:settlements"
    redis = Redis.from_url(env["REDIS_URL"])
    try:
        with api_server(env) as server:
            async with httpx.AsyncClient(timeout=60, headers=tokens.header()) as client:
                api = Api(client, server.url)
                wallets = [await api.new_wallet("100.00") for _ in range(10)]
                many = [
                    transfer(wallets[n % 10], wallets[(n + 1) % 10], "1.00") for n in range(100)
                ]
                a, b, c = await api.new_wallet("10.00"), await api.new_wallet(), wallets[0]
                short = [transfer(a, b, "4.00"), transfer(a, c, "7.00"), transfer(a, b, "1.00")]

                big = await send_batch(api, many)
                atomic = await send_batch(api, short, atomic=True)
                assert {r["transaction"]["status"] for r in big["results"]} == {"PENDING"}
                assert {r["transaction"]["status"] for r in atomic["results"]} == {"PENDING"}
                assert await redis.xlen(queue) == 2, "one job for each batch"

                with worker(env):
                    big_final = await settled(api, big)
                    atomic_final = await settled(api, atomic)
                assert [t["status"] for t in big_final] == ["COMPLETED"] * 100
                assert [(t["status"], t["failureCode"]) for t in atomic_final] == [
                    ("FAILED", "LINKED_TRANSFER_FAILED"),
                    ("FAILED", "INSUFFICIENT_FUNDS"),
                    ("FAILED", "LINKED_TRANSFER_FAILED"),
                ]
                assert await balances(api, *wallets) == ["100.00"] * 10
                assert await balances(api, a, b) == ["10.00", "0.00"]
    finally:
        await redis.aclose()


async def test_one_operation_runs_one_batch(api: Api) -> None:
    """A second batch in the operation would spend the first one's allowance, and run again."""
    a, b = await api.new_wallet("10.00"), await api.new_wallet()
    twice = """
    mutation Twice($input: TransferBatchInput!) {
      one: transferBatch(input: $input) { errors { code } }
      two: transferBatch(input: $input) { errors { code } }
    }"""

    errors = await api.graphql_errors(twice, input={"transfers": [transfer(a, b, "0.01")]})

    assert [e["extensions"]["code"] for e in errors] == ["QUERY_TOO_COSTLY"]
    assert await balances(api, a, b) == ["10.00", "0.00"]


async def test_a_batch_sent_as_one_object_is_costed_as_a_whole_batch(api: Api) -> None:
    """GraphQL reads one object where a list is expected as a list of one: the cost does not
    depend on how the transfers were sent, so a deep selection is refused either way."""
    a, b = await api.new_wallet("10.00"), await api.new_wallet()
    costly = """
    mutation Costly($input: TransferBatchInput!) {
      transferBatch(input: $input) {
        results { transaction { senderWallet { transactions(first: 100) {
          edges { node { id amount senderWallet { transactions(first: 100) {
            edges { node { id } } } } } } } } } }
      }
    }"""

    errors = await api.graphql_errors(costly, input={"transfers": transfer(a, b, "0.01")})

    assert [e["extensions"]["code"] for e in errors] == ["QUERY_TOO_COSTLY"]
    assert await balances(api, a, b) == ["10.00", "0.00"]
