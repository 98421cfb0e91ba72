"""Pure ASGI middleware in front of GraphQL: request id and access log, the caller, body cap,
rate limits.

The caller is named first (web/authentication.py): with tokens required, a GraphQL request
without a valid bearer token is answered 401 (UNAUTHENTICATED) and nothing of it runs, and a
WebSocket whose connection_init names no valid one is closed with 4401. /healthz, /readyz,
/metrics and the GraphiQL page and its files stay open. With tokens required, rate limits
count per caller.

Without, rate limits are per client address: the socket's peer, or the address a proxy listed in
`forwarded_allow_ips` wrote in X-Forwarded-For (uvicorn's proxy headers, none trusted by
default). A header the client picks, such as X-API-Key, would let it pick a fresh counter
for each request. Every request counts against one limit; every mutation it runs (30
aliased deposits count 30) against a stricter one, over HTTP and over WebSocket alike. The
request limit is checked before a document is parsed (with GraphQL's token limit) to count
its mutations, so a client over it costs no parse. A request running more mutations than
the strictest mutation window holds is refused for good (400, TOO_MANY_MUTATIONS, no
Retry-After): no wait would let it through.
Counters live in Redis through the `limits` library, so every API process shares them; when
Redis does not answer, requests are let through rather than refused.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl

from graphql import OperationType
from limits import RateLimitItem, parse_many
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wallet.domain.callers import Caller
from wallet.domain.errors import ErrorCode
from wallet.schema.context import Identity
from wallet.web.authentication import IDENTITY, Authenticator, header
from wallet.web.codes import INVALID_INPUT, RATE_LIMITED, TOO_MANY_MUTATIONS
from wallet.web.documents import (
    request_batches_only,
    request_mutations,
    request_operation,
    request_refusal,
)
from wallet.web.logs import request_id
from wallet.web.sockets import ENDS, LEGACY_SUBSCRIPTIONS_ONLY, STARTS, WITH_ID, malformed
from wallet.web.tokens import Unauthenticated

log = logging.getLogger("wallet.http")

REQUEST_ID_HEADER = b"x-request-id"
# Echoed into logs and headers: only printable ASCII of sane length is taken from a client.
_SANE_REQUEST_ID = re.compile(rb"[\x21-\x7e]{1,64}")
TOO_MANY_SUBSCRIPTIONS = "TOO_MANY_SUBSCRIPTIONS"


def _mutations_in(body: bytes, max_tokens: int) -> int:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: [[[…]]]
        return 0
    requests = payload if isinstance(payload, list) else [payload]
    return sum(
        _operation_mutations(item.get("query"), item.get("operationName"), max_tokens)
        for item in requests
        if isinstance(item, dict)
    )


def _batches_only(body: bytes, max_tokens: int) -> bool:
    """Whether the body is one request running transferBatch mutations and nothing else."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: [[[…]]]
        return False
    if not isinstance(payload, dict) or not isinstance(query := payload.get("query"), str):
        return False
    name = payload.get("operationName")
    return request_batches_only(query, name if isinstance(name, str) else None, max_tokens)


def _operation_mutations(query: object, operation_name: object, max_tokens: int) -> int:
    if not isinstance(query, str):
        return 0
    name = operation_name if isinstance(operation_name, str) else None
    return request_mutations(query, name, max_tokens)


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
        # A request running more mutations than the strictest window allows could never be
        # let through, however long its client waited.
        self.most_mutations = min((item.amount for item in self.mutations), default=None)

    def too_many_mutations(self, mutations: int) -> str | None:
        """Why a request running this many mutations can never go ahead, or None."""
        if self.most_mutations is None or mutations <= self.most_mutations:
            return None
        return (
            f"a request may run at most {self.most_mutations} mutations"
            f" (WALLET_MUTATION_RATE_LIMIT); this one runs {mutations}"
        )

    async def request_wait(self, client: str) -> int | None:
        """Seconds the client must wait before another request, or None to go ahead."""
        return await self._wait(client, [(item, 1) for item in self.requests])

    async def mutation_wait(self, client: str, mutations: int) -> int | None:
        """Seconds the client must wait before running these mutations, or None."""
        if not mutations:
            return None
        return await self._wait(client, [(item, mutations) for item in self.mutations])

    async def _wait(self, client: str, checks: list[tuple[RateLimitItem, int]]) -> int | None:
        try:
            for item, cost in checks:
                if not await self._limiter.hit(item, client, cost=cost):
                    stats = await self._limiter.get_window_stats(item, client)
                    return max(1, math.ceil(stats.reset_time - time.time()))
        except Exception:
            log.warning("rate limits unavailable; letting the request through")
        return None


