"""Group commit: requests run together are decided exactly as if each had run alone."""

from __future__ import annotations

import asyncio
import logging
from copy import deepcopy
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.callers import ADMIN, ALICE, BOB, FUNDER, requests
from tests.unit.fakes import FakeDatabase, FakeUnitOfWork
from wallet.domain import services
from wallet.domain.batching import outcome
from wallet.domain.callers import Caller
from wallet.domain.errors import InsufficientFunds, InvalidAmount, WalletError
from wallet.domain.group_commit import Request, run_alone, run_together, run_unattended
from wallet.domain.model import IdempotencyRecord, ScopedKey, Transaction, Wallet
from wallet.domain.money import MAX_BALANCE_MINOR, Currency, Money
from wallet.domain.ports import UnitOfWork

USD = Currency.of("USD")
EUR = Currency.of("EUR")
WALLETS = [UUID(int=n) for n in range(1, 5)]  # USD, USD, nearly full USD, EUR
OWNERS = [ALICE, BOB, ALICE, BOB]
NOWHERE = str(UUID(int=99))


def world() -> FakeDatabase:
    db = FakeDatabase()
    balances = [10_00, 0, MAX_BALANCE_MINOR - 1_00, 5_00]
    currencies = [USD, USD, USD, EUR]
    for wallet_id, owner, balance, currency in zip(
        WALLETS, OWNERS, balances, currencies, strict=True
    ):
        db.stored.wallets[wallet_id] = Wallet(
            wallet_id, owner.id, currency, Money(balance, currency)
        )
    return db


def seen(outcome: Transaction | Exception) -> tuple[Any, ...]:
    """What a client is told, without the ids and times each run makes anew."""
    if isinstance(outcome, WalletError):
        return (outcome.code, outcome.field)
    assert isinstance(outcome, Transaction), outcome
    amount = (outcome.amount.minor, outcome.amount.currency.code)
    return (outcome.type, outcome.status, amount, outcome.client_transaction_id)


def state(db: FakeDatabase) -> tuple[Any, ...]:
    transactions = sorted(map(repr, map(seen, db.stored.transactions.values())))
    balances = {i: w.balance.minor for i, w in db.stored.wallets.items()}
    return (balances, transactions, sorted(db.stored.keys))


wallet_ids = st.sampled_from([str(w) for w in WALLETS] + [NOWHERE, "not-a-wallet"])
amounts = st.sampled_from(["1.00", "2.50", "0.001", "0", "-1", "abc", "99.99", "1000000"])
keys = st.sampled_from(["a", "b", "c", " c", ""]) | st.uuids().map(str)
deposits = st.builds(services.Deposit, wallet_ids, amounts, keys)
submissions = st.builds(services.Withdraw, wallet_ids, amounts, keys) | st.builds(
    services.Transfer, wallet_ids, wallet_ids, amounts, keys
)
# Owners, others, the funding service and an admin: the same key sent by two of them is two
# keys, which never meet.
callers = st.sampled_from([ALICE, BOB, FUNDER, ADMIN])


async def decide_both_ways(
    use_case: Any, asked: list[Request[Any]]
) -> tuple[list[tuple[Any, ...]], FakeDatabase, FakeDatabase]:
    together, alone = world(), world()
    # Keys used before this batch: some commands replay them, others reuse them wrongly.
    earlier = services.Deposit(str(WALLETS[0]), "1.00", "a")
    await run_alone(together.unit_of_work, services.deposit, ADMIN, earlier)
    submitted = services.Transfer(str(WALLETS[0]), str(WALLETS[1]), "2.50", "b")
    await run_alone(together.unit_of_work, services.transfer, ADMIN, submitted)
    alone.stored = deepcopy(together.stored)
    answers = await run_together(together.unit_of_work, use_case, asked)
    one_by_one = [
        await outcome(run_alone(alone.unit_of_work, use_case, r.caller, r.command)) for r in asked
    ]
    assert [seen(a) for a in answers] == [seen(a) for a in one_by_one]
    assert state(together) == state(alone)
    return [seen(a) for a in answers], together, alone


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.builds(Request, callers, deposits), min_size=2, max_size=12))
def test_deposits_run_together_are_decided_as_if_each_ran_alone(
    asked: list[Request[services.Deposit]],
) -> None:
    asyncio.run(decide_both_ways(services.deposit, asked))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.builds(Request, callers, submissions), min_size=2, max_size=12))
def test_submissions_run_together_are_decided_as_if_each_ran_alone(
    asked: list[Request[services.Withdraw | services.Transfer]],
) -> None:
    asyncio.run(decide_both_ways(services.submit, asked))


async def test_a_batch_of_deposits_shares_one_unit_of_work_one_write_and_one_commit() -> None:
    db = world()
    commands = [services.Deposit(str(WALLETS[n % 2]), "1.00", f"k{n}") for n in range(10)]

    await run_together(db.unit_of_work, services.deposit, requests(ADMIN, commands))

    assert (db.opened, db.writes, db.commits) == (1, 1, 1)
    assert db.balance(WALLETS[0]) == db.explained(WALLETS[0]) + 10_00 == 15_00
    # Each entry saw the balance the ones before it left.
    assert [e.balance_after for e in db.stored.entries if e.wallet_id == WALLETS[1]] == [
        1_00,
        2_00,
        3_00,
        4_00,
        5_00,
    ]


