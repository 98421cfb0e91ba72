"""The WebSocket protocols: the frames they allow, and Strawberry's handlers of them.

A client that closes its socket (or loses its network) while an operation streams is normal.
Strawberry's tasks then failed to send the operation's next frame, or the `complete` it sends
on cancellation, and logged that at ERROR with a traceback: once per operation of every
subscriber that left (graphql-transport-ws), or as "Task exception was never retrieved"
(the legacy graphql-ws).
"""

from __future__ import annotations

import logging

from starlette import websockets
from strawberry.http import exceptions
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler

from wallet.schema.context import Context

log = logging.getLogger("wallet.websocket")

# What sending on a socket the client has left raises: Strawberry's error when the send
# itself fails, Starlette's when the socket is already known to be closed.
_GONE = (exceptions.WebSocketDisconnected, websockets.WebSocketDisconnected)

# The frames of graphql-transport-ws and the legacy graphql-ws that start an operation.
STARTS = frozenset({"subscribe", "start"})
WITH_ID = frozenset({"subscribe", "start", "complete", "stop"})
# The frames that end an operation: sent by the client, or by the server once it is over.
ENDS = frozenset({"complete", "stop", "error"})
LEGACY_SUBSCRIPTIONS_ONLY = (
    "the graphql-ws protocol serves subscriptions only: send queries and mutations over"
    " graphql-transport-ws or HTTP"
)


def malformed(frame: object) -> str | None:
    """Why a frame is not one the protocols allow, or None when it is."""
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        return "a message is a JSON object with a string `type`"
    kind = frame["type"]
    if kind in WITH_ID and not isinstance(frame.get("id"), str):
        return f"`{kind}` needs a string `id`"
    if kind in STARTS:
        payload = frame.get("payload")
        if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
            return f"`{kind}` needs a `payload` object with a string `query`"
        for name, expected in (("variables", dict), ("operationName", str), ("extensions", dict)):
            if payload.get(name) is not None and not isinstance(payload[name], expected):
                return f"`{kind}`: `payload.{name}` has the wrong type"
    return None


class TransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    async def handle_task_exception(self, error: Exception) -> None:
        if isinstance(error, _GONE):
            log.debug("a subscriber left while its operation was streaming")
            return
        await super().handle_task_exception(error)


class LegacyWSHandler(BaseGraphQLWSHandler[Context, None]):
    async def handle_async_results(
        self,
        operation_id: str,
        query: str,
        operation_name: str | None,
        variables: dict[str, object] | None,
    ) -> None:
        try:
            await super().handle_async_results(operation_id, query, operation_name, variables)
        except _GONE:
            log.debug("a subscriber left while its operation %s was streaming", operation_id)
