"""Depth, aliases and questions about the schema: a validation rule, linear in the text."""

from __future__ import annotations

from dataclasses import dataclass

from graphql import (
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    SelectionSetNode,
    StringValueNode,
    ValidationContext,
    ValidationRule,
)

from wallet.web.codes import INVALID_INPUT, QUERY_TOO_COSTLY
from wallet.web.documents.operation import fragments, operations
from wallet.web.documents.text import INVALID_TEXT, clean_text

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
        self.fragments = fragments(document)
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
                                extensions={"code": QUERY_TOO_COSTLY},
                            )
                        )
            except RecursionError:
                context.report_error(
                    GraphQLError(
                        "the document is nested too deeply", extensions={"code": QUERY_TOO_COSTLY}
                    )
                )
                return
            if aliases > max_aliases:
                context.report_error(
                    GraphQLError(
                        f"{aliases} aliases found. Allowed: {max_aliases}",
                        extensions={"code": QUERY_TOO_COSTLY},
                    )
                )
            if introspections > 1:
                # Not priced by the cost: one answer nesting at most MAX_SCHEMA_LISTS lists
                # is bounded by the schema (GraphiQL's is about 30 KB); copies are refused.
                context.report_error(
                    GraphQLError(ONE_INTROSPECTION, extensions={"code": QUERY_TOO_COSTLY})
                )
            if schema_lists > MAX_SCHEMA_LISTS:
                context.report_error(
                    GraphQLError(NESTED_SCHEMA_LISTS, extensions={"code": QUERY_TOO_COSTLY})
                )

        def enter_string_value(self, node: StringValueNode, *_args: object) -> None:
            if not clean_text(node.value):
                self.report_error(
                    GraphQLError(INVALID_TEXT, node, extensions={"code": INVALID_INPUT})
                )

    return DocumentLimits
