"""Records to columns and rows to records, by the names tables.py declares."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from wallet.domain.errors import ErrorCode
from wallet.domain.model import (
    IdempotencyRecord,
    Transaction,
    TransactionStatus,
    TransactionType,
    Wallet,
)
from wallet.domain.money import Currency, Money
from wallet.persistence import tables
from wallet.persistence.rows import (
    IDEMPOTENCY_KEY_COLUMNS,
    LEDGER_ENTRY_COLUMNS,
    TRANSACTION_COLUMNS,
    WALLET_COLUMNS,
    column_arrays,
    idempotency_record_from_row,
    transaction_from_row,
    wallet_from_row,
)

USD = Currency.of("USD")
AT = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("columns", "table"),
    [
        (WALLET_COLUMNS, tables.wallets),
        (TRANSACTION_COLUMNS, tables.transactions),
        (LEDGER_ENTRY_COLUMNS, tables.ledger_entries),
        (IDEMPOTENCY_KEY_COLUMNS, tables.idempotency_keys),
    ],
)
def test_every_column_a_record_is_written_to_is_a_column_of_its_table(
    columns: dict[str, object], table: object
) -> None:
    assert set(columns) <= set(table.c.keys())  # type: ignore[attr-defined]


def test_a_transaction_written_as_columns_reads_back_as_the_same_transaction() -> None:
    transaction = Transaction(
        id=uuid4(),
        type=TransactionType.WITHDRAWAL,
        status=TransactionStatus.FAILED,
        amount=Money(250, USD),
        sender_wallet_id=uuid4(),
        receiver_wallet_id=None,
        client_transaction_id="key",
        failure_code=ErrorCode.INSUFFICIENT_FUNDS,
        error_message="too little",
        created_at=AT,
        completed_at=AT,
    )
    names = list(TRANSACTION_COLUMNS)
    row = {
        name: array[0]
        for name, array in zip(
            names, column_arrays([transaction], TRANSACTION_COLUMNS, names), strict=True
        )
    }
    row |= {"created_at": AT, "completed_at": AT}
    assert transaction_from_row(row) == transaction


def test_a_wallet_written_as_columns_reads_back_as_the_same_wallet() -> None:
    wallet = Wallet(
        uuid4(), "someone", USD, Money(1_000, USD), version=3, created_at=AT, updated_at=AT
    )
    names = list(WALLET_COLUMNS)
    row = {
        name: array[0]
        for name, array in zip(names, column_arrays([wallet], WALLET_COLUMNS, names), strict=True)
    }
    row |= {"created_at": AT, "updated_at": AT}
    assert wallet_from_row(row) == wallet


def test_columns_are_in_the_order_asked_and_null_for_a_missing_record() -> None:
    record = IdempotencyRecord("someone", "k", "deposit", "f" * 64, transaction_id=uuid4())
    arrays = column_arrays([record, None], IDEMPOTENCY_KEY_COLUMNS, ["fingerprint", "key"])
    assert arrays == [["f" * 64, None], ["k", None]]
    names = list(IDEMPOTENCY_KEY_COLUMNS)
    row = dict(
        zip(
            names,
            (a[0] for a in column_arrays([record], IDEMPOTENCY_KEY_COLUMNS, names)),
            strict=True,
        )
    )
    assert idempotency_record_from_row(row) == record
