"""Strawberry's WebSocket handlers, told that a subscriber going away is no failure.

A client that closes its socket (or loses its network) while an operation streams is normal.
Strawberry's tasks then fail to send the operation's next frame, or the `complete` it sends
on cancellation, and logged that at ERROR with a traceback: once per operation of every
subscriber that left (graphql-transport-ws), or as "Task exception was never retrieved"
(the legacy graphql-ws).
"""

from __future__ import annotations

import logging

from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler

from wallet.schema.context import Context

log = logging.getLogger("wallet.websocket")


class TransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    async def handle_task_exception(self, error: Exception) -> None:
        if isinstance(error, WebSocketDisconnected):
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
        except WebSocketDisconnected:
            log.debug("a subscriber left while its operation %s was streaming", operation_id)
