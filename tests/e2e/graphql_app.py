"""The app served in-process over httpx, with its lifespan run: for tests that look inside it
(its cache, the statements it sends) while speaking to it as a client does."""

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

from tests import tokens
from tests.client import Api
from wallet.app import create_app
from wallet.config import Settings
from wallet.persistence.cache import ReadCache


@dataclass
class App:
    app: Starlette
    api: Api

    @property
    def client(self) -> httpx.AsyncClient:
        """The in-process HTTP client, for the routes that are not GraphQL."""
        return self.api.client

    @property
    def cache(self) -> ReadCache:
        cache: ReadCache = self.app.state.read_cache
        return cache


@contextlib.asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[App]:
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=transport, base_url="http://wallet.test", headers=tokens.header()
        ) as client,
    ):
        yield App(app, Api(client, "/graphql"))


@contextlib.asynccontextmanager
async def app_with_own_cache(
    database_url: str, redis_url: str, redis_prefix: str
) -> AsyncIterator[App]:
    """The app under a Redis prefix of its own, so it starts with an empty cache."""
    prefix = f"{redis_prefix}:{uuid.uuid4().hex[:8]}"
    settings = Settings(
        jwt_secret=tokens.SECRET,
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
