"""Batches of transfers on the real PostgreSQL: one transfer of an atomic batch brings the rest
along when it is settled (the PENDING statement's join), and an atomic batch sent twice at
once is recorded once."""

from __future__ import annotations

import asyncio
from uuid import UUID

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.callers import ADMIN
from tests.integration.moves import fresh_key, new_wallet
from tests.invariants import assert_audit_clean, assert_balances_explained, status_counts
from wallet.domain import services
from wallet.domain.errors import ErrorCode
from wallet.domain.group_commit import run_alone, run_transfer_batch, run_unattended
from wallet.domain.model import Transaction, TransactionStatus
from wallet.domain.ports import UnitOfWorkFactory

pytestmark = pytest.mark.timeout(60)


def move(sender: UUID, receiver: UUID, amount: str, key: str = "") -> services.Transfer:
    return services.Transfer(str(sender), str(receiver), amount, key or fresh_key("batch"))


async def atomically(
    uow_factory: UnitOfWorkFactory, transfers: list[services.Transfer]
) -> list[Transaction]:
    batch = services.TransferBatch(transfers, atomic=True)
    outcomes = await run_transfer_batch(uow_factory, ADMIN, batch)
    assert all(isinstance(o, Transaction) for o in outcomes), outcomes
    return [o for o in outcomes if isinstance(o, Transaction)]


async def _rows(uow_factory: UnitOfWorkFactory, ids: list[UUID]) -> list[Transaction]:
    async with uow_factory() as uow:
        found = [await uow.transactions.get(i) for i in ids]
    assert all(t is not None for t in found)
    return [t for t in found if t is not None]


@pytest.mark.parametrize("short", [False, True])
async def test_settling_one_transfer_of_an_atomic_batch_settles_all_of_it(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine, short: bool
) -> None:
    a, b, c = [(await new_wallet(uow_factory, "10.00")).id for _ in range(3)]
    recorded = await atomically(
        uow_factory,
        [move(a, b, "4.00"), move(a, c, "15.00" if short else "5.00"), move(b, c, "1.00")],
    )
    ids = [t.id for t in recorded]

    settled = await run_unattended(uow_factory, services.settle, [ids[2]])

    assert sorted(t.id for t in settled) == sorted(ids)
    final = await _rows(uow_factory, ids)
    if short:
        assert [(t.status, t.failure_code) for t in final] == [
            (TransactionStatus.FAILED, ErrorCode.LINKED_TRANSFER_FAILED),
            (TransactionStatus.FAILED, ErrorCode.INSUFFICIENT_FUNDS),
            (TransactionStatus.FAILED, ErrorCode.LINKED_TRANSFER_FAILED),
        ]
    else:
        assert {t.status for t in final} == {TransactionStatus.COMPLETED}
    balances = await assert_balances_explained(engine, [a, b, c])
    expected = [10_00, 10_00, 10_00] if short else [1_00, 13_00, 16_00]
    assert [balances[str(w)] for w in (a, b, c)] == expected
    assert await run_unattended(uow_factory, services.settle, ids) == []
    await assert_audit_clean(engine)


async def test_an_atomic_batch_sent_twice_at_once_is_recorded_once_and_both_get_it(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    a, b = [(await new_wallet(uow_factory, "10.00")).id for _ in range(2)]
    transfers = [move(a, b, "1.00"), move(a, b, "2.00"), move(b, a, "0.50")]

    answers = await asyncio.gather(*(atomically(uow_factory, transfers) for _ in range(4)))

    ids = {tuple(t.id for t in answer) for answer in answers}
    assert len(ids) == 1, "every sender got the one batch recorded"
    (recorded,) = ids
    assert await status_counts(engine, recorded) == {"PENDING": 3}
    await run_unattended(uow_factory, services.settle, list(recorded))
    balances = await assert_balances_explained(engine, [a, b])
    assert (balances[str(a)], balances[str(b)]) == (7_50, 12_50)
    await assert_audit_clean(engine)


async def test_atomic_batches_over_the_same_wallets_at_once_each_end_whole(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    wallets = [(await new_wallet(uow_factory, "10.00")).id for _ in range(4)]
    batches = [
        [
            move(wallets[n % 4], wallets[(n + 1) % 4], "3.00"),
            move(wallets[n % 4], wallets[(n + 2) % 4], "4.00"),
        ]
        for n in range(12)
    ]
    recorded = await asyncio.gather(*(atomically(uow_factory, b) for b in batches))

    await asyncio.gather(
        *(run_unattended(uow_factory, services.settle, [t.id for t in r]) for r in recorded)
    )

    for batch in recorded:
        statuses = {t.status for t in await _rows(uow_factory, [t.id for t in batch])}
        assert statuses in ({TransactionStatus.COMPLETED}, {TransactionStatus.FAILED})
    balances = await assert_balances_explained(engine, wallets)
    assert sum(balances.values()) == 40_00
    await assert_audit_clean(engine)


async def test_settlements_racing_over_the_same_transactions_apply_each_once(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    """settle() reads its transactions unlocked, then locks those still PENDING: whichever
    of several units of work asked for the same ones (a worker's two batches at once, or
    several workers) comes second finds them decided and leaves them."""
    wallets = [(await new_wallet(uow_factory, "20.00")).id for _ in range(5)]
    for round_ in range(4):
        batch = await atomically(
            uow_factory, [move(wallets[n], wallets[(n + 1) % 5], "1.00") for n in range(5)]
        )
        alone = [
            await run_alone(
                uow_factory,
                services.transfer,
                ADMIN,
                move(wallets[n % 5], wallets[(n + 2) % 5], "0.50"),
            )
            for n in range(10)
        ]
        ids = [t.id for t in batch + alone]
        # Overlapping asks in different orders; some name one transfer of the batch only.
        asks = [ids[k::3] + ids[: k + 1] for k in range(3)] + [ids[::-1], ids[1:2], ids]
        await asyncio.gather(*(run_unattended(uow_factory, services.settle, a) for a in asks))

        assert await status_counts(engine, ids) == {"COMPLETED": 15}, round_
    balances = await assert_balances_explained(engine, wallets)
    assert balances == {str(w): 20_00 for w in wallets}  # every wallet paid and was paid alike
    await assert_audit_clean(engine)
