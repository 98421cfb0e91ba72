from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from wallet.domain.errors import (
    CurrencyMismatch,
    ErrorCode,
    InsufficientFunds,
    InvalidAmount,
    InvalidInput,
)
from wallet.domain.model import (
    Transaction,
    TransactionStatus,
    TransactionType,
    Wallet,
    fingerprint,
)
from wallet.domain.money import MAX_BALANCE_MINOR, Currency, Money
from wallet.domain.services import check_key, parse_wallet_id
from wallet.schema.pagination import InvalidCursor, decode_cursor, encode_cursor

USD = Currency.of("USD")
EUR = Currency.of("EUR")


def wallet(balance: int, currency: Currency = USD) -> Wallet:
    return Wallet(uuid.uuid4(), "someone", currency, Money(balance, currency))


def transfer(sender: Wallet, receiver: Wallet, amount: int) -> Transaction:
    return Transaction(
        uuid.uuid4(),
        TransactionType.TRANSFER,
        TransactionStatus.PENDING,
        Money(amount, sender.currency),
        sender.id,
        receiver.id,
        "key",
    )


def test_a_transfer_moves_the_amount_and_explains_both_balances() -> None:
    a, b = wallet(1000), wallet(50)
    entries = transfer(a, b, 300).apply({a.id: a, b.id: b})
    assert (a.balance.minor, b.balance.minor) == (700, 350)
    assert [(e.wallet_id, e.delta, e.balance_after) for e in entries] == [
        (a.id, -300, 700),
        (b.id, 300, 350),
    ]


def test_a_transfer_of_more_than_the_balance_changes_nothing() -> None:
    a, b = wallet(100), wallet(0)
    move = transfer(a, b, 101)
    with pytest.raises(InsufficientFunds):
        move.apply({a.id: a, b.id: b})
    assert (a.balance.minor, b.balance.minor) == (100, 0)
    assert move.status is TransactionStatus.PENDING


def test_the_whole_balance_can_be_moved_down_to_zero() -> None:
    a, b = wallet(100), wallet(0)
    transfer(a, b, 100).apply({a.id: a, b.id: b})
    assert a.balance.minor == 0


def test_a_credit_that_would_overflow_a_bigint_is_refused_and_changes_nothing() -> None:
    a, b = wallet(10), wallet(MAX_BALANCE_MINOR - 5)
    with pytest.raises(InvalidAmount):
        transfer(a, b, 10).apply({a.id: a, b.id: b})
    assert (a.balance.minor, b.balance.minor) == (10, MAX_BALANCE_MINOR - 5)


def test_money_in_another_currency_is_refused() -> None:
    with pytest.raises(CurrencyMismatch):
        wallet(100).credit(Money(1, EUR))


def test_a_failed_transaction_records_why() -> None:
    a, b = wallet(0), wallet(0)
    move = transfer(a, b, 1)
    move.fail(ErrorCode.INSUFFICIENT_FUNDS, "too little")
    assert move.status is TransactionStatus.FAILED
    assert move.failure_code is ErrorCode.INSUFFICIENT_FUNDS
    assert move.is_final


def test_wallets_are_locked_in_ascending_id_order() -> None:
    a, b = wallet(0), wallet(0)
    assert transfer(a, b, 1).wallet_ids == tuple(sorted([a.id, b.id]))
    assert transfer(b, a, 1).wallet_ids == tuple(sorted([a.id, b.id]))


def test_a_fingerprint_tells_requests_apart_but_not_argument_order() -> None:
    one = fingerprint("transfer", sender="a", receiver="b", amount=1)
    assert one == fingerprint("transfer", amount=1, receiver="b", sender="a")
    assert one != fingerprint("transfer", sender="b", receiver="a", amount=1)
    assert one != fingerprint("withdraw", sender="a", receiver="b", amount=1)


@pytest.mark.parametrize("key", ["", " padded", "x" * 256])
def test_an_unusable_idempotency_key_is_invalid_input(key: str) -> None:
    with pytest.raises(InvalidInput):
        check_key(key)


def test_a_wallet_id_must_be_a_uuid() -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_wallet_id("not-a-uuid", "wallet_id")
    assert refused.value.field == "wallet_id"


def test_a_cursor_round_trips_and_garbage_is_refused() -> None:
    position = (datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), uuid.uuid4())
    assert decode_cursor(encode_cursor(*position)) == position
    for garbage in ["", "garbage", "djE6", encode_cursor(*position)[:-3] + "!!!"]:
        with pytest.raises(InvalidCursor):
            decode_cursor(garbage)
