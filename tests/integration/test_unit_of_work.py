"""The unit of work over real PostgreSQL transactions, raced against each other."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from uuid import UUID, uuid4

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.callers import ADMIN
from tests.integration.moves import fresh_key, new_wallet, transfer
from tests.invariants import assert_balances_explained, snapshot
from wallet.domain import services
from wallet.domain.errors import ConcurrencyConflict
from wallet.domain.group_commit import run_alone, run_unattended
from wallet.domain.model import (
    IdempotencyRecord,
    Transaction,
    TransactionStatus,
    TransactionType,
    Wallet,
)
from wallet.domain.money import Currency, Money
from wallet.domain.ports import UnitOfWorkFactory
from wallet.domain.retries import CONFLICTS
from wallet.persistence.database import is_disconnect
from wallet.persistence.statements import write_statement
from wallet.persistence.unit_of_work import SqlUnitOfWork

USD = Currency.of("USD")


async def _balance(engine: AsyncEngine, wallet_id: UUID) -> int | None:
    async with engine.connect() as conn:
        balance = (
            await conn.execute(
                text("SELECT balance FROM wallets WHERE id = :id"), {"id": wallet_id}
            )
        ).scalar_one_or_none()
        return None if balance is None else int(balance)


async def _version(engine: AsyncEngine, wallet_id: UUID) -> int:
    async with engine.connect() as conn:
        return int(
            (
                await conn.execute(
                    text("SELECT version FROM wallets WHERE id = :id"), {"id": wallet_id}
                )
            ).scalar_one()
        )


async def test_a_unit_of_work_left_without_commit_rolls_back(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    wallet_id = uuid4()
    async with uow_factory() as uow:
        await uow.wallets.add(Wallet(wallet_id, "someone", USD, Money(0, USD)))
    assert await _balance(engine, wallet_id) is None


async def test_an_error_inside_a_unit_of_work_rolls_back_what_it_wrote(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    wallet_id = uuid4()

    class Boom(Exception):
        pass

    async def add_then_fail() -> None:
        async with uow_factory() as uow:
            await uow.wallets.add(Wallet(wallet_id, "someone", USD, Money(0, USD)))
            raise Boom

    with pytest.raises(Boom):
        await add_then_fail()
    assert await _balance(engine, wallet_id) is None


async def test_a_committed_unit_of_work_is_seen_by_the_next(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    wallet_id = uuid4()
    async with uow_factory() as uow:
        await uow.wallets.add(Wallet(wallet_id, "someone", USD, Money(0, USD)))
        assert await _balance(engine, wallet_id) is None, "not visible before the commit"
        await uow.commit()
    assert await _balance(engine, wallet_id) == 0


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
async def test_a_wallet_locked_by_one_unit_of_work_waits_for_it_to_end(
    uow_factory: UnitOfWorkFactory, outcome: str
) -> None:
    wallet_id = (await new_wallet(uow_factory, "10.00")).id

    async def version_under_lock() -> int:
        async with uow_factory() as uow:
            return (await uow.wallets.lock([wallet_id]))[wallet_id].version

    async with uow_factory() as first:
        wallet = (await first.wallets.lock([wallet_id]))[wallet_id]
        before = wallet.version
        # A write that moves the row's version and no money: a balance changed here would be
        # one no ledger entry explains, which the run's closing audit rightly reports.
        await first.write(balances=[wallet])
        second = asyncio.create_task(version_under_lock())
        await asyncio.sleep(0.3)  # the point: for this long, the second lock is not granted
        assert not second.done(), "the second lock must wait for the first transaction"
        if outcome == "commit":
            await first.commit()
    assert await asyncio.wait_for(second, 5) == (before + 1 if outcome == "commit" else before)


async def test_settling_one_transaction_many_times_at_once_applies_it_once(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    sender = (await new_wallet(uow_factory, "10.00")).id
    receiver = (await new_wallet(uow_factory)).id
    submitted = await run_alone(
        uow_factory,
        services.transfer,
        ADMIN,
        services.Transfer(str(sender), str(receiver), "4.00", fresh_key()),
    )

    settles = (run_unattended(uow_factory, services.settle, [submitted.id]) for _ in range(20))
    decided = [t for settled in await asyncio.gather(*settles) for t in settled]

    # One of them decided it; the others found it final and left it as it was.
    assert [(t.id, t.status) for t in decided] == [(submitted.id, TransactionStatus.COMPLETED)]
    balances = await assert_balances_explained(engine, [sender, receiver])
    assert balances == {str(sender): 6_00, str(receiver): 4_00}


async def _touch_in_order(
    uow_factory: UnitOfWorkFactory,
    first: UUID,
    second: UUID,
    both_hold_one: asyncio.Barrier | None,
) -> None:
    """Update two wallet rows one after the other, without changing their balances."""
    async with uow_factory() as uow:
        held = await uow.wallets.get(first)
        assert held is not None
        await uow.write(balances=[held])
        if both_hold_one is not None:
            await both_hold_one.wait()
        wanted = await uow.wallets.get(second)
        assert wanted is not None
        await uow.write(balances=[wanted])
        await uow.commit()


async def test_a_deadlock_between_two_units_of_work_is_reported_as_a_concurrency_conflict(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    a = (await new_wallet(uow_factory)).id
    b = (await new_wallet(uow_factory)).id
    barrier = asyncio.Barrier(2)

    results = await asyncio.gather(
        _touch_in_order(uow_factory, a, b, barrier),
        _touch_in_order(uow_factory, b, a, barrier),
        return_exceptions=True,
    )

    assert sorted(type(r).__name__ for r in results) == ["ConcurrencyConflict", "NoneType"]
    # Only the survivor's updates stayed: one version bump per row.
    assert (await _version(engine, a), await _version(engine, b)) == (1, 1)


async def test_retrying_runs_a_deadlocked_unit_of_work_again_until_it_commits(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    a = (await new_wallet(uow_factory)).id
    b = (await new_wallet(uow_factory)).id
    barrier = asyncio.Barrier(2)
    conflicts = 0

    def touching(first: UUID, second: UUID) -> Awaitable[None]:
        attempts = 0

        async def attempt() -> None:
            nonlocal attempts, conflicts
            attempts += 1
            # Only the first attempts meet at the barrier; that is where they deadlock.
            try:
                await _touch_in_order(
                    uow_factory, first, second, barrier if attempts == 1 else None
                )
            except ConcurrencyConflict:
                conflicts += 1
                raise

        return CONFLICTS.run(attempt)

    await asyncio.gather(touching(a, b), touching(b, a))

    assert conflicts == 1
    assert (await _version(engine, a), await _version(engine, b)) == (2, 2)


async def test_recording_a_transfer_does_not_wait_for_a_settlement_holding_its_wallets(
    uow_factory: UnitOfWorkFactory,
) -> None:
    # A settlement locks wallets in id order while a new transfer's INSERT takes FOR KEY SHARE
    # on them, sender first: if the two locks conflict, opposite orders make a cycle.
    a = (await new_wallet(uow_factory, "10.00")).id
    b = (await new_wallet(uow_factory, "10.00")).id
    async with uow_factory() as settling:
        await settling.wallets.lock([a, b])
        recording = asyncio.create_task(
            run_alone(
                uow_factory,
                services.transfer,
                ADMIN,
                services.Transfer(str(b), str(a), "1.00", fresh_key()),
            )
        )
        done, _ = await asyncio.wait({recording}, timeout=2)
        await settling.commit()
    await recording
    assert done == {recording}, "recording waited for the settlement's locks"
    settled = await transfer(uow_factory, b, a, "1.00")
    assert settled.status is TransactionStatus.COMPLETED


NEGATIVE_ROWS = {
    "a negative balance": "UPDATE wallets SET balance = -1 WHERE id = :wallet",
    "a zero amount": (
        "INSERT INTO transactions (id, type, status, amount, currency, receiver_wallet_id) "
        "VALUES (gen_random_uuid(), 'DEPOSIT', 'PENDING', 0, 'USD', :wallet)"
    ),
    "a deposit with a sender": (
        "INSERT INTO transactions (id, type, status, amount, currency, sender_wallet_id, "
        "receiver_wallet_id) VALUES (gen_random_uuid(), 'DEPOSIT', 'PENDING', 1, 'USD', "
        ":wallet, :wallet)"
    ),
    "a transfer to its own sender": (
        "INSERT INTO transactions (id, type, status, amount, currency, sender_wallet_id, "
        "receiver_wallet_id) VALUES (gen_random_uuid(), 'TRANSFER', 'PENDING', 1, 'USD', "
        ":wallet, :wallet)"
    ),
    "a failure without a code": (
        "INSERT INTO transactions (id, type, status, amount, currency, receiver_wallet_id, "
        "completed_at) VALUES (gen_random_uuid(), 'DEPOSIT', 'FAILED', 1, 'USD', :wallet, now())"
    ),
    "a completed transaction without completed_at": (
        "INSERT INTO transactions (id, type, status, amount, currency, receiver_wallet_id) "
        "VALUES (gen_random_uuid(), 'DEPOSIT', 'COMPLETED', 1, 'USD', :wallet)"
    ),
    "a ledger entry leaving a negative balance": (
        "INSERT INTO ledger_entries (transaction_id, wallet_id, delta, balance_after) "
        "SELECT id, :wallet, -1, -1 FROM transactions WHERE receiver_wallet_id = :wallet"
    ),
    "a second entry for one wallet and transaction": (
        "INSERT INTO ledger_entries (transaction_id, wallet_id, delta, balance_after) "
        "SELECT transaction_id, wallet_id, delta, balance_after FROM ledger_entries "
        "WHERE wallet_id = :wallet"
    ),
    "a reused idempotency key": (
        "INSERT INTO idempotency_keys (caller_id, key, operation, fingerprint, wallet_id) "
        "SELECT caller_id, key, operation, fingerprint, wallet_id FROM idempotency_keys "
        "WHERE wallet_id = :wallet"
    ),
    "an idempotency key recording nothing": (
        "INSERT INTO idempotency_keys (caller_id, key, operation, fingerprint) "
        "VALUES ('someone', gen_random_uuid()::text, 'deposit', 'x')"
    ),
}


@pytest.mark.parametrize("statement", NEGATIVE_ROWS.values(), ids=NEGATIVE_ROWS.keys())
async def test_postgresql_refuses_a_bad_row_even_when_the_domain_is_bypassed(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine, statement: str
) -> None:
    wallet = await run_alone(
        uow_factory,
        services.create_wallet,
        ADMIN,
        services.CreateWallet(initial_balance="1.00", client_transaction_id=fresh_key()),
    )
    before = await snapshot(engine)
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(text(statement), {"wallet": wallet.id})
    assert await snapshot(engine) == before


async def test_a_negative_balance_saved_through_the_unit_of_work_is_refused_and_rolled_back(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    wallet_id = (await new_wallet(uow_factory, "1.00")).id
    before = await snapshot(engine)

    async def overdraw() -> None:
        async with uow_factory() as uow:
            wallet = (await uow.wallets.lock([wallet_id]))[wallet_id]
            wallet.balance = Money(-1, USD)  # what a bug in the domain could do
            await uow.write(balances=[wallet])
            await uow.commit()

    with pytest.raises(asyncpg.CheckViolationError, match="balance_never_negative"):
        await overdraw()
    assert await snapshot(engine) == before
    assert await _balance(engine, wallet_id) == 1_00


async def test_a_connection_killed_under_a_unit_of_work_is_not_handed_out_again(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    """The unit of work talks to asyncpg directly, so it must tell the pool itself."""
    wallet_id = (await new_wallet(uow_factory, "1.00")).id
    async with SqlUnitOfWork(engine) as uow:
        pid = await uow.connection.fetchval("SELECT pg_backend_pid()")
        async with engine.begin() as admin:
            await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(Exception) as raised:  # noqa: PT011 - whichever asyncpg chooses
            await uow.wallets.get(wallet_id)
        assert is_disconnect(raised.value)

    # More units of work, one after another, than the pool holds connections: each would
    # meet the dead one if it had gone back into the pool.
    pool_size = engine.pool.size() + 5  # type: ignore[attr-defined]
    for _ in range(pool_size):
        async with SqlUnitOfWork(engine) as uow:
            assert (await uow.wallets.get(wallet_id)) is not None


async def test_one_write_records_decides_and_moves_together(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    """What one write() is given lands whole, with one timestamp, or not at all."""
    sender = (await new_wallet(uow_factory, "5.00")).id
    receiver = (await new_wallet(uow_factory)).id
    pending = await run_alone(
        uow_factory,
        services.transfer,
        ADMIN,
        services.Transfer(str(sender), str(receiver), "2.00", fresh_key()),
    )
    async with SqlUnitOfWork(engine) as uow:
        wallets = await uow.wallets.lock([sender, receiver])
        versions = {i: w.version for i, w in wallets.items()}
        (decided,) = await uow.transactions.pending([pending.id])
        assert await uow.transactions.lock_pending([pending.id]) == {pending.id}
        entries = decided.apply(wallets)
        locked = list(wallets.values())
        stored = await uow.write(decided=[decided], balances=locked, entries=entries)
        await uow.commit()
    (settled,) = stored
    assert settled.status == TransactionStatus.COMPLETED
    assert settled.completed_at is not None
    for wallet_id, wallet in wallets.items():
        assert wallet.version == versions[wallet_id] + 1 == await _version(engine, wallet_id)
        assert wallet.updated_at == settled.completed_at
    assert await assert_balances_explained(engine, [sender, receiver]) == {
        str(sender): 3_00,
        str(receiver): 2_00,
    }


async def test_every_combination_of_written_parts_is_a_statement_postgresql_accepts(
    engine: AsyncEngine,
) -> None:
    names = ("recorded", "decided", "balances", "entries")
    combinations = [
        tuple(name for bit, name in enumerate(names) if mask >> bit & 1) for mask in range(1, 16)
    ]
    async with SqlUnitOfWork(engine) as uow:
        for parts in combinations:
            await uow.connection.prepare(write_statement(parts))


def _pending_transfer(sender: UUID, receiver: UUID, key: str) -> Transaction:
    return Transaction(
        uuid4(),
        TransactionType.TRANSFER,
        TransactionStatus.PENDING,
        Money(1_00, USD),
        sender,
        receiver,
        key,
    )


async def _transaction_exists(engine: AsyncEngine, transaction_id: UUID) -> bool:
    async with engine.connect() as conn:
        found = await conn.execute(
            text("SELECT 1 FROM transactions WHERE id = :id"), {"id": transaction_id}
        )
        return found.first() is not None


async def test_a_submission_on_its_own_is_one_statement_committed_as_it_returns(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    sender = (await new_wallet(uow_factory, "5.00")).id
    receiver = (await new_wallet(uow_factory)).id
    key = fresh_key()
    transaction = _pending_transfer(sender, receiver, key)
    record = IdempotencyRecord("someone", key, "transfer", "f" * 64, transaction_id=transaction.id)
    async with SqlUnitOfWork(engine) as uow:
        assert await uow.submit_and_commit([(transaction, record)]) != [None]
        assert await _transaction_exists(engine, transaction.id), "visible before commit()"
    # The same key again writes nothing and says so.
    again = _pending_transfer(sender, receiver, key)
    async with SqlUnitOfWork(engine) as uow:
        assert await uow.submit_and_commit([(again, record)]) == [None]
    assert not await _transaction_exists(engine, again.id)


async def test_a_submission_after_other_statements_commits_with_them_and_only_reads_follow(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    sender = (await new_wallet(uow_factory, "5.00")).id
    receiver = (await new_wallet(uow_factory)).id
    transaction = _pending_transfer(sender, receiver, fresh_key())
    async with SqlUnitOfWork(engine) as uow:
        await uow.wallets.lock([sender])
        assert await uow.submit_and_commit([(transaction, None)]) != [None]
        assert await _transaction_exists(engine, transaction.id), "committed as it returned"
        assert await uow.transactions.get(transaction.id) is not None
        with pytest.raises(AssertionError, match="committed"):
            await uow.wallets.lock([sender])


async def test_a_write_that_opens_a_unit_of_work_is_rolled_back_without_commit(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    """Only a submission stands alone; a write always joins the unit of work's transaction."""
    sender = (await new_wallet(uow_factory, "5.00")).id
    receiver = (await new_wallet(uow_factory)).id
    transaction = _pending_transfer(sender, receiver, fresh_key())
    async with SqlUnitOfWork(engine) as uow:
        await uow.write(recorded=[transaction])
    assert not await _transaction_exists(engine, transaction.id)
