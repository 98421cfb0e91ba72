"""What one GraphQL document may ask for, measured in time linear in its text.

A fragment can be spread many times and spread others in turn: 30 fragments that each spread
the next twice stand for 2^30 selections in about a kilobyte. Every measure here is taken once
per fragment and reused wherever the fragment is spread, so a document costs time in
proportion to its text, never to what it expands to. (Strawberry's depth and alias limiters
expand every spread: one 1.1 KB document held an API process for 161 s.)

- depth and aliases depend on the document alone: a validation rule, cached with the document;
- cost (the most fields an operation can return) depends on the variables too (`first: $n`),
  so it is measured for each request, before anything runs, by `admission`;
- the number of mutations a request runs is what the rate limits charge.

Modules: `text` (what PostgreSQL cannot store), `operation` (the operation a request runs,
its mutations, why GraphQL would refuse it, and the edge's cache of these), `limits` (the
depth, alias and introspection rule), `cost` (the most fields an operation can return),
`admission` (the check of a request with its variables, run by the edge's extension).
"""

from wallet.web.documents.admission import admission
from wallet.web.documents.cost import Cost, query_cost
from wallet.web.documents.limits import NESTED_SCHEMA_LISTS, ONE_INTROSPECTION, document_limits
from wallet.web.documents.operation import (
    chosen_operation,
    request_batches_only,
    request_mutations,
    request_operation,
    request_refusal,
)
from wallet.web.documents.text import INVALID_TEXT, clean_text

__all__ = [
    "INVALID_TEXT",
    "NESTED_SCHEMA_LISTS",
    "ONE_INTROSPECTION",
    "Cost",
    "admission",
    "chosen_operation",
    "clean_text",
    "document_limits",
    "query_cost",
    "request_batches_only",
    "request_mutations",
    "request_operation",
    "request_refusal",
]
