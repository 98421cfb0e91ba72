"""A client of the wallet API that knows only the contract: GraphQL documents over HTTP."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx

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
query History($id: ID!, $first: Int, $after: String, $filter: TransactionFilter) {
  wallet(id: $id) {
    transactions(first: $first, after: $after, filter: $filter) {
      edges { cursor node { id type status amount createdAt } }
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    }
  }
}"""

FINAL = ("COMPLETED", "FAILED")


def key() -> str:
    return f"e2e-{uuid.uuid4()}"


class Api:
    def __init__(self, client: httpx.AsyncClient, url: str) -> None:
        self.client = client
        self.url = url

    async def post(self, query: str, **variables: Any) -> httpx.Response:
        """The raw response, which is never a server error."""
        response = await self.client.post(self.url, json={"query": query, "variables": variables})
        assert response.status_code < 500, response.text
        return response

    async def data(self, query: str, **variables: Any) -> dict[str, Any]:
        """The `data` of a request that must succeed without GraphQL errors."""
        response = await self.post(query, **variables)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
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
        self, wallet: str, amount: str, client_key: str | None = None
    ) -> dict[str, Any]:
        """The deposit payload, its transaction final."""
        return await self._move(
            DEPOSIT,
            "deposit",
            walletId=wallet,
            amount=amount,
            clientTransactionId=client_key or key(),
        )

    async def withdraw(
        self, wallet: str, amount: str, client_key: str | None = None
    ) -> dict[str, Any]:
        return await self._move(
            WITHDRAW,
            "withdraw",
            walletId=wallet,
            amount=amount,
            clientTransactionId=client_key or key(),
        )

    async def transfer(
        self, sender: str, receiver: str, amount: str, client_key: str | None = None
    ) -> dict[str, Any]:
        return await self._move(
            TRANSFER,
            "transfer",
            fromWalletId=sender,
            toWalletId=receiver,
            amount=amount,
            clientTransactionId=client_key or key(),
        )

    async def _move(self, mutation: str, name: str, **fields: Any) -> dict[str, Any]:
        payload: dict[str, Any] = (await self.data(mutation, input=fields))[name]
        if payload["transaction"] is not None:
            payload["transaction"] = await self.final(payload["transaction"])
        return payload

    async def final(self, transaction: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        """The transaction once COMPLETED or FAILED: a worker may settle it after the reply."""
        deadline = time.monotonic() + timeout
        while transaction["status"] not in FINAL:
            assert time.monotonic() < deadline, f"still PENDING after {timeout} s: {transaction}"
            await asyncio.sleep(0.05)
            transaction = await self.transaction(transaction["id"])
        return transaction

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
        wallet = (await self.data(HISTORY, id=wallet_id, **arguments))["wallet"]
        assert wallet is not None
        return wallet["transactions"]  # type: ignore[no-any-return]

    async def history(
        self, wallet_id: str, page_size: int, **arguments: Any
    ) -> list[dict[str, Any]]:
        """Every transaction of the wallet, newest first, read page by page with cursors."""
        nodes: list[dict[str, Any]] = []
        after = None
        while True:
            page = await self.history_page(wallet_id, first=page_size, after=after, **arguments)
            edges = page["edges"]
            info = page["pageInfo"]
            assert len(edges) <= page_size
            assert info["hasPreviousPage"] is (after is not None)
            if edges:
                assert info["startCursor"] == edges[0]["cursor"]
                assert info["endCursor"] == edges[-1]["cursor"]
            nodes += [edge["node"] for edge in edges]
            if not info["hasNextPage"]:
                return nodes
            assert len(edges) == page_size, "a page short of `first` is the last one"
            after = info["endCursor"]
