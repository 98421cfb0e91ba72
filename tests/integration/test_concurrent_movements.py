"""Many transfers and withdrawals at once on a few wallets: no cent lost, doubled or overdrawn."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable
from uuid import UUID

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.moves import new_wallet, transfer, withdraw
from tests.invariants import assert_audit_clean, assert_balances_explained
from wallet.domain.errors import ErrorCode
from wallet.domain.model import Transaction, TransactionStatus
from wallet.domain.ports import UnitOfWorkFactory

INITIAL = "100.00"
INITIAL_MINOR = 100_00


def _no_exceptions(results: list[Transaction | BaseException]) -> list[Transaction]:
    # A ConcurrencyConflict (or any driver error) here is one a client would have seen.
    escaped = [r for r in results if isinstance(r, BaseException)]
    assert escaped == []
    return [r for r in results if isinstance(r, Transaction)]


async def _entry_sums(engine: AsyncEngine, transaction_ids: list[UUID]) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT wallet_id::text, sum(delta) FROM ledger_entries "
                "WHERE transaction_id = ANY(CAST(:ids AS uuid[])) GROUP BY wallet_id"
            ),
            {"ids": [str(i) for i in transaction_ids]},
        )
        return {wallet_id: int(total) for wallet_id, total in rows}


async def test_200_concurrent_transfers_among_5_wallets_lose_and_double_nothing(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    wallets = [(await new_wallet(uow_factory, INITIAL)).id for _ in range(5)]
    rng = random.Random(20_240_521)
    moves: list[tuple[UUID, UUID, str]] = []
    for _ in range(100):
        # Each pair goes both ways at once: A->B and B->A lock the same two rows, which is
        # what deadlocks when rows are locked in request order instead of id order.
        a, b = rng.sample(wallets, 2)
        amount = f"{rng.randint(1, 4000) / 100:.2f}"
        moves += [(a, b, amount), (b, a, amount)]

    results = _no_exceptions(
        await asyncio.gather(
            *(transfer(uow_factory, s, r, amount) for s, r, amount in moves),
            return_exceptions=True,
        )
    )

    assert len(results) == 200
    assert {t.status for t in results} <= {TransactionStatus.COMPLETED, TransactionStatus.FAILED}
    failures = {t.failure_code for t in results if t.status is TransactionStatus.FAILED}
    assert failures <= {ErrorCode.INSUFFICIENT_FUNDS}
    assert Counter(t.status for t in results)[TransactionStatus.COMPLETED] > 100

    # What the completed transfers should have done, computed from the results alone.
    expected = {str(w): INITIAL_MINOR for w in wallets}
    for t in results:
        if t.status is TransactionStatus.COMPLETED:
            assert t.sender_wallet_id is not None
            assert t.receiver_wallet_id is not None
            expected[str(t.sender_wallet_id)] -= t.amount.minor
            expected[str(t.receiver_wallet_id)] += t.amount.minor

    balances = await assert_balances_explained(engine, wallets)
    assert balances == expected
    moved = await _entry_sums(engine, [t.id for t in results])
    assert {w: INITIAL_MINOR + moved.get(w, 0) for w in expected} == balances
    assert sum(balances.values()) == 5 * INITIAL_MINOR
    await assert_audit_clean(engine)


@pytest.mark.parametrize("way", ["withdrawals", "transfers out"])
async def test_concurrent_debits_racing_to_overdraw_a_wallet_complete_only_what_it_holds(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine, way: str
) -> None:
    wallet = (await new_wallet(uow_factory, INITIAL)).id
    receivers = [(await new_wallet(uow_factory)).id for _ in range(3)]

    def debit(n: int) -> Awaitable[Transaction]:
        if way == "withdrawals":
            return withdraw(uow_factory, wallet, "7.00")
        return transfer(uow_factory, wallet, receivers[n % 3], "7.00")

    results = _no_exceptions(
        await asyncio.gather(*(debit(n) for n in range(40)), return_exceptions=True)
    )

    completed = [t for t in results if t.status is TransactionStatus.COMPLETED]
    failed = [t for t in results if t.status is TransactionStatus.FAILED]
    assert len(completed) == 14  # 14 x 7.00 = 98.00 fits in 100.00; a 15th would not
    assert len(failed) == 26
    assert {t.failure_code for t in failed} == {ErrorCode.INSUFFICIENT_FUNDS}
    assert all(t.error_message for t in failed)
    assert all(t.completed_at is not None for t in results)

    balances = await assert_balances_explained(engine, [wallet, *receivers])
    assert balances[str(wallet)] == 2_00
    if way == "transfers out":
        assert sum(balances.values()) == INITIAL_MINOR
    await assert_audit_clean(engine)
