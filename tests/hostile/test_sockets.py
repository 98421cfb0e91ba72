"""WebSocket operations and messages no client should send, and subscribers that vanish."""

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
from wallet.web.sockets import LEGACY_SUBSCRIPTIONS_ONLY

pytestmark = pytest.mark.timeout(90)

PROTOCOLS = ["graphql-transport-ws", "graphql-ws"]
TOO_MANY_TOKENS = "{ " + "__typename " * 2500 + "}"


async def _connected(url: str, protocol: str) -> Any:
    ws = await websockets.connect(url.replace("http://", "ws://"), subprotocols=[protocol])
    await ws.send(json.dumps({"type": "connection_init", "payload": tokens.header()}))
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    return ws


def _start(protocol: str, id: str, payload: dict[str, Any]) -> str:
    kind = "subscribe" if protocol == "graphql-transport-ws" else "start"
    return json.dumps({"type": kind, "id": id, "payload": payload})


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    ("payload", "code"),
    [
        pytest.param({"query": "{ __typename"}, "INVALID_INPUT", id="a syntax error"),
        pytest.param({"query": TOO_MANY_TOKENS}, "QUERY_TOO_COSTLY", id="over the token limit"),
        pytest.param(
            {"query": "query A { __typename } query B { __typename }"},
            "INVALID_INPUT",
            id="two operations and no name",
        ),
    ],
)
async def test_a_document_graphql_refuses_gets_the_error_frame_and_code_http_gives_it(
    hostile_api: Process, client: httpx.AsyncClient, protocol: str, payload: Any, code: str
) -> None:
    over_http = (await client.post(hostile_api.url, json=payload)).json()
    logged = len(hostile_api.output())
    ws = await _connected(hostile_api.url, protocol)
    async with ws:
        await ws.send(_start(protocol, "1", payload))
        async with asyncio.timeout(10):
            frame = json.loads(await ws.recv())
        # The socket goes on serving.
        await ws.send(_start(protocol, "2", {"query": "{ __typename }"}))
        async with asyncio.timeout(10):
            answered = json.loads(await ws.recv())
    errors = frame["payload"] if protocol == "graphql-transport-ws" else [frame["payload"]]
    assert (frame["id"], frame["type"]) == ("1", "error")
    assert [e["extensions"]["code"] for e in errors] == [code]
    assert [e["extensions"]["code"] for e in over_http["errors"]] == [code]
    assert errors[0]["message"] == over_http["errors"][0]["message"]
    assert answered["id"] == "2"
    if protocol == "graphql-transport-ws":
        assert answered["payload"]["data"] == {"__typename": "Query"}
    else:  # which serves subscriptions only, and says so rather than "Internal error."
        assert answered["type"] == "error"
        assert answered["payload"]["message"] == LEGACY_SUBSCRIPTIONS_ONLY
        assert answered["payload"]["extensions"] == {"code": "INVALID_INPUT"}
    log = hostile_api.output()[logged:]
    assert "Traceback" not in log
    assert "ERROR" not in log
    assert "__typename __typename" not in log


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_an_unknown_operation_name_gets_an_error_frame_not_internal_error(
    hostile_api: Process, protocol: str
) -> None:
    logged = len(hostile_api.output())
    ws = await _connected(hostile_api.url, protocol)
    async with ws:
        await ws.send(_start(protocol, "1", {"query": "{ __typename }", "operationName": "Nope"}))
        async with asyncio.timeout(10):
            frame = json.loads(await ws.recv())
    error = frame["payload"][0] if protocol == "graphql-transport-ws" else frame["payload"]
    assert frame["type"] == "error"
    assert error == {
        "message": 'Unknown operation named "Nope".',
        "extensions": {"code": "INVALID_INPUT"},
    }
    assert "ERROR" not in hostile_api.output()[logged:]


async def _send_oversized(url: str, frame: bytes) -> int | None:
    ws = await _connected(url, "graphql-transport-ws")
    try:
        await ws.send(frame)
        async with asyncio.timeout(30):
            while True:
                await ws.recv()
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else None
    finally:
        await ws.close()


async def test_oversized_websocket_messages_close_their_sockets_without_holding_the_loop(
    hostile_api: Process, client: httpx.AsyncClient
) -> None:
    # Six sockets of 15 MB frames held /healthz 603 ms when each socket could buffer 16 MiB.
    frame = _start(
        "graphql-transport-ws",
        "1",
        {"query": "{ __typename }", "variables": {"x": "x" * 15_000_000}},
    ).encode()
    with healthz_watched(hostile_api):
        codes = await asyncio.gather(*(_send_oversized(hostile_api.url, frame) for _ in range(6)))
    assert codes == [1009] * 6  # message too big
    response = await client.post(hostile_api.url, json={"query": "{ __typename }"})
    assert response.json()["data"] == {"__typename": "Query"}


async def test_subscribers_that_vanish_while_their_subscriptions_stream_leave_no_error_in_the_log(
    hostile_api: Process, client: httpx.AsyncClient
) -> None:
    wallet = await Api(client, hostile_api.url).new_wallet("100.00")
    activity = {
        "query": "subscription($w: ID!) { walletActivity(walletId: $w) { id amount status } }",
        "variables": {"w": wallet},
    }
    deposit = (
        'mutation($w: ID!, $k: String!) { deposit(input: {walletId: $w, amount: "1.00",'
        " clientTransactionId: $k}) { errors { code } } }"
    )
    streaming = True

    async def deposits(worker: int) -> int:
        made = 0
        while streaming:
            variables = {"w": wallet, "k": f"vanish-{worker}-{made}"}
            body = {"query": deposit, "variables": variables}
            assert (await client.post(hostile_api.url, json=body)).status_code == 200
            made += 1
        return made

    logged = len(hostile_api.output())
    depositing = [asyncio.create_task(deposits(n)) for n in range(4)]
    try:
        for _ in range(3):
            sockets = []
            for n in range(4):
                protocol = PROTOCOLS[n % 2]
                ws = await _connected(hostile_api.url, protocol)
                for k in range(15):
                    await ws.send(_start(protocol, str(k), activity))
                sockets.append(ws)
            await asyncio.sleep(0.5)
            for ws in sockets:
                ws.transport.abort()  # gone, with its operations streaming
            await asyncio.sleep(0.2)
    finally:
        streaming = False
        made = await asyncio.gather(*depositing)
    assert sum(made) > 20, "the subscriptions had news to send"
    await asyncio.sleep(0.5)
    log = hostile_api.output()[logged:]
    assert "ERROR" not in log, log[:3000]
    assert "Traceback" not in log
