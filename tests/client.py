"""A client of the wallet API that knows only the contract: GraphQL documents over HTTP, and
subscriptions over WebSocket. Every test that speaks to the API as a client does uses it.

Each client is a caller: it sends its bearer token on every request (the `Authorization`
header; on a WebSocket, the `connection_init` payload). Unless told otherwise, the caller is
the run's tester (tests/tokens.py), a funding service that owns the wallets it creates.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpx
import websockets
from websockets.typing import Subprotocol

from tests import tokens
from tests.waits import eventually

TRANSACTION = """
  id type status amount currency clientTransactionId failureCode errorMessage
  createdAt completedAt
  senderWallet { id balance }
  receiverWallet { id balance }
"""
WALLET = "id currency balance createdAt updatedAt"
ERRORS = "errors { code message field }"

CREATE_WALLET = f"""
mutation CreateWallet($input: CreateWalletInput!) {{
  createWallet(input: $input) {{ wallet {{ {WALLET} }} {ERRORS} }}
}}"""
DEPOSIT = f"""
mutation Deposit($input: DepositInput!) {{
  deposit(input: $input) {{ transaction {{ {TRANSACTION} }} {ERRORS} }}
}}"""
WITHDRAW = f"""
mutation Withdraw($input: WithdrawInput!) {{
  withdraw(input: $input) {{ transaction {{ {TRANSACTION} }} {ERRORS} }}
}}"""
TRANSFER = f"""
mutation Transfer($input: TransferInput!) {{
  transfer(input: $input) {{ transaction {{ {TRANSACTION} }} {ERRORS} }}
}}"""
GET_WALLET = f"query Wallet($id: ID!) {{ wallet(id: $id) {{ {WALLET} }} }}"
GET_TRANSACTION = f"query Transaction($id: ID!) {{ transaction(id: $id) {{ {TRANSACTION} }} }}"
HISTORY = """
query History($id: ID!, $first: Int, $after: String, $last: Int, $before: String,
              $filter: TransactionFilter) {
  wallet(id: $id) {
    transactions(first: $first, after: $after, last: $last, before: $before, filter: $filter) {
      edges { cursor node { id type status amount createdAt } }
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    }
  }
}"""

FINAL = ("COMPLETED", "FAILED")


def key() -> str:
    return f"e2e-{uuid.uuid4()}"


class Api:
    """The API at `url` (a full URL, or a path on the client's base_url), asked by the caller
    whose bearer `token` it sends: the run's tester when not given, nobody when ANONYMOUS."""

    def __init__(self, client: httpx.AsyncClient, url: str, token: str | None = None) -> None:
        self.client = client
        self.url = url
        self.token = tokens.mint() if token is None else token

    def as_caller(self, subject: str, scopes: Iterable[str] = tokens.DEPOSIT) -> Api:
        """The same API asked by another caller: `subject`, with `scopes`."""
        return self.with_token(tokens.mint(subject, scopes))

    def with_token(self, token: str) -> Api:
        """The same API asked with `token`, as it is (expired, badly signed, ANONYMOUS...)."""
        return Api(self.client, self.url, token)

    async def post(self, query: str, **variables: Any) -> httpx.Response:
        """The raw response, which is never a server error."""
        request = self.client.build_request(
            "POST", self.url, json={"query": query, "variables": variables}
        )
        # This caller's token, in place of any the httpx client sends by default.
        request.headers.pop("Authorization", None)
        request.headers.update(tokens.header(self.token))
        response = await self.client.send(request)
        assert response.status_code < 500, response.text
        return response

    async def answer(self, query: str, **variables: Any) -> dict[str, Any]:
        """The whole body of a request answered with 200: its data, and its errors if any."""
        response = await self.post(query, **variables)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def data(self, query: str, **variables: Any) -> dict[str, Any]:
        """The `data` of a request that must succeed without GraphQL errors."""
        body = await self.answer(query, **variables)
        assert "errors" not in body, body
        return body["data"]  # type: ignore[no-any-return]

    async def graphql_errors(self, query: str, **variables: Any) -> list[dict[str, Any]]:
        """The GraphQL errors of a request that must be refused (a 200 or a 4xx)."""
        response = await self.post(query, **variables)
        body: dict[str, Any] = response.json()
        assert body.get("errors"), body
        return body["errors"]  # type: ignore[no-any-return]

    async def create_wallet(self, **fields: Any) -> dict[str, Any]:
        """The createWallet payload (fields as in CreateWalletInput)."""
        payload: dict[str, Any] = (await self.data(CREATE_WALLET, input=fields))["createWallet"]
        return payload

    async def new_wallet(self, balance: str = "0", currency: str = "USD") -> str:
        payload = await self.create_wallet(initialBalance=balance, currency=currency)
        assert payload["errors"] == [], payload
        return str(payload["wallet"]["id"])

    async def deposit(
        self, wallet: str, amount: str, client_key: str | None = None, *, settled: bool = True
    ) -> dict[str, Any]:
        """The deposit payload; its transaction final unless `settled` is False, when it is
        as answered."""
        return await self._move(
            DEPOSIT,
            "deposit",
            settled=settled,
            walletId=wallet,
            amount=amount,
            clientTransactionId=client_key or key(),
        )

    async def withdraw(
        self, wallet: str, amount: str, client_key: str | None = None, *, settled: bool = True
    ) -> dict[str, Any]:
        """The withdraw payload; its transaction final unless `settled` is False."""
        return await self._move(
            WITHDRAW,
            "withdraw",
            settled=settled,
            walletId=wallet,
            amount=amount,
            clientTransactionId=client_key or key(),
        )

    async def transfer(
        self,
        sender: str,
        receiver: str,
        amount: str,
        client_key: str | None = None,
        *,
        settled: bool = True,
    ) -> dict[str, Any]:
        """The transfer payload; its transaction final unless `settled` is False."""
        return await self._move(
            TRANSFER,
            "transfer",
            settled=settled,
            fromWalletId=sender,
            toWalletId=receiver,
            amount=amount,
            clientTransactionId=client_key or key(),
        )

    async def pending_transfer(self, sender: str, receiver: str, amount: str = "1.25") -> str:
        """The id of a transfer that must be accepted, not waited for (it may be PENDING)."""
        payload = await self.transfer(sender, receiver, amount, settled=False)
        assert payload["errors"] == [], payload
        return str(payload["transaction"]["id"])

    async def _move(self, mutation: str, name: str, settled: bool, **fields: Any) -> dict[str, Any]:
        payload: dict[str, Any] = (await self.data(mutation, input=fields))[name]
        if settled and payload["transaction"] is not None:
            payload["transaction"] = await self.final(payload["transaction"])
        return payload

    async def final(self, transaction: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        """The transaction once COMPLETED or FAILED: a worker may settle it after the reply."""
        if transaction["status"] in FINAL:
            return transaction

        async def final_now() -> dict[str, Any] | None:
            now = await self.transaction(transaction["id"])
            return now if now["status"] in FINAL else None

        return await eventually(final_now, f"transaction {transaction['id']} settled", timeout)

    async def transaction(self, transaction_id: str) -> dict[str, Any]:
        found: dict[str, Any] = (await self.data(GET_TRANSACTION, id=transaction_id))["transaction"]
        return found

    async def wallet(self, wallet_id: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = (await self.data(GET_WALLET, id=wallet_id))["wallet"]
        return found

    async def balance(self, wallet_id: str) -> str:
        wallet = await self.wallet(wallet_id)
        assert wallet is not None
        return str(wallet["balance"])

    async def history_page(self, wallet_id: str, **arguments: Any) -> dict[str, Any]:
        """One page of the wallet's transactions (first/after, last/before, filter)."""
        # An argument left out takes its default; one sent as null would not.
        sent = {name: value for name, value in arguments.items() if value is not None}
        wallet = (await self.data(HISTORY, id=wallet_id, **sent))["wallet"]
        assert wallet is not None
        return wallet["transactions"]  # type: ignore[no-any-return]

    async def history(
        self, wallet_id: str, page_size: int, **arguments: Any
    ) -> list[dict[str, Any]]:
        """Every transaction of the wallet, newest first, read page by page with cursors."""

        async def page(after: str | None) -> dict[str, Any]:
            return await self.history_page(wallet_id, first=page_size, after=after, **arguments)

        return await every_page(page, page_size)


class Subscriber:
    """One subscription over graphql-transport-ws (or the legacy graphql-ws), by the caller
    whose bearer `token` its connection_init carries (as Api's)."""

    def __init__(
        self,
        url: str,
        query: str,
        protocol: str = "graphql-transport-ws",
        token: str | None = None,
    ) -> None:
        self.url = url.replace("http://", "ws://")
        self.query = query
        self.protocol = protocol
        self.token = tokens.mint() if token is None else token
        self._socket: Any = None

    async def __aenter__(self) -> Subscriber:
        self._socket = await websockets.connect(self.url, subprotocols=[Subprotocol(self.protocol)])
        init = {"type": "connection_init", "payload": tokens.header(self.token)}
        await self._socket.send(json.dumps(init))
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


async def every_page(
    page: Callable[[str | None], Awaitable[dict[str, Any]]], page_size: int
) -> list[dict[str, Any]]:
    """Every node of a connection, read forward page by page (`page(after)` reads one), each
    page checked against its pageInfo."""
    nodes: list[dict[str, Any]] = []
    after = None
    cursors: set[str] = set()
    while True:
        found = await page(after)
        edges = found["edges"]
        info = found["pageInfo"]
        assert len(edges) <= page_size
        assert info["hasPreviousPage"] is (after is not None)
        if edges:
            assert info["startCursor"] == edges[0]["cursor"]
            assert info["endCursor"] == edges[-1]["cursor"]
        new = [edge["node"] for edge in edges]
        # A page that repeats an earlier one may page forever: fail here, naming why.
        assert not {n["id"] for n in new} & {n["id"] for n in nodes}, "a page came again"
        nodes += new
        if not info["hasNextPage"]:
            return nodes
        assert len(edges) == page_size, "a page short of `first` is the last one"
        after = info["endCursor"]
        assert after not in cursors, f"the cursor {after!r} came back"
        cursors.add(after)
