"""A small GraphQL client over real HTTP and WebSocket, for end-to-end tests."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx
import websockets

CREATE_WALLET = """
mutation($input: CreateWalletInput!) {
  createWallet(input: $input) { wallet { id balance } errors { code message field } }
}"""
TRANSFER = """
mutation($input: TransferInput!) {
  transfer(input: $input) { transaction { id status } errors { code message field } }
}"""
WITHDRAW = """
mutation($input: WithdrawInput!) {
  withdraw(input: $input) { transaction { id status } errors { code message field } }
}"""
TRANSACTION = "query($id: ID!) { transaction(id: $id) { id status failureCode } }"


async def execute(
    client: httpx.AsyncClient, url: str, query: str, **variables: Any
) -> dict[str, Any]:
    response = await client.post(url, json={"query": query, "variables": variables})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    return body["data"]  # type: ignore[no-any-return]


async def create_wallet(client: httpx.AsyncClient, url: str, balance: str = "0") -> str:
    data = await execute(client, url, CREATE_WALLET, input={"initialBalance": balance})
    return str(data["createWallet"]["wallet"]["id"])


async def submit_transfer(
    client: httpx.AsyncClient, url: str, sender: str, receiver: str, amount: str = "1.25"
) -> str:
    """Submit a transfer under a fresh key; returns its id (it may still be PENDING)."""
    data = await execute(
        client,
        url,
        TRANSFER,
        input={
            "fromWalletId": sender,
            "toWalletId": receiver,
            "amount": amount,
            "clientTransactionId": str(uuid.uuid4()),
        },
    )
    assert data["transfer"]["errors"] == [], data
    return str(data["transfer"]["transaction"]["id"])


async def wait_final(
    client: httpx.AsyncClient, url: str, transaction_id: str, timeout: float = 30.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        data = await execute(client, url, TRANSACTION, id=transaction_id)
        if data["transaction"]["status"] != "PENDING" or time.monotonic() > deadline:
            return data["transaction"]  # type: ignore[no-any-return]
        await asyncio.sleep(0.1)


class Subscriber:
    """One subscription over graphql-transport-ws (or the legacy graphql-ws)."""

    def __init__(self, url: str, query: str, protocol: str = "graphql-transport-ws") -> None:
        self.url = url.replace("http://", "ws://")
        self.query = query
        self.protocol = protocol
        self._socket: Any = None

    async def __aenter__(self) -> Subscriber:
        self._socket = await websockets.connect(self.url, subprotocols=[self.protocol])
        await self._socket.send(json.dumps({"type": "connection_init", "payload": {}}))
        ack = json.loads(await asyncio.wait_for(self._socket.recv(), 5))
        assert ack["type"] == "connection_ack", ack
        start = "subscribe" if self.protocol == "graphql-transport-ws" else "start"
        await self._socket.send(
            json.dumps({"id": "1", "type": start, "payload": {"query": self.query}})
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._socket.close()

    async def next(self, timeout: float = 15.0) -> dict[str, Any] | None:
        """The next event's data, or None when the server completed the subscription."""
        while True:
            message = json.loads(await asyncio.wait_for(self._socket.recv(), timeout))
            if message["type"] in ("next", "data"):
                assert "errors" not in message["payload"], message
                return message["payload"]["data"]  # type: ignore[no-any-return]
            if message["type"] == "complete":
                return None
            if message["type"] in ("ka", "ping", "pong"):
                continue
            raise AssertionError(message)
