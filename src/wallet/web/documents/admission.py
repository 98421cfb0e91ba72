"""The extension admitting a request once its variables are known, before it runs."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

from graphql import (
    GraphQLError,
    OperationDefinitionNode,
)
from graphql.execution.values import get_variable_values
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionContext

from wallet.web.documents.cost import query_cost
from wallet.web.documents.operation import chosen_operation, operations
from wallet.web.documents.text import INVALID_TEXT, clean_text, strings

_REMEMBERED_COSTS = 1024


def admission(max_cost: int) -> type[SchemaExtension]:
    """An extension checking what needs the variables, before anything runs: the operation
    is chosen unambiguously, no variable holds unstorable text, the cost is within the limit.
    The cost of an admitted request is reported in `extensions.cost`."""

    # A cost depends on the document, the operation and the integers among the coerced
    # variables (`first: $n`, defaults included); the same few documents come again and
    # again, so costs are remembered, keyed by a digest of the text rather than the text.
    known: dict[tuple[bytes, str | None, tuple[tuple[str, int], ...]], int] = {}

    def cost_of(context: ExecutionContext, operation: OperationDefinitionNode) -> int | None:
        """The operation's cost, or None when its variables do not coerce (GraphQL then
        refuses the request with its own errors, and nothing runs)."""
        assert context.graphql_document is not None
        # Strawberry keeps the graphql-core schema it built only as `_schema`; the cost needs
        # its field definitions and argument defaults.
        schema = context.schema._schema
        variables = get_variable_values(
            schema, operation.variable_definitions or (), context.variables or {}
        )
        if isinstance(variables, list):
            return None
        # Only Ints change a cost (`type(...) is int` leaves out Booleans).
        numbers = tuple(sorted((k, v) for k, v in variables.coerced.items() if type(v) is int))
        text = (context.query or "").encode(errors="surrogatepass")
        digest = hashlib.blake2b(text, digest_size=16).digest()
        key = (digest, context.operation_name, numbers)
        cost = known.get(key) if context.query else None
        if cost is None:
            cost = query_cost(schema, context.graphql_document, operation, variables)
            if len(known) >= _REMEMBERED_COSTS:
                known.clear()
            known[key] = cost
        return cost

    class Admission(SchemaExtension):
        cost: int | None = None
        named: bool = False

        def on_operation(self) -> Iterator[None]:
            # Before parsing, `operation_name` is only the name the client sent;
            # afterwards Strawberry falls back to the first operation's name.
            self.named = self.execution_context.operation_name is not None
            yield

        def on_execute(self) -> Iterator[None]:
            context = self.execution_context
            document = context.graphql_document
            assert document is not None
            if not self.named and len(operations(document)) > 1:
                raise GraphQLError(
                    "Must provide operation name if query contains multiple operations.",
                    extensions={"code": "INVALID_INPUT"},
                )
            variables = context.variables or {}
            if not all(clean_text(text) for text in strings(variables)):
                raise GraphQLError(INVALID_TEXT, extensions={"code": "INVALID_INPUT"})
            operation = chosen_operation(document, context.operation_name)
            if operation is not None:
                cost = cost_of(context, operation)
                if cost is not None and cost > max_cost:
                    raise GraphQLError(
                        f"the query may return {cost} fields; the limit is {max_cost}",
                        extensions={"code": "QUERY_TOO_COSTLY", "cost": cost},
                    )
                self.cost = cost
            yield

        def get_results(self) -> dict[str, Any]:
            if self.cost is None:
                return {}
            return {"cost": {"requested": self.cost, "limit": max_cost}}

    return Admission
