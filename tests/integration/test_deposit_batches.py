"""Deposits decided together: one lock pass and one commit, each still answered on its own."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any
from uuid import uuid4

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.callers import ADMIN, requests
from tests.integration.moves import CountedUnitsOfWork, fresh_key, new_wallet
from tests.invariants import assert_balances_explained
from wallet.domain import services
from wallet.domain.batching import Batcher
from wallet.domain.errors import (
    IdempotencyKeyReused,
    InvalidAmount,
    InvalidInput,
    WalletError,
    WalletNotFound,
)
from wallet.domain.group_commit import run_alone, run_together
from wallet.domain.model import Transaction, TransactionStatus
from wallet.domain.ports import UnitOfWorkFactory
from wallet.persistence.unit_of_work import SqlUnitOfWork

NEAR_FULL = 2**63 - 1 - 7  # 7 cents short of the most a USD wallet can hold


async def _nearly_full_wallet(uow_factory: UnitOfWorkFactory, engine: AsyncEngine) -> str:
    """No deposit may be that large: the setup writes one, with its ledger entry, in SQL."""
    wallet_id = (await new_wallet(uow_factory)).id
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "WITH t AS (INSERT INTO transactions (id, type, status, amount, currency,"
                " receiver_wallet_id, completed_at) VALUES (gen_random_uuid(), 'DEPOSIT',"
                " 'COMPLETED', :amount, 'USD', :wallet, clock_timestamp()) RETURNING id),"
                " e AS (INSERT INTO ledger_entries (transaction_id, wallet_id, delta,"
                " balance_after) SELECT t.id, :wallet, :amount, :amount FROM t)"
                " UPDATE wallets SET balance = :amount WHERE id = :wallet"
            ),
            {"amount": NEAR_FULL, "wallet": wallet_id},
        )
    return str(wallet_id)


async def test_each_deposit_of_a_batch_is_decided_as_if_it_came_alone(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    wallet = str((await new_wallet(uow_factory)).id)
    full = await _nearly_full_wallet(uow_factory, engine)
    replayed_key, reused_key, twice_key, refused_key = (fresh_key() for _ in range(4))
    first = await run_alone(
        uow_factory, services.deposit, ADMIN, services.Deposit(wallet, "1.00", replayed_key)
    )
    await run_alone(
        uow_factory, services.deposit, ADMIN, services.Deposit(wallet, "1.00", reused_key)
    )

    outcomes = await run_together(
        uow_factory,
        services.deposit,
        requests(
            ADMIN,
            [
                services.Deposit(wallet, "2.00", fresh_key()),
                services.Deposit(str(uuid4()), "1.00", fresh_key()),  # no such wallet
                services.Deposit(wallet, "0.001", fresh_key()),  # too many decimals for USD
                services.Deposit(wallet, "1.00", replayed_key),  # the same request again
                services.Deposit(wallet, "9.00", reused_key),  # the key, for something else
                services.Deposit(wallet, "3.00", twice_key),
                services.Deposit(wallet, "3.00", twice_key),  # twice in the same batch
                services.Deposit(full, "1.00", refused_key),  # more than the wallet can hold
                services.Deposit(wallet, "4.00", fresh_key()),
                services.Deposit("not-a-uuid", "1.00", fresh_key()),
            ],
        ),
    )

    applied, unknown, precise, replay, reused, once, again, full_up, last, malformed = outcomes
    assert isinstance(applied, Transaction)
    assert applied.status == TransactionStatus.COMPLETED
    assert isinstance(unknown, WalletNotFound)
    assert isinstance(precise, InvalidAmount)
    assert isinstance(replay, Transaction)
    assert replay.id == first.id
    assert isinstance(reused, IdempotencyKeyReused)
    assert isinstance(once, Transaction)
    assert isinstance(again, Transaction)
    assert again.id == once.id, "the second of a key in one batch replays the first"
    assert isinstance(full_up, InvalidAmount)
    assert isinstance(last, Transaction)
    assert isinstance(malformed, InvalidInput)
    balances = await assert_balances_explained(engine, [wallet, full])
    assert balances[wallet] == 1_00 + 1_00 + 2_00 + 3_00 + 4_00

    # The refused deposit's key was given back: a corrected request may use it.
    fits = await run_alone(
        uow_factory, services.deposit, ADMIN, services.Deposit(full, "0.07", refused_key)
    )
    assert fits.status == TransactionStatus.COMPLETED


async def test_concurrent_deposits_through_a_batcher_share_commits_and_all_land(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    wallets = [str((await new_wallet(uow_factory)).id) for _ in range(3)]
    sizes: list[int] = []

    async def run(commands: list[services.Deposit]) -> list[Transaction | WalletError]:
        sizes.append(len(commands))
        return await run_together(uow_factory, services.deposit, requests(ADMIN, commands))

    deposit = Batcher(run, max_batch=16)
    outcomes = await asyncio.gather(
        *(deposit(services.Deposit(wallets[n % 3], "0.25", fresh_key())) for n in range(60)),
        deposit(services.Deposit(wallets[0], "-1", fresh_key())),
        return_exceptions=True,
    )

    *landed, refused = outcomes
    assert all(isinstance(o, Transaction) for o in landed), outcomes
    assert isinstance(refused, InvalidAmount), "a refusal is raised for its own caller only"
    assert sum(sizes) == 61
    assert len(sizes) < 61, sizes
    assert max(sizes) <= 16, sizes
    balances = await assert_balances_explained(engine, wallets)
    assert balances == dict.fromkeys(wallets, 20 * 25)


async def test_a_batch_that_fails_as_a_whole_fails_every_caller_in_it() -> None:
    class Down(Exception):
        pass

    async def run(items: list[int]) -> list[int | Exception]:
        raise Down

    batcher: Batcher[int, int] = Batcher(run)
    outcomes = await asyncio.gather(*(batcher(n) for n in range(5)), return_exceptions=True)
    assert all(isinstance(o, Down) for o in outcomes)


class _FailsOnAnAmount(SqlUnitOfWork):
    """The real unit of work, except that writing a transaction of 13.13 fails: a stand-in
    for a fault no deposit was refused for (a constraint the domain missed, a bug)."""

    async def write(self, *, recorded: Sequence[Transaction] = (), **parts: Any) -> Any:
        if any(t.amount.minor == 13_13 for t in recorded):
            raise RuntimeError("a fault in one deposit")
        return await super().write(recorded=recorded, **parts)


async def test_a_deposit_that_breaks_its_batch_fails_alone_and_the_fallback_is_logged_once(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    wallet = str((await new_wallet(uow_factory)).id)

    def faulty() -> SqlUnitOfWork:
        return _FailsOnAnAmount(engine)

    first, broken, last = await run_together(
        faulty,
        services.deposit,
        requests(
            ADMIN,
            [
                services.Deposit(wallet, "1.00", fresh_key()),
                services.Deposit(wallet, "13.13", fresh_key()),
                services.Deposit(wallet, "2.00", fresh_key()),
            ],
        ),
    )

    assert isinstance(first, Transaction)
    assert isinstance(last, Transaction)
    assert isinstance(broken, RuntimeError)
    assert await assert_balances_explained(engine, [wallet]) == {wallet: 3_00}
    fallbacks = [r.getMessage() for r in caplog.records if "one at a time" in r.getMessage()]
    assert fallbacks == [
        "a batch of 3 requests failed (RuntimeError: a fault in one deposit); "
        "deciding each one at a time"
    ]


async def test_a_batch_of_deposits_refusals_and_replays_included_takes_one_unit_of_work(
    engine: AsyncEngine,
) -> None:
    """Run once together, never again one by one: idempotency would hide the doubled work."""
    counting = CountedUnitsOfWork(engine)
    wallet = str((await new_wallet(counting)).id)
    replayed_key = fresh_key()
    await run_alone(
        counting, services.deposit, ADMIN, services.Deposit(wallet, "1.00", replayed_key)
    )
    counting.opened = 0

    outcomes = await run_together(
        counting,
        services.deposit,
        requests(
            ADMIN,
            [
                services.Deposit(wallet, "2.00", fresh_key()),
                services.Deposit(wallet, "1.00", replayed_key),
                services.Deposit(str(uuid4()), "1.00", fresh_key()),
                services.Deposit(wallet, "3.00", fresh_key()),
            ],
        ),
    )

    assert [type(o) for o in outcomes] == [Transaction, Transaction, WalletNotFound, Transaction]
    assert counting.opened == 1
    assert await assert_balances_explained(engine, [wallet]) == {wallet: 6_00}
