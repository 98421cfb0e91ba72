"""What one GraphQL document may ask for, measured in time linear in its text.

A fragment can be spread many times and spread others in turn: 30 fragments that each spread
the next twice stand for 2^30 selections in about a kilobyte. Every measure here is taken once
per fragment and reused wherever the fragment is spread, so a document costs time in
proportion to its text, never to what it expands to. (Strawberry's depth and alias limiters
expand every spread: one 1.1 KB document held an API process for 161 s.)

- depth and aliases depend on the document alone: a validation rule, cached with the document;
- cost (the most nodes an operation can return) depends on the variables too (`first: $n`),
  so it is measured for each request, before anything runs, by the `Admission` extension;
- the number of mutations a request runs is what the rate limits charge.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from graphql import (
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    StringValueNode,
    ValidationContext,
    ValidationRule,
    VariableNode,
    get_named_type,
    get_nullable_type,
    is_list_type,
    parse,
)
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionContext

from wallet.domain.model import MAX_PAGE_SIZE

# What a list returns when nothing says how long it is: the schema's default page.
DEFAULT_PAGE = 20
# Text that PostgreSQL cannot store (NUL) or that is not Unicode at all (a lone surrogate,
# which JSON's \ud800 escapes can carry): refused at the edge, whatever the field.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
INVALID_TEXT = "strings may not hold NUL characters or lone surrogates"
_REMEMBERED_COSTS = 1024


def clean_text(text: str) -> bool:
    return _UNSTORABLE.search(text) is None


def _fragments(document: DocumentNode) -> dict[str, FragmentDefinitionNode]:
    return {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }


def operations(document: DocumentNode) -> list[OperationDefinitionNode]:
    return [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]


def chosen_operation(
    document: DocumentNode, operation_name: str | None
) -> OperationDefinitionNode | None:
    """The operation GraphQL runs: the one named, else the only one; None when neither."""
    found = operations(document)
    if operation_name is None:
        return found[0] if len(found) == 1 else None
    for operation in found:
        if operation.name is not None and operation.name.value == operation_name:
            return operation
    return None


@dataclass(frozen=True, slots=True)
class Shape:
    depth: int  # fields with a selection, nested; introspection fields count none
    aliases: int


class _Shapes:
    """Depth and aliases of selection sets, each fragment measured once."""

    def __init__(self, document: DocumentNode) -> None:
        self.fragments = _fragments(document)
        self.measured: dict[str, Shape] = {}
        self.open: set[str] = set()

    def of(self, selection_set: SelectionSetNode) -> Shape:
        depth = aliases = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                aliases += selection.alias is not None
                if selection.selection_set is None:
                    continue
                inner = self.of(selection.selection_set)
                aliases += inner.aliases
                if not selection.name.value.startswith("__"):
                    depth = max(depth, 1 + inner.depth)
            elif isinstance(selection, InlineFragmentNode):
                inner = self.of(selection.selection_set)
                depth, aliases = max(depth, inner.depth), aliases + inner.aliases
            elif isinstance(selection, FragmentSpreadNode):
                inner = self.fragment(selection.name.value)
                depth, aliases = max(depth, inner.depth), aliases + inner.aliases
        return Shape(depth, aliases)

    def fragment(self, name: str) -> Shape:
        if name in self.measured:
            return self.measured[name]
        definition = self.fragments.get(name)
        if definition is None or name in self.open:
            return Shape(0, 0)  # unknown or cyclic: graphql-core's own rules refuse it
        self.open.add(name)
        shape = self.measured[name] = self.of(definition.selection_set)
        self.open.discard(name)
        return shape


def document_limits(max_depth: int, max_aliases: int) -> type[ASTValidationRule]:
    """A validation rule refusing deep documents, alias-heavy ones and unstorable text."""

    class DocumentLimits(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            document = context.document
            shapes = _Shapes(document)
            aliases = 0
            try:
                for operation in operations(document):
                    shape = shapes.of(operation.selection_set)
                    aliases += shape.aliases
                    if shape.depth > max_depth:
                        name = operation.name.value if operation.name else "anonymous"
                        context.report_error(
                            GraphQLError(
                                f"'{name}' exceeds maximum operation depth of {max_depth}",
                                operation,
                            )
                        )
            except RecursionError:
                context.report_error(GraphQLError("the document is nested too deeply"))
                return
            if aliases > max_aliases:
                context.report_error(
                    GraphQLError(f"{aliases} aliases found. Allowed: {max_aliases}")
                )

        def enter_string_value(self, node: StringValueNode, *_args: object) -> None:
            if not clean_text(node.value):
                self.report_error(
                    GraphQLError(INVALID_TEXT, node, extensions={"code": "INVALID_INPUT"})
                )

    return DocumentLimits


class _Costs:
    """The most nodes a selection can return, each fragment measured once per page size.

    A field with `first`/`last` returns that many items of its list fields (default 20, at
    most the page size the resolvers allow); every object returned counts one node.
    """

    def __init__(
        self, schema: GraphQLSchema, document: DocumentNode, variables: Mapping[str, Any]
    ) -> None:
        self.schema = schema
        self.fragments = _fragments(document)
        self.variables = variables
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
        # Introspection is bounded by the schema, not by the data.
        if node.selection_set is None or node.name.value.startswith("__"):
            return 0
        if not isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            return 0
        definition = parent.fields.get(node.name.value)
        if definition is None:
            return 0  # validation refuses it
        size = self._page_size(node, definition.args)
        if size is not None:
            count, page = 1, size
        elif is_list_type(get_nullable_type(definition.type)):
            count = page
        else:
            count = 1
        inner = self.of(node.selection_set, get_named_type(definition.type), page)
        return count * (1 + inner)

    def _page_size(self, node: FieldNode, arguments: Mapping[str, Any]) -> int | None:
        if "first" not in arguments and "last" not in arguments:
            return None
        given: dict[str, int] = {}
        for argument in node.arguments or ():
            value = argument.value
            if isinstance(value, VariableNode):
                found = self.variables.get(value.name.value)
                if isinstance(found, int) and not isinstance(found, bool):
                    given[argument.name.value] = found
            elif isinstance(value, IntValueNode):
                given[argument.name.value] = int(value.value)
        requested = given.get("last", given.get("first", DEFAULT_PAGE))
        return max(0, min(requested, MAX_PAGE_SIZE))


def query_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation: OperationDefinitionNode,
    variables: Mapping[str, Any],
) -> int:
    root = schema.get_root_type(operation.operation)
    try:
        return _Costs(schema, document, variables).of(operation.selection_set, root, DEFAULT_PAGE)
    except RecursionError:
        return 2**63  # validation has refused a document this deep already


def mutation_fields(document: DocumentNode, operation: OperationDefinitionNode) -> int:
    """How many mutations the operation runs: its distinct root fields, fragments included."""
    if operation.operation != OperationType.MUTATION:
        return 0
    fragments = _fragments(document)
    keys: set[str] = set()
    seen: set[str] = set()
    pending = [operation.selection_set]
    while pending:
        for selection in pending.pop().selections:
            if isinstance(selection, FieldNode):
                keys.add((selection.alias or selection.name).value)
            elif isinstance(selection, InlineFragmentNode):
                pending.append(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
                seen.add(selection.name.value)
                if (definition := fragments.get(selection.name.value)) is not None:
                    pending.append(definition.selection_set)
    return len(keys)


@lru_cache(maxsize=2048)
def _request(query: str, operation_name: str | None) -> tuple[OperationType | None, int]:
    # One cache for both questions the edge asks before GraphQL runs: a document is parsed
    # once, and a client sending many documents fills one bounded cache, not two.
    try:
        document = parse(query)
    except GraphQLError:
        return None, 0  # GraphQL itself will refuse it
    operation = chosen_operation(document, operation_name)
    if operation is None:
        return None, 0
    return operation.operation, mutation_fields(document, operation)


def request_operation(query: str, operation_name: str | None) -> OperationType | None:
    """What the request's chosen operation is; None when it does not parse or has none."""
    return _request(query, operation_name)[0]


