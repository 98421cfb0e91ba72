"""What the cache stores in Redis: a wallet's entry and the head of a wallet's history."""

from __future__ import annotations

import functools
import json
from typing import Any
from uuid import UUID

from wallet.domain.model import Page, Transaction, Wallet
from wallet.domain.money import Currency, Money
from wallet.persistence.codec import datetime_of, transaction_data, transaction_of, when_text


def encode_wallet(wallet: Wallet) -> str:
    data = (
        wallet.version,
        wallet.currency.code,
        wallet.balance.minor,
        when_text(wallet.created_at),
        when_text(wallet.updated_at),
    )
    return json.dumps(data, separators=(",", ":"))


@functools.lru_cache(maxsize=16_384)
def decoded_wallet(wallet_id: UUID, entry: bytes) -> Wallet:
    """decode_wallet, remembered: for entries as Redis hands them over."""
    # Keyed by the exact bytes, which hold the version and every field: never stale. Hot
    # wallets are read far more often than they change, and decoding costs more than the
    # rest of the cache's work on a hit.
    return decode_wallet(wallet_id, entry)


def decode_wallet(wallet_id: UUID, entry: bytes | str) -> Wallet:
    version, code, balance, created_at, updated_at = json.loads(entry)
    currency = Currency.of(code)
    return Wallet(
        id=wallet_id,
        currency=currency,
        balance=Money(balance, currency),
        version=version,
        created_at=datetime_of(created_at),
        updated_at=datetime_of(updated_at),
    )


def encode_head(head: Page) -> str:
    """The newest transactions of a wallet, and whether they are all it has."""
    rows = [transaction_data(t) for t in head.transactions]
    return json.dumps({"complete": not head.has_next, "rows": rows}, separators=(",", ":"))


def decode_head(entry: bytes | str) -> tuple[list[Transaction], bool]:
    rows, complete = head_rows(entry)
    return [transaction_of(row) for row in rows], complete


def head_rows(entry: bytes | str) -> tuple[list[Any], bool]:
    """The head's transactions still encoded, and whether they are all the wallet has."""
    data = json.loads(entry)
    return data["rows"], bool(data["complete"])


class Keys:
    """Where the cache keeps each entry: every key starts with the cache's prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def wallet(self, wallet_id: UUID) -> str:
        return f"{self.prefix}:wallet:{wallet_id}"

    def history(self, wallet_id: UUID) -> str:
        return f"{self.prefix}:history:{wallet_id}"
