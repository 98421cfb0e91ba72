"""The ledger's fields read through the request's DataLoaders: the balances, statements and
reversals a document asks for together reach the HistoryQuery as one batch each."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import pytest

from tests.callers import ADMIN, ALICE
from tests.unit.fakes import FakeDatabase, new_wallet
from tests.unit.test_visibility import EXTENSION_INSTANCES, FakeReads, QuietFeed, _unused
from wallet.app import build_schema
from wallet.domain.ledger import BalanceRequest, Statement, StatementRequest
from wallet.domain.model import Transaction
from wallet.schema.context import Context, Identity

pytestmark = [pytest.mark.filterwarnings(EXTENSION_INSTANCES), pytest.mark.timeout(10)]


class CountedReads(FakeReads):
    """Records each batch the loaders send."""

    def __init__(self, db: FakeDatabase) -> None:
        super().__init__(db)
        self.batches: list[tuple[str, int]] = []

    async def balances_at(self, requests: Sequence[BalanceRequest]) -> list[int]:
        self.batches.append(("balances_at", len(requests)))
        return await super().balances_at(requests)

    async def statements(self, requests: Sequence[StatementRequest]) -> list[Statement]:
        self.batches.append(("statements", len(requests)))
        return await super().statements(requests)

    async def reversals(self, transaction_ids: Sequence[UUID]) -> list[list[Transaction]]:
        self.batches.append(("reversals", len(transaction_ids)))
        return await super().reversals(transaction_ids)


async def test_balances_statements_and_reversals_asked_together_are_one_batch_each() -> None:
    db = FakeDatabase()
    wallets = [await new_wallet(db, "5.00", owner=ALICE) for _ in range(3)]
    reads = CountedReads(db)
    context = Context(
        identity=Identity(ADMIN),
        uow_factory=db.unit_of_work,
        reads=reads,
        dispatch=_unused,
        deposit=_unused,
        submit=_unused,
        feed=QuietFeed(),
    )
    past, future = "2000-01-01T00:00:00+00:00", "2999-01-01T00:00:00+00:00"
    span = f'since: "{past}", until: "{future}"'
    fields = " ".join(
        f'w{n}: wallet(id: "{w}") {{ '
        f'a: balanceAt(time: "{past}") b: balanceAt(time: "{future}") '
        f"statement({span}) {{ closingBalance }} "
        "transactions(first: 5) { edges { node { reversedAmount reversals { id } } } } }"
        for n, w in enumerate(wallets)
    )

    result = await build_schema().execute(f"{{ {fields} }}", context_value=context)

    assert result.errors is None, result.errors
    assert result.data is not None
    assert [result.data[f"w{n}"]["a"] for n in range(3)] == ["0.00"] * 3
    assert [result.data[f"w{n}"]["b"] for n in range(3)] == ["5.00"] * 3
    assert [result.data[f"w{n}"]["statement"] for n in range(3)] == [{"closingBalance": "5.00"}] * 3
    # Six balances, three statements, and the two reversal fields of each wallet's one
    # transaction (its opening deposit): one call each.
    assert sorted(reads.batches) == [("balances_at", 6), ("reversals", 6), ("statements", 3)]
