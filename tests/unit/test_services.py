"""The use cases' rules, each run alone over the in-memory unit of work."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest

from tests.callers import ADMIN
from tests.unit.fakes import FakeDatabase
from wallet.domain import services
from wallet.domain.errors import (
    CurrencyMismatch,
    ErrorCode,
    IdempotencyKeyReused,
    InternalFailure,
    InvalidAmount,
    SameWallet,
    WalletNotFound,
)
from wallet.domain.group_commit import run_alone, run_unattended
from wallet.domain.model import TransactionStatus, TransactionType


@pytest.fixture
def db() -> FakeDatabase:
    return FakeDatabase()


async def new_wallet(db: FakeDatabase, balance: str = "0", currency: str = "USD") -> UUID:
    command = services.CreateWallet(currency=currency, initial_balance=balance)
    return (await run_alone(db.unit_of_work, services.create_wallet, ADMIN, command)).id


async def deposit(db: FakeDatabase, wallet: UUID, amount: str, key: str = "") -> None:
    command = services.Deposit(str(wallet), amount, key or uuid4().hex)
    await run_alone(db.unit_of_work, services.deposit, ADMIN, command)


async def settle(db: FakeDatabase, *ids: UUID) -> list[TransactionStatus]:
    await run_unattended(db.unit_of_work, services.settle, list(ids))
    return [db.stored.transactions[i].status for i in ids]


async def test_a_new_wallet_with_an_initial_balance_records_it_as_a_deposit(
    db: FakeDatabase,
) -> None:
    wallet = await new_wallet(db, "12.50")

    (deposit,) = db.stored.transactions.values()
    assert (deposit.type, deposit.status) == (TransactionType.DEPOSIT, TransactionStatus.COMPLETED)
    assert db.balance(wallet) == db.explained(wallet) == 12_50


async def test_a_deposit_is_applied_at_once_and_explained_by_one_entry(db: FakeDatabase) -> None:
    wallet = await new_wallet(db)

    await deposit(db, wallet, "3.20")

    assert db.balance(wallet) == db.explained(wallet) == 3_20
    assert [e.balance_after for e in db.stored.entries] == [3_20]


async def test_a_deposit_sent_again_with_its_key_is_answered_and_applied_once(
    db: FakeDatabase,
) -> None:
    wallet = await new_wallet(db)
    command = services.Deposit(str(wallet), "5.00", "once")

    first = await run_alone(db.unit_of_work, services.deposit, ADMIN, command)
    again = await run_alone(db.unit_of_work, services.deposit, ADMIN, command)

    assert again.id == first.id
    assert db.balance(wallet) == 5_00


async def test_a_key_sent_with_a_different_amount_is_refused_and_changes_nothing(
    db: FakeDatabase,
) -> None:
    wallet = await new_wallet(db)
    await deposit(db, wallet, "5.00", key="k")
    before = db.stored

    with pytest.raises(IdempotencyKeyReused) as refused:
        await deposit(db, wallet, "6.00", key="k")

    assert refused.value.field == "client_transaction_id"
    assert db.stored == before


async def test_a_deposit_to_no_wallet_names_the_wallet_field(db: FakeDatabase) -> None:
    with pytest.raises(WalletNotFound) as refused:
        await deposit(db, uuid4(), "1.00")
    assert refused.value.field == "wallet_id"


async def test_a_withdrawal_waits_pending_until_settled(db: FakeDatabase) -> None:
    wallet = await new_wallet(db, "10.00")
    command = services.Withdraw(str(wallet), "4.00", "w")

    withdrawal = await run_alone(db.unit_of_work, services.withdraw, ADMIN, command)

    assert withdrawal.status is TransactionStatus.PENDING
    assert db.balance(wallet) == 10_00
    assert await settle(db, withdrawal.id) == [TransactionStatus.COMPLETED]
    assert db.balance(wallet) == db.explained(wallet) == 6_00


async def test_the_earlier_recorded_debit_wins_when_funds_run_short(db: FakeDatabase) -> None:
    wallet = await new_wallet(db, "100.00")
    first, second = [
        await run_alone(
            db.unit_of_work, services.withdraw, ADMIN, services.Withdraw(str(wallet), "60.00", key)
        )
        for key in ("first", "second")
    ]

    statuses = await settle(db, second.id, first.id)

    assert statuses == [TransactionStatus.FAILED, TransactionStatus.COMPLETED]
    assert db.stored.transactions[second.id].failure_code is ErrorCode.INSUFFICIENT_FUNDS
    assert db.balance(wallet) == db.explained(wallet) == 40_00


async def test_a_transfer_refused_for_funds_tells_its_receiver_nothing_of_the_balance(
    db: FakeDatabase,
) -> None:
    sender, receiver = await new_wallet(db, "12.34"), await new_wallet(db)
    command = services.Transfer(str(sender), str(receiver), "1000.00", "t")
    transfer = await run_alone(db.unit_of_work, services.transfer, ADMIN, command)

    assert await settle(db, transfer.id) == [TransactionStatus.FAILED]

    # The receiver's owner reads this message on the transaction.
    message = db.stored.transactions[transfer.id].error_message or ""
    assert "1000.00" in message
    assert "12.34" not in message


async def test_settling_a_settled_transaction_again_changes_nothing(db: FakeDatabase) -> None:
    sender, receiver = await new_wallet(db, "10.00"), await new_wallet(db)
    command = services.Transfer(str(sender), str(receiver), "2.50", "t")
    transfer = await run_alone(db.unit_of_work, services.transfer, ADMIN, command)
    await settle(db, transfer.id)
    entries = list(db.stored.entries)

    assert await run_unattended(db.unit_of_work, services.settle, [transfer.id]) == []
    assert db.stored.entries == entries
    assert (db.balance(sender), db.balance(receiver)) == (7_50, 2_50)


async def test_a_transfer_to_its_own_sender_is_refused(db: FakeDatabase) -> None:
    wallet = await new_wallet(db, "1.00")
    command = services.Transfer(str(wallet), str(wallet), "1.00", "t")
    with pytest.raises(SameWallet) as refused:
        await run_alone(db.unit_of_work, services.transfer, ADMIN, command)
    assert refused.value.field == "to_wallet_id"


async def test_a_transfer_between_currencies_is_refused(db: FakeDatabase) -> None:
    dollars, euros = await new_wallet(db, "1.00"), await new_wallet(db, currency="EUR")
    command = services.Transfer(str(dollars), str(euros), "1.00", "t")
    with pytest.raises(CurrencyMismatch):
        await run_alone(db.unit_of_work, services.transfer, ADMIN, command)
    assert db.stored.transactions.keys() == {
        t.id for t in db.stored.transactions.values() if t.type is TransactionType.DEPOSIT
    }


async def test_a_refused_deposit_leaves_its_key_free_for_a_corrected_request(
    db: FakeDatabase,
) -> None:
    wallet = await new_wallet(db)
    with pytest.raises(InvalidAmount):
        await deposit(db, wallet, "0.001", key="k")

    await deposit(db, wallet, "0.01", key="k")

    assert db.balance(wallet) == 1


async def test_giving_up_on_a_pending_transaction_fails_it_once(db: FakeDatabase) -> None:
    wallet = await new_wallet(db, "1.00")
    command = services.Withdraw(str(wallet), "1.00", "w")
    withdrawal = await run_alone(db.unit_of_work, services.withdraw, ADMIN, command)
    failure = InternalFailure("gave up")

    failed = await services.fail_pending(db.unit_of_work(), withdrawal.id, failure)
    again = await services.fail_pending(db.unit_of_work(), withdrawal.id, failure)

    assert failed is not None
    assert failed.status is TransactionStatus.FAILED
    assert again is not None
    assert again.completed_at == failed.completed_at
    assert await settle(db, withdrawal.id) == [TransactionStatus.FAILED]
    assert db.balance(wallet) == 1_00