def client_identity(scope: Scope) -> str:
    client = scope.get("client")
    return "ip:" + (client[0] if client else "unknown")


def _counted_as(authenticator: Authenticator, caller: Caller, scope: Scope) -> str:
    """Whose counters a request counts against: its caller's once callers are named by
    tokens; its address while every caller is the same anonymous one."""
    return _caller_key(caller) if authenticator.required else client_identity(scope)


def _caller_key(caller: Caller) -> str:
    return f"caller:{caller.id}"


def _is_graphiql_page(scope: Scope) -> bool:
    """The GraphiQL page (a browser's GET of /graphql for HTML, no query): open to anyone.

    Parameter names are read decoded, as Strawberry reads them: `%71uery` is a query too."""
    if scope["method"] != "GET":
        return False
    parameters = parse_qsl(scope.get("query_string", b"").decode("latin-1"), True)
    if any(name == "query" for name, _ in parameters):
        return False
    return "text/html" in (header(scope, b"accept") or "")


UNAUTHENTICATED_MESSAGE = "a valid bearer token is required (Authorization: Bearer <JWT>)"


class EdgeMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        max_batch_body_bytes: int,
        max_tokens: int,
        max_socket_operations: int,
        limits: RateLimits | None = None,
        authenticator: Authenticator,
    ) -> None:
        self.app = app
        # Required: a default would name every caller the anonymous admin.
        self.authenticator = authenticator
        self.max_body_bytes = max_body_bytes
        # Only a batch of transfers may come in a body this large (`_batches_only`).
        self.max_batch_body_bytes = max(max_body_bytes, max_batch_body_bytes)
        self.max_tokens = max_tokens
        self.max_socket_operations = max_socket_operations
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
        client = client_identity(scope)
        if self.limits is not None:
            wait = await self.limits.request_wait(client)
            if wait is not None:
                await send({"type": "websocket.close", "code": 1013})
                return
        # Known at once without tokens; with them, once connection_init names a caller.
        identity = Identity(
            None if self.authenticator.required else await self.authenticator.caller(None)
        )
        scope[IDENTITY] = identity
        frames = _FrameCheck(
            receive,
            send,
            client,
            self.limits,
            self.max_tokens,
            self.max_socket_operations,
            authenticator=self.authenticator,
            identity=identity,
            upgrade_authorization=header(scope, b"authorization"),
        )
        await self.app(scope, frames, frames.sent)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = client_identity(scope)
        if scope["path"] == "/graphql" and not _is_graphiql_page(scope):
            try:
                caller = await self.authenticator.caller(header(scope, b"authorization"))
            except Unauthenticated as unknown:
                log.info("unauthenticated request: %s", unknown.reason)
                unauthenticated = _error(UNAUTHENTICATED_MESSAGE, code=ErrorCode.UNAUTHENTICATED)
                await _respond(send, 401, unauthenticated, [(b"www-authenticate", b"Bearer")])
                return
            scope[IDENTITY] = Identity(caller)
            client = _counted_as(self.authenticator, caller, scope)
        declared = _content_length(scope)
        if declared is not None and declared > self.max_batch_body_bytes:
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
            if size > self.max_batch_body_bytes:
                await _respond(send, 413, _error("request body too large"), [])
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if size > self.max_body_bytes and not _batches_only(body, self.max_tokens):
            await _respond(send, 413, _error("request body too large"), [])
            return

        if self.limits is not None and scope["path"] == "/graphql":
            refusal = await self._refusal(client, scope["method"], body)
            if refusal is not None:
                await _respond(send, *refusal)
                return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refusal(
        self, client: str, method: str, body: bytes
    ) -> tuple[int, dict[str, Any], list[Any]] | None:
        """The answer refusing this request under the rate limits, or None to let it go.

        The request limit is checked before the body is parsed: a client over it costs a
        Redis round trip, never the parse of its document.
        """
        assert self.limits is not None
        wait = await self.limits.request_wait(client)
        mutations = _mutations_in(body, self.max_tokens) if wait is None and method == "POST" else 0
        if (too_many := self.limits.too_many_mutations(mutations)) is not None:
            # Not retryable: no Retry-After, and a code of its own.
            return 400, _error(too_many, code=TOO_MANY_MUTATIONS), []
        if wait is None:
            wait = await self.limits.mutation_wait(client, mutations)
        if wait is None:
            return None
        refused = _error("too many requests; retry later", code=RATE_LIMITED)
        return 429, refused, [(b"retry-after", str(wait).encode())]


