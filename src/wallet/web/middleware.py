"""Pure ASGI middleware in front of GraphQL: request id and access log, body cap, rate limits.

Rate limits are per client: the X-API-Key header when there is one (hashed, never stored as
sent), else the client's address. Mutations count against a stricter limit of their own.
Counters live in Redis through the `limits` library, so every API process shares them; when
Redis does not answer, requests are let through rather than refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
import uuid
from functools import lru_cache
from typing import Any

from graphql import GraphQLError, OperationDefinitionNode, OperationType, parse
from limits import RateLimitItem, parse_many
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wallet.web.logs import request_id

log = logging.getLogger("wallet.http")

REQUEST_ID_HEADER = b"x-request-id"


@lru_cache(maxsize=2048)
def operation_type(query: str, operation_name: str | None) -> OperationType | None:
    """What the document's chosen operation is; None when it does not parse or has none."""
    try:
        document = parse(query)
    except GraphQLError:
        return None  # GraphQL itself will refuse it
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode) and (
            operation_name is None
            or (definition.name is not None and definition.name.value == operation_name)
        ):
            return definition.operation
    return None


def _mutations_in(body: bytes) -> int:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return 0
    requests = payload if isinstance(payload, list) else [payload]
    count = 0
    for item in requests:
        if isinstance(item, dict) and isinstance(item.get("query"), str):
            name = item.get("operationName")
            kind = operation_type(item["query"], name if isinstance(name, str) else None)
            count += kind == OperationType.MUTATION
    return count


async def _respond(send: Send, status: int, body: dict[str, Any], headers: list[Any]) -> None:
    content = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(content)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": content})


class RateLimits:
    def __init__(self, storage: RedisStorage, requests: str, mutations: str) -> None:
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        self.requests: list[RateLimitItem] = parse_many(requests)
        self.mutations: list[RateLimitItem] = parse_many(mutations)

    async def retry_after(self, client: str, mutations: int) -> int | None:
        """Seconds the client must wait, or None when this request may go ahead."""
        checks = [(item, 1) for item in self.requests]
        checks += [(item, mutations) for item in self.mutations if mutations]
        try:
            for item, cost in checks:
                if not await self._limiter.hit(item, client, cost=cost):
                    stats = await self._limiter.get_window_stats(item, client)
                    return max(1, math.ceil(stats.reset_time - time.time()))
        except Exception:
            log.warning("rate limits unavailable; letting the request through")
        return None


def client_identity(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-api-key" and value:
            return "key:" + hashlib.sha256(value).hexdigest()[:32]
    client = scope.get("client")
    return "ip:" + (client[0] if client else "unknown")


class EdgeMiddleware:
    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int, limits: RateLimits | None = None
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        rid = _incoming_request_id(scope) or uuid.uuid4().hex
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (REQUEST_ID_HEADER, rid.encode()),
                ]
            await send(message)

        try:
            if scope["type"] == "websocket":
                await self._websocket(scope, receive, send)
            else:
                await self._http(scope, receive, send_with_id)
        finally:
            if scope["type"] == "http" and scope["path"] != "/metrics":
                log.info(
                    "%s %s %d",
                    scope["method"],
                    scope["path"],
                    status,
                    extra={"duration_ms": round((time.perf_counter() - started) * 1000, 2)},
                )
            request_id.reset(token)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.limits is not None:
            wait = await self.limits.retry_after(client_identity(scope), 0)
            if wait is not None:
                await send({"type": "websocket.close", "code": 1013})
                return
        await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await _respond(send, 413, _error("request body too large"), [])
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await _respond(send, 413, _error("request body too large"), [])
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)

        if self.limits is not None and scope["path"] == "/graphql":
            mutations = _mutations_in(body) if scope["method"] == "POST" else 0
            wait = await self.limits.retry_after(client_identity(scope), mutations)
            if wait is not None:
                await _respond(
                    send,
                    429,
                    _error("too many requests; retry later", code="RATE_LIMITED"),
                    [(b"retry-after", str(wait).encode())],
                )
                return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def _error(message: str, code: str = "INVALID_INPUT") -> dict[str, Any]:
    return {"data": None, "errors": [{"message": message, "extensions": {"code": code}}]}


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == REQUEST_ID_HEADER:
            text: str = value.decode("latin-1")
            # Echoed into logs and headers: only a sane token is taken from a client.
            if 0 < len(text) <= 64 and text.replace("-", "").isalnum():
                return text
    return None
