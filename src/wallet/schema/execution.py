"""Strawberry's execution of an operation, with a short way through its plainest fields.

Most of what a page of history returns is attributes read straight off an object: a
transaction's id, type, status, amount and time, twenty times over. graphql-core gives each
of them the full treatment of a field: a resolve-info tuple, an argument scan, a call
through Strawberry's resolver wrapper, an awaitable check, then completion through the
type's wrappers. That was three quarters of the CPU a page of 20 costs. A field with no
resolver, no arguments and a scalar or enum type needs none of it: read the attribute,
coerce it for output, done. Anything unusual (a null where the type forbids it, a value the
scalar refuses, an attribute that raises, resolver middleware) goes the usual way, so that
errors are reported exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from graphql import (
    GraphQLField,
    GraphQLLeafType,
    GraphQLNonNull,
    GraphQLObjectType,
    Undefined,
    is_leaf_type,
)
from graphql.execution.collect_fields import FieldDetailsList
from graphql.pyutils import AwaitableOrValue, Path
from graphql.pyutils.undefined import UndefinedType
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

# A plain field: how to read it off its object, its type, and whether it may be null.
_Plain = tuple[Callable[..., Any], GraphQLLeafType, bool]
# Each field once looked at, by id (GraphQLField is unhashable): the field itself, which the
# entry keeps alive so that its id is not reused, and its short way or None.
_plain: dict[int, tuple[GraphQLField, _Plain | None]] = {}


def _plain_field(field: GraphQLField) -> _Plain | None:
    """The short way through the field, if it is plain: Strawberry marks the resolvers it
    makes for fields that have none of their own (a bare attribute read)."""
    nullable = field.type.of_type if isinstance(field.type, GraphQLNonNull) else field.type
    read = field.resolve
    plain = read is not None and getattr(read, "_is_default", False) and not field.args
    if read is None or not plain or not is_leaf_type(nullable):
        return None
    return read, nullable, not isinstance(field.type, GraphQLNonNull)


class WalletExecution(StrawberryGraphQLCoreExecutionContext):
    def execute_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: FieldDetailsList,
        path: Path,
        position_context: Any,
    ) -> AwaitableOrValue[Any] | UndefinedType:
        field = self.schema.get_field(parent_type, field_details_list[0].node.name.value)
        middleware = self.middleware_manager
        if field is not None and not (middleware and middleware.middlewares):
            known = _plain.get(id(field))
            if known is None:
                known = _plain[id(field)] = (field, _plain_field(field))
            plain = known[1]
            if plain is not None:
                read, leaf, nullable = plain
                try:
                    value = read(source, None)
                except Exception:  # reported the usual way, below
                    value = Undefined
                if value is None and nullable:
                    return None
                if value is not None and value is not Undefined:
                    try:
                        coerced = leaf.coerce_output_value(value)
                    except Exception:  # reported the usual way, below
                        coerced = Undefined
                    if coerced is not None and coerced is not Undefined:
                        return coerced
        return super().execute_field(
            parent_type, source, field_details_list, path, position_context
        )
