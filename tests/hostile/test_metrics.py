"""Names a client makes up cannot grow /metrics without bound."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.processes import Process
from wallet.web.operations import MAX_OPERATION_NAMES

pytestmark = pytest.mark.timeout(120)


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
    page = (await client.get(hostile_api.url.removesuffix("/graphql") + "/metrics")).text
    counts = [
        line
        for line in page.splitlines()
        if line.startswith("wallet_graphql_request_seconds_count")
    ]
    assert len(counts) <= MAX_OPERATION_NAMES + 2  # with `other` and `anonymous`
    assert 'operation="other"' in page
    assert len(page) < 200_000, f"{len(page)} bytes"
