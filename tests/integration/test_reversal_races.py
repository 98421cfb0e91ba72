"""Reversals (issue 16) raced against each other and against transfers out of the wallet they
take money back from, on the real PostgreSQL, through the use cases: each request in a unit of
work of its own, many at once, then settled as the worker settles.

What must hold: the reversals of one transaction never claim more than it moved, however
many are asked for at once; a refused one is REVERSAL_EXCEEDS_ORIGINAL and records nothing; a
reversal that finds too little money ends FAILED, moves nothing and gives its share back; and
PostgreSQL refuses a row that breaks these rules whatever the code does."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from uuid import UUID, uuid4

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.callers import ADMIN, ALICE, BOB, FUNDER
from tests.integration.moves import fresh_key, new_wallet, place_hold, settle, transfer, withdraw
from tests.invariants import (
    assert_balances_explained,
    assert_holds_explained,
    assert_reversals_explained,
    snapshot,
)
from wallet.domain import services
from wallet.domain.callers import Caller
from wallet.domain.errors import (
    ErrorCode,
    Forbidden,
    IdempotencyKeyReused,
    InternalFailure,
    InvalidInput,
    NotReversible,
    ReversalExceedsOriginal,
    TransactionNotFound,
)
from wallet.domain.group_commit import run_alone, run_unattended
from wallet.domain.model import Transaction, TransactionStatus, TransactionType
from wallet.domain.ports import UnitOfWorkFactory
from wallet.persistence.unit_of_work import SqlUnitOfWork

pytestmark = pytest.mark.timeout(90)


async def reverse(
    uow_factory: UnitOfWorkFactory,
    original: UUID | str,
    amount: str | None = None,
    *,
    caller: Caller = ADMIN,
    key: str | None = None,
    description: str | None = None,
) -> Transaction:
    """Ask for a reversal as a request does: recorded PENDING (or refused), not yet settled."""
    command = services.ReverseTransaction(
        str(original), key or fresh_key("reverse"), amount=amount, description=description
    )
    return await run_alone(uow_factory, services.reverse_transaction, caller, command)


async def reversed_now(
    uow_factory: UnitOfWorkFactory, original: UUID, amount: str | None = None, **given: object
) -> Transaction:
    """A reversal that must be accepted, then settled: as it stands once decided."""
    reversal = await reverse(uow_factory, original, amount, **given)  # type: ignore[arg-type]
    assert (reversal.type, reversal.status) == (TransactionType.REVERSAL, TransactionStatus.PENDING)
    return await settle(uow_factory, reversal.id)


async def deposit(
    uow_factory: UnitOfWorkFactory, wallet: UUID, amount: str, caller: Caller = ADMIN
) -> Transaction:
    return await run_alone(
        uow_factory,
        services.deposit,
        caller,
        services.Deposit(str(wallet), amount, fresh_key("deposit")),
    )


async def _balances(engine: AsyncEngine, *wallet_ids: UUID) -> list[int]:
    async with engine.connect() as conn:
        rows = dict(
            (
                await conn.execute(
                    text("SELECT id, balance FROM wallets WHERE id = ANY(CAST(:ids AS uuid[]))"),
                    {"ids": [str(i) for i in wallet_ids]},
                )
            ).all()
        )
    return [int(rows[i]) for i in wallet_ids]


async def _claimed(engine: AsyncEngine, original: UUID) -> int:
    async with engine.connect() as conn:
        claimed = (
            await conn.execute(
                text("SELECT reversal_claimed FROM transactions WHERE id = CAST(:id AS uuid)"),
                {"id": str(original)},
            )
        ).scalar_one()
    return int(claimed)


async def _reversals(engine: AsyncEngine, original: UUID) -> dict[UUID, tuple[str, int]]:
    """(status, amount) of every transaction that names the original as what it reverses."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT id, status, amount FROM transactions WHERE reversal_of = CAST(:id AS uuid)"
            ),
            {"id": str(original)},
        )
        return {row[0]: (row[1], int(row[2])) for row in rows}


