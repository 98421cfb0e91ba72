"""Frames and headers outside the protocols are refused cleanly, and the server goes on."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests import tokens
from tests.client import Api
from tests.hostile.conftest import healthz_watched
from tests.processes import Process

pytestmark = pytest.mark.timeout(60)

QUERY = "{ __typename }"


async def _until_closed(ws: Any) -> None:
    async with asyncio.timeout(10):
        while True:
            await ws.recv()


@pytest.mark.parametrize(
    ("protocol", "frame"),
    [
        pytest.param(
            "graphql-transport-ws",
            {"type": "subscribe", "id": 5, "payload": "x"},
            id="the audit's frame",
        ),
        pytest.param(
            "graphql-transport-ws",
            {"type": "subscribe", "id": "1", "payload": "x"},
            id="a payload that is a string",
        ),
        pytest.param(
            "graphql-transport-ws",
            {"type": "subscribe", "id": "1", "payload": {"query": 5}},
            id="a query that is a number",
        ),
        pytest.param(
            "graphql-transport-ws",
            {"type": "subscribe", "id": "1", "payload": {"query": QUERY, "variables": [1]}},
            id="variables that are a list",
        ),
        pytest.param(
            "graphql-transport-ws",
            {"type": "subscribe", "id": "1", "payload": {"query": QUERY, "operationName": 1}},
            id="an operation name that is a number",
        ),
        pytest.param("graphql-transport-ws", {"type": "complete", "id": []}, id="a list as id"),
        pytest.param("graphql-transport-ws", [1, 2], id="a JSON list"),
        pytest.param("graphql-transport-ws", '"subscribe"', id="a JSON string"),
        pytest.param("graphql-transport-ws", {"type": 7}, id="a type that is a number"),
        pytest.param("graphql-ws", {"type": "start", "id": 5, "payload": "x"}, id="legacy start"),
        pytest.param("graphql-ws", {"type": "stop"}, id="legacy stop with no id"),
        pytest.param("graphql-transport-ws", "9" * 5000, id="an integer Python will not read"),
        pytest.param("graphql-transport-ws", "{not json", id="not JSON"),
    ],
)
async def test_a_malformed_frame_closes_the_socket_with_4400_and_nothing_else_breaks(
    hostile_api: Process, protocol: str, frame: Any
) -> None:
    url = hostile_api.url.replace("http://", "ws://")
    logged = len(hostile_api.output())
    with healthz_watched(hostile_api):
        async with websockets.connect(url, subprotocols=[protocol]) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": tokens.header()}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            # A str is sent as it is; anything else as JSON.
            await ws.send(frame if isinstance(frame, str) else json.dumps(frame))
            with pytest.raises(ConnectionClosed) as closed:
                await _until_closed(ws)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4400
    assert "Traceback" not in hostile_api.output()[logged:]
    async with httpx.AsyncClient(timeout=10, headers=tokens.header()) as client:
        assert (await client.post(hostile_api.url, json={"query": QUERY})).status_code == 200


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        (b"trace-123", True),
        (b"\xe9\xe9", False),
        (b"a" * 65, False),
        (b"two words", False),
    ],
)
async def test_a_request_id_is_kept_only_when_it_is_printable_ascii_of_sane_length(
    hostile_api: Process, sent: bytes, kept: bool
) -> None:
    async with httpx.AsyncClient(timeout=10, headers=tokens.header()) as client:
        response = await client.post(
            hostile_api.url, json={"query": QUERY}, headers={"x-request-id": sent}
        )
    assert response.status_code == 200
    echoed = response.headers["x-request-id"]
    if kept:
        assert echoed == sent.decode()
    else:
        assert len(echoed) == 32
        assert echoed.isalnum()


async def test_one_websocket_holds_a_bounded_number_of_operations_open(
    hostile_api: Process, client: httpx.AsyncClient
) -> None:
    wallet = await Api(client, hostile_api.url).new_wallet("100.00")
    activity = f'subscription {{ walletActivity(walletId: "{wallet}") {{ id }} }}'
    url = hostile_api.url.replace("http://", "ws://")
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": tokens.header()}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        for n in range(21):  # the default is 20
            frame = {"id": str(n), "type": "subscribe", "payload": {"query": activity}}
            await ws.send(json.dumps(frame))
        async with asyncio.timeout(10):
            refused = json.loads(await ws.recv())
        await ws.send(json.dumps({"id": "0", "type": "complete"}))
        await ws.send(json.dumps({"id": "21", "type": "subscribe", "payload": {"query": QUERY}}))
        async with asyncio.timeout(10):
            answered = json.loads(await ws.recv())
    assert refused["type"] == "error"
    assert refused["id"] == "20"
    assert refused["payload"][0]["extensions"]["code"] == "TOO_MANY_SUBSCRIPTIONS"
    assert (answered["id"], answered["type"]) == ("21", "next")
    assert answered["payload"]["data"] == {"__typename": "Query"}
