"""Settled together, withdrawals and transfers are decided in the order they were recorded."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.callers import ADMIN
from tests.integration.moves import fresh_key, new_wallet
from tests.invariants import assert_audit_clean, assert_balances_explained
from wallet.domain import services
from wallet.domain.errors import ErrorCode
from wallet.domain.group_commit import run_alone, run_unattended
from wallet.domain.model import TransactionStatus
from wallet.domain.ports import UnitOfWorkFactory


async def test_of_two_debits_settled_together_that_only_one_fits_the_earlier_recorded_wins(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    wallet = str((await new_wallet(uow_factory, "100.00")).id)
    earlier = await run_alone(
        uow_factory, services.withdraw, ADMIN, services.Withdraw(wallet, "60.00", fresh_key())
    )
    later = await run_alone(
        uow_factory, services.withdraw, ADMIN, services.Withdraw(wallet, "60.00", fresh_key())
    )

    # Asked for newest first, as a worker's batch may hold them.
    settled = await run_unattended(uow_factory, services.settle, [later.id, earlier.id])

    outcomes = {t.id: (t.status, t.failure_code) for t in settled}
    assert outcomes == {
        earlier.id: (TransactionStatus.COMPLETED, None),
        later.id: (TransactionStatus.FAILED, ErrorCode.INSUFFICIENT_FUNDS),
    }
    assert await assert_balances_explained(engine, [wallet]) == {wallet: 40_00}
    await assert_audit_clean(engine)