async def _entries(engine: AsyncEngine, transaction_id: UUID) -> list[tuple[UUID, int, int]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT wallet_id, delta, balance_after FROM ledger_entries"
                " WHERE transaction_id = CAST(:id AS uuid) ORDER BY delta"
            ),
            {"id": str(transaction_id)},
        )
        return [(row[0], int(row[1]), int(row[2])) for row in rows]


def _minor(amount: str) -> int:
    units, _, cents = amount.partition(".")
    return int(units) * 100 + int(cents.ljust(2, "0"))


async def _paid(uow_factory: UnitOfWorkFactory, amount: str = "10.00") -> tuple[UUID, UUID, UUID]:
    """(sender, receiver, transfer): a COMPLETED transfer of `amount` from a wallet that had
    20.00 to an empty one."""
    sender = (await new_wallet(uow_factory, "20.00")).id
    receiver = (await new_wallet(uow_factory)).id
    paid = await transfer(uow_factory, sender, receiver, amount)
    assert paid.status is TransactionStatus.COMPLETED
    return sender, receiver, paid.id


# -- reversals against reversals -----------------------------------------------------------


async def test_thirty_reversals_at_once_never_claim_more_than_the_transfer_moved(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    sender, receiver, original = await _paid(uow_factory)
    rng = random.Random(16)
    amounts = [f"{rng.randint(50, 250) / 100:.2f}" for _ in range(30)]
    assert sum(map(_minor, amounts)) > 2 * 10_00, "the race asks for far more than it moved"

    results = await asyncio.gather(
        *(reverse(uow_factory, original, a) for a in amounts), return_exceptions=True
    )

    accepted = [r for r in results if isinstance(r, Transaction)]
    refused = [a for a, r in zip(amounts, results, strict=True) if not isinstance(r, Transaction)]
    others = [r for r in results if not isinstance(r, Transaction | ReversalExceedsOriginal)]
    assert others == [], "a reversal is accepted or REVERSAL_EXCEEDS_ORIGINAL, nothing else"
    taken = sum(r.amount.minor for r in accepted)
    assert taken <= 10_00, f"reversals claimed {taken} of a 10.00 transfer"
    # Claims only grow here, so each refused one asked for more than was left at the end.
    assert all(_minor(a) > 10_00 - taken for a in refused), (taken, refused)
    assert {(r.type, r.status, r.reversal_of) for r in accepted} == {
        (TransactionType.REVERSAL, TransactionStatus.PENDING, original)
    }
    assert await _claimed(engine, original) == taken
    assert set(await _reversals(engine, original)) == {r.id for r in accepted}

    settled = await asyncio.gather(*(settle(uow_factory, r.id) for r in accepted))

    assert {t.status for t in settled} == {TransactionStatus.COMPLETED}
    assert await _balances(engine, sender, receiver) == [10_00 + taken, 10_00 - taken]
    figures = await assert_reversals_explained(engine, [original])
    assert (figures[str(original)].claimed, figures[str(original)].returned) == (taken, taken)
    await assert_balances_explained(engine, [sender, receiver])
    print(f"30 reversals at once: {len(accepted)} accepted, {taken} of 1000 claimed")


async def test_two_reversals_at_once_whose_sum_exceeds_the_original_one_is_refused(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    won: Counter[str] = Counter()
    for round_ in range(12):
        sender, receiver, original = await _paid(uow_factory)
        amounts = ["6.00", "5.00"] if round_ % 2 else ["5.00", "6.00"]

        results = await asyncio.gather(
            *(reverse(uow_factory, original, a) for a in amounts), return_exceptions=True
        )

        accepted = [r for r in results if isinstance(r, Transaction)]
        refused = [r for r in results if isinstance(r, ReversalExceedsOriginal)]
        assert (len(accepted), len(refused)) == (1, 1), results
        (winner,) = accepted
        won[str(winner.amount)] += 1
        assert refused[0].code is ErrorCode.REVERSAL_EXCEEDS_ORIGINAL
        assert await _claimed(engine, original) == winner.amount.minor
        assert list(await _reversals(engine, original)) == [winner.id]
        assert (await settle(uow_factory, winner.id)).status is TransactionStatus.COMPLETED
        assert await _balances(engine, sender, receiver) == [
            10_00 + winner.amount.minor,
            10_00 - winner.amount.minor,
        ]
        await assert_reversals_explained(engine, [original])
        await assert_balances_explained(engine, [sender, receiver])
    print(f"two reversals at once, 12 rounds, the winner's amount: {dict(won)}")


async def test_two_reversals_of_all_that_is_left_asked_at_once_return_it_once(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    for _ in range(10):
        sender, receiver, original = await _paid(uow_factory)
        await reversed_now(uow_factory, original, "2.50")

        results = await asyncio.gather(
            reverse(uow_factory, original), reverse(uow_factory, original), return_exceptions=True
        )

        accepted = [r for r in results if isinstance(r, Transaction)]
        assert len(accepted) == 1, results
        assert any(isinstance(r, ReversalExceedsOriginal) for r in results), results
        assert accepted[0].amount.minor == 7_50, "all that was left"
        await settle(uow_factory, accepted[0].id)
        assert await _balances(engine, sender, receiver) == [20_00, 0]
        figures = await assert_reversals_explained(engine, [original])
        assert figures[str(original)].returned == 10_00
        await assert_balances_explained(engine, [sender, receiver])


@pytest.mark.parametrize("kind", ["deposit", "withdrawal"])
async def test_reversals_of_a_deposit_or_a_withdrawal_asked_at_once_return_at_most_its_amount(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine, kind: str
) -> None:
    wallet = (await new_wallet(uow_factory, "20.00")).id
    if kind == "deposit":
        original = await deposit(uow_factory, wallet, "10.00")
    else:
        original = await withdraw(uow_factory, wallet, "10.00")
    assert original.status is TransactionStatus.COMPLETED
    # 30.00 (deposit) or 10.00 (withdrawal): enough for all of it to come back either way.
    before = (await _balances(engine, wallet))[0]

    results = await asyncio.gather(
        *(reverse(uow_factory, original.id, "1.00") for _ in range(14)), return_exceptions=True
    )

    accepted = [r for r in results if isinstance(r, Transaction)]
    assert len(accepted) == 10, results
    assert all(
        isinstance(r, ReversalExceedsOriginal) for r in results if not isinstance(r, Transaction)
    ), results
    for reversal in accepted:
        if kind == "deposit":
            assert (reversal.sender_wallet_id, reversal.receiver_wallet_id) == (wallet, None)
        else:
            assert (reversal.sender_wallet_id, reversal.receiver_wallet_id) == (None, wallet)
    settled = await asyncio.gather(*(settle(uow_factory, r.id) for r in accepted))
    assert {t.status for t in settled} == {TransactionStatus.COMPLETED}
    sign = -1 if kind == "deposit" else 1
    assert await _balances(engine, wallet) == [before + sign * 10_00]
    for reversal in settled:
        (entry,) = await _entries(engine, reversal.id)
        assert entry[:2] == (wallet, sign * 1_00)
    figures = await assert_reversals_explained(engine, [original.id])
    assert figures[str(original.id)].returned == 10_00
    await assert_balances_explained(engine, [wallet])


# -- reversals against transfers out of the receiver ---------------------------------------


async def test_a_reversal_that_finds_the_money_spent_fails_gives_its_share_back_and_moves_nothing(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    sender, receiver, original = await _paid(uow_factory)
    elsewhere = (await new_wallet(uow_factory)).id
    pending = await reverse(uow_factory, original)  # all 10.00, PENDING
    assert await _claimed(engine, original) == 10_00
    # The receiver spends 6.00 before the reversal is settled.
    spent = await transfer(uow_factory, receiver, elsewhere, "6.00")
    assert spent.status is TransactionStatus.COMPLETED
    before = await _balances(engine, sender, receiver, elsewhere)

    failed = await settle(uow_factory, pending.id)

    assert (failed.status, failed.failure_code) == (
        TransactionStatus.FAILED,
        ErrorCode.INSUFFICIENT_FUNDS,
    )
    assert failed.error_message
    assert await _balances(engine, sender, receiver, elsewhere) == before == [10_00, 4_00, 6_00]
    assert await _entries(engine, pending.id) == []
    assert await _claimed(engine, original) == 0, "a FAILED reversal gives its share back"
    # What it claimed can be reversed again: what the receiver still has, then no more.
    part = await reversed_now(uow_factory, original, "4.00")
    assert part.status is TransactionStatus.COMPLETED
    with pytest.raises(ReversalExceedsOriginal):
        await reverse(uow_factory, original, "6.01")
    rest = await reverse(uow_factory, original)
    assert rest.amount.minor == 6_00
    assert (await settle(uow_factory, rest.id)).failure_code is ErrorCode.INSUFFICIENT_FUNDS
    assert await _claimed(engine, original) == 4_00
    assert await _balances(engine, sender, receiver, elsewhere) == [14_00, 0, 6_00]
    statuses = sorted(s for s, _ in (await _reversals(engine, original)).values())
    assert statuses == ["COMPLETED", "FAILED", "FAILED"]
    figures = await assert_reversals_explained(engine, [original])
    assert (figures[str(original)].claimed, figures[str(original)].returned) == (4_00, 4_00)
    await assert_balances_explained(engine, [sender, receiver, elsewhere])


async def test_money_a_hold_reserves_is_not_there_for_a_reversal_to_take(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    sender, receiver, original = await _paid(uow_factory)
    await place_hold(uow_factory, receiver, "8.00")  # 2.00 of the 10.00 available

    failed = await reversed_now(uow_factory, original, "2.01")
    fits = await reversed_now(uow_factory, original, "2.00")

    assert (failed.status, failed.failure_code) == (
        TransactionStatus.FAILED,
        ErrorCode.INSUFFICIENT_FUNDS,
    )
    assert fits.status is TransactionStatus.COMPLETED
    assert await _balances(engine, sender, receiver) == [12_00, 8_00]
    assert await _claimed(engine, original) == 2_00
    figures = await assert_holds_explained(engine, [receiver])
    assert (figures[str(receiver)].balance, figures[str(receiver)].held) == (8_00, 8_00)
    await assert_reversals_explained(engine, [original])
    await assert_balances_explained(engine, [sender, receiver])


async def test_reversals_racing_transfers_out_of_the_receiver_never_take_more_than_it_has(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    """Five reversals of 2.00 and five transfers of 2.00 out of a receiver holding the 10.00:
    exactly five of them move money, whichever they are; every reversal that lost FAILED
    and gave back its share, which a later reversal takes once the receiver has money."""
    outcomes: Counter[str] = Counter()
    for _ in range(5):
        sender, receiver, original = await _paid(uow_factory)
        elsewhere = (await new_wallet(uow_factory)).id

        racers = [reversed_now(uow_factory, original, "2.00") for _ in range(5)]
        racers += [transfer(uow_factory, receiver, elsewhere, "2.00") for _ in range(5)]
        results = await asyncio.gather(*racers, return_exceptions=True)

        assert all(isinstance(r, Transaction) for r in results), results
        moved = [r for r in results if isinstance(r, Transaction)]
        returned = [t for t in moved[:5] if t.status is TransactionStatus.COMPLETED]
        spent = [t for t in moved[5:] if t.status is TransactionStatus.COMPLETED]
        assert len(returned) + len(spent) == 5, "exactly the 10.00 the receiver had moved"
        assert {t.failure_code for t in moved if t.status is TransactionStatus.FAILED} <= {
            ErrorCode.INSUFFICIENT_FUNDS
        }
        back = 2_00 * len(returned)
        outcomes[f"{len(returned)} reversals completed"] += 1
        assert await _balances(engine, sender, receiver, elsewhere) == [
            10_00 + back,
            0,
            2_00 * len(spent),
        ]
        assert await _claimed(engine, original) == back, "the failed ones gave their share back"

        # Once the receiver has money again, what the failed ones gave back can be reversed.
        await deposit(uow_factory, receiver, "10.00")
        if back == 10_00:
            with pytest.raises(ReversalExceedsOriginal):
                await reverse(uow_factory, original)
        else:
            later = await reversed_now(uow_factory, original)
            assert (later.status, later.amount.minor) == (
                TransactionStatus.COMPLETED,
                10_00 - back,
            )
        assert await _claimed(engine, original) == 10_00
        assert await _balances(engine, sender, receiver) == [20_00, back]
        figures = await assert_reversals_explained(engine, [original])
        assert figures[str(original)].returned == 10_00
        await assert_balances_explained(engine, [sender, receiver, elsewhere])
    print(f"reversals against transfers, 5 rounds: {dict(outcomes)}")


async def test_failing_reversals_racing_new_ones_of_the_same_original_keep_its_claim_exact(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    """Five PENDING reversals of 2.00 claim all of a 10.00 transfer whose receiver kept only
    4.00: settled at once, two COMPLETE and three FAIL, giving their shares back, while ten
    new reversals of 1.00 race for what comes back. The claim stays exactly what the live
    ones take, and no more than the transfer ever comes back."""
    for _ in range(3):
        sender, receiver, original = await _paid(uow_factory)
        elsewhere = (await new_wallet(uow_factory)).id
        claims = [await reverse(uow_factory, original, "2.00") for _ in range(5)]
        spent = await transfer(uow_factory, receiver, elsewhere, "6.00")
        assert spent.status is TransactionStatus.COMPLETED

        settled, *asked = await asyncio.gather(
            asyncio.gather(*(settle(uow_factory, c.id) for c in claims)),
            *(reverse(uow_factory, original, "1.00") for _ in range(10)),
            return_exceptions=True,
        )

        assert isinstance(settled, list), settled
        completed = [t for t in settled if t.status is TransactionStatus.COMPLETED]
        failed = [t for t in settled if t.status is TransactionStatus.FAILED]
        assert (len(completed), len(failed)) == (2, 3), "the receiver had 4.00 to give back"
        new = [r for r in asked if isinstance(r, Transaction)]
        assert all(
            isinstance(r, ReversalExceedsOriginal) for r in asked if not isinstance(r, Transaction)
        ), asked
        assert len(new) <= 6, "only what the failed ones gave back can be claimed again"
        assert await _claimed(engine, original) == 4_00 + 1_00 * len(new)
        await assert_reversals_explained(engine, [original])

        await deposit(uow_factory, receiver, "10.00")
        again = await asyncio.gather(*(settle(uow_factory, r.id) for r in new))
        assert {t.status for t in again} <= {TransactionStatus.COMPLETED}
        assert await _balances(engine, sender, receiver) == [
            10_00 + 4_00 + 1_00 * len(new),
            10_00 - 1_00 * len(new),
        ]
        figures = await assert_reversals_explained(engine, [original])
        assert figures[str(original)].returned == 4_00 + 1_00 * len(new) <= 10_00
        await assert_balances_explained(engine, [sender, receiver, elsewhere])


async def test_reversals_of_one_original_failing_in_one_settlement_each_give_their_share_back(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    sender, receiver, original = await _paid(uow_factory)
    claims = [await reverse(uow_factory, original, amount) for amount in ("3.00", "2.00", "4.00")]
    await transfer(uow_factory, receiver, sender, "9.00")  # 1.00 left to give back

    await run_unattended(uow_factory, services.settle, [c.id for c in claims])

    statuses = await _reversals(engine, original)
    assert sorted(statuses.values()) == [("FAILED", 2_00), ("FAILED", 3_00), ("FAILED", 4_00)]
    assert await _claimed(engine, original) == 0
    assert await _balances(engine, sender, receiver) == [19_00, 1_00]
    assert (await reversed_now(uow_factory, original, "1.00")).status is (
        TransactionStatus.COMPLETED
    )
    figures = await assert_reversals_explained(engine, [original])
    assert (figures[str(original)].claimed, figures[str(original)].returned) == (1_00, 1_00)
    await assert_balances_explained(engine, [sender, receiver])


async def test_a_reversal_the_worker_gives_up_on_fails_and_gives_its_share_back(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    sender, receiver, original = await _paid(uow_factory)
    pending = await reverse(uow_factory, original, "6.00")

    given_up = await services.fail_pending(
        uow_factory(), pending.id, InternalFailure("could not be settled")
    )

    assert given_up is not None
    assert (given_up.status, given_up.failure_code) == (
        TransactionStatus.FAILED,
        ErrorCode.INTERNAL,
    )
    assert await _claimed(engine, original) == 0
    assert await _balances(engine, sender, receiver) == [10_00, 10_00]
    assert (await reversed_now(uow_factory, original)).amount.minor == 10_00
    await assert_reversals_explained(engine, [original])
    await assert_balances_explained(engine, [sender, receiver])


# -- what cannot be reversed, and by whom --------------------------------------------------


async def _not_reversible(uow_factory: UnitOfWorkFactory, kind: str) -> UUID:
    """A transaction of that kind, none of which may be reversed."""
    sender = (await new_wallet(uow_factory, "10.00")).id
    receiver = (await new_wallet(uow_factory)).id
    if kind == "pending transfer":
        return (
            await run_alone(
                uow_factory,
                services.transfer,
                ADMIN,
                services.Transfer(str(sender), str(receiver), "1.00", fresh_key("transfer")),
            )
        ).id
    if kind == "failed transfer":
        failed = await transfer(uow_factory, sender, receiver, "10.01")
        assert failed.status is TransactionStatus.FAILED
        return failed.id
    if kind == "failed withdrawal":
        failed = await withdraw(uow_factory, sender, "10.01")
        assert failed.status is TransactionStatus.FAILED
        return failed.id
    _, receiver, original = await _paid(uow_factory)
    if kind == "pending reversal":
        return (await reverse(uow_factory, original, "1.00")).id
    if kind == "completed reversal":
        done = await reversed_now(uow_factory, original, "1.00")
        assert done.status is TransactionStatus.COMPLETED
        return done.id
    assert kind == "failed reversal"
    pending = await reverse(uow_factory, original, "1.00")
    # The receiver spends all of it before the reversal is settled.
    spent = await transfer(uow_factory, receiver, (await new_wallet(uow_factory)).id, "10.00")
    assert spent.status is TransactionStatus.COMPLETED
    done = await settle(uow_factory, pending.id)
    assert done.status is TransactionStatus.FAILED
    return done.id


NOT_REVERSIBLE = [
    "pending transfer",
    "failed transfer",
    "failed withdrawal",
    "pending reversal",
    "completed reversal",
    "failed reversal",
]


@pytest.mark.parametrize("kind", NOT_REVERSIBLE)
async def test_a_pending_or_failed_transaction_or_a_reversal_is_not_reversible_and_nothing_is_kept(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine, kind: str
) -> None:
    target = await _not_reversible(uow_factory, kind)
    before = await snapshot(engine)

    for amount in ("0.50", None):
        with pytest.raises(NotReversible) as refused:
            await reverse(uow_factory, target, amount)
        assert refused.value.field == "transaction_id"

    assert await snapshot(engine) == before, "a refused reversal records nothing"
    assert await _reversals(engine, target) == {}
    assert await _claimed(engine, target) == 0


async def test_a_reversal_refused_while_its_transfer_was_pending_keeps_no_key_and_works_later(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    target = await _not_reversible(uow_factory, "pending transfer")
    key = fresh_key("reverse")
    with pytest.raises(NotReversible):
        await reverse(uow_factory, target, "0.40", key=key)

    assert (await settle(uow_factory, target)).status is TransactionStatus.COMPLETED
    reversal = await reverse(uow_factory, target, "0.40", key=key)

    assert (reversal.reversal_of, reversal.amount.minor) == (target, 40)
    assert (await settle(uow_factory, reversal.id)).status is TransactionStatus.COMPLETED
    await assert_reversals_explained(engine, [target])


async def _owned_wallet(uow_factory: UnitOfWorkFactory, owner: str, balance: str) -> UUID:
    wallet = await run_alone(
        uow_factory,
        services.create_wallet,
        ADMIN,
        services.CreateWallet(initial_balance=balance, owner_id=owner),
    )
    return wallet.id


async def test_only_a_transfer_s_receiver_or_an_admin_reverses_it_and_to_others_it_does_not_exist(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    alice = await _owned_wallet(uow_factory, ALICE.id, "10.00")
    bob = await _owned_wallet(uow_factory, BOB.id, "0")
    paid = await run_alone(
        uow_factory,
        services.transfer,
        ALICE,
        services.Transfer(str(alice), str(bob), "6.00", fresh_key("transfer")),
    )
    assert (await settle(uow_factory, paid.id)).status is TransactionStatus.COMPLETED
    unknown = uuid4()
    before = await snapshot(engine)

    with pytest.raises(Forbidden):
        await reverse(uow_factory, paid.id, "1.00", caller=ALICE)
    for outsider in (Caller("carol"), FUNDER):
        with pytest.raises(TransactionNotFound) as hidden:
            await reverse(uow_factory, paid.id, "1.00", caller=outsider)
        with pytest.raises(TransactionNotFound) as absent:
            await reverse(uow_factory, unknown, "1.00", caller=outsider)
        assert hidden.value.field == absent.value.field == "transaction_id"
        assert hidden.value.message.replace(str(paid.id), "<id>") == absent.value.message.replace(
            str(unknown), "<id>"
        ), "an outsider cannot tell a hidden transaction from none"
    with pytest.raises(InvalidInput) as malformed:
        await reverse(uow_factory, "not-a-uuid", "1.00", caller=BOB)
    assert malformed.value.field == "transaction_id"
    assert await snapshot(engine) == before, "the refusals recorded nothing"

    refund = await reversed_now(uow_factory, paid.id, "1.00", caller=BOB)
    by_admin = await reversed_now(uow_factory, paid.id, "2.00", caller=ADMIN)

    assert {refund.status, by_admin.status} == {TransactionStatus.COMPLETED}
    assert await _balances(engine, alice, bob) == [7_00, 3_00]
    await assert_reversals_explained(engine, [paid.id])
    await assert_balances_explained(engine, [alice, bob])


@pytest.mark.parametrize("kind", ["deposit", "withdrawal"])
async def test_only_an_admin_reverses_a_deposit_or_a_withdrawal_even_its_wallet_s_owner_may_not(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine, kind: str
) -> None:
    wallet = await _owned_wallet(uow_factory, ALICE.id, "10.00")
    if kind == "deposit":
        original = await deposit(uow_factory, wallet, "5.00", caller=FUNDER)
    else:
        original = await run_alone(
            uow_factory,
            services.withdraw,
            ALICE,
            services.Withdraw(str(wallet), "5.00", fresh_key("withdraw")),
        )
        original = await settle(uow_factory, original.id)
    assert original.status is TransactionStatus.COMPLETED
    before = await snapshot(engine)

    with pytest.raises(Forbidden):
        await reverse(uow_factory, original.id, "1.00", caller=ALICE)
    with pytest.raises(TransactionNotFound):
        await reverse(uow_factory, original.id, "1.00", caller=BOB)
    assert await snapshot(engine) == before

    done = await reversed_now(uow_factory, original.id, caller=ADMIN)

    assert (done.status, done.amount.minor) == (TransactionStatus.COMPLETED, 5_00)
    assert await _balances(engine, wallet) == [10_00]
    await assert_reversals_explained(engine, [original.id])
    await assert_balances_explained(engine, [wallet])


# -- keys ----------------------------------------------------------------------------------


async def test_a_reversal_sent_twice_at_once_with_one_key_is_recorded_and_claimed_once(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    for _ in range(10):
        sender, receiver, original = await _paid(uow_factory)
        key = fresh_key("reverse")

        first, second = await asyncio.gather(
            *(
                reverse(uow_factory, original, "7.00", key=key, description="refund")
                for _ in range(2)
            ),
            return_exceptions=True,
        )

        assert isinstance(first, Transaction), first
        assert isinstance(second, Transaction), second
        assert first.id == second.id
        assert first.description == second.description == "refund"
        assert list(await _reversals(engine, original)) == [first.id]
        assert await _claimed(engine, original) == 7_00
        await settle(uow_factory, first.id)
        assert await _balances(engine, sender, receiver) == [17_00, 3_00]
        await assert_reversals_explained(engine, [original])


async def test_a_reversal_sent_again_after_all_is_reversed_still_returns_itself(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    sender, receiver, original = await _paid(uow_factory)
    key = fresh_key("reverse")
    first = await reversed_now(uow_factory, original, key=key)

    again = await reverse(uow_factory, original, key=key)

    assert (again.id, again.status, again.amount.minor) == (
        first.id,
        TransactionStatus.COMPLETED,
        10_00,
    )
    assert await _balances(engine, sender, receiver) == [20_00, 0]
    assert await _claimed(engine, original) == 10_00


@pytest.mark.parametrize(
    "changed",
    [{"amount": "3.01"}, {"amount": None}, {"description": "another"}, {"description": None}],
    ids=["amount", "no amount", "description", "no description"],
)
async def test_a_reversal_key_sent_again_with_anything_changed_is_refused(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine, changed: dict[str, str | None]
) -> None:
    _, _, original = await _paid(uow_factory)
    key = fresh_key("reverse")
    asked: dict[str, str | None] = {"amount": "3.00", "description": "refund"}
    first = await reverse(uow_factory, original, key=key, **asked)  # type: ignore[arg-type]
    before = await snapshot(engine)

    with pytest.raises(IdempotencyKeyReused):
        await reverse(uow_factory, original, key=key, **{**asked, **changed})  # type: ignore[arg-type]

    assert await snapshot(engine) == before
    assert list(await _reversals(engine, original)) == [first.id]


async def test_a_reversal_key_already_used_for_another_transaction_s_reversal_is_refused(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    _, _, one = await _paid(uow_factory)
    _, _, other = await _paid(uow_factory)
    key = fresh_key("reverse")
    await reverse(uow_factory, one, "1.00", key=key)

    with pytest.raises(IdempotencyKeyReused):
        await reverse(uow_factory, other, "1.00", key=key)

    assert await _reversals(engine, other) == {}
    assert await _claimed(engine, other) == 0


# -- PostgreSQL keeps the rules ------------------------------------------------------------


# Statements no use case sends, each breaking one rule of reversals: $1 is a COMPLETED
# transfer, $2 another one.
BROKEN_WRITES = {
    "reversals claiming more than the original": (
        "UPDATE transactions SET reversal_claimed = amount + 1 WHERE id = $1",
        "reversals_within_original",
    ),
    "reversals claiming less than nothing": (
        "UPDATE transactions SET reversal_claimed = -1 WHERE id = $1",
        "reversals_within_original",
    ),
    "a reversal naming no original": (
        "INSERT INTO transactions (id, type, status, amount, currency, sender_wallet_id,"
        " receiver_wallet_id, created_at)"
        " SELECT gen_random_uuid(), 'REVERSAL', 'PENDING', 100, 'USD', receiver_wallet_id,"
        " sender_wallet_id, now() FROM transactions WHERE id = $1",
        "reversal_names_its_original",
    ),
    "a transfer naming an original": (
        "UPDATE transactions SET reversal_of = $1 WHERE id = $2",
        "reversal_names_its_original",
    ),
    "a description of 281 characters": (
        "UPDATE transactions SET description = repeat('d', 281) WHERE id = $1",
        "description_length",
    ),
}


@pytest.mark.parametrize("broken", list(BROKEN_WRITES))
async def test_postgresql_refuses_what_breaks_the_reversal_rules_whatever_the_code_does(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine, broken: str
) -> None:
    statement, constraint = BROKEN_WRITES[broken]
    _, _, original = await _paid(uow_factory)
    _, _, other = await _paid(uow_factory)
    before = await snapshot(engine)

    async with SqlUnitOfWork(engine) as uow:
        connection = await uow.begun()
        arguments = (original, other) if "$2" in statement else (original,)
        with pytest.raises(asyncpg.CheckViolationError) as refused:
            await connection.execute(statement, *arguments)

    assert refused.value.constraint_name == constraint
    assert await snapshot(engine) == before