def request_mutations(query: str, operation_name: str | None) -> int:
    """Mutations a request for this document and operation would run (0 if it cannot run)."""
    return _request(query, operation_name)[1]


def _strings(value: object) -> Iterator[str]:
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


def admission(max_cost: int) -> type[SchemaExtension]:
    """An extension checking what needs the variables, before anything runs: the operation
    is chosen unambiguously, no variable holds unstorable text, the cost is within the limit.
    The cost of an admitted request is reported in `extensions.cost`."""

    # A cost depends on the document, the operation and the integers among the variables
    # (`first: $n`); the same few documents come again and again, so costs are remembered.
    known: dict[tuple[str, str | None, tuple[tuple[str, int], ...]], int] = {}

    def cost_of(context: ExecutionContext, operation: OperationDefinitionNode) -> int:
        assert context.graphql_document is not None
        variables = context.variables or {}
        numbers = tuple(sorted((k, v) for k, v in variables.items() if isinstance(v, int)))
        key = (context.query or "", context.operation_name, numbers)
        cost = known.get(key) if context.query else None
        if cost is None:
            schema = context.schema._schema
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
            if not all(clean_text(text) for text in _strings(variables)):
                raise GraphQLError(INVALID_TEXT, extensions={"code": "INVALID_INPUT"})
            operation = chosen_operation(document, context.operation_name)
            if operation is not None:
                cost = cost_of(context, operation)
                if cost > max_cost:
                    raise GraphQLError(
                        f"the query may return {cost} nodes; the limit is {max_cost}",
                        extensions={"code": "QUERY_TOO_COSTLY", "cost": cost},
                    )
                self.cost = cost
            yield

        def get_results(self) -> dict[str, Any]:
            if self.cost is None:
                return {}
            return {"cost": {"requested": self.cost, "limit": max_cost}}

    return Admission
