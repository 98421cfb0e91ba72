"""reverse_transaction and how settle() ends a reversal, over the in-memory unit of work."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest

from tests.callers import ADMIN, ALICE, BOB
from tests.unit.fakes import FakeDatabase, new_wallet
from wallet.domain import services
from wallet.domain.callers import Caller
from wallet.domain.errors import (
    ErrorCode,
    Forbidden,
    IdempotencyKeyReused,
    InvalidInput,
    NotReversible,
    ReversalExceedsOriginal,
    TransactionNotFound,
)
from wallet.domain.group_commit import run_alone, run_unattended
from wallet.domain.model import Transaction, TransactionStatus, TransactionType

MALLORY = Caller("mallory")


@pytest.fixture
def db() -> FakeDatabase:
    return FakeDatabase()


async def settle(db: FakeDatabase, transaction: Transaction) -> Transaction:
    settled = await run_unattended(db.unit_of_work, services.settle, [transaction.id])
    return settled[0] if settled else db.stored.transactions[transaction.id]


async def transfer(db: FakeDatabase, sender: UUID, receiver: UUID, amount: str) -> Transaction:
    command = services.Transfer(str(sender), str(receiver), amount, uuid4().hex)
    return await settle(db, await run_alone(db.unit_of_work, services.transfer, ALICE, command))


async def reverse(
    db: FakeDatabase,
    original: Transaction,
    amount: str | None = None,
    *,
    caller: Caller = BOB,
    key: str = "",
    description: str | None = None,
) -> Transaction:
    command = services.ReverseTransaction(str(original.id), key or uuid4().hex, amount, description)
    return await run_alone(db.unit_of_work, services.reverse_transaction, caller, command)


async def test_a_refund_moves_the_money_back_once_settled(db: FakeDatabase) -> None:
    alice, bob = await new_wallet(db, "100", owner=ALICE), await new_wallet(db, owner=BOB)
    original = await transfer(db, alice, bob, "40")

    reversal = await reverse(db, original, "15", description="damaged")

    assert reversal.status is TransactionStatus.PENDING
    assert (reversal.type, reversal.reversal_of) == (TransactionType.REVERSAL, original.id)
    assert (reversal.sender_wallet_id, reversal.receiver_wallet_id) == (bob, alice)
    assert reversal.description == "damaged"
    assert (db.balance(alice), db.balance(bob)) == (6000, 4000)
    assert (await settle(db, reversal)).status is TransactionStatus.COMPLETED
    assert (db.balance(alice), db.balance(bob)) == (7500, 2500)
    assert db.explained(alice) == 7500
    assert db.explained(bob) == 2500


async def test_what_is_left_is_reversed_when_no_amount_is_given(db: FakeDatabase) -> None:
    alice, bob = await new_wallet(db, "100", owner=ALICE), await new_wallet(db, owner=BOB)
    original = await transfer(db, alice, bob, "40")
    await reverse(db, original, "10")

    rest = await reverse(db, original)

    assert rest.amount.minor == 3000
    with pytest.raises(ReversalExceedsOriginal):
        await reverse(db, original, "0.01")


async def test_a_failed_reversal_gives_its_share_back(db: FakeDatabase) -> None:
    alice, bob = await new_wallet(db, "100", owner=ALICE), await new_wallet(db, owner=BOB)
    carol = await new_wallet(db, owner=BOB)
    original = await transfer(db, alice, bob, "40")
    reversal = await reverse(db, original)
    command = services.Transfer(str(bob), str(carol), "30", uuid4().hex)
    await settle(db, await run_alone(db.unit_of_work, services.transfer, BOB, command))

    failed = await settle(db, reversal)

    assert failed.status is TransactionStatus.FAILED
    assert failed.failure_code is ErrorCode.INSUFFICIENT_FUNDS
    assert (db.balance(alice), db.balance(bob)) == (6000, 1000)
    assert db.stored.transactions[original.id].reversal_claimed == 0
    assert (await settle(db, await reverse(db, original, "10"))).status is (
        TransactionStatus.COMPLETED
    )


async def test_a_replay_is_recognised_before_anything_is_refused(db: FakeDatabase) -> None:
    alice, bob = await new_wallet(db, "100", owner=ALICE), await new_wallet(db, owner=BOB)
    original = await transfer(db, alice, bob, "40")
    first = await reverse(db, original, key="refund-1")

    again = await reverse(db, original, key="refund-1")

    assert again.id == first.id
    with pytest.raises(IdempotencyKeyReused):
        await reverse(db, original, key="refund-1", description="another")


@pytest.mark.parametrize(
    ("caller", "error"),
    [(ALICE, Forbidden), (MALLORY, TransactionNotFound)],
    ids=["the sender", "an outsider"],
)
async def test_only_the_receiver_or_an_admin_reverses_a_transfer(
    db: FakeDatabase, caller: Caller, error: type[Exception]
) -> None:
    alice, bob = await new_wallet(db, "100", owner=ALICE), await new_wallet(db, owner=BOB)
    original = await transfer(db, alice, bob, "40")

    with pytest.raises(error):
        await reverse(db, original, caller=caller)

    assert db.stored.transactions[original.id].reversal_claimed == 0
    assert (await reverse(db, original, "1", caller=ADMIN)).amount.minor == 100


async def test_only_admins_reverse_deposits(db: FakeDatabase) -> None:
    alice = await new_wallet(db, owner=ALICE)
    command = services.Deposit(str(alice), "25", uuid4().hex)
    deposit = await run_alone(db.unit_of_work, services.deposit, ADMIN, command)

    with pytest.raises(Forbidden):
        await reverse(db, deposit, caller=ALICE)
    reversal = await settle(db, await reverse(db, deposit, "5", caller=ADMIN))

    assert (reversal.sender_wallet_id, reversal.receiver_wallet_id) == (alice, None)
    assert db.balance(alice) == 2000


async def test_a_pending_transaction_or_a_reversal_is_not_reversible(db: FakeDatabase) -> None:
    alice, bob = await new_wallet(db, "100", owner=ALICE), await new_wallet(db, owner=BOB)
    command = services.Transfer(str(alice), str(bob), "40", uuid4().hex)
    pending = await run_alone(db.unit_of_work, services.transfer, ALICE, command)
    with pytest.raises(NotReversible):
        await reverse(db, pending)
    reversal = await settle(db, await reverse(db, await settle(db, pending), "1"))

    with pytest.raises(NotReversible):
        await reverse(db, reversal, caller=ALICE)


async def test_a_malformed_id_or_a_long_description_is_invalid_input(db: FakeDatabase) -> None:
    command = services.ReverseTransaction("nope", "k")
    with pytest.raises(InvalidInput):
        await run_alone(db.unit_of_work, services.reverse_transaction, ADMIN, command)
    command = services.ReverseTransaction(str(uuid4()), "k", description="x" * 281)
    with pytest.raises(InvalidInput):
        await run_alone(db.unit_of_work, services.reverse_transaction, ADMIN, command)
