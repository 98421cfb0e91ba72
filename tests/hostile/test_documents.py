"""Documents that cost far more to serve than to send are refused in time linear in their text."""

from __future__ import annotations

import time

import httpx
import pytest
from graphql import get_introspection_query

from tests.client import Api
from tests.hostile.conftest import healthz_watched
from tests.processes import Process
from wallet.web.documents import NESTED_SCHEMA_LISTS, ONE_INTROSPECTION

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
    wallet = await Api(client, hostile_api.url).new_wallet("100.00")
    with healthz_watched(hostile_api):
        started = time.perf_counter()
        response = await _post(client, hostile_api.url, {"query": COSTLY.replace("WALLET", wallet)})
        elapsed = time.perf_counter() - started
    body = response.json()
    assert body["data"] is None
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "QUERY_TOO_COSTLY"
    assert error["message"] == "the query may return 912060 fields; the limit is 5000"
    assert elapsed < 0.5, f"{elapsed:.3f} s"


async def test_the_cost_of_an_accepted_request_follows_its_variables_and_is_reported(
    hostile_api: Process, client: httpx.AsyncClient
) -> None:
    wallet = await Api(client, hostile_api.url).new_wallet("100.00")
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
    # The wallet, its connection, an edge, a node and its id for each item of the page, and
    # pageInfo with its field.
    assert costs[5] == {"requested": 1 + 1 + 5 * 3 + 2, "limit": 5000}
    assert costs[100]["requested"] == 1 + 1 + 100 * 3 + 2
    assert costs[None]["requested"] == 1 + 1 + 20 * 3 + 2, "a page is 20 unless asked"


# Both sides of the audit's bypass: `first: $n` where $n is 100 by the operation's default,
# or sent as 100.0 (GraphQL reads an integral float as an Int). 30,502 fields; it was priced
# as though $n were absent.
DEFAULTED = (
    "query History($id: ID!, $n: Int = 100) { wallet(id: $id) { transactions(first: $n) {"
    " edges { node { id senderWallet { transactions(first: $n) { edges { node { id } } } } } } }"
    " } }"
)


@pytest.mark.parametrize(
    "variables", [{}, {"n": 100.0}], ids=["a variable's default", "an Int sent as a float"]
)
async def test_a_page_size_from_a_variable_default_or_a_float_is_priced_as_graphql_reads_it(
    hostile_api: Process, client: httpx.AsyncClient, variables: dict[str, object]
) -> None:
    wallet = await Api(client, hostile_api.url).new_wallet("100.00")
    body = {"query": DEFAULTED, "variables": {"id": wallet, **variables}}
    response = await _post(client, hostile_api.url, body)
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == "QUERY_TOO_COSTLY"
    assert error["message"] == "the query may return 30502 fields; the limit is 5000"
    small = await _post(
        client, hostile_api.url, {"query": DEFAULTED, "variables": {"id": wallet, "n": 2.0}}
    )
    assert small.json()["extensions"]["cost"]["requested"] == 1 + 1 + 2 * (3 + 1 + 1 + 2 * 3)


# 30 answers about the whole schema from one kilobyte: one fragment spread under 30 aliases.
SCHEMA_COPIES = (
    "query Copies { "
    + " ".join(f"s{i}: __schema {{ ...S }}" for i in range(30))
    + " } fragment S on __Schema { types { name fields { name type { name } } } }"
)
# One `__schema` whose lists nest four deep: `fields { type { fields } }` multiplies by the
# fields of every type.
SCHEMA_NESTED = (
    "{ __schema { types { fields { type { fields { args { name } } ofType { fields { name } } }"
    " } } } }"
)
SCHEMA_ALIASED = "{ __schema { a: types { name } b: types { name } } }"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        pytest.param(SCHEMA_COPIES, ONE_INTROSPECTION, id="30 copies through a fragment"),
        pytest.param(SCHEMA_ALIASED, ONE_INTROSPECTION, id="aliases inside"),
        pytest.param(SCHEMA_NESTED, NESTED_SCHEMA_LISTS, id="lists nested four deep"),
    ],
)
async def test_questions_about_the_schema_are_answered_once_per_document(
    hostile_api: Process, client: httpx.AsyncClient, query: str, message: str
) -> None:
    with healthz_watched(hostile_api):
        response = await _post(client, hostile_api.url, {"query": query})
    body = response.json()
    assert "data" not in body or body["data"] is None
    assert [e["message"] for e in body["errors"]] == [message]
    assert body["errors"][0]["extensions"]["code"] == "QUERY_TOO_COSTLY"


