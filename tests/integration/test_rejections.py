"""A rejected request records nothing: every table is exactly as it was before."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from uuid import UUID, uuid4

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.callers import ADMIN
from tests.integration.moves import fresh_key, new_wallet, transfer
from tests.invariants import LEDGER_TABLES, snapshot
from wallet.domain import services
from wallet.domain.errors import ErrorCode, InvalidAmount, WalletError
from wallet.domain.group_commit import run_alone
from wallet.domain.model import TransactionStatus
from wallet.domain.money import MAX_BALANCE_MINOR
from wallet.domain.ports import UnitOfWorkFactory

# The codes a request can be refused with; INSUFFICIENT_FUNDS is not one (that request is
# recorded, as a FAILED transaction), nor RATE_LIMITED and INTERNAL (not about the input).
REFUSAL_CODES = {
    ErrorCode.INVALID_INPUT,
    ErrorCode.INVALID_AMOUNT,
    ErrorCode.UNSUPPORTED_CURRENCY,
    ErrorCode.CURRENCY_MISMATCH,
    ErrorCode.WALLET_NOT_FOUND,
    ErrorCode.SAME_WALLET,
    ErrorCode.IDEMPOTENCY_KEY_REUSED,
}


@dataclass(frozen=True)
class World:
    usd: str
    other_usd: str
    eur: str
    jpy: str
    used_key: str


Request = Callable[[UnitOfWorkFactory, World], Awaitable[object]]


def deposit(
    wallet: Callable[[World], str], amount: str = "1.00", key: str | None = None
) -> Request:
    return lambda f, w: run_alone(
        f,
        services.deposit,
        ADMIN,
        services.Deposit(wallet(w), amount, key if key is not None else fresh_key()),
    )


def withdraw(
    wallet: Callable[[World], str], amount: str = "1.00", key: str | None = None
) -> Request:
    return lambda f, w: run_alone(
        f,
        services.withdraw,
        ADMIN,
        services.Withdraw(wallet(w), amount, key if key is not None else fresh_key()),
    )


def send(
    sender: Callable[[World], str],
    receiver: Callable[[World], str],
    amount: str = "1.00",
    key: str | None = None,
) -> Request:
    return lambda f, w: run_alone(
        f,
        services.transfer,
        ADMIN,
        services.Transfer(sender(w), receiver(w), amount, key if key is not None else fresh_key()),
    )


def create(currency: str = "USD", balance: str = "0", key: str | None = None) -> Request:
    return lambda f, w: run_alone(
        f, services.create_wallet, ADMIN, services.CreateWallet(currency, balance, key)
    )


def usd(w: World) -> str:
    return w.usd


def other(w: World) -> str:
    return w.other_usd


def eur(w: World) -> str:
    return w.eur


def jpy(w: World) -> str:
    return w.jpy


def missing(_: World) -> str:
    return str(uuid4())


def text_of(value: str) -> Callable[[World], str]:
    return lambda _: value


def reused(request: Callable[[str], Request]) -> Request:
    return lambda f, w: request(w.used_key)(f, w)


CASES: list[tuple[str, ErrorCode, str | None, Request]] = [
    (
        "deposit to a wallet id that is no UUID",
        ErrorCode.INVALID_INPUT,
        "wallet_id",
        deposit(text_of("not-a-uuid")),
    ),
    (
        "withdrawal from an empty wallet id",
        ErrorCode.INVALID_INPUT,
        "wallet_id",
        withdraw(text_of("")),
    ),
    (
        "transfer from a wallet id that is no UUID",
        ErrorCode.INVALID_INPUT,
        "from_wallet_id",
        send(text_of("42"), usd),
    ),
    (
        "transfer to a wallet id that is no UUID",
        ErrorCode.INVALID_INPUT,
        "to_wallet_id",
        send(usd, text_of("wallet-2")),
    ),
    (
        "deposit with an empty key",
        ErrorCode.INVALID_INPUT,
        "client_transaction_id",
        deposit(usd, key=""),
    ),
    (
        "withdrawal with a key in spaces",
        ErrorCode.INVALID_INPUT,
        "client_transaction_id",
        withdraw(usd, key=" k "),
    ),
    (
        "transfer with a 256-character key",
        ErrorCode.INVALID_INPUT,
        "client_transaction_id",
        send(usd, other, key="k" * 256),
    ),
    ("wallet with an empty key", ErrorCode.INVALID_INPUT, "client_transaction_id", create(key="")),
    *[
        (f"deposit of {amount!r}", ErrorCode.INVALID_AMOUNT, "amount", deposit(usd, amount))
        for amount in [
            "0",
            "0.00",
            "-5.00",
            "1.001",
            "1e3",
            "12,50",
            "",
            " 1",
            "1 ",
            "+1",
            "abc",
            "NaN",
            "Infinity",
            "0x10",
            "1.",
            ".5",
            "١٢",  # Arabic-Indic digits
            "10000000000000.01",  # above the per-operation maximum
        ]
    ],
    ("deposit of 1.5 yen", ErrorCode.INVALID_AMOUNT, "amount", deposit(jpy, "1.5")),
    ("withdrawal of a tenth of a cent", ErrorCode.INVALID_AMOUNT, "amount", withdraw(usd, "0.001")),
    ("transfer of a negative amount", ErrorCode.INVALID_AMOUNT, "amount", send(usd, other, "-1")),
    (
        "wallet with a negative initial balance",
        ErrorCode.INVALID_AMOUNT,
        "initial_balance",
        create(balance="-1"),
    ),
    (
        "wallet with a tenth of a cent",
        ErrorCode.INVALID_AMOUNT,
        "initial_balance",
        create(balance="0.001"),
    ),
    (
        "wallet with an initial balance above the maximum",
        ErrorCode.INVALID_AMOUNT,
        "initial_balance",
        create(balance="10000000000001"),
    ),
    *[
        (f"wallet in {code!r}", ErrorCode.UNSUPPORTED_CURRENCY, "currency", create(code))
        for code in ["XAU", "XXX", "ABC", "usd", "US", "", "US D"]
    ],
    ("transfer from USD to EUR", ErrorCode.CURRENCY_MISMATCH, "to_wallet_id", send(usd, eur)),
    (
        "deposit to a wallet that does not exist",
        ErrorCode.WALLET_NOT_FOUND,
        "wallet_id",
        deposit(missing),
    ),
    (
        "withdrawal from a wallet that does not exist",
        ErrorCode.WALLET_NOT_FOUND,
        "wallet_id",
        withdraw(missing),
    ),
    (
        "transfer from a wallet that does not exist",
        ErrorCode.WALLET_NOT_FOUND,
        "from_wallet_id",
        send(missing, usd),
    ),
    (
        "transfer to a wallet that does not exist",
        ErrorCode.WALLET_NOT_FOUND,
        "to_wallet_id",
        send(usd, missing),
    ),
    ("transfer to the sending wallet", ErrorCode.SAME_WALLET, "to_wallet_id", send(usd, usd)),
    (
        "deposit under a used key",
        ErrorCode.IDEMPOTENCY_KEY_REUSED,
        "client_transaction_id",
        reused(lambda k: deposit(usd, "9.99", k)),
    ),
    (
        "withdrawal under a used key",
        ErrorCode.IDEMPOTENCY_KEY_REUSED,
        "client_transaction_id",
        reused(lambda k: withdraw(usd, "1.00", k)),
    ),
    (
        "transfer under a used key",
        ErrorCode.IDEMPOTENCY_KEY_REUSED,
        "client_transaction_id",
        reused(lambda k: send(usd, other, "1.00", k)),
    ),
    (
        "wallet under a used key",
        ErrorCode.IDEMPOTENCY_KEY_REUSED,
        "client_transaction_id",
        reused(lambda k: create(key=k)),
    ),
]


@pytest.fixture(scope="module")
async def world(uow_factory: UnitOfWorkFactory) -> World:
    used_key = fresh_key()
    usd_wallet = (await new_wallet(uow_factory, "50.00")).id
    await run_alone(
        uow_factory, services.deposit, ADMIN, services.Deposit(str(usd_wallet), "1.00", used_key)
    )
    return World(
        usd=str(usd_wallet),
        other_usd=str((await new_wallet(uow_factory, "5.00")).id),
        eur=str((await new_wallet(uow_factory, "5.00", "EUR")).id),
        jpy=str((await new_wallet(uow_factory, "500", "JPY")).id),
        used_key=used_key,
    )


def test_every_refusal_code_of_the_contract_is_tried() -> None:
    assert {code for _, code, _, _ in CASES} == REFUSAL_CODES


@pytest.mark.parametrize(
    ("code", "field", "request_"),
    [(code, field, request) for _, code, field, request in CASES],
    ids=[name for name, _, _, _ in CASES],
)
async def test_a_rejected_request_leaves_every_table_unchanged(
    uow_factory: UnitOfWorkFactory,
    engine: AsyncEngine,
    world: World,
    code: ErrorCode,
    field: str | None,
    request_: Request,
) -> None:
    before = await snapshot(engine)

    with pytest.raises(WalletError) as rejected:
        await request_(uow_factory, world)

    assert (rejected.value.code, rejected.value.field) == (code, field)
    assert rejected.value.message
    assert await snapshot(engine) == before


@pytest.fixture
async def nearly_full_wallet(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> AsyncIterator[str]:
    """A wallet one cent short of the largest balance PostgreSQL's BIGINT can hold."""
    wallet = str((await new_wallet(uow_factory)).id)
    set_balance = text("UPDATE wallets SET balance = :balance WHERE id = :id")
    async with engine.begin() as conn:
        await conn.execute(set_balance, {"balance": MAX_BALANCE_MINOR - 1, "id": wallet})
    yield wallet
    # Put back the balance its ledger explains, for whoever checks every wallet later.
    async with engine.begin() as conn:
        await conn.execute(set_balance, {"balance": 0, "id": wallet})


