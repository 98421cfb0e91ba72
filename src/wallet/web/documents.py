"""What one GraphQL document may ask for, measured in time linear in its text.

A fragment can be spread many times and spread others in turn: 30 fragments that each spread
the next twice stand for 2^30 selections in about a kilobyte. Every measure here is taken once
per fragment and reused wherever the fragment is spread, so a document costs time in
proportion to its text, never to what it expands to. (Strawberry's depth and alias limiters
expand every spread: one 1.1 KB document held an API process for 161 s.)

- depth and aliases depend on the document alone: a validation rule, cached with the document;
- cost (the most fields an operation can return) depends on the variables too (`first: $n`),
  so it is measured for each request, before anything runs, by the `Admission` extension;
- the number of mutations a request runs is what the rate limits charge.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from graphql import (
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    StringValueNode,
    ValidationContext,
    ValidationRule,
    get_named_type,
    get_nullable_type,
    is_list_type,
    parse,
)
from graphql.execution.values import VariableValues, get_argument_values, get_variable_values
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionContext

from wallet.domain.model import MAX_PAGE_SIZE

# How long a list is taken to be when no page argument bounds it (a payload's `errors`).
UNPAGED_LIST = 20
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


# Fields answering about the schema rather than the data.
_INTROSPECTION = frozenset({"__schema", "__type"})
ONE_INTROSPECTION = (
    "a document may ask about the schema (`__schema` or `__type`) once, with no aliases inside"
)
# The lists of objects an answer about the schema holds (no type of ours has a field so
# named). Each one nested in another multiplies the answer: GraphiQL nests three, `types`,
# their `fields` and those fields' `args`; a fourth level could hold 30 times more.
_SCHEMA_LISTS = frozenset(
    {"types", "fields", "args", "inputFields", "interfaces", "possibleTypes", "enumValues"}
    | {"directives"}
)
MAX_SCHEMA_LISTS = 3
NESTED_SCHEMA_LISTS = (
    f"an answer about the schema may nest at most {MAX_SCHEMA_LISTS} of its lists"
    " (as `types { fields { args } }`)"
)


@dataclass(frozen=True, slots=True)
class Shape:
    depth: int  # fields with a selection, nested; introspection fields count none
    aliases: int
    # Answers about the schema the selection asks for: each `__schema` or `__type` as often as
    # it is spread, plus one for every alias inside it (an alias repeats a part of the answer).
    introspections: int = 0
    schema_lists: int = 0  # lists of the schema's answer nested in one another, at most


class _Shapes:
    """Depth, aliases and introspection of selection sets, each fragment measured once."""

    def __init__(self, document: DocumentNode) -> None:
        self.fragments = _fragments(document)
        self.measured: dict[str, Shape] = {}
        self.open: set[str] = set()

    def of(self, selection_set: SelectionSetNode) -> Shape:
        depth = aliases = introspections = schema_lists = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                aliases += selection.alias is not None
                if selection.selection_set is None:
                    continue
                inner = self.of(selection.selection_set)
                aliases += inner.aliases
                listed = selection.name.value in _SCHEMA_LISTS
                schema_lists = max(schema_lists, inner.schema_lists + listed)
                if selection.name.value in _INTROSPECTION:
                    introspections += 1 + inner.aliases
                else:
                    introspections += inner.introspections
                if not selection.name.value.startswith("__"):
                    depth = max(depth, 1 + inner.depth)
            else:
                if isinstance(selection, InlineFragmentNode):
                    inner = self.of(selection.selection_set)
                elif isinstance(selection, FragmentSpreadNode):
                    inner = self.fragment(selection.name.value)
                else:
                    continue
                depth, aliases = max(depth, inner.depth), aliases + inner.aliases
                introspections += inner.introspections
                schema_lists = max(schema_lists, inner.schema_lists)
        return Shape(depth, aliases, introspections, schema_lists)

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
            aliases = introspections = schema_lists = 0
            try:
                for operation in operations(document):
                    shape = shapes.of(operation.selection_set)
                    aliases += shape.aliases
                    introspections += shape.introspections
                    schema_lists = max(schema_lists, shape.schema_lists)
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
            if introspections > 1:
                # Not priced by the cost: one answer nesting at most MAX_SCHEMA_LISTS lists
                # is bounded by the schema (GraphiQL's is about 30 KB); copies are refused.
                context.report_error(
                    GraphQLError(ONE_INTROSPECTION, extensions={"code": "QUERY_TOO_COSTLY"})
                )
            if schema_lists > MAX_SCHEMA_LISTS:
                context.report_error(
                    GraphQLError(NESTED_SCHEMA_LISTS, extensions={"code": "QUERY_TOO_COSTLY"})
                )

        def enter_string_value(self, node: StringValueNode, *_args: object) -> None:
            if not clean_text(node.value):
                self.report_error(
                    GraphQLError(INVALID_TEXT, node, extensions={"code": "INVALID_INPUT"})
                )

    return DocumentLimits


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
        if size is not None:
            count, page = 1, size
        elif is_list_type(get_nullable_type(definition.type)):
            count = page
        else:
            count = 1
        inner = self.of(node.selection_set, get_named_type(definition.type), page)
        return count * (1 + inner)

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
) -> int:
    """The most fields the operation can return, for variables already coerced."""
    root = schema.get_root_type(operation.operation)
    try:
        return _Costs(schema, document, variables).of(operation.selection_set, root, UNPAGED_LIST)
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


_REMEMBERED_REQUESTS = 2048
# One cache for both questions the edge asks before GraphQL runs: a document is parsed once,
# and a client sending many documents fills one bounded cache, not two. Keyed by a digest:
# 2,048 bodies of 64 KB kept as keys would hold 128 MB.
_requests: dict[tuple[bytes, str | None, int], tuple[OperationType | None, int]] = {}


def _request(
    query: str, operation_name: str | None, max_tokens: int
) -> tuple[OperationType | None, int]:
    digest = hashlib.blake2b(query.encode(errors="surrogatepass"), digest_size=16).digest()
    key = (digest, operation_name, max_tokens)
    if (known := _requests.get(key)) is not None:
        return known
    try:
        # The token limit GraphQL applies too: a document over it is refused there, and
        # parsing it here would cost its full length (70 ms for 64 KB) before any limit.
        document = parse(query, no_location=True, max_tokens=max_tokens)
    except GraphQLError:
        found: tuple[OperationType | None, int] = (None, 0)  # GraphQL itself refuses it
    else:
        operation = chosen_operation(document, operation_name)
        found = (
            (None, 0)
            if operation is None
            else (
                operation.operation,
                mutation_fields(document, operation),
            )
        )
    if len(_requests) >= _REMEMBERED_REQUESTS:
        _requests.clear()
    _requests[key] = found
    return found


def request_operation(
    query: str, operation_name: str | None, max_tokens: int
) -> OperationType | None:
    """What the request's chosen operation is; None when it does not parse or has none."""
    return _request(query, operation_name, max_tokens)[0]


def request_mutations(query: str, operation_name: str | None, max_tokens: int) -> int:
    """Mutations a request for this document and operation would run (0 if it cannot run)."""
    return _request(query, operation_name, max_tokens)[1]


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

    # A cost depends on the document, the operation and the integers among the coerced
    # variables (`first: $n`, defaults included); the same few documents come again and
    # again, so costs are remembered, keyed by a digest of the text rather than the text.
    known: dict[tuple[bytes, str | None, tuple[tuple[str, int], ...]], int] = {}

    def cost_of(context: ExecutionContext, operation: OperationDefinitionNode) -> int | None:
        """The operation's cost, or None when its variables do not coerce (GraphQL then
        refuses the request with its own errors, and nothing runs)."""
        assert context.graphql_document is not None
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
            if not all(clean_text(text) for text in _strings(variables)):
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
