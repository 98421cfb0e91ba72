"""Admitting a request once its variables are known, before it runs."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from graphql import (
    GraphQLError,
    NamedTypeNode,
    NonNullTypeNode,
    OperationDefinitionNode,
    TypeNode,
)
from graphql.execution.values import VariableValues, get_variable_values
from strawberry.types import ExecutionContext

from wallet.web.codes import INVALID_INPUT, QUERY_TOO_COSTLY
from wallet.web.documents.cost import BATCH_LIMIT, ONE_BATCH, Cost, query_cost
from wallet.web.documents.operation import SEVERAL_UNNAMED, chosen_operation, operations
from wallet.web.documents.text import INVALID_TEXT, clean_text, strings

_REMEMBERED_COSTS = 1024
_NO_VARIABLES = VariableValues({}, {})

# Checks a request that validated, with whether its client named the operation; returns its
# cost, None when its variables do not coerce (GraphQL then refuses it with its own errors),
# and raises the GraphQLError refusing it.
Admit = Callable[[ExecutionContext, bool], Cost | None]


def _is_int(type_node: TypeNode) -> bool:
    if isinstance(type_node, NonNullTypeNode):
        type_node = type_node.type
    return isinstance(type_node, NamedTypeNode) and type_node.name.value == "Int"


def admission(max_cost: int) -> Admit:
    """What admits a request, before anything runs: the operation is chosen unambiguously,
    no variable holds unstorable text, the cost is within the limit."""

    # A cost depends on the document, the operation and the integers among the coerced
    # variables (`first: $n`, defaults included); the same few documents come again and
    # again, so costs are remembered, keyed by a digest of the text rather than the text.
    known: dict[tuple[bytes, str | None, tuple[tuple[str, int], ...]], Cost] = {}

    def cost_of(context: ExecutionContext, operation: OperationDefinitionNode) -> Cost | None:
        assert context.graphql_document is not None
        # Strawberry keeps the graphql-core schema it built only as `_schema`; the cost needs
        # its field definitions and argument defaults.
        schema = context.schema._schema
        # Only a page size (`first`, `last`: Int) changes a cost, and only a variable of type
        # Int may be given to one: the others are left for GraphQL to coerce, once.
        numeric = [d for d in operation.variable_definitions or () if _is_int(d.type)]
        variables = _NO_VARIABLES
        if numeric:
            coerced = get_variable_values(schema, numeric, context.variables or {})
            if isinstance(coerced, list):
                return None
            variables = coerced
        # `type(...) is int` leaves out Booleans.
        numbers = tuple(sorted((k, v) for k, v in variables.coerced.items() if type(v) is int))
        text = (context.query or "").encode(errors="surrogatepass")
        digest = hashlib.blake2b(text, digest_size=16).digest()
        key = (digest, context.operation_name, numbers)
        cost = known.get(key) if context.query else None
        if cost is None:
            cost = query_cost(schema, context.graphql_document, operation, variables, max_cost)
            if len(known) >= _REMEMBERED_COSTS:
                known.clear()
            known[key] = cost
        return cost

    def admit(context: ExecutionContext, named: bool) -> Cost | None:
        document = context.graphql_document
        assert document is not None
        if not named and len(operations(document)) > 1:
            raise GraphQLError(SEVERAL_UNNAMED, extensions={"code": INVALID_INPUT})
        if context.variables and not all(clean_text(t) for t in strings(context.variables)):
            raise GraphQLError(INVALID_TEXT, extensions={"code": INVALID_INPUT})
        operation = chosen_operation(document, context.operation_name)
        if operation is None:
            return None
        cost = cost_of(context, operation)
        if cost is None:
            return None
        if cost.batches > 1:
            raise GraphQLError(ONE_BATCH, extensions={"code": QUERY_TOO_COSTLY})
        # A batch's results are held to their allowance and the rest to the usual limit:
        # neither may spend the other's.
        if cost.batched > BATCH_LIMIT or cost.requested - cost.batched > max_cost:
            raise GraphQLError(
                f"the query may return {cost.requested} fields; the limit is {cost.limit}",
                extensions={"code": QUERY_TOO_COSTLY, "cost": cost.requested},
            )
        return cost

    return admit
