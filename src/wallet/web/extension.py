"""The schema extension the edge adds to every GraphQL operation.

One extension rather than eight: each one Strawberry runs costs every request its hooks
(with `{ __typename }` the caches, limits, admission, mask and timing as separate extensions
took about 10% of a request's CPU). It sets the token limit and the document limits, parses
and validates through caches, admits the request once its variables are known
(`documents.admission`), reports the cost, gives every mistake of the client's a code,
masks everything else, and times the operation.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from graphql import ASTValidationRule, GraphQLError, parse, validate
from strawberry.extensions import MaskErrors, SchemaExtension

from wallet.persistence.database import is_unavailable
from wallet.persistence.outages import PostgresOutage
from wallet.schema.types import PublicError
from wallet.web.codes import INTERNAL, SERVICE_UNAVAILABLE
from wallet.web.documents import Cost, admission
from wallet.web.documents.operation import client_code, request_refusal
from wallet.web.operations import Metrics

# Shared by every request: the same few documents come again and again. Validation is keyed
# by the rules too, so they are made once (a new rule class per request would miss each time:
# 1.1 ms of CPU instead of 0.2 ms for `{ __typename }`).
_REMEMBERED_DOCUMENTS = 1024
_parse = lru_cache(maxsize=_REMEMBERED_DOCUMENTS)(parse)
_validate = lru_cache(maxsize=_REMEMBERED_DOCUMENTS)(validate)


def should_mask(error: GraphQLError) -> bool:
    """Whether an error is the server's to hide rather than the client's to read."""
    # Errors of parsing, validation and variable coercion describe the client's document:
    # they wrap nothing or one of graphql-core's own errors, or (a scalar refusing a literal)
    # point at the document's nodes. Anything else was raised while serving the request: in a
    # resolver (with a path) or in a subscription's stream (with neither path nor nodes), and
    # only a PublicError is shown.
    original = error.original_error
    if original is None or isinstance(original, GraphQLError | PublicError):
        return False
    return error.path is not None or not error.nodes


def _with_code(error: GraphQLError, code: str) -> GraphQLError:
    return GraphQLError(
        error.message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=error.original_error,
        extensions={**(error.extensions or {}), "code": code},
    )


def edge_extension(
    *,
    max_tokens: int,
    rules: list[type[ASTValidationRule]],
    max_cost: int,
    postgres: PostgresOutage | None = None,
    metrics: Metrics | None = None,
) -> type[SchemaExtension]:
    """The extension; `postgres` tells a failure of PostgreSQL's from a bug, and `metrics`
    times each operation."""
    admit = admission(max_cost)
    validation_rules = tuple(rules)
    explains = postgres.explains if postgres is not None else is_unavailable

    class Edge(MaskErrors):
        cost: Cost | None = None
        named: bool = False

        def __init__(self) -> None:
            # Every error passes through `anonymise_error`, which codes or masks it.
            super().__init__(should_mask_error=lambda _error: True)

        def on_operation(self) -> Iterator[None]:
            started = time.perf_counter()
            context = self.execution_context
            context.parse_options["max_tokens"] = max_tokens
            context.validation_rules = context.validation_rules + validation_rules
            # Before parsing, `operation_name` is only the name the client sent;
            # afterwards Strawberry falls back to the first operation's name.
            self.named = context.operation_name is not None
            self._stream_result_processed = False
            yield
            # MaskErrors' own hook checks every result against a runtime Protocol, a fifth of
            # this extension's time; only results with errors need looking at. A stream's
            # results were masked one by one (`on_stream_result`).
            result = context.result
            if result is not None and result.errors and not self._stream_result_processed:
                result.errors = [self.anonymise_error(error) for error in result.errors]
            if metrics is not None:
                metrics.observe(context, time.perf_counter() - started)

        def on_parse(self) -> Iterator[None]:
            context = self.execution_context
            assert context.query is not None
            # A document the edge already found refused (over the token limit, say: its
            # parse is remembered, refusals too) is left to Strawberry, which parses it and
            # reports it as a result, coded like every other mistake: parsing it here as well
            # would cost a third pass over up to max_tokens tokens (20 ms each on a Xeon).
            if request_refusal(context.query, context.operation_name, max_tokens) is None:
                with contextlib.suppress(GraphQLError):
                    context.graphql_document = _parse(context.query, **context.parse_options)
            yield

        def on_validate(self) -> Iterator[None]:
            context = self.execution_context
            assert context.graphql_document is not None
            context.pre_execution_errors = _validate(
                context.schema._schema, context.graphql_document, context.validation_rules
            )
            yield

        def on_execute(self) -> Iterator[None]:
            self.cost = admit(self.execution_context, self.named)
            yield

        def get_results(self) -> dict[str, Any]:
            if self.cost is None:
                return {}
            return {"cost": {"requested": self.cost.requested, "limit": self.cost.limit}}

        def anonymise_error(self, error: GraphQLError) -> GraphQLError:
            """The client's mistake with its code; else "Internal error.", or, when
            PostgreSQL cannot serve, SERVICE_UNAVAILABLE (HTTP 503 and Retry-After)."""
            if not should_mask(error):
                if error.extensions and "code" in error.extensions:
                    return error
                return _with_code(error, client_code(error))
            if error.original_error is not None and explains(error.original_error):
                message = (
                    "The service is unavailable: its database cannot serve requests now. "
                    "Try again shortly."
                )
                code = SERVICE_UNAVAILABLE
            else:
                message, code = "Internal error.", INTERNAL
            return GraphQLError(
                message, nodes=error.nodes, path=error.path, extensions={"code": code}
            )

    return Edge
