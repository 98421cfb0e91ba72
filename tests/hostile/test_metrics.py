"""Names a client makes up cannot grow /metrics without bound."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from tests import tokens
from tests.processes import Process, api_server
from wallet.web.operations import MAX_OPERATION_NAMES

pytestmark = pytest.mark.timeout(120)


async def _operation_labels(client: httpx.AsyncClient, url: str) -> set[str]:
    page = (await client.get(url.removesuffix("/graphql") + "/metrics")).text
    assert len(page) < 200_000, f"{len(page)} bytes"
    return set(re.findall(r'wallet_graphql_request_seconds_count\{operation="([^"]*)"', page))


async def test_three_thousand_operation_names_leave_metrics_small(
    hostile_api: Process, client: httpx.AsyncClient
) -> None:
    gate = asyncio.Semaphore(16)

    async def named(n: int) -> None:
        name = f"Made{n}"
        async with gate:
            body = {"query": f"query {name} {{ __typename }}", "operationName": name}
            assert (await client.post(hostile_api.url, json=body)).status_code == 200

    await asyncio.gather(*(named(n) for n in range(3000)))
    labels = await _operation_labels(client, hostile_api.url)
    assert "other" in labels
    assert len(labels) <= MAX_OPERATION_NAMES + 2, "the names kept, `other` and `anonymous`"


async def test_documents_that_do_not_validate_take_no_operation_names_place(
    env: dict[str, str],
) -> None:
    with api_server(env) as api:
        async with httpx.AsyncClient(timeout=30, headers=tokens.header()) as client:
            for n in range(MAX_OPERATION_NAMES + 10):
                body = {"query": f"query Bad{n} {{ noSuchField }}", "operationName": f"Bad{n}"}
                assert (await client.post(api.url, json=body)).json()["errors"]
            body = {"query": "query Good { __typename }", "operationName": "Good"}
            assert (await client.post(api.url, json=body)).json()["data"]
            labels = await _operation_labels(client, api.url)
    assert labels - {"anonymous"} == {"other", "Good"}