def _error(message: str, code: str = INVALID_INPUT) -> dict[str, Any]:
    return {"data": None, "errors": [{"message": message, "extensions": {"code": code}}]}


def _content_length(scope: Scope) -> int | None:
    value = header(scope, b"content-length")
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == REQUEST_ID_HEADER and _SANE_REQUEST_ID.fullmatch(value):
            return str(value.decode("ascii"))
    return None


class _FrameCheck:
    """The WebSocket's receive, looking at each frame before Strawberry does.

    A frame that starts or stops an operation without the shape both protocols require
    (a string id; a payload object with a string query) closes the socket with 4400, as
    graphql-transport-ws asks for invalid messages; Strawberry raised a TypeError on some.
    Each operation counts as a request, and its mutations as mutations, against the
    client's limits, as over HTTP; an operation over them is answered with an error for its
    id while the socket stays open. So is one whose document GraphQL would refuse before
    validating it (it does not parse, is over the token limit, or names no operation to
    run), with the code HTTP gives it; one that is no subscription on the legacy graphql-ws,
    which runs nothing else; and one that would hold more than `max_operations`
    operations (subscriptions, mostly) open at once on the socket: each holds a task and a
    Redis subscription until it ends.
    """

    def __init__(
        self,
        receive: Receive,
        send: Send,
        client: str,
        limits: RateLimits | None,
        max_tokens: int,
        max_operations: int,
        *,
        authenticator: Authenticator,
        identity: Identity,
        upgrade_authorization: str | None,
    ) -> None:
        self.receive = receive
        self.send = send
        self.client = client
        self.limits = limits
        self.max_tokens = max_tokens
        self.max_operations = max_operations
        self.open: set[str] = set()
        # Who is asking: named by `authenticator` from connection_init's Authorization, or
        # else the upgrade request's, into `identity`.
        self.authenticator = authenticator
        self.identity = identity
        self.upgrade_authorization = upgrade_authorization

    async def sent(self, message: Message) -> None:
        """The socket's send, forgetting the operations the server ends."""
        text = message.get("text") if message["type"] == "websocket.send" else None
        # Only frames that may end an operation are read; `next` frames can be large.
        if text is not None and ('"complete"' in text or '"error"' in text):
            try:
                frame = json.loads(text)
            except ValueError:
                frame = None
            if isinstance(frame, dict) and frame.get("type") in ENDS:
                self.open.discard(str(frame.get("id")))
        await self.send(message)

    async def __call__(self) -> Message:
        while True:
            message = await self.receive()
            if message["type"] != "websocket.receive" or message.get("text") is None:
                return message
            try:
                frame = json.loads(message["text"])
            except ValueError:  # not JSON, or an integer Python refuses to convert
                frame = None
            problem = malformed(frame)
            if problem is not None:
                log.info("closing a WebSocket: %s", problem)
                await self.send({"type": "websocket.close", "code": 4400, "reason": problem})
                return {"type": "websocket.disconnect", "code": 4400}
            named = self.identity.caller is not None and self.authenticator.required
            if frame["type"] == "connection_init" and named:
                # A socket's caller is named once: a second connection_init may not swap it
                # under the subscriptions already running (graphql-transport-ws's 4429).
                reason = "Too many initialisation requests"
                await self.send({"type": "websocket.close", "code": 4429, "reason": reason})
                return {"type": "websocket.disconnect", "code": 4429}
            needs_caller = frame["type"] == "connection_init" and self.authenticator.required
            if needs_caller and not await self._identified(frame):
                await self.send({"type": "websocket.close", "code": 4401, "reason": "Unauthorized"})
                return {"type": "websocket.disconnect", "code": 4401}
            if frame["type"] in STARTS and self.identity.caller is None:
                # No operation runs before its caller is named.
                await self.send({"type": "websocket.close", "code": 4401, "reason": "Unauthorized"})
                return {"type": "websocket.disconnect", "code": 4401}
            if frame["type"] in STARTS:
                if frame["id"] not in self.open and len(self.open) >= self.max_operations:
                    refusal = (
                        f"a WebSocket may hold at most {self.max_operations} operations open"
                        " at once; complete one first"
                    )
                    await self._refuse(frame, _error(refusal, code=TOO_MANY_SUBSCRIPTIONS))
                    continue
                if not await self._admitted(frame):
                    continue
                if (unrunnable := self._unrunnable(frame)) is not None:
                    await self._refuse(frame, unrunnable)
                    continue
                self.open.add(frame["id"])
            elif frame["type"] in WITH_ID:  # complete, stop: the client ends one
                self.open.discard(frame["id"])
            return message

    async def _identified(self, frame: dict[str, Any]) -> bool:
        """Name the socket's caller from connection_init's `Authorization`, else from the
        upgrade request's header; False when neither names one."""
        payload = frame.get("payload")
        given = payload.get("Authorization") if isinstance(payload, dict) else None
        authorization = given if isinstance(given, str) else self.upgrade_authorization
        try:
            caller = await self.authenticator.caller(authorization)
        except Unauthenticated as refusal:
            log.info("closing an unauthenticated WebSocket: %s", refusal.reason)
            return False
        self.identity.caller = caller
        self.client = _caller_key(caller)
        return True

    def _unrunnable(self, frame: dict[str, Any]) -> dict[str, Any] | None:
        """The answer for an operation GraphQL would not run, or None."""
        query, name = frame["payload"]["query"], frame["payload"].get("operationName")
        refused = request_refusal(query, name, self.max_tokens)
        if refused is not None:
            # Strawberry would close the socket, or answer `complete` alone and log the
            # document with a traceback: answered as over HTTP instead.
            return {"errors": [refused.formatted]}
        operation = request_operation(query, name, self.max_tokens)
        if frame["type"] == "start" and operation != OperationType.SUBSCRIPTION:
            # Strawberry's legacy handler runs subscriptions only: anything else failed
            # inside it, as "Internal error." and an ERROR in the log.
            return _error(LEGACY_SUBSCRIPTIONS_ONLY)
        return None

    async def _admitted(self, frame: dict[str, Any]) -> bool:
        payload = frame["payload"]
        if self.limits is None:
            return True
        if await self.limits.request_wait(self.client) is None:
            mutations = _operation_mutations(
                payload["query"], payload.get("operationName"), self.max_tokens
            )
            refusal = self.limits.too_many_mutations(mutations)
            if refusal is not None:
                await self._refuse(frame, _error(refusal, code=TOO_MANY_MUTATIONS))
                return False
            if await self.limits.mutation_wait(self.client, mutations) is None:
                return True
        await self._refuse(frame, _error("too many requests; retry later", code=RATE_LIMITED))
        return False

    async def _refuse(self, frame: dict[str, Any], refusal: dict[str, Any]) -> None:
        errors = refusal["errors"]
        # graphql-transport-ws sends a list of errors; the legacy protocol one error.
        body = errors if frame["type"] == "subscribe" else errors[0]
        text = json.dumps({"id": frame["id"], "type": "error", "payload": body})
        await self.send({"type": "websocket.send", "text": text})
