"""Batches of transfers (issue 17, tests/contract/batches.graphql), over the in-memory unit of
work: an atomic batch is recorded whole or not at all and settled all or none; any other batch
is each transfer decided as if it had been sent alone."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from uuid import UUID, uuid4

import pytest

from tests.callers import ALICE, BOB
from tests.unit.fakes import FakeDatabase, new_wallet
from wallet.domain import services
from wallet.domain.callers import Caller
from wallet.domain.errors import (
    ErrorCode,
    InternalFailure,
    InvalidInput,
    TransfersRejected,
    WalletError,
)
from wallet.domain.group_commit import run_alone, run_transfer_batch, run_unattended
from wallet.domain.model import MAX_BATCH_TRANSFERS, Transaction, TransactionStatus

COMPLETED, FAILED, PENDING = (
    TransactionStatus.COMPLETED,
    TransactionStatus.FAILED,
    TransactionStatus.PENDING,
)
LINKED = ErrorCode.LINKED_TRANSFER_FAILED


@pytest.fixture
def db() -> FakeDatabase:
    return FakeDatabase()


def move(sender: UUID | str, receiver: UUID | str, amount: str, key: str = "") -> services.Transfer:
    return services.Transfer(str(sender), str(receiver), amount, key or f"k-{uuid4()}")


async def atomically(
    db: FakeDatabase, transfers: Sequence[services.Transfer], caller: Caller = ALICE
) -> list[Transaction]:
    batch = services.TransferBatch(list(transfers), atomic=True)
    return await run_alone(db.unit_of_work, services.transfer_atomically, caller, batch)


async def rejected(
    db: FakeDatabase, transfers: Sequence[services.Transfer], caller: Caller = ALICE
) -> list[WalletError]:
    """The errors of an atomic batch that must be refused whole."""
    with pytest.raises(TransfersRejected) as refused:
        await atomically(db, transfers, caller)
    return refused.value.errors


async def settle(db: FakeDatabase, ids: Sequence[UUID]) -> list[Transaction]:
    return await run_unattended(db.unit_of_work, services.settle, list(ids))


def stored(db: FakeDatabase, transactions: Sequence[Transaction]) -> list[Transaction]:
    return [db.stored.transactions[t.id] for t in transactions]


def codes(errors: Sequence[WalletError]) -> list[ErrorCode]:
    return [e.code for e in errors]


def transfers_recorded(db: FakeDatabase) -> int:
    return sum(1 for t in db.stored.transactions.values() if t.type == "TRANSFER")


# -- atomic: recorded whole or not at all ----------------------------------------------------


async def test_an_atomic_batch_is_recorded_whole_pending_and_linked(db: FakeDatabase) -> None:
    a, b, c = await new_wallet(db, "10.00"), await new_wallet(db), await new_wallet(db)

    recorded = await atomically(db, [move(a, b, "1.00"), move(a, c, "2.00"), move(a, b, "3.00")])

    assert [t.status for t in recorded] == [PENDING] * 3
    assert [t.amount.minor for t in recorded] == [1_00, 2_00, 3_00]
    (batch,) = {t.batch_id for t in stored(db, recorded)}
    assert batch is not None
    assert {k for _, k in db.stored.keys} == {t.client_transaction_id for t in recorded}


async def test_an_atomic_batch_with_one_refused_transfer_records_nothing_and_links_the_rest(
    db: FakeDatabase,
) -> None:
    a, b = await new_wallet(db, "10.00"), await new_wallet(db)
    theirs = await new_wallet(db, "10.00", owner=BOB)
    before = (dict(db.stored.transactions), dict(db.stored.keys), db.balance(a))

    errors = await rejected(
        db,
        [move(a, b, "1.00"), move(a, b, "0.001"), move(theirs, b, "1.00"), move(a, b, "2.00")],
    )

    assert codes(errors) == [LINKED, ErrorCode.INVALID_AMOUNT, ErrorCode.WALLET_NOT_FOUND, LINKED]
    assert [e.field for e in errors] == [None, "amount", "from_wallet_id", None]
    assert (dict(db.stored.transactions), dict(db.stored.keys), db.balance(a)) == before


async def test_a_refused_atomic_batch_keeps_no_key_so_it_may_be_sent_again_corrected(
    db: FakeDatabase,
) -> None:
    a, b = await new_wallet(db, "10.00"), await new_wallet(db)
    first, second = f"k-{uuid4()}", f"k-{uuid4()}"
    await rejected(db, [move(a, b, "1.00", first), move(a, b, "-1", second)])

    recorded = await atomically(db, [move(a, b, "1.00", first), move(a, b, "1.00", second)])

    assert [t.client_transaction_id for t in recorded] == [first, second]
    assert transfers_recorded(db) == 2


async def test_duplicate_keys_inside_an_atomic_batch_are_refused_and_nothing_is_recorded(
    db: FakeDatabase,
) -> None:
    a, b = await new_wallet(db, "10.00"), await new_wallet(db)

    errors = await rejected(
        db, [move(a, b, "1.00", "same"), move(a, b, "2.00", "other"), move(a, b, "1.00", "same")]
    )

    assert codes(errors) == [LINKED, LINKED, ErrorCode.IDEMPOTENCY_KEY_REUSED]
    assert errors[2].field == "client_transaction_id"
    assert transfers_recorded(db) == 0
    assert db.stored.keys == {}


async def test_a_key_used_earlier_for_a_single_transfer_refuses_the_atomic_batch_and_links_the_rest(
    db: FakeDatabase,
) -> None:
    a, b = await new_wallet(db, "10.00"), await new_wallet(db)
    single = move(a, b, "1.00", "used")
    await run_alone(db.unit_of_work, services.transfer, ALICE, single)
    keys = dict(db.stored.keys)

    # Even asking for exactly what the key was used for: sent in a batch, it is another request.
    errors = await rejected(db, [move(a, b, "2.00"), single, move(a, b, "3.00")])

    assert codes(errors) == [LINKED, ErrorCode.IDEMPOTENCY_KEY_REUSED, LINKED]
    assert errors[1].field == "client_transaction_id"
    assert transfers_recorded(db) == 1
    assert db.stored.keys == keys


async def test_an_atomic_batch_sent_again_whole_replays_the_same_transactions(
    db: FakeDatabase,
) -> None:
    a, b, c = await new_wallet(db, "10.00"), await new_wallet(db), await new_wallet(db)
    transfers = [move(a, b, "1.00"), move(a, c, "2.00")]
    first = await atomically(db, transfers)
    await settle(db, [t.id for t in first])

    again = await atomically(db, transfers)

    assert [t.id for t in again] == [t.id for t in first]
    assert [t.status for t in again] == [COMPLETED, COMPLETED]
    assert transfers_recorded(db) == 2
    assert (db.balance(a), db.balance(b), db.balance(c)) == (7_00, 1_00, 2_00)
    assert await settle(db, [t.id for t in again]) == []


async def test_an_atomic_batch_sent_again_with_its_amounts_and_ids_written_otherwise_replays(
    db: FakeDatabase,
) -> None:
    """As a single transfer does: a key's request is what it asks for (1.0 is 1.00, and a
    wallet id in capitals the same wallet), not how it is spelled."""
    a, b = await new_wallet(db, "10.00"), await new_wallet(db)
    single = move(a, b, "1.00")
    alone = await run_alone(db.unit_of_work, services.transfer, ALICE, single)
    respelled = services.Transfer(str(a).upper(), str(b), "1.0", single.client_transaction_id)
    assert (await run_alone(db.unit_of_work, services.transfer, ALICE, respelled)).id == alone.id
    transfers = [move(a, b, "1.00"), move(a, b, "2.50")]
    first = await atomically(db, transfers)

    again = await atomically(
        db,
        [
            services.Transfer(str(a).upper(), str(b), "1.0", transfers[0].client_transaction_id),
            services.Transfer(str(a), str(b).upper(), "2.5", transfers[1].client_transaction_id),
        ],
    )

    assert [t.id for t in again] == [t.id for t in first]
    assert transfers_recorded(db) == 3


async def test_an_atomic_batch_sent_again_in_another_order_is_refused_not_replayed(
    db: FakeDatabase,
) -> None:
    a, b = await new_wallet(db, "10.00"), await new_wallet(db)
    one, two = move(a, b, "1.00"), move(a, b, "2.00")
    await atomically(db, [one, two])

    errors = await rejected(db, [two, one])

    assert set(codes(errors)) <= {ErrorCode.IDEMPOTENCY_KEY_REUSED, LINKED}
    assert ErrorCode.IDEMPOTENCY_KEY_REUSED in codes(errors)
    assert transfers_recorded(db) == 2


async def test_an_atomic_batch_sent_again_with_one_transfer_more_links_the_new_one(
    db: FakeDatabase,
) -> None:
    a, b = await new_wallet(db, "10.00"), await new_wallet(db)
    one, two = move(a, b, "1.00"), move(a, b, "2.00")
    await atomically(db, [one, two])

    errors = await rejected(db, [one, two, move(a, b, "3.00")])

    # The first two keys were used for another request (the batch without the third); the
    # third key never was: it is refused only because the others are.
    assert codes(errors) == [
        ErrorCode.IDEMPOTENCY_KEY_REUSED,
        ErrorCode.IDEMPOTENCY_KEY_REUSED,
        LINKED,
    ]
    assert transfers_recorded(db) == 2


@pytest.mark.parametrize("size", [0, MAX_BATCH_TRANSFERS + 1])
async def test_an_empty_or_oversized_batch_is_refused_whole_as_invalid_input(
    db: FakeDatabase, size: int
) -> None:
    a, b = await new_wallet(db, "10.00"), await new_wallet(db)
    transfers = [move(a, b, "0.01") for _ in range(size)]
    for atomic in (True, False):
        batch = services.TransferBatch(transfers, atomic=atomic)
        with pytest.raises(InvalidInput) as refused:
            services.check_batch(batch)
        assert refused.value.field == "transfers"
        with pytest.raises(InvalidInput):
            await run_transfer_batch(db.unit_of_work, ALICE, batch)
    assert transfers_recorded(db) == 0
    assert db.stored.keys == {}


async def test_a_batch_of_exactly_the_most_transfers_is_accepted(db: FakeDatabase) -> None:
    a, b = await new_wallet(db, "10.00"), await new_wallet(db)
    batch = services.TransferBatch([move(a, b, "0.01") for _ in range(MAX_BATCH_TRANSFERS)])
    services.check_batch(batch)
    services.check_batch(services.TransferBatch(batch.transfers[:1]))


# -- atomic: settled all or none -------------------------------------------------------------


async def test_an_atomic_batch_settles_all_completed(db: FakeDatabase) -> None:
    a, b, c = await new_wallet(db, "10.00"), await new_wallet(db), await new_wallet(db)
    recorded = await atomically(db, [move(a, b, "4.00"), move(b, c, "3.00"), move(a, c, "6.00")])

    settled = await settle(db, [t.id for t in recorded])

    assert [t.status for t in settled] == [COMPLETED] * 3
    assert (db.balance(a), db.balance(b), db.balance(c)) == (0, 1_00, 9_00)
    for wallet in (a, b, c):
        assert db.explained(wallet) == db.balance(wallet)


async def test_an_atomic_batch_with_one_short_of_funds_fails_whole_and_moves_nothing(
    db: FakeDatabase,
) -> None:
    a, b, c = await new_wallet(db, "10.00"), await new_wallet(db), await new_wallet(db)
    recorded = await atomically(db, [move(a, b, "4.00"), move(a, c, "7.00"), move(b, c, "1.00")])
    entries = len(db.stored.entries)

    await settle(db, [t.id for t in recorded])

    final = stored(db, recorded)
    assert [t.status for t in final] == [FAILED] * 3
    assert [t.failure_code for t in final] == [LINKED, ErrorCode.INSUFFICIENT_FUNDS, LINKED]
    assert (db.balance(a), db.balance(b), db.balance(c)) == (10_00, 0, 0)
    assert len(db.stored.entries) == entries


async def test_settling_one_transfer_of_an_atomic_batch_settles_the_whole_batch(
    db: FakeDatabase,
) -> None:
    a, b, c = await new_wallet(db, "10.00"), await new_wallet(db), await new_wallet(db)
    recorded = await atomically(db, [move(a, b, "1.00"), move(a, c, "2.00"), move(b, c, "0.50")])

    settled = await settle(db, [recorded[1].id])

    assert sorted(t.id for t in settled) == sorted(t.id for t in recorded)
    assert [t.status for t in stored(db, recorded)] == [COMPLETED] * 3
    assert (db.balance(a), db.balance(b), db.balance(c)) == (7_00, 50, 2_50)


async def test_settling_one_transfer_of_a_failing_atomic_batch_fails_the_whole_batch(
    db: FakeDatabase,
) -> None:
    a, b = await new_wallet(db, "10.00"), await new_wallet(db)
    recorded = await atomically(db, [move(a, b, "6.00"), move(a, b, "6.00")])

    await settle(db, [recorded[0].id])

    final = stored(db, recorded)
    assert [(t.status, t.failure_code) for t in final] == [
        (FAILED, LINKED),
        (FAILED, ErrorCode.INSUFFICIENT_FUNDS),
    ]
    assert (db.balance(a), db.balance(b)) == (10_00, 0)


async def test_atomic_batches_settled_together_are_each_all_or_none(db: FakeDatabase) -> None:
    a, b = await new_wallet(db, "10.00"), await new_wallet(db)
    good = await atomically(db, [move(a, b, "2.00"), move(a, b, "3.00")])
    bad = await atomically(db, [move(a, b, "1.00"), move(a, b, "9.00")])
    alone = await run_alone(db.unit_of_work, services.transfer, ALICE, move(a, b, "4.00"))

    await settle(db, [t.id for t in (*good, *bad, alone)])

    assert [t.status for t in stored(db, good)] == [COMPLETED, COMPLETED]
    assert [t.failure_code for t in stored(db, bad)] == [LINKED, ErrorCode.INSUFFICIENT_FUNDS]
    assert db.stored.transactions[alone.id].status is COMPLETED
    assert (db.balance(a), db.balance(b)) == (1_00, 9_00)


async def test_an_atomic_batch_given_up_on_by_the_worker_ends_all_failed_never_in_part(
    db: FakeDatabase,
) -> None:
    """The worker gives up on a transaction whose jobs keep failing (fail_pending, one id at a
    time); its batch must then end FAILED with it, not COMPLETED without it."""
    a, b = await new_wallet(db, "10.00"), await new_wallet(db)
    recorded = await atomically(db, [move(a, b, "1.00"), move(a, b, "2.00")])

    failure = InternalFailure("settlement failed 5 times; the transaction was given up on")
    await run_unattended(
        db.unit_of_work, partial(services.fail_pending, error=failure), recorded[0].id
    )
    await settle(db, [t.id for t in recorded])

    final = stored(db, recorded)
    assert [t.status for t in final] == [FAILED, FAILED], [
        (t.status, t.failure_code) for t in final
    ]
    assert (db.balance(a), db.balance(b)) == (10_00, 0)


# -- not atomic: each as if alone ------------------------------------------------------------


async def test_a_batch_that_is_not_atomic_decides_each_transfer_as_if_alone(
    db: FakeDatabase,
) -> None:
    a, b = await new_wallet(db, "10.00"), await new_wallet(db)
    theirs = await new_wallet(db, "10.00", owner=BOB)
    batch = services.TransferBatch(
        [
            move(a, b, "1.00"),
            move(a, "not-a-wallet", "1.00"),
            move(theirs, b, "1.00"),
            move(a, b, "0"),
            move(a, b, "2.00"),
        ]
    )

    outcomes = await run_transfer_batch(db.unit_of_work, ALICE, batch)

    assert isinstance(outcomes[0], Transaction)
    assert isinstance(outcomes[4], Transaction)
    refusals = [o for o in outcomes[1:4] if isinstance(o, WalletError)]
    assert len(refusals) == 3, outcomes
    assert [(e.code, e.field) for e in refusals] == [
        (ErrorCode.INVALID_INPUT, "to_wallet_id"),
        (ErrorCode.WALLET_NOT_FOUND, "from_wallet_id"),
        (ErrorCode.INVALID_AMOUNT, "amount"),
    ]
    accepted = [o for o in outcomes if isinstance(o, Transaction)]
    assert [t.batch_id for t in stored(db, accepted)] == [None, None]
    await settle(db, [t.id for t in accepted])
    assert [t.status for t in stored(db, accepted)] == [COMPLETED, COMPLETED]
    assert (db.balance(a), db.balance(b)) == (7_00, 3_00)


async def test_a_batch_that_is_not_atomic_settles_competing_transfers_in_the_order_sent(
    db: FakeDatabase,
) -> None:
    a, b = await new_wallet(db, "10.00"), await new_wallet(db)
    batch = services.TransferBatch([move(a, b, "6.00"), move(a, b, "6.00"), move(a, b, "3.00")])

    outcomes = await run_transfer_batch(db.unit_of_work, ALICE, batch)
    accepted = [o for o in outcomes if isinstance(o, Transaction)]
    await settle(db, [t.id for t in accepted])

    final = stored(db, accepted)
    assert [(t.status, t.failure_code) for t in final] == [
        (COMPLETED, None),
        (FAILED, ErrorCode.INSUFFICIENT_FUNDS),
        (COMPLETED, None),
    ]
    assert (db.balance(a), db.balance(b)) == (1_00, 9_00)


async def test_a_key_repeated_in_a_batch_that_is_not_atomic_replays_its_first_use(
    db: FakeDatabase,
) -> None:
    a, b = await new_wallet(db, "10.00"), await new_wallet(db)
    batch = services.TransferBatch(
        [move(a, b, "1.00", "twice"), move(a, b, "2.00"), move(a, b, "1.00", "twice")]
    )

    outcomes = await run_transfer_batch(db.unit_of_work, ALICE, batch)

    first, _, again = outcomes
    assert isinstance(first, Transaction)
    assert isinstance(again, Transaction)
    assert again.id == first.id
    assert transfers_recorded(db) == 2


async def test_a_key_repeated_with_another_amount_in_a_batch_that_is_not_atomic_is_refused(
    db: FakeDatabase,
) -> None:
    a, b = await new_wallet(db, "10.00"), await new_wallet(db)
    batch = services.TransferBatch([move(a, b, "1.00", "twice"), move(a, b, "2.00", "twice")])

    first, again = await run_transfer_batch(db.unit_of_work, ALICE, batch)

    assert isinstance(first, Transaction)
    assert isinstance(again, WalletError)
    assert again.code is ErrorCode.IDEMPOTENCY_KEY_REUSED
    assert transfers_recorded(db) == 1


async def test_a_batch_that_is_not_atomic_sent_again_replays_each_transfer(
    db: FakeDatabase,
) -> None:
    a, b = await new_wallet(db, "10.00"), await new_wallet(db)
    batch = services.TransferBatch([move(a, b, "1.00"), move(a, b, "2.00")])
    first = await run_transfer_batch(db.unit_of_work, ALICE, batch)
    await settle(db, [t.id for t in first if isinstance(t, Transaction)])

    again = await run_transfer_batch(db.unit_of_work, ALICE, batch)

    assert [getattr(t, "id", t) for t in again] == [getattr(t, "id", t) for t in first]
    assert transfers_recorded(db) == 2
    assert (db.balance(a), db.balance(b)) == (7_00, 3_00)


async def test_an_atomic_batch_through_run_transfer_batch_answers_each_refusal_in_order(
    db: FakeDatabase,
) -> None:
    a, b = await new_wallet(db, "10.00"), await new_wallet(db)
    batch = services.TransferBatch([move(a, b, "1.00"), move(a, a, "1.00")], atomic=True)

    outcomes = await run_transfer_batch(db.unit_of_work, ALICE, batch)

    assert [getattr(o, "code", None) for o in outcomes] == [LINKED, ErrorCode.SAME_WALLET]
    assert transfers_recorded(db) == 0
