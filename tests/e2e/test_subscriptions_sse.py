"""Subscriptions over Server-Sent Events (graphql-sse, distinct connections): a POST with
`Accept: text/event-stream`, for clients behind proxies that drop WebSockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from tests import tokens
from tests.client import Api
from tests.processes import api_server, worker

pytestmark = pytest.mark.slow

UPDATED = 'subscription { transactionUpdated(id: "%s") { id status completedAt } }'
ACTIVITY = 'subscription { walletActivity(walletId: "%s") { id status } }'


class EventStream:
    """The events of one SSE response: ("next", payload) until ("complete", None)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self, timeout: float = 15.0) -> tuple[str, dict[str, Any] | None]:
        return await asyncio.wait_for(self._next(), timeout)

    async def _next(self) -> tuple[str, dict[str, Any] | None]:
        event, data = None, ""
        async for line in self._lines:
            if line.startswith(":"):  # a comment: the server's heartbeat
                continue
            if line.startswith("event:"):
                event = line.removeprefix("event:").strip()
            elif line.startswith("data:"):
                data += line.removeprefix("data:").strip()
            elif line == "" and event is not None:
                return event, json.loads(data) if data else None
        raise AssertionError("the stream ended without a complete event")


@asynccontextmanager
async def subscribe(client: httpx.AsyncClient, url: str, query: str) -> AsyncIterator[EventStream]:
    headers = {"accept": "text/event-stream"}
    async with client.stream("POST", url, json={"query": query}, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        yield EventStream(response)


async def test_transaction_updated_over_sse_shows_the_current_state_then_the_change_then_ends(
    env: dict[str, str],
) -> None:
    with api_server(env) as api:
        async with httpx.AsyncClient(timeout=30, headers=tokens.header()) as client:
            graphql = Api(client, api.url)
            sender = await graphql.new_wallet("10.00")
            receiver = await graphql.new_wallet()
            transaction_id = await graphql.pending_transfer(sender, receiver)
            async with subscribe(client, api.url, UPDATED % transaction_id) as events:
                kind, now = await events.next()
                assert kind == "next"
                assert now["data"] == {
                    "transactionUpdated": {
                        "id": transaction_id,
                        "status": "PENDING",
                        "completedAt": None,
                    }
                }
                assert "errors" not in now
                with worker(env):
                    kind, done = await events.next()
                    end, _ = await events.next()
    assert kind == "next"
    assert done is not None
    assert done["data"]["transactionUpdated"]["status"] == "COMPLETED"
    assert done["data"]["transactionUpdated"]["completedAt"] is not None
    assert end == "complete", "the subscription completes once the status is final"


async def test_a_subscription_over_sse_to_a_missing_wallet_is_a_clean_error(
    env: dict[str, str],
) -> None:
    with api_server(env) as api:
        async with (
            httpx.AsyncClient(timeout=30, headers=tokens.header()) as client,
            subscribe(client, api.url, ACTIVITY % "not-a-uuid") as events,
        ):
            kind, payload = await events.next()
    assert kind == "next"
    assert payload is not None
    assert "is not a UUID" in payload["errors"][0]["message"]


async def test_a_document_that_does_not_parse_over_sse_is_refused_with_400_not_a_traceback(
    env: dict[str, str],
) -> None:
    with api_server(env) as api:
        async with httpx.AsyncClient(timeout=30, headers=tokens.header()) as client:
            for broken in (UPDATED[:-2], "{ __typename"):
                response = await client.post(
                    api.url, json={"query": broken}, headers={"accept": "text/event-stream"}
                )
                assert response.status_code == 400, response.text
                assert "does not parse" in response.text
    assert "Traceback" not in api.output()
