"""Transactions and timestamps as JSON, one format for every place that keeps them in Redis
(the read cache's history pages and the pub/sub change feed)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID

from wallet.domain.errors import ErrorCode
from wallet.domain.model import Transaction, TransactionStatus, TransactionType
from wallet.domain.money import Currency, Money


def when_text(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def datetime_of(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def text_of(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _uuid_of(value: str | None) -> UUID | None:
    return UUID(value) if value is not None else None


def transaction_data(t: Transaction) -> list[Any]:
    return [
        str(t.id),
        t.type.value,
        t.status.value,
        t.amount.minor,
        t.amount.currency.code,
        str(t.sender_wallet_id) if t.sender_wallet_id else None,
        str(t.receiver_wallet_id) if t.receiver_wallet_id else None,
        t.client_transaction_id,
        t.failure_code.value if t.failure_code else None,
        t.error_message,
        when_text(t.created_at),
        when_text(t.completed_at),
    ]


def transaction_of(data: list[Any]) -> Transaction:
    (ident, kind, status, amount, code, sender, receiver, key, failure, message, at, done) = data
    return Transaction(
        id=UUID(ident),
        type=TransactionType(kind),
        status=TransactionStatus(status),
        amount=Money(amount, Currency.of(code)),
        sender_wallet_id=_uuid_of(sender),
        receiver_wallet_id=_uuid_of(receiver),
        client_transaction_id=key,
        failure_code=ErrorCode(failure) if failure is not None else None,
        error_message=message,
        created_at=datetime_of(at),
        completed_at=datetime_of(done),
    )


def transaction_to_json(transaction: Transaction) -> str:
    return json.dumps(transaction_data(transaction), separators=(",", ":"))


def transaction_from_json(text: str | bytes) -> Transaction:
    return transaction_of(json.loads(text))
