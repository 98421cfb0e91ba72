"""create_app(settings) -> the Starlette application serving GraphQL on /graphql."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import orjson
import strawberry
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from graphql import GraphQLError, OperationType
from limits.aio.storage import RedisStorage
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.extensions import DisableIntrospection
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.subscriptions import (
    GRAPHQL_SSE_PROTOCOL,
    GRAPHQL_TRANSPORT_WS_PROTOCOL,
    GRAPHQL_WS_PROTOCOL,
)
from strawberry.types import ExecutionContext
from taskiq.exceptions import SendTaskError

from wallet.bootstrap import Resources, open_queue, open_resources
from wallet.config import Settings
from wallet.domain import services
from wallet.domain.batching import Batcher
from wallet.domain.group_commit import run_together, run_unattended
from wallet.domain.model import Transaction
from wallet.domain.ports import HistoryQuery
from wallet.persistence.outages import Outage, PostgresOutage
from wallet.persistence.queries import SqlHistoryQuery
from wallet.resolvers.mutations import Mutation
from wallet.resolvers.queries import Query
from wallet.resolvers.subscriptions import Subscription
from wallet.schema.context import Context, Depositor, Dispatch, Submitter
from wallet.schema.scalars import DATETIME, DECIMAL, DecimalText
from wallet.tasks.settlement import settle_transaction, settle_transactions
from wallet.web import graphiql
from wallet.web.authentication import authenticator_for, identity_of
from wallet.web.codes import SERVICE_UNAVAILABLE
from wallet.web.cors import cors
from wallet.web.documents import document_limits, request_operation
from wallet.web.extension import edge_extension, should_mask
from wallet.web.logs import request_id
from wallet.web.middleware import EdgeMiddleware, RateLimits
from wallet.web.operations import Metrics, healthz, metrics_response
from wallet.web.readiness import Readiness, postgres_outage, redis_outage
from wallet.web.sockets import LegacyWSHandler, TransportWSHandler

log = logging.getLogger("wallet")

# Seconds a client is asked to wait when PostgreSQL is away: about how often readiness looks.
RETRY_AFTER_SECONDS = 5


class WalletSchema(strawberry.Schema):
    # Told of each request that found PostgreSQL unavailable (None: nobody is listening).
    postgres: PostgresOutage | None = None

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # The client's own mistakes (bad documents, bad cursors) are answered, not logged as
        # failures; an outage is logged once, when it begins; anything else is a bug, logged
        # with its traceback and the request id.
        for error in errors:
            if not should_mask(error):
                continue
            assert error.original_error is not None
            if self.postgres is not None and self.postgres.explains(error.original_error):
                self.postgres.lost(error.original_error)
            else:
                log.error("unexpected error in %s", error.path, exc_info=error.original_error)


def build_schema(
    settings: Settings | None = None,
    metrics: Metrics | None = None,
    postgres: PostgresOutage | None = None,
) -> strawberry.Schema:
    settings = settings or Settings()
    # Factories, not instances: Strawberry makes one per request, so concurrent requests
    # never share an extension's state (a shared MaskErrors once masked the wrong result).
    extensions: list[Any] = [
        edge_extension(
            max_tokens=settings.max_query_tokens,
            rules=[document_limits(settings.max_query_depth, settings.max_aliases)],
            max_cost=settings.max_query_cost,
            postgres=postgres,
            metrics=metrics,
        ),
    ]
    if not settings.introspection:
        extensions.append(DisableIntrospection)
    schema = WalletSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions,
        scalar_overrides={DecimalText: DECIMAL, datetime: DATETIME},
    )
    schema.postgres = postgres
    return schema


_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


def _code(error: object) -> object:
    extensions = error.get("extensions") if isinstance(error, dict) else None
    return extensions.get("code") if isinstance(extensions, dict) else None


class WalletGraphQL(GraphQL[Context, None]):
    """The GraphQL endpoint; its resources arrive when the lifespan has opened them."""

    graphql_transport_ws_handler_class = TransportWSHandler
    graphql_ws_handler_class = LegacyWSHandler

    def __init__(self, settings: Settings, metrics: Metrics, postgres: PostgresOutage) -> None:
        super().__init__(
            build_schema(settings, metrics, postgres),
            allowed_origins=settings.allowed_origins,
            graphql_ide="graphiql" if settings.graphiql else None,
            # Server-Sent Events too (a POST with `Accept: text/event-stream`), for clients
            # behind proxies that drop WebSockets.
            subscription_protocols=(
                GRAPHQL_TRANSPORT_WS_PROTOCOL,
                GRAPHQL_WS_PROTOCOL,
                GRAPHQL_SSE_PROTOCOL,
            ),
        )
        self.development = not settings.production
        self.max_tokens = settings.max_query_tokens
        self.resources: Resources | None = None
        self.reads: HistoryQuery | None = None
        self.dispatch: Dispatch | None = None
        self.deposit: Depositor | None = None
        self.submit: Submitter | None = None

    def is_websocket_origin_allowed(self, request: WebSocket, origin: str) -> bool:
        # In development the page is as often on http://localhost:8000 as on
        # http://127.0.0.1:8000 (or a front end on another local port): the same machine.
        if self.development and urlsplit(origin).hostname in _LOOPBACK:
            return True
        return super().is_websocket_origin_allowed(request, origin)

    def encode_json(self, data: object) -> str:
        # orjson, about five times faster than json; text, as a WebSocket frame must be.
        try:
            return orjson.dumps(data).decode()
        except orjson.JSONEncodeError:
            # What orjson refuses and json writes: a lone surrogate (escaped), say, in the
            # message of an error about the client's own document.
            return json.dumps(data, separators=(",", ":"))

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: Response,
    ) -> Response:
        response = super().create_response(response_data, sub_response)
        results = response_data if isinstance(response_data, list) else [response_data]
        if any(
            _code(error) == SERVICE_UNAVAILABLE
            for result in results
            for error in result.get("errors") or []
        ):
            response.status_code = 503
            response.headers["retry-after"] = str(RETRY_AFTER_SECONDS)
        return response

    async def render_graphql_ide(self, request: Request) -> Response:
        # Strawberry's page loads its scripts from unpkg; this one, from the package.
        return graphiql.page_response()

    def decode_json(self, data: str | bytes) -> object:
        try:
            value = json.loads(data)
        except json.JSONDecodeError:
            raise
        except (ValueError, RecursionError) as error:
            # Not UTF-8, an integer of 4,300 digits or more (Python's limit on converting digit
            # strings), or arrays nested thousands deep (`[[[…]]]`, which json reads by
            # recursing): Strawberry answers 400 only for a JSONDecodeError.
            raise json.JSONDecodeError(f"the body is not JSON we read: {error}", "", 0) from error
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(item, dict) for item in items):
            raise HTTPException(400, "The request body must be a JSON object.")
        return value

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        data = await super().parse_http_body(request)
        for item in data if isinstance(data, list) else [data]:
            if item.query is None:
                continue
            operation = request_operation(item.query, item.operation_name, self.max_tokens)
            if item.protocol == "http" and operation == OperationType.SUBSCRIPTION:
                raise HTTPException(
                    400,
                    "Subscriptions are served over WebSocket (graphql-transport-ws) and "
                    "Server-Sent Events (Accept: text/event-stream).",
                )
            if item.protocol != "http" and operation is None:
                # Strawberry's event stream raises a document that does not parse out of the
                # response it has begun (an empty 200 and a traceback): refused here instead.
                raise HTTPException(
                    400,
                    "The document does not parse (or is over the token limit), or holds no "
                    "operation by that name.",
                )
        return data

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        assert self.resources is not None, "the lifespan has not started"
        assert self.reads is not None
        assert self.dispatch is not None
        assert self.deposit is not None
        assert self.submit is not None
        return Context(
            identity=identity_of(request.scope),
            uow_factory=self.resources.unit_of_work,
            reads=self.reads,
            dispatch=self.dispatch,
            deposit=self.deposit,
            submit=self.submit,
            feed=self.resources.feed,
            request_id=request_id.get(),
        )


def inline_dispatch(resources: Resources) -> Dispatch:
    async def settle_now(transactions: Sequence[Transaction]) -> list[Transaction]:
        if not transactions:
            return []
        ids = [t.id for t in transactions]
        settled = {
            t.id: t for t in await run_unattended(resources.unit_of_work, services.settle, ids)
        }
        if len(settled) < len(ids):
            # Some were decided meanwhile by another request (a replay of one of these):
            # answer them as they stand.
            async with resources.unit_of_work() as uow:
                for transaction in transactions:
                    if transaction.id not in settled:
                        found = await uow.transactions.get(transaction.id)
                        settled[transaction.id] = found or transaction
        return [settled[i] for i in ids]

    return settle_now


def queue_dispatch(redis: Outage) -> Dispatch:
    async def enqueue(transactions: Sequence[Transaction]) -> list[Transaction]:
        if not transactions:
            return []
        try:
            if len(transactions) == 1:
                await settle_transaction.kiq(str(transactions[0].id))
            else:
                # A batch is one job: settled in one unit of work, one lock pass.
                await settle_transactions.kiq([str(t.id) for t in transactions])
        except (SendTaskError, RedisError, OSError) as error:
            # They are recorded; a worker's sweeper queues them once Redis is back. Said once
            # per outage (readiness says when Redis is back), not once per request.
            redis.lost(error)
            log.debug("could not queue %d transactions; the sweeper will", len(transactions))
        return list(transactions)

    return enqueue


def _redis_storage_uri(redis_url: str) -> str:
    if redis_url.startswith("unix://"):
        return "async+redis+" + redis_url
    return "async+" + redis_url


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings()
    metrics = Metrics()
    postgres, redis = postgres_outage(settings.database_url), redis_outage(settings.redis_url)
    graphql = WalletGraphQL(settings, metrics, postgres)
    readiness: Readiness | None = None

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal readiness
        async with open_resources(settings) as resources, open_queue(settings):
            graphql.resources = resources
            readiness = Readiness(resources, postgres, redis, detailed=not settings.production)
            watcher = asyncio.create_task(readiness.watch(), name="readiness")
            cache = resources.cache
            graphql.reads = cache.reads(SqlHistoryQuery(resources.engine))
            app.state.read_cache = cache
            metrics.cache_counts = lambda: (cache.wallet_stats.hits, cache.wallet_stats.misses)
            graphql.dispatch = (
                inline_dispatch(resources) if settings.settle_inline else queue_dispatch(redis)
            )
            # What this process receives at the same time shares a commit.
            graphql.deposit = Batcher(
                partial(run_together, resources.unit_of_work, services.deposit)
            )
            graphql.submit = Batcher(partial(run_together, resources.unit_of_work, services.submit))
            # What start-up made lives as long as the process: keep the collector from
            # walking it again and again, and let it run less often. Requests waiting on I/O
            # keep many young objects alive, and each collection then walked them all.
            gc.freeze()
            gc.set_threshold(10_000, 20, 20)
            try:
                yield
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
                graphql.resources = None

    def opened() -> Resources:
        assert graphql.resources is not None, "the lifespan has not started"
        return graphql.resources

    async def ready(_request: Request) -> Response:
        assert readiness is not None, "the lifespan has not started"
        return await readiness.response()

    async def metrics_page(_request: Request) -> Response:
        return await metrics_response(metrics, opened())

    limits = None
    if settings.rate_limits_enabled:
        storage = RedisStorage(
            _redis_storage_uri(settings.redis_url),
            implementation="redispy",
            key_prefix=f"{settings.redis_prefix}:limits",
            socket_timeout=settings.redis_timeout,
            socket_connect_timeout=settings.redis_timeout,
        )
        limits = RateLimits(storage, settings.rate_limit, settings.mutation_rate_limit)
    routes = [
        Route("/graphql", graphql),
        WebSocketRoute("/graphql", graphql),
        Route("/healthz", healthz),
        Route("/readyz", ready),
        Route("/metrics", metrics_page),
    ]
    if settings.graphiql:
        routes.append(Mount(graphiql.PREFIX, app=graphiql.static_files()))
    cross_origin = cors(settings)
    return Starlette(
        routes=routes,
        middleware=[
            # Outermost: a browser's preflight carries no token, and is answered here.
            *([cross_origin] if cross_origin is not None else []),
            Middleware(
                EdgeMiddleware,
                max_body_bytes=settings.max_body_bytes,
                max_batch_body_bytes=settings.max_batch_body_bytes,
                max_tokens=settings.max_query_tokens,
                max_socket_operations=settings.max_socket_operations,
                limits=limits,
                authenticator=authenticator_for(settings),
            ),
        ],
        lifespan=lifespan,
    )
