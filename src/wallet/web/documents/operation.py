"""Which operation a request runs, and what the edge asks of it before GraphQL runs."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSyntaxError,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    parse,
)
from strawberry.schema.exceptions import CannotGetOperationTypeError

from wallet.web.codes import INVALID_INPUT, QUERY_TOO_COSTLY


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
    return len(_root_fields(document, operation))


def _root_fields(document: DocumentNode, operation: OperationDefinitionNode) -> dict[str, str]:
    """The operation's root fields, fragments included: the field named by each key."""
    defined = fragments(document)
    keys: dict[str, str] = {}
    seen: set[str] = set()
    pending = [operation.selection_set]
    while pending:
        for selection in pending.pop().selections:
            if isinstance(selection, FieldNode):
                keys[(selection.alias or selection.name).value] = selection.name.value
            elif isinstance(selection, InlineFragmentNode):
                pending.append(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
                seen.add(selection.name.value)
                if (definition := defined.get(selection.name.value)) is not None:
                    pending.append(definition.selection_set)
    return keys


_REMEMBERED_REQUESTS = 2048
# The codes of the client's mistakes GraphQL reports without one.
SEVERAL_UNNAMED = "Must provide operation name if query contains multiple operations."


def client_code(error: GraphQLError) -> str:
    """The code of a client's mistake GraphQL reported without one: a document over the
    token limit is too costly to read; anything else the client wrote is invalid input."""
    if isinstance(error, GraphQLSyntaxError) and "tokens. Parsing aborted" in error.message:
        return QUERY_TOO_COSTLY
    return INVALID_INPUT


# The mutation whose requests may be larger than others (WALLET_MAX_BATCH_BODY_BYTES).
BATCH_FIELD = "transferBatch"


@dataclass(frozen=True, slots=True)
class _Request:
    operation: OperationType | None  # None: GraphQL will not run it (see `refusal`)
    mutations: int
    refusal: GraphQLError | None = None
    batches_only: bool = False  # a mutation of transferBatch fields and nothing else


# One cache for every question the edge asks before GraphQL runs: a document is parsed once,
# and a client sending many documents fills one bounded cache, not several. Keyed by a
# digest: 2,048 bodies of 64 KB kept as keys would hold 128 MB.
_requests: dict[tuple[bytes, str | None, int], _Request] = {}


def _refused(message: str, code: str = INVALID_INPUT) -> _Request:
    return _Request(None, 0, GraphQLError(message, extensions={"code": code}))


def _request(query: str, operation_name: str | None, max_tokens: int) -> _Request:
    digest = hashlib.blake2b(query.encode(errors="surrogatepass"), digest_size=16).digest()
    key = (digest, operation_name, max_tokens)
    if (known := _requests.get(key)) is not None:
        return known
    try:
        # The token limit GraphQL applies too: a document over it is refused there, and
        # parsing it here would cost its full length (70 ms for 64 KB) before any limit.
        document = parse(query, no_location=True, max_tokens=max_tokens)
    except GraphQLError as error:
        found = _refused(error.message, client_code(error))
    else:
        operation = chosen_operation(document, operation_name)
        if operation is not None:
            fields = _root_fields(document, operation)
            batches = operation.operation == OperationType.MUTATION and set(fields.values()) == {
                BATCH_FIELD
            }
            found = _Request(
                operation.operation,
                mutation_fields(document, operation),
                batches_only=batches,
            )
        elif operation_name is None and operations(document):
            found = _refused(SEVERAL_UNNAMED)
        else:  # in the words Strawberry answers with over HTTP (a 400)
            found = _refused(CannotGetOperationTypeError(operation_name).as_http_error_reason())
    if len(_requests) >= _REMEMBERED_REQUESTS:
        _requests.clear()
    _requests[key] = found
    return found


def request_operation(
    query: str, operation_name: str | None, max_tokens: int
) -> OperationType | None:
    """What the request's chosen operation is; None when it does not parse or has none."""
    return _request(query, operation_name, max_tokens).operation


def request_batches_only(query: str, operation_name: str | None, max_tokens: int) -> bool:
    """Whether the request runs transferBatch mutations and nothing else."""
    return _request(query, operation_name, max_tokens).batches_only


def request_mutations(query: str, operation_name: str | None, max_tokens: int) -> int:
    """Mutations a request for this document and operation would run (0 if it cannot run)."""
    return _request(query, operation_name, max_tokens).mutations


def request_refusal(query: str, operation_name: str | None, max_tokens: int) -> GraphQLError | None:
    """Why GraphQL would refuse the request before validating it (the document does not
    parse, is over the token limit, or has no operation to run), with its code; or None."""
    return _request(query, operation_name, max_tokens).refusal
