"""Who may do what (domain/access.py), held to through the use cases over the fake."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest

from tests.callers import ADMIN, ALICE, BOB, FUNDER
from tests.unit.fakes import FakeDatabase
from wallet.domain import access, services
from wallet.domain.callers import Caller
from wallet.domain.errors import ErrorCode, Forbidden, WalletNotFound
from wallet.domain.group_commit import run_alone
from wallet.domain.model import Transaction, TransactionStatus, Wallet
from wallet.domain.money import Currency, Money


@pytest.fixture
def db() -> FakeDatabase:
    return FakeDatabase()


async def open_wallet(db: FakeDatabase, owner: Caller, balance: str = "0") -> UUID:
    command = services.CreateWallet(initial_balance=balance, owner_id=owner.id)
    return (await run_alone(db.unit_of_work, services.create_wallet, ADMIN, command)).id


def nothing_recorded(db: FakeDatabase) -> bool:
    return not db.stored.transactions and not db.stored.keys


async def test_a_wallet_belongs_to_the_caller_who_created_it(db: FakeDatabase) -> None:
    command = services.CreateWallet(client_transaction_id="mine")
    wallet = await run_alone(db.unit_of_work, services.create_wallet, ALICE, command)

    assert wallet.owner_id == db.stored.wallets[wallet.id].owner_id == ALICE.id


async def test_an_admin_may_create_a_wallet_for_another_owner_and_nobody_else_may(
    db: FakeDatabase,
) -> None:
    command = services.CreateWallet(owner_id=BOB.id)
    made = await run_alone(db.unit_of_work, services.create_wallet, ADMIN, command)
    assert made.owner_id == BOB.id

    for caller in (ALICE, FUNDER):
        with pytest.raises(Forbidden) as refused:
            await run_alone(db.unit_of_work, services.create_wallet, caller, command)
        assert (refused.value.code, refused.value.field) == (ErrorCode.FORBIDDEN, "owner_id")
    assert list(db.stored.wallets) == [made.id]


async def test_a_positive_initial_balance_needs_the_deposit_scope(db: FakeDatabase) -> None:
    funded = services.CreateWallet(initial_balance="5.00", client_transaction_id="k")
    with pytest.raises(Forbidden):
        await run_alone(db.unit_of_work, services.create_wallet, ALICE, funded)
    assert not db.stored.wallets
    assert nothing_recorded(db)

    empty = services.CreateWallet(initial_balance="0.00")
    assert await run_alone(db.unit_of_work, services.create_wallet, ALICE, empty)
    made = await run_alone(db.unit_of_work, services.create_wallet, FUNDER, funded)
    assert db.balance(made.id) == 5_00


async def test_a_deposit_needs_the_deposit_scope_and_may_go_into_any_wallet(
    db: FakeDatabase,
) -> None:
    wallet = await open_wallet(db, ALICE)
    command = services.Deposit(str(wallet), "1.00", "d")

    with pytest.raises(Forbidden):
        await run_alone(db.unit_of_work, services.deposit, ALICE, command)
    assert nothing_recorded(db)

    await run_alone(db.unit_of_work, services.deposit, FUNDER, command)
    assert db.balance(wallet) == 1_00


async def test_money_leaves_another_s_wallet_exactly_as_an_unknown_one(
    db: FakeDatabase,
) -> None:
    alice = await open_wallet(db, ALICE, "10.00")
    bob = await open_wallet(db, BOB)
    before = (dict(db.stored.transactions), dict(db.stored.keys))
    told = []
    for sender in (alice, uuid4()):
        for command in (
            services.Withdraw(str(sender), "1.00", "w"),
            services.Transfer(str(sender), str(bob), "1.00", "t"),
        ):
            with pytest.raises(WalletNotFound) as refused:
                await run_alone(db.unit_of_work, services.submit, BOB, command)
            told.append((refused.value.code, refused.value.field, str(refused.value)))

    assert [t[:2] for t in told[:2]] == [t[:2] for t in told[2:]]
    assert all(str(alice) in t[2] for t in told[:2])
    assert (db.stored.transactions, db.stored.keys) == before


async def test_anyone_may_pay_into_anyone_s_wallet_and_admins_move_any(
    db: FakeDatabase,
) -> None:
    alice = await open_wallet(db, ALICE, "10.00")
    bob = await open_wallet(db, BOB, "10.00")

    paid = await run_alone(
        db.unit_of_work, services.transfer, ALICE, services.Transfer(str(alice), str(bob), "1", "t")
    )
    moved = await run_alone(
        db.unit_of_work, services.withdraw, ADMIN, services.Withdraw(str(bob), "1", "w")
    )

    assert paid.status is moved.status is TransactionStatus.PENDING


async def test_two_callers_using_the_same_key_never_meet(db: FakeDatabase) -> None:
    alice = await open_wallet(db, ALICE, "10.00")
    bob = await open_wallet(db, BOB, "10.00")

    mine = await run_alone(
        db.unit_of_work, services.withdraw, ALICE, services.Withdraw(str(alice), "1", "same")
    )
    theirs = await run_alone(
        db.unit_of_work, services.withdraw, BOB, services.Withdraw(str(bob), "2", "same")
    )

    assert mine.id != theirs.id
    assert set(db.stored.keys) == {(ALICE.id, "same"), (BOB.id, "same")}


def test_a_wallet_is_seen_by_its_owner_and_admins_only() -> None:
    usd = Currency.of("USD")
    wallet = Wallet(uuid4(), ALICE.id, usd, Money(0, usd))

    assert [access.visible(c, wallet) for c in (ALICE, ADMIN)] == [wallet, wallet]
    assert [access.visible(c, wallet) for c in (BOB, FUNDER)] == [None, None]


def test_a_transaction_is_seen_by_the_owners_of_its_wallets_and_admins_only() -> None:
    usd = Currency.of("USD")
    sender, receiver = uuid4(), uuid4()
    transfer = Transaction.transfer(Money(1, usd), sender=sender, receiver=receiver, key=None)
    owners = {sender: ALICE.id, receiver: BOB.id}

    seen = [access.may_see_transaction(c, transfer, owners) for c in (ALICE, BOB, ADMIN, FUNDER)]

    assert seen == [True, True, True, False]
