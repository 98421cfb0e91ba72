"""clientTransactionId: the same request sent many times at once records one transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from uuid import UUID

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.callers import ADMIN, requests
from tests.integration.moves import CountedUnitsOfWork, fresh_key, new_wallet, transfer, withdraw
from tests.invariants import assert_balances_explained, snapshot, transaction_rows
from wallet.domain import services
from wallet.domain.errors import IdempotencyKeyReused
from wallet.domain.group_commit import run_alone, run_together
from wallet.domain.model import Transaction, TransactionStatus
from wallet.domain.ports import UnitOfWorkFactory

COPIES = 50


async def _count(engine: AsyncEngine, sql: str, **params: object) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text(sql), params)).scalar_one())


async def test_50_identical_deposits_at_once_record_one_transaction_and_return_its_id(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    wallet = (await new_wallet(uow_factory)).id
    key = fresh_key()
    command = services.Deposit(str(wallet), "12.34", key)

    results = await asyncio.gather(
        *(run_alone(uow_factory, services.deposit, ADMIN, command) for _ in range(COPIES))
    )

    assert len({t.id for t in results}) == 1
    assert {t.status for t in results} == {TransactionStatus.COMPLETED}
    assert len(await transaction_rows(engine, "client_transaction_id = :key", key=key)) == 1
    assert await assert_balances_explained(engine, [wallet]) == {str(wallet): 12_34}


@pytest.mark.parametrize("operation", ["transfer", "withdraw"])
async def test_50_identical_debits_at_once_record_one_transaction_and_move_money_once(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine, operation: str
) -> None:
    sender = (await new_wallet(uow_factory, "100.00")).id
    receiver = (await new_wallet(uow_factory)).id
    key = fresh_key()

    def send() -> Awaitable[Transaction]:
        if operation == "transfer":
            return transfer(uow_factory, sender, receiver, "30.00", key)
        return withdraw(uow_factory, sender, "30.00", key)

    results = await asyncio.gather(*(send() for _ in range(COPIES)))

    assert len({t.id for t in results}) == 1
    assert {t.status for t in results} == {TransactionStatus.COMPLETED}
    assert len(await transaction_rows(engine, "client_transaction_id = :key", key=key)) == 1
    balances = await assert_balances_explained(engine, [sender, receiver])
    assert balances[str(sender)] == 70_00
    assert balances[str(receiver)] == (30_00 if operation == "transfer" else 0)


async def test_50_identical_wallet_creations_at_once_create_one_wallet(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    key = fresh_key()
    command = services.CreateWallet(
        currency="EUR", initial_balance="5.00", client_transaction_id=key
    )
    wallets_before = await _count(engine, "SELECT count(*) FROM wallets")

    results = await asyncio.gather(
        *(run_alone(uow_factory, services.create_wallet, ADMIN, command) for _ in range(COPIES))
    )

    ids = {w.id for w in results}
    assert len(ids) == 1
    assert await _count(engine, "SELECT count(*) FROM wallets") == wallets_before + 1
    deposits = await transaction_rows(engine, "client_transaction_id = :key", key=key)
    assert [(d["type"], d["status"], d["amount"]) for d in deposits] == [
        ("DEPOSIT", "COMPLETED", 5_00)
    ]
    assert await assert_balances_explained(engine, ids) == {str(ids.pop()): 5_00}


async def test_a_replay_after_the_first_request_ended_returns_its_final_transaction(
    uow_factory: UnitOfWorkFactory,
) -> None:
    wallet = (await new_wallet(uow_factory, "1.00")).id
    key = fresh_key()
    failed = await withdraw(uow_factory, wallet, "2.00", key)
    assert failed.status is TransactionStatus.FAILED

    replayed = await run_alone(
        uow_factory, services.withdraw, ADMIN, services.Withdraw(str(wallet), "2.00", key)
    )

    assert (replayed.id, replayed.status, replayed.failure_code) == (
        failed.id,
        TransactionStatus.FAILED,
        failed.failure_code,
    )


async def test_an_equal_amount_written_differently_is_the_same_request(
    uow_factory: UnitOfWorkFactory,
) -> None:
    wallet = str((await new_wallet(uow_factory)).id)
    key = fresh_key()
    first = await run_alone(
        uow_factory, services.deposit, ADMIN, services.Deposit(wallet, "10", key)
    )
    again = await run_alone(
        uow_factory, services.deposit, ADMIN, services.Deposit(wallet, "10.00", key)
    )
    assert again.id == first.id


async def test_one_key_sent_at_once_with_two_amounts_records_one_and_refuses_the_other(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    wallet = str((await new_wallet(uow_factory)).id)
    key = fresh_key()
    amounts = ["1.00", "2.00"] * (COPIES // 2)

    results = await asyncio.gather(
        *(
            run_alone(uow_factory, services.deposit, ADMIN, services.Deposit(wallet, a, key))
            for a in amounts
        ),
        return_exceptions=True,
    )

    recorded = [r for r in results if isinstance(r, Transaction)]
    refused = [r for r in results if not isinstance(r, Transaction)]
    assert len({t.id for t in recorded}) == 1
    assert all(isinstance(r, IdempotencyKeyReused) for r in refused), refused
    winner = str(recorded[0].amount)
    # Every copy of the recorded request replays it; every copy of the other is refused.
    assert [str(r.amount) if isinstance(r, Transaction) else None for r in results] == [
        winner if a == winner else None for a in amounts
    ]
    assert len(await transaction_rows(engine, "client_transaction_id = :key", key=key)) == 1


Reuse = Callable[[UnitOfWorkFactory, dict[str, UUID], str], Awaitable[object]]

# Each first records a request under `key`, then sends a different one under the same key.
REUSES: dict[str, tuple[Reuse, Reuse]] = {
    "deposit, other amount": (
        lambda f, w, k: run_alone(
            f, services.deposit, ADMIN, services.Deposit(str(w["a"]), "1.00", k)
        ),
        lambda f, w, k: run_alone(
            f, services.deposit, ADMIN, services.Deposit(str(w["a"]), "1.01", k)
        ),
    ),
    "deposit, other wallet": (
        lambda f, w, k: run_alone(
            f, services.deposit, ADMIN, services.Deposit(str(w["a"]), "1.00", k)
        ),
        lambda f, w, k: run_alone(
            f, services.deposit, ADMIN, services.Deposit(str(w["b"]), "1.00", k)
        ),
    ),
    "deposit, then a withdrawal": (
        lambda f, w, k: run_alone(
            f, services.deposit, ADMIN, services.Deposit(str(w["a"]), "1.00", k)
        ),
        lambda f, w, k: run_alone(
            f, services.withdraw, ADMIN, services.Withdraw(str(w["a"]), "1.00", k)
        ),
    ),
    "withdrawal, other amount": (
        lambda f, w, k: withdraw(f, w["a"], "1.00", k),
        lambda f, w, k: run_alone(
            f, services.withdraw, ADMIN, services.Withdraw(str(w["a"]), "2.00", k)
        ),
    ),
    "transfer, reversed": (
        lambda f, w, k: transfer(f, w["a"], w["b"], "1.00", k),
        lambda f, w, k: run_alone(
            f, services.transfer, ADMIN, services.Transfer(str(w["b"]), str(w["a"]), "1.00", k)
        ),
    ),
    "transfer, other receiver": (
        lambda f, w, k: transfer(f, w["a"], w["b"], "1.00", k),
        lambda f, w, k: run_alone(
            f, services.transfer, ADMIN, services.Transfer(str(w["a"]), str(w["c"]), "1.00", k)
        ),
    ),
    "createWallet, other currency": (
        lambda f, w, k: run_alone(
            f, services.create_wallet, ADMIN, services.CreateWallet("USD", "0", k)
        ),
        lambda f, w, k: run_alone(
            f, services.create_wallet, ADMIN, services.CreateWallet("EUR", "0", k)
        ),
    ),
    "createWallet, other initial balance": (
        lambda f, w, k: run_alone(
            f, services.create_wallet, ADMIN, services.CreateWallet("USD", "0", k)
        ),
        lambda f, w, k: run_alone(
            f, services.create_wallet, ADMIN, services.CreateWallet("USD", "1.00", k)
        ),
    ),
    "a deposit's key, then createWallet": (
        lambda f, w, k: run_alone(
            f, services.deposit, ADMIN, services.Deposit(str(w["a"]), "1.00", k)
        ),
        lambda f, w, k: run_alone(
            f, services.create_wallet, ADMIN, services.CreateWallet("USD", "1.00", k)
        ),
    ),
}


@pytest.mark.parametrize(("first", "second"), REUSES.values(), ids=REUSES.keys())
async def test_a_key_sent_with_a_different_request_is_refused_and_changes_nothing(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine, first: Reuse, second: Reuse
) -> None:
    wallets = {name: (await new_wallet(uow_factory, "10.00")).id for name in "abc"}
    key = fresh_key()
    await first(uow_factory, wallets, key)
    before = await snapshot(engine)

    with pytest.raises(IdempotencyKeyReused) as refused:
        await second(uow_factory, wallets, key)

    assert refused.value.field == "client_transaction_id"
    assert await snapshot(engine) == before


async def test_a_batch_mixing_a_new_submission_and_a_replay_is_decided_in_one_unit_of_work(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    """The replay is read after the new one is recorded; nothing falls back to one at a time."""
    counting = CountedUnitsOfWork(engine)
    sender = str((await new_wallet(counting, "10.00")).id)
    receiver = str((await new_wallet(counting)).id)
    replayed_key = fresh_key()
    first = await run_alone(
        counting,
        services.transfer,
        ADMIN,
        services.Transfer(sender, receiver, "1.00", replayed_key),
    )
    counting.opened = 0

    new, replay = await run_together(
        counting,
        services.submit,
        requests(
            ADMIN,
            [
                services.Transfer(sender, receiver, "2.00", fresh_key()),
                services.Transfer(sender, receiver, "1.00", replayed_key),
            ],
        ),
    )

    assert isinstance(new, Transaction)
    assert new.status is TransactionStatus.PENDING
    assert isinstance(replay, Transaction)
    assert replay.id == first.id
    assert counting.opened == 1, "decided together, not again one by one"
    assert "one at a time" not in caplog.text