async def test_graphiqls_question_about_the_schema_is_answered_without_holding_the_loop(
    hostile_api: Process, client: httpx.AsyncClient
) -> None:
    with healthz_watched(hostile_api):
        response = await _post(client, hostile_api.url, {"query": get_introspection_query()})
    body = response.json()
    assert "errors" not in body, body.get("errors")
    assert {"Wallet", "Transaction"} <= {t["name"] for t in body["data"]["__schema"]["types"]}


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
    wallet = await Api(client, hostile_api.url).new_wallet("100.00")
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


async def test_a_query_of_ids_and_amounts_under_the_cost_limit_runs_without_holding_the_loop(
    hostile_api: Process, client: httpx.AsyncClient
) -> None:
    sender = await Api(client, hostile_api.url).new_wallet("1000.00")
    receiver = await Api(client, hostile_api.url).new_wallet("0")
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
    assert body["extensions"]["cost"] == {"requested": 4602, "limit": 5000}
    edges = body["data"]["wallet"]["transactions"]["edges"]
    assert len(edges) == 100
    assert all(len(e["node"]["senderWallet"]["transactions"]["edges"]) == 10 for e in edges)


WALLET_FIELDS = "id currency balance createdAt updatedAt"
TRANSACTION_FIELDS = (
    "id type status amount currency clientTransactionId failureCode errorMessage createdAt"
    " completedAt"
)
# Every field of 100 transactions from 100 different senders, each sender with its newest
# transaction and both its wallets: the most work (no loader can share a sender's history)
# the default limit admits, 4,912 fields.
EVERY_FIELD = f"""query Everything($id: ID!) {{ wallet(id: $id) {{ {WALLET_FIELDS}
  transactions(first: 100) {{
    pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor }}
    edges {{ node {{ {TRANSACTION_FIELDS} receiverWallet {{ {WALLET_FIELDS} }}
      senderWallet {{ {WALLET_FIELDS} transactions(first: 1) {{ edges {{ node {{
        {TRANSACTION_FIELDS} senderWallet {{ {WALLET_FIELDS} }}
        receiverWallet {{ {WALLET_FIELDS} }} }} }} }} }} }} }} }} }} }}"""


async def _wallets(client: httpx.AsyncClient, url: str, count: int, balance: str) -> list[str]:
    made: list[str] = []
    while len(made) < count:
        batch = min(25, count - len(made))
        fields = " ".join(
            f'w{n}: createWallet(input: {{initialBalance: "{balance}"}}) {{ wallet {{ id }} }}'
            for n in range(batch)
        )
        response = await _post(client, url, {"query": f"mutation {{ {fields} }}"})
        made += [p["wallet"]["id"] for p in response.json()["data"].values()]
    return made


async def test_the_costliest_document_the_limit_admits_runs_without_holding_the_loop(
    hostile_api: Process, client: httpx.AsyncClient
) -> None:
    receiver = await Api(client, hostile_api.url).new_wallet("0")
    senders = await _wallets(client, hostile_api.url, 100, "10.00")
    for batch in range(4):
        transfers = " ".join(
            f't{n}: transfer(input: {{fromWalletId: "{sender}", toWalletId: "{receiver}",'
            f' amount: "1.00", clientTransactionId: "every-field-{receiver}-{batch}-{n}"}})'
            " { errors { code } }"
            for n, sender in enumerate(senders[batch * 25 : (batch + 1) * 25])
        )
        made = await _post(client, hostile_api.url, {"query": f"mutation {{ {transfers} }}"})
        assert all(not p["errors"] for p in made.json()["data"].values()), made.text
    with healthz_watched(hostile_api):
        response = await _post(
            client, hostile_api.url, {"query": EVERY_FIELD, "variables": {"id": receiver}}
        )
    body = response.json()
    assert body["extensions"]["cost"] == {"requested": 4912, "limit": 5000}
    edges = body["data"]["wallet"]["transactions"]["edges"]
    assert len({e["node"]["senderWallet"]["id"] for e in edges}) == 100
    assert all(len(e["node"]["senderWallet"]["transactions"]["edges"]) == 1 for e in edges)
