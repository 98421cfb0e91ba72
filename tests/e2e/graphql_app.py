"""The app served in-process over httpx, with its lifespan run, and a GraphQL helper."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from redis.asyncio import Redis
from sqlalchemy import event
from sqlalchemy.engine import Engine
from starlette.applications import Starlette

from wallet.app import create_app
from wallet.config import Settings
from wallet.persistence.cache import ReadCache


@dataclass
class App:
    app: Starlette
    client: httpx.AsyncClient

    @property
    def cache(self) -> ReadCache:
        cache: ReadCache = self.app.state.read_cache
        return cache

    async def gql(self, query: str, **variables: Any) -> dict[str, Any]:
        response = await self.client.post("/graphql", json={"query": query, "variables": variables})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def data(self, query: str, **variables: Any) -> dict[str, Any]:
        body = await self.gql(query, **variables)
        assert "errors" not in body, body["errors"]
        data: dict[str, Any] = body["data"]
        return data


@contextlib.asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[App]:
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://wallet.test") as client,
    ):
        yield App(app, client)


@contextlib.asynccontextmanager
async def app_with_own_cache(
    database_url: str, redis_url: str, redis_prefix: str
) -> AsyncIterator[App]:
    """The app under a Redis prefix of its own, so it starts with an empty cache."""
    prefix = f"{redis_prefix}:{uuid.uuid4().hex[:8]}"
    settings = Settings(
        database_url=database_url,
        redis_url=redis_url,
        redis_prefix=prefix,
        settle_inline=True,
        rate_limits_enabled=False,
    )
    try:
        async with running_app(settings) as app:
            yield app
    finally:
        redis = Redis.from_url(redis_url)
        async for key in redis.scan_iter(match=f"{prefix}:*"):
            await redis.unlink(key)
        await redis.aclose()


@dataclass
class Statements:
    """The SQL statements sent to one database, as they are sent."""

    database: str
    sent: list[str] = field(default_factory=list)


@contextlib.contextmanager
def statements_sent(database: str) -> Iterator[Statements]:
    """Count what every engine connected to `database` sends, the app's own included."""
    seen = Statements(database)

    def before_cursor_execute(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if conn.engine.url.database == database:
            seen.sent.append(statement)

    event.listen(Engine, "before_cursor_execute", before_cursor_execute)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", before_cursor_execute)


CREATE_WALLET = """
mutation ($balance: Decimal!) {
  createWallet(input: {currency: "USD", initialBalance: $balance}) {
    wallet { id balance }
    errors { code message }
  }
}
"""

DEPOSIT = """
mutation ($wallet: ID!, $amount: Decimal!, $key: String!) {
  deposit(input: {walletId: $wallet, amount: $amount, clientTransactionId: $key}) {
    transaction { id status amount }
    errors { code message }
  }
}
"""

TRANSFER = """
mutation ($from: ID!, $to: ID!, $amount: Decimal!, $key: String!) {
  transfer(input: {fromWalletId: $from, toWalletId: $to, amount: $amount,
                   clientTransactionId: $key}) {
    transaction { id status }
    errors { code message }
  }
}
"""

BALANCE = "query ($id: ID!) { wallet(id: $id) { balance } }"


async def create_wallet(app: App, balance: str = "0") -> str:
    data = await app.data(CREATE_WALLET, balance=balance)
    assert data["createWallet"]["errors"] == []
    wallet_id: str = data["createWallet"]["wallet"]["id"]
    return wallet_id


async def deposit(app: App, wallet_id: str, amount: str, key: str) -> dict[str, Any]:
    data = await app.data(DEPOSIT, wallet=wallet_id, amount=amount, key=key)
    assert data["deposit"]["errors"] == [], data
    transaction: dict[str, Any] = data["deposit"]["transaction"]
    return transaction


async def transfer(app: App, sender: str, receiver: str, amount: str, key: str) -> None:
    data = await app.data(TRANSFER, **{"from": sender, "to": receiver}, amount=amount, key=key)
    assert data["transfer"]["errors"] == [], data
    assert data["transfer"]["transaction"]["status"] == "COMPLETED"


async def balance(app: App, wallet_id: str) -> str:
    data = await app.data(BALANCE, id=wallet_id)
    value: str = data["wallet"]["balance"]
    return value
