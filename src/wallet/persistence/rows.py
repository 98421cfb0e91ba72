"""Rows to records and records to columns, by column name: the one place that knows how a
Wallet, a Transaction, a Hold, a LedgerEntry (and a PostedEntry, one read back) or an
IdempotencyRecord is laid out in its table
(tables.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from operator import attrgetter
from typing import Any, Protocol, TypeVar

from wallet.domain.errors import ErrorCode
from wallet.domain.ledger import PostedEntry
from wallet.domain.model import (
    Hold,
    HoldStatus,
    IdempotencyRecord,
    LedgerEntry,
    Transaction,
    TransactionStatus,
    TransactionType,
    Wallet,
)
from wallet.domain.money import Currency, Money

_Record = TypeVar("_Record")


class Row(Protocol):
    """A result row by column name: an asyncpg Record or an SQLAlchemy RowMapping."""

    def __getitem__(self, key: str, /) -> Any: ...


# By value, as each row names them: a dict lookup is a tenth of calling the enum.
TYPES = {member.value: member for member in TransactionType}
STATUSES = {member.value: member for member in TransactionStatus}
CODES = {member.value: member for member in ErrorCode}


def wallet_from_row(row: Row) -> Wallet:
    currency = Currency.of(row["currency"])
    return Wallet(
        id=row["id"],
        owner_id=row["owner_id"],
        currency=currency,
        balance=Money(row["balance"], currency),
        held=row["held"],
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def transaction_from_row(row: Row) -> Transaction:
    failure = row["failure_code"]
    return Transaction(
        id=row["id"],
        type=TYPES[row["type"]],
        status=STATUSES[row["status"]],
        amount=Money(row["amount"], Currency.of(row["currency"])),
        sender_wallet_id=row["sender_wallet_id"],
        receiver_wallet_id=row["receiver_wallet_id"],
        client_transaction_id=row["client_transaction_id"],
        failure_code=CODES[failure] if failure is not None else None,
        error_message=row["error_message"],
        created_at=row["created_at"],
        completed_at=row["completed_at"],
        hold_id=row["hold_id"],
        batch_id=row["batch_id"],
        description=row["description"],
        reversal_of=row["reversal_of"],
        reversal_claimed=row["reversal_claimed"],
        reversal_count=row["reversal_count"],
    )


def hold_from_row(row: Row) -> Hold:
    return Hold(
        id=row["id"],
        wallet_id=row["wallet_id"],
        receiver_wallet_id=row["receiver_wallet_id"],
        amount=Money(row["amount"], Currency.of(row["currency"])),
        client_transaction_id=row["client_transaction_id"],
        expires_at=row["expires_at"],
        status=HoldStatus(row["status"]),
        captured=row["captured_amount"],
        capture_id=row["capture_transaction_id"],
        description=row["description"],
        created_at=row["created_at"],
        closed_at=row["closed_at"],
    )


def entry_from_row(row: Row) -> PostedEntry:
    return PostedEntry(
        id=row["id"],
        transaction_id=row["transaction_id"],
        wallet_id=row["wallet_id"],
        delta=row["delta"],
        balance_after=row["balance_after"],
        created_at=row["created_at"],
    )


def idempotency_record_from_row(row: Row) -> IdempotencyRecord:
    return IdempotencyRecord(
        caller_id=row["caller_id"],
        key=row["key"],
        operation=row["operation"],
        fingerprint=row["fingerprint"],
        transaction_id=row["transaction_id"],
        wallet_id=row["wallet_id"],
        hold_id=row["hold_id"],
    )


# Each column's value of a record, by the column's name.
WALLET_COLUMNS: Mapping[str, Callable[[Wallet], Any]] = {
    "id": attrgetter("id"),
    "owner_id": attrgetter("owner_id"),
    "currency": lambda w: w.currency.code,
    "balance": lambda w: w.balance.minor,
    "held": attrgetter("held"),
    "version": attrgetter("version"),
}
TRANSACTION_COLUMNS: Mapping[str, Callable[[Transaction], Any]] = {
    "id": attrgetter("id"),
    "type": lambda t: t.type.value,
    "status": lambda t: t.status.value,
    "amount": lambda t: t.amount.minor,
    "currency": lambda t: t.amount.currency.code,
    "sender_wallet_id": attrgetter("sender_wallet_id"),
    "receiver_wallet_id": attrgetter("receiver_wallet_id"),
    "client_transaction_id": attrgetter("client_transaction_id"),
    "failure_code": lambda t: t.failure_code.value if t.failure_code else None,
    "error_message": attrgetter("error_message"),
    "hold_id": attrgetter("hold_id"),
    "batch_id": attrgetter("batch_id"),
    "description": attrgetter("description"),
    "reversal_of": attrgetter("reversal_of"),
    "reversal_claimed": attrgetter("reversal_claimed"),
    "reversal_count": attrgetter("reversal_count"),
}
HOLD_COLUMNS: Mapping[str, Callable[[Hold], Any]] = {
    "id": attrgetter("id"),
    "wallet_id": attrgetter("wallet_id"),
    "receiver_wallet_id": attrgetter("receiver_wallet_id"),
    "amount": lambda h: h.amount.minor,
    "currency": lambda h: h.amount.currency.code,
    "status": lambda h: h.status.value,
    "captured_amount": attrgetter("captured"),
    "capture_transaction_id": attrgetter("capture_id"),
    "client_transaction_id": attrgetter("client_transaction_id"),
    "description": attrgetter("description"),
    "expires_at": attrgetter("expires_at"),
}
LEDGER_ENTRY_COLUMNS: Mapping[str, Callable[[LedgerEntry], Any]] = {
    name: attrgetter(name) for name in ("transaction_id", "wallet_id", "delta", "balance_after")
}
IDEMPOTENCY_KEY_COLUMNS: Mapping[str, Callable[[IdempotencyRecord], Any]] = {
    name: attrgetter(name)
    for name in (
        "caller_id",
        "key",
        "operation",
        "fingerprint",
        "transaction_id",
        "wallet_id",
        "hold_id",
    )
}


def column_arrays(
    records: Sequence[_Record | None],
    columns: Mapping[str, Callable[[_Record], Any]],
    names: Iterable[str],
) -> list[list[Any]]:
    """The named columns of these records, an array each in `names`' order (parameters for
    unnest()); NULL in every column for a None."""
    return [
        [get(record) if record is not None else None for record in records]
        for get in (columns[name] for name in names)
    ]
