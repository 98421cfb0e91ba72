"""Whatever a client sends, the answer is a 4xx or GraphQL errors, never a 5xx."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.client import Api

CREATE = "mutation { createWallet(input: {}) { wallet { id } errors { code } } }"


def assert_refused(response: httpx.Response) -> None:
    """A 4xx, or a 200 whose GraphQL errors say what is wrong (not a masked internal error)."""
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        return
    assert response.status_code == 200, response.text
    body = response.json()
    assert body.get("errors"), body
    assert all(error["message"] != "Internal error." for error in body["errors"]), body


# (method, headers, body, query string)
REQUESTS: dict[str, Any] = {
    "malformed JSON": ("POST", {"content-type": "application/json"}, b"{bad json", None),
    "truncated JSON": ("POST", {"content-type": "application/json"}, b'{"query": "{ __typ', None),
    "invalid UTF-8": pytest.param(
        "POST",
        {"content-type": "application/json"},
        b'{"query": "\xff"}',
        None,
    ),
    "an empty body": ("POST", {"content-type": "application/json"}, b"", None),
    # json reads nested arrays by recursing: this deep, it runs out of stack.
    "arrays nested 30,000 deep": (
        "POST",
        {"content-type": "application/json"},
        b"[" * 30_000 + b"]" * 30_000,
        None,
    ),
    "an empty object": ("POST", {"content-type": "application/json"}, b"{}", None),
    "a non-string query": ("POST", {"content-type": "application/json"}, b'{"query": 5}', None),
    "variables that are not an object": (
        "POST",
        {"content-type": "application/json"},
        b'{"query": "{ __typename }", "variables": [1]}',
        None,
    ),
    "a batch": (
        "POST",
        {"content-type": "application/json"},
        b'[{"query": "{ __typename }"}]',
        None,
    ),
    "plain text": ("POST", {"content-type": "text/plain"}, b'{"query": "{ __typename }"}', None),
    "no content type": ("POST", {}, b'{"query": "{ __typename }"}', None),
    "XML": ("POST", {"content-type": "application/xml"}, b"<query/>", None),
    "a form without a query": (
        "POST",
        {"content-type": "application/x-www-form-urlencoded"},
        b"a=b",
        None,
    ),
    "a mutation over GET": ("GET", {"accept": "application/json"}, None, {"query": CREATE}),
    "GET without a query": ("GET", {"accept": "application/json"}, None, {}),
    "PUT": ("PUT", {"content-type": "application/json"}, b'{"query": "{ __typename }"}', None),
    "DELETE": ("DELETE", {}, None, None),
    **{
        f"JSON {text}": pytest.param(
            "POST", {"content-type": "application/json"}, text.encode(), None
        )
        for text in ['"a string"', "5", "null", "true"]
    },
}


@pytest.mark.parametrize(
    ("method", "headers", "body", "params"), REQUESTS.values(), ids=REQUESTS.keys()
)
async def test_a_request_graphql_cannot_read_is_a_4xx_or_graphql_errors(
    client: httpx.AsyncClient,
    api_url: str,
    method: str,
    headers: dict[str, str],
    body: bytes | None,
    params: dict[str, str] | None,
) -> None:
    response = await client.request(method, api_url, headers=headers, content=body, params=params)

    assert_refused(response)


async def test_a_mutation_over_get_records_nothing(
    client: httpx.AsyncClient, api: Api, api_url: str
) -> None:
    client_key = "e2e-get-" + api_url
    query = (
        'mutation { createWallet(input: {clientTransactionId: "' + client_key + '"}) '
        "{ wallet { id } } }"
    )
    refused = await client.get(
        api_url, params={"query": query}, headers={"accept": "application/json"}
    )
    assert 400 <= refused.status_code < 500
    made = await api.create_wallet(clientTransactionId=client_key, initialBalance="1.00")
    assert made["errors"] == [], "the key was still free: the GET created nothing"


DOCUMENTS = {
    "a syntax error": '{ wallet(id: "x") { id ',
    "an unknown field": "{ wallets { id } }",
    "an unknown argument": '{ wallet(id: "x", owner: "me") { id } }',
    "a missing required argument": "{ wallet { id } }",
    "a scalar with a selection": '{ wallet(id: "x") { id { value } } }',
    "an object without a selection": '{ wallet(id: "x") }',
    "an undeclared variable": "{ wallet(id: $id) { id } }",
    "a mutation without its input": "mutation { deposit { errors { code } } }",
    "an input field that does not exist": (
        'mutation { createWallet(input: {owner: "me"}) { wallet { id } } }'
    ),
    "an unknown enum value": (
        '{ wallet(id: "x") { transactions(filter: {types: [REFUND]}) { edges { cursor } } } }'
    ),
    "an empty document": "",
    "two anonymous operations": "{ __typename } { __typename }",
    "a subscription over HTTP POST": pytest.param(
        'subscription { transactionUpdated(id: "x") { id } }'
    ),
}


@pytest.mark.parametrize("document", DOCUMENTS.values(), ids=DOCUMENTS.keys())
async def test_a_document_that_is_not_valid_graphql_is_answered_with_errors(
    client: httpx.AsyncClient, api_url: str, document: str
) -> None:
    assert_refused(await client.post(api_url, json={"query": document}))


async def test_a_query_over_get_is_answered(client: httpx.AsyncClient, api_url: str) -> None:
    response = await client.get(
        api_url, params={"query": "{ __typename }"}, headers={"accept": "application/json"}
    )
    assert response.status_code == 200
    assert response.json()["data"] == {"__typename": "Query"}


async def test_a_browser_gets_graphiql(client: httpx.AsyncClient, api_url: str) -> None:
    response = await client.get(api_url, headers={"accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()


async def test_an_operation_name_picks_one_of_several_operations(
    client: httpx.AsyncClient, api_url: str
) -> None:
    document = "query A { __typename } query B { __schema { queryType { name } } }"
    response = await client.post(api_url, json={"query": document, "operationName": "B"})
    assert response.json()["data"] == {"__schema": {"queryType": {"name": "Query"}}}
    assert_refused(await client.post(api_url, json={"query": document, "operationName": "C"}))
