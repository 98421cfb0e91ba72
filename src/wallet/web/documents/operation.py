"""Which operation a request runs, and what the edge asks of it before GraphQL runs."""

from __future__ import annotations

import hashlib

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    parse,
)


def fragments(document: DocumentNode) -> dict[str, FragmentDefinitionNode]:
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


def mutation_fields(document: DocumentNode, operation: OperationDefinitionNode) -> int:
    """How many mutations the operation runs: its distinct root fields, fragments included."""
    if operation.operation != OperationType.MUTATION:
        return 0
    defined = fragments(document)
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
                if (definition := defined.get(selection.name.value)) is not None:
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