async def test_new_submissions_and_a_replay_share_one_unit_of_work() -> None:
    db = world()
    replayed = services.Withdraw(str(WALLETS[0]), "1.00", "replayed")
    first = await run_alone(db.unit_of_work, services.withdraw, ADMIN, replayed)
    db.opened = db.commits = 0
    fresh = [services.Withdraw(str(WALLETS[0]), "1.00", f"new{n}") for n in range(3)]

    answers = await run_together(
        db.unit_of_work, services.submit, requests(ADMIN, [*fresh, replayed])
    )

    assert isinstance(answers[-1], Transaction)
    assert answers[-1].id == first.id
    assert (db.opened, db.commits) == (1, 1)


async def test_a_refused_deposit_in_a_batch_gives_its_key_back() -> None:
    db = world()
    full = str(WALLETS[2])
    commands = [
        services.Deposit(str(WALLETS[0]), "1.00", "ok"),
        services.Deposit(full, "2.00", "too-much"),  # more than the wallet can hold
    ]

    answers = await run_together(db.unit_of_work, services.deposit, requests(ADMIN, commands))

    assert isinstance(answers[1], WalletError)
    assert (ADMIN.id, "too-much") not in db.stored.keys
    assert (ADMIN.id, "ok") in db.stored.keys


async def test_a_batch_that_fails_is_decided_one_at_a_time_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    db = world()
    db.batch_failure = RuntimeError("a constraint the domain did not foresee")
    commands = [services.Deposit(str(WALLETS[0]), "1.00", uuid4().hex) for _ in range(3)]

    with caplog.at_level(logging.WARNING, logger="wallet.domain.batching"):
        answers = await run_together(db.unit_of_work, services.deposit, requests(ADMIN, commands))

    assert all(isinstance(a, Transaction) for a in answers)
    assert db.balance(WALLETS[0]) == 13_00
    (line,) = [r.getMessage() for r in caplog.records]
    assert "a batch of 3 requests failed (RuntimeError" in line
    assert "deciding each one at a time" in line


async def test_a_deposit_repeating_a_key_in_its_own_batch_replays_the_first() -> None:
    db = world()
    command = services.Deposit(str(WALLETS[1]), "3.00", "twice")

    first, second = await run_together(
        db.unit_of_work, services.deposit, requests(ADMIN, [command, command])
    )

    assert isinstance(first, Transaction)
    assert isinstance(second, Transaction)
    assert first.id == second.id
    assert db.balance(WALLETS[1]) == 3_00


async def test_settling_withdrawals_that_overdraw_fails_only_the_later_ones() -> None:
    db = world()
    ids = [
        (
            await run_alone(
                db.unit_of_work,
                services.withdraw,
                ADMIN,
                services.Withdraw(str(WALLETS[0]), "4.00", f"w{n}"),
            )
        ).id
        for n in range(3)
    ]

    settled = await run_unattended(db.unit_of_work, services.settle, ids)

    assert [t.failure_code for t in settled] == [None, None, InsufficientFunds.code]
    assert db.balance(WALLETS[0]) == db.explained(WALLETS[0]) + 10_00 == 2_00


async def deposit_then_refuse(
    caller: Caller, uow: UnitOfWork, command: services.Deposit
) -> Transaction:
    """A use case with a bug the group must survive: it credits a locked wallet, then is
    refused before it writes."""
    async with uow:
        wallet_id = UUID(command.wallet_id)
        wallet = (await uow.wallets.lock([wallet_id]))[wallet_id]
        wallet.credit(Money(5_00, USD))
        if command.amount == "refuse":
            raise InvalidAmount("refused after changing the wallet")
        return await services.deposit(caller, uow, command)


async def test_a_member_refused_after_changing_a_wallet_leaves_no_trace_of_it() -> None:
    commands = [
        services.Deposit(str(WALLETS[1]), "refuse", "k1"),
        services.Deposit(str(WALLETS[1]), "5.00", "k2"),
    ]
    answers, together, alone = await decide_both_ways(
        deposit_then_refuse, requests(ADMIN, commands)
    )

    assert answers[0][0] is InvalidAmount.code
    assert together.balance(WALLETS[1]) == alone.balance(WALLETS[1])
    assert together.balance(WALLETS[1]) == together.explained(WALLETS[1])


async def test_a_failure_of_one_member_after_the_commit_is_that_member_s_alone() -> None:
    db = world()
    replayed = services.Withdraw(str(WALLETS[0]), "1.00", "replayed")
    await run_alone(db.unit_of_work, services.withdraw, ADMIN, replayed)
    broken = db.unit_of_work

    def unit_of_work() -> FakeUnitOfWork:
        uow = broken()
        original = uow.idempotency_keys.get

        async def get(key: ScopedKey) -> IdempotencyRecord | None:
            if key[1] == "replayed":
                raise ConnectionError("lost the connection reading the replay")
            return await original(key)

        uow.idempotency_keys.get = get  # type: ignore[method-assign]
        return uow

    fresh = [services.Withdraw(str(WALLETS[0]), "1.00", f"new{n}") for n in range(2)]
    answers = await run_together(unit_of_work, services.submit, requests(ADMIN, [*fresh, replayed]))

    assert [type(a) for a in answers] == [Transaction, Transaction, ConnectionError]
    assert {t.client_transaction_id for t in db.stored.transactions.values()} >= {"new0", "new1"}
