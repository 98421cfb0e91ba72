"""Short ways to call the use cases as the API does: each move submitted, then settled; each
hold placed, captured or voided in a unit of work of its own, and expired as the worker does."""

from __future__ import annotations

from uuid import UUID, uuid4

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.callers import ADMIN
from wallet.domain import services
from wallet.domain.group_commit import run_alone, run_unattended
from wallet.domain.model import DEFAULT_HOLD_SECONDS, Hold, Transaction, Wallet
from wallet.domain.ports import UnitOfWorkFactory
from wallet.persistence.unit_of_work import SqlUnitOfWork


class CountedUnitsOfWork:
    """A unit-of-work factory that counts the units of work it opens: a batch run together
    opens one, and one that falls back to one at a time opens more."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self.opened = 0

    def __call__(self) -> SqlUnitOfWork:
        self.opened += 1
        return SqlUnitOfWork(self._engine)


async def new_wallet(
    uow_factory: UnitOfWorkFactory, balance: str = "0", currency: str = "USD"
) -> Wallet:
    return await run_alone(
        uow_factory,
        services.create_wallet,
        ADMIN,
        services.CreateWallet(currency=currency, initial_balance=balance),
    )


def fresh_key(prefix: str = "key") -> str:
    return f"{prefix}-{uuid4()}"


async def transfer(
    uow_factory: UnitOfWorkFactory,
    sender: UUID,
    receiver: UUID,
    amount: str,
    key: str | None = None,
) -> Transaction:
    submitted = await run_alone(
        uow_factory,
        services.transfer,
        ADMIN,
        services.Transfer(str(sender), str(receiver), amount, key or fresh_key("transfer")),
    )
    return await settle(uow_factory, submitted.id)


async def withdraw(
    uow_factory: UnitOfWorkFactory, wallet: UUID, amount: str, key: str | None = None
) -> Transaction:
    submitted = await run_alone(
        uow_factory,
        services.withdraw,
        ADMIN,
        services.Withdraw(str(wallet), amount, key or fresh_key("withdraw")),
    )
    return await settle(uow_factory, submitted.id)


async def settle(uow_factory: UnitOfWorkFactory, transaction_id: UUID) -> Transaction:
    """Settle one transaction, then read it as it stands (a final one is left as it was)."""
    await run_unattended(uow_factory, services.settle, [transaction_id])
    async with uow_factory() as uow:
        transaction = await uow.transactions.get(transaction_id)
    assert transaction is not None
    return transaction


async def place_hold(
    uow_factory: UnitOfWorkFactory,
    wallet: UUID,
    amount: str,
    *,
    receiver: UUID | None = None,
    expires_in_seconds: int = DEFAULT_HOLD_SECONDS,
    key: str | None = None,
) -> Hold:
    return await run_alone(
        uow_factory,
        services.place_hold,
        ADMIN,
        services.PlaceHold(
            str(wallet),
            amount,
            key or fresh_key("hold"),
            receiver_wallet_id=None if receiver is None else str(receiver),
            expires_in_seconds=expires_in_seconds,
        ),
    )


async def capture_hold(
    uow_factory: UnitOfWorkFactory, hold: UUID, amount: str | None = None, key: str | None = None
) -> Transaction:
    return await run_alone(
        uow_factory,
        services.capture_hold,
        ADMIN,
        services.CaptureHold(str(hold), key or fresh_key("capture"), amount),
    )


async def void_hold(uow_factory: UnitOfWorkFactory, hold: UUID, key: str | None = None) -> Hold:
    return await run_alone(
        uow_factory,
        services.void_hold,
        ADMIN,
        services.VoidHold(str(hold), key or fresh_key("void")),
    )


async def expire_holds(
    uow_factory: UnitOfWorkFactory, limit: int = services.EXPIRY_BATCH
) -> list[Hold]:
    """One round of the worker's expiry: the holds it expired."""
    return await run_unattended(uow_factory, services.expire_holds, limit)