async def test_a_deposit_that_would_overflow_the_balance_is_refused_and_changes_nothing(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine, nearly_full_wallet: str
) -> None:
    before = await snapshot(engine)
    with pytest.raises(InvalidAmount):
        await run_alone(
            uow_factory,
            services.deposit,
            ADMIN,
            services.Deposit(nearly_full_wallet, "0.02", fresh_key()),
        )
    assert await snapshot(engine) == before


async def test_a_transfer_that_would_overflow_the_receiver_fails_and_moves_nothing(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine, nearly_full_wallet: str
) -> None:
    sender = (await new_wallet(uow_factory, "1.00")).id
    result = await transfer(uow_factory, sender, UUID(nearly_full_wallet), "0.02")
    assert result.status is TransactionStatus.FAILED
    assert result.failure_code is ErrorCode.INVALID_AMOUNT
    async with engine.connect() as conn:
        balances = dict(
            (
                await conn.execute(
                    text(
                        "SELECT id::text, balance FROM wallets WHERE id = ANY(CAST(:ids AS uuid[]))"
                    ),
                    {"ids": [str(sender), nearly_full_wallet]},
                )
            ).all()
        )
    assert balances == {str(sender): 1_00, nearly_full_wallet: MAX_BALANCE_MINOR - 1}


async def test_the_snapshot_sees_an_accepted_request_and_a_touched_row(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine, world: World
) -> None:
    before = await snapshot(engine)
    await run_alone(
        uow_factory, services.deposit, ADMIN, services.Deposit(world.usd, "0.01", fresh_key())
    )
    after = await snapshot(engine)
    assert {t for t in after if after[t] != before[t]} == set(LEDGER_TABLES)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE wallets SET updated_at = updated_at + interval '1 microsecond' "
                "WHERE id = :id"
            ),
            {"id": world.usd},
        )
    touched = await snapshot(engine)
    assert touched["wallets"].rows == after["wallets"].rows
    assert touched["wallets"].checksum != after["wallets"].checksum
