"""The most fields an operation can return, measured before it runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentSpreadNode,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    get_named_type,
    get_nullable_type,
    is_list_type,
)
from graphql.execution.values import VariableValues, get_argument_values

from wallet.domain.model import MAX_BATCH_TRANSFERS, MAX_PAGE_SIZE, MAX_REVERSALS
from wallet.web.documents.operation import fragments

# How long a list is taken to be when no page argument bounds it (a payload's `errors`).
UNPAGED_LIST = 20
# Unpaged lists the domain bounds otherwise: a transaction's reversals.
UNPAGED_LISTS = {"reversals": MAX_REVERSALS}
# Fields answering once for each transfer of their batch: each is taken to hold the most a
# batch may (MAX_BATCH_TRANSFERS), whatever it was sent with, and one operation may run one.
BATCH_FIELDS = frozenset({"transferBatch"})
# What each result of a batch may cost: one with every field of its transaction, both its
# wallets' balances and its errors (a list of 20, worst case) fits, about 102; one that reads
# a wallet's history does not. A batch is held to this per result, apart from the
# operation's own limit, which the rest of the operation still keeps to.
BATCH_ITEM_ALLOWANCE = 120
BATCH_LIMIT = BATCH_ITEM_ALLOWANCE * MAX_BATCH_TRANSFERS
ONE_BATCH = "an operation may run one transferBatch"


@dataclass(frozen=True, slots=True)
class Cost:
    """The most fields an operation can return, and the limit it is held to: the configured
    one, plus, for an operation with a batch, what the batch's results may cost. `batches`
    and `batched` (the batch's own fields) let admission hold each part to its own limit."""

    requested: int
    limit: int
    batches: int = 0
    batched: int = 0


class _Costs:
    """The most fields a selection can return, each fragment measured once per page size.

    Every field in the answer counts one: an object once for itself and once for each field
    selected on it, a list of objects once for each item it may hold. A field with
    `first`/`last` holds that many items in its list fields (the schema's default when not
    given, at most the page size the resolvers allow). `__typename` counts none: it has no
    resolver, and repeated ones merge into one answer.
    """

    def __init__(
        self, schema: GraphQLSchema, document: DocumentNode, variables: VariableValues
    ) -> None:
        self.schema = schema
        self.fragments = fragments(document)
        self.variables = variables
        self.batches = 0
        self.batched = 0
        self.measured: dict[tuple[str, int], int] = {}
        self.open: set[str] = set()

    def of(self, selection_set: SelectionSetNode, parent: Any, page: int) -> int:
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += self._field(selection, parent, page)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                kind = self.schema.get_type(condition.name.value) if condition else parent
                total += self.of(selection.selection_set, kind, page)
            elif isinstance(selection, FragmentSpreadNode):
                total += self.fragment(selection.name.value, page)
        return total

    def fragment(self, name: str, page: int) -> int:
        if (name, page) in self.measured:
            return self.measured[name, page]
        definition = self.fragments.get(name)
        if definition is None or name in self.open:
            return 0  # unknown or cyclic: validation refuses it
        self.open.add(name)
        kind = self.schema.get_type(definition.type_condition.name.value)
        cost = self.measured[name, page] = self.of(definition.selection_set, kind, page)
        self.open.discard(name)
        return cost

    def _field(self, node: FieldNode, parent: Any, page: int) -> int:
        name = node.name.value
        if name.startswith("__"):
            # `__typename` is free; `__schema` and `__type` are limited by `document_limits`
            # to one answer about the schema per document, bounded by the schema itself.
            return 0
        if not isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            return 0
        definition = parent.fields.get(name)
        if definition is None:
            return 0  # validation refuses it
        if node.selection_set is None:
            return 1
        size = self._page_size(node, definition)
        if size is None and name in BATCH_FIELDS:
            size = MAX_BATCH_TRANSFERS
        if size is not None:
            count, page = 1, size
        elif is_list_type(get_nullable_type(definition.type)):
            # The list holds `page` items (or what the domain bounds it to); the lists in each
            # one are bounded on their own.
            count, page = UNPAGED_LISTS.get(name, page), UNPAGED_LIST
        else:
            count = 1
        inner = self.of(node.selection_set, get_named_type(definition.type), page)
        cost = count * (1 + inner)
        if name in BATCH_FIELDS:
            self.batches += 1
            self.batched += cost
        return cost

    def _page_size(self, node: FieldNode, definition: GraphQLField) -> int | None:
        if "first" not in definition.args and "last" not in definition.args:
            return None
        # The values the resolver will get: variables coerced as GraphQL coerces them (100.0
        # is the Int 100), the operation's variable defaults and the schema's `first` default.
        given = get_argument_values(definition, node, self.variables)
        requested = given.get("last")
        if requested is None:
            requested = given.get("first")
        if requested is None:
            return MAX_PAGE_SIZE  # the resolvers refuse or default it; never above a page
        return max(0, min(int(requested), MAX_PAGE_SIZE))


def query_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation: OperationDefinitionNode,
    variables: VariableValues,
    max_cost: int,
) -> Cost:
    """The most fields the operation can return, for variables already coerced (its page
    sizes), and the limit it is held to."""
    root = schema.get_root_type(operation.operation)
    costs = _Costs(schema, document, variables)
    try:
        requested = costs.of(operation.selection_set, root, UNPAGED_LIST)
    except RecursionError:
        return Cost(2**63, max_cost)  # validation has refused a document this deep already
    limit = max_cost + (BATCH_LIMIT if costs.batches else 0)
    return Cost(requested, limit, costs.batches, costs.batched)
