"""Documents that cost far more to serve than to send are refused in time linear in their text."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.hostile.conftest import healthz_watched, new_wallet
from tests.processes import Process

pytestmark = pytest.mark.timeout(60)


def fragment_bomb(levels: int, leaf: str = "__typename") -> str:
    """`levels` fragments each spreading the next twice: 2^levels spreads of `leaf`."""
    fragments = [f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(levels)]
    return "\n".join(
        ["query Bomb { ...F0 }", *fragments, f"fragment F{levels} on Query {{ {leaf} }}"]
    )


def deep_fragments(levels: int) -> str:
    """Each fragment nests the next four fields deeper."""
    nest = (
        "fragment W{} on Wallet"
        " {{ transactions {{ edges {{ node {{ senderWallet {{ ...W{} }} }} }} }} }}"
    )
    fragments = [nest.format(i, i + 1) for i in range(levels)]
    return "\n".join(
        [
            'query Deep { wallet(id: "x") { ...W0 } }',
            *fragments,
            f"fragment W{levels} on Wallet {{ id }}",
        ]
    )


# The audit's 7.5 KB document: 30 aliases x 100 transactions x their sender's 100.
COSTLY = (
    "{ "
    + " ".join(
        f'a{i}: wallet(id: "WALLET") {{ transactions(first: 100) {{ edges {{ node {{ senderWallet'
        " { transactions(first: 100) { edges { node { id } } } } } } } }"
        for i in range(30)
    )
    + " }"
)


async def _post(client: httpx.AsyncClient, url: str, body: dict[str, object]) -> httpx.Response:
    response = await client.post(url, json=body)
    assert response.status_code < 500, response.text
    return response


@pytest.mark.parametrize("levels", [20, 30], ids=["2^20 spreads", "2^30 spreads"])
async def test_a_fragment_bomb_is_answered_in_milliseconds_and_never_holds_the_loop(
    hostile_api: Process, client: httpx.AsyncClient, levels: int
) -> None:
    with healthz_watched(hostile_api):
        started = time.perf_counter()
        response = await _post(client, hostile_api.url, {"query": fragment_bomb(levels)})
        elapsed = time.perf_counter() - started
    assert response.json()["data"] == {"__typename": "Query"}
    assert elapsed < 0.5, f"{elapsed:.3f} s"


async def test_aliases_multiplied_by_fragments_are_counted_as_spread_and_refused(
    hostile_api: Process, client: httpx.AsyncClient
) -> None:
    with healthz_watched(hostile_api):
        response = await _post(
            client, hostile_api.url, {"query": fragment_bomb(30, "a: __typename")}
        )
    (error,) = response.json()["errors"]
    assert error["message"] == f"{2**30} aliases found. Allowed: 30"


async def test_depth_reached_through_fragments_is_refused(
    hostile_api: Process, client: httpx.AsyncClient
) -> None:
    with healthz_watched(hostile_api):
        response = await _post(client, hostile_api.url, {"query": deep_fragments(3)})
    (error,) = response.json()["errors"]
    assert error["message"] == "'Deep' exceeds maximum operation depth of 10"


async def test_a_document_that_may_return_too_many_nodes_is_refused_before_it_runs(
    hostile_api: Process, client: httpx.AsyncClient
) -> None:
    wallet = await new_wallet(client, hostile_api.url)
    with healthz_watched(hostile_api):
        started = time.perf_counter()
        response = await _post(client, hostile_api.url, {"query": COSTLY.replace("WALLET", wallet)})
        elapsed = time.perf_counter() - started
    body = response.json()
    assert body["data"] is None
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "QUERY_TOO_COSTLY"
    assert error["message"] == "the query may return 612060 nodes; the limit is 2500"
    assert elapsed < 0.5, f"{elapsed:.3f} s"


async def test_the_cost_of_an_accepted_request_follows_its_variables_and_is_reported(
    hostile_api: Process, client: httpx.AsyncClient
) -> None:
    wallet = await new_wallet(client, hostile_api.url)
    query = (
        "query History($id: ID!, $n: Int) { wallet(id: $id) {"
        " transactions(first: $n) { edges { node { id } } pageInfo { hasNextPage } } } }"
    )
    costs = {}
    for n in (5, 100, None):
        response = await _post(
            client,
            hostile_api.url,
            {"query": query, "variables": {"id": wallet} | ({"n": n} if n else {})},
        )
        body = response.json()
        assert len(body["data"]["wallet"]["transactions"]["edges"]) == 1
        costs[n] = body["extensions"]["cost"]
    # The wallet, its connection, an edge and a node for each item of the page, pageInfo.
    assert costs[5] == {"requested": 1 + 1 + 5 * 2 + 1, "limit": 2500}
    assert costs[100]["requested"] == 1 + 1 + 100 * 2 + 1
    assert costs[None]["requested"] == 1 + 1 + 20 * 2 + 1, "a page is 20 unless asked"


async def test_several_operations_without_an_operation_name_are_refused_and_none_runs(
    hostile_api: Process, client: httpx.AsyncClient
) -> None:
    document = (
        'mutation Make { createWallet(input: {currency: "EUR"}) { wallet { id } } }'
        " query Look { __typename }"
    )
    response = await _post(client, hostile_api.url, {"query": document})
    body = response.json()
    assert body["data"] is None
    assert body["errors"][0]["message"] == (
        "Must provide operation name if query contains multiple operations."
    )
    named = await _post(client, hostile_api.url, {"query": document, "operationName": "Look"})
    assert named.json()["data"] == {"__typename": "Query"}


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("{ " + "__typename " * 5000 + "}", id="too many tokens"),
        pytest.param("{" * 3000 + "}" * 3000, id="nested braces"),
        pytest.param("{ " + " ".join(f"a{i}: __typename" for i in range(200)) + " }", id="aliases"),
    ],
)
async def test_bombs_that_were_already_refused_still_are_without_holding_the_loop(
    hostile_api: Process, client: httpx.AsyncClient, query: str
) -> None:
    with healthz_watched(hostile_api):
        response = await _post(client, hostile_api.url, {"query": query})
    assert response.status_code >= 400 or response.json()["errors"]
    if response.status_code == 200:
        assert all(e["message"] != "Internal error." for e in response.json()["errors"])


async def test_a_bad_cursor_is_refused_with_its_code(
    hostile_api: Process, client: httpx.AsyncClient
) -> None:
    wallet = await new_wallet(client, hostile_api.url)
    query = '{ wallet(id: "%s") { transactions(after: "not a cursor") { edges { cursor } } } }'
    response = await _post(client, hostile_api.url, {"query": query % wallet})
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == "INVALID_CURSOR"


async def test_a_body_over_the_cap_is_refused_without_holding_the_loop(
    hostile_api: Process, client: httpx.AsyncClient
) -> None:
    with healthz_watched(hostile_api):
        response = await client.post(
            hostile_api.url, json={"query": "{ __typename }", "variables": {"x": "x" * 200_000}}
        )
    assert response.status_code == 413


async def test_a_query_just_under_the_cost_limit_runs_without_holding_the_loop(
    hostile_api: Process, client: httpx.AsyncClient
) -> None:
    sender = await new_wallet(client, hostile_api.url, "1000.00")
    receiver = await new_wallet(client, hostile_api.url, "0")
    for batch in range(4):
        transfers = " ".join(
            f't{n}: transfer(input: {{fromWalletId: "{sender}", toWalletId: "{receiver}",'
            f' amount: "1.00", clientTransactionId: "under-limit-{receiver}-{batch}-{n}"}})'
            " { errors { code } }"
            for n in range(25)
        )
        made = await _post(client, hostile_api.url, {"query": f"mutation {{ {transfers} }}"})
        assert all(not p["errors"] for p in made.json()["data"].values()), made.text
    # 100 transfers, each with its sender's 10 newest: 1,100 transactions in one answer.
    query = (
        "query($id: ID!) { wallet(id: $id) { transactions(first: 100) { edges { node {"
        " id senderWallet { id transactions(first: 10) { edges { node { id amount } } } } } } } } }"
    )
    with healthz_watched(hostile_api):
        response = await _post(
            client, hostile_api.url, {"query": query, "variables": {"id": receiver}}
        )
    body = response.json()
    assert body["extensions"]["cost"] == {"requested": 2402, "limit": 2500}
    edges = body["data"]["wallet"]["transactions"]["edges"]
    assert len(edges) == 100
    assert all(len(e["node"]["senderWallet"]["transactions"]["edges"]) == 10 for e in edges)
