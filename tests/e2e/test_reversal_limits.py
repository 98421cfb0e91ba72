"""A transaction's reversals are listed under it unpaged, so their number is bounded, and the
cost a document is admitted at counts them at that bound."""

from __future__ import annotations

import uuid

import pytest

from tests.client import Api
from wallet.domain.model import MAX_REVERSALS

pytestmark = pytest.mark.timeout(120)

TRANSFER = """mutation($i: TransferInput!) {
  transfer(input: $i) { transaction { id status } errors { code } } }"""
REVERSE = """mutation($i: ReverseTransactionInput!) {
  reverseTransaction(input: $i) { transaction { id status } errors { code message } } }"""
REVERSALS = """query($id: ID!) { transaction(id: $id) { reversals { id } } }"""
# Each reversal's original's reversals: the bound squared, past the cost limit.
NESTED = """query($id: ID!) {
  transaction(id: $id) { reversals { reversalOf { reversals { id } } } } }"""


async def test_the_reversals_past_the_most_one_may_have_are_not_reversible_and_cost_their_bound(
    api: Api,
) -> None:
    owner = api.as_caller(f"refunder-{uuid.uuid4()}")
    sender, receiver = await owner.new_wallet("10.00"), await owner.new_wallet("0")
    moved = await owner.data(
        TRANSFER,
        i={
            "fromWalletId": sender,
            "toWalletId": receiver,
            "amount": "1.00",
            "clientTransactionId": str(uuid.uuid4()),
        },
    )
    original = moved["transfer"]["transaction"]["id"]

    def cent() -> dict[str, str]:
        return {"transactionId": original, "amount": "0.01", "clientTransactionId": key()}

    def key() -> str:
        return str(uuid.uuid4())

    for _ in range(MAX_REVERSALS):
        made = await owner.data(REVERSE, i=cent())
        assert made["reverseTransaction"]["errors"] == [], made
    refused = await owner.data(REVERSE, i=cent())
    listed = await owner.answer(REVERSALS, id=original)
    nested = await owner.answer(NESTED, id=original)

    (error,) = refused["reverseTransaction"]["errors"]
    assert error["code"] == "NOT_REVERSIBLE", error
    assert f"{MAX_REVERSALS} reversals" in error["message"]
    assert len(listed["data"]["transaction"]["reversals"]) == MAX_REVERSALS
    assert listed["extensions"]["cost"]["requested"] >= MAX_REVERSALS
    assert nested.get("data") is None
    assert [e["extensions"]["code"] for e in nested["errors"]] == ["QUERY_TOO_COSTLY"]
