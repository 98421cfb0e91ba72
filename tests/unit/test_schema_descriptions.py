"""The schema tells a client what the server will do with its numbers."""

from __future__ import annotations

from graphql import GraphQLObjectType

from wallet.app import build_schema
from wallet.domain.model import MAX_PAGE_SIZE


def test_the_page_size_cap_is_written_where_a_client_chooses_the_page_size() -> None:
    wallet = build_schema()._schema.type_map["Wallet"]
    assert isinstance(wallet, GraphQLObjectType)
    transactions = wallet.fields["transactions"]
    for argument in ("first", "last"):
        description = transactions.args[argument].description or ""
        assert f"at most {MAX_PAGE_SIZE}" in description, argument
