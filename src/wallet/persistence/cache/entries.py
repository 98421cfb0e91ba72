"""What the cache stores in Redis, and under which key: a wallet's entry holds the wallet as
the codec writes it (persistence/codec.py); a history's, the head of the wallet's history."""

from __future__ import annotations

import functools
from typing import Any
from uuid import UUID

from wallet.domain.model import Page, Transaction, Wallet
from wallet.persistence.codec import (
    from_json,
    to_json,
    transaction_data,
    transaction_of,
    wallet_from_json,
)


@functools.lru_cache(maxsize=16_384)
def decoded_wallet(entry: bytes) -> Wallet:
    """wallet_from_json, remembered: for entries as Redis hands them over."""
    # Keyed by the exact bytes, which hold the id, the version and every field: never stale.
    # Hot wallets are read far more often than they change, and decoding costs more than the
    # rest of the cache's work on a hit.
    return wallet_from_json(entry)


def encode_head(head: Page) -> str:
    """The newest transactions of a wallet, and whether they are all it has.

    Kept as a table: a list per field name, each transaction at one index in all of them.
    Each name is written once, not once per transaction: a list of objects made the entry
    nearly twice as long, and parsing it (every cached history read does) half as fast.
    """
    rows = [transaction_data(t) for t in head.transactions]
    columns = {name: [row[name] for row in rows] for name in rows[0]} if rows else {}
    return to_json({"complete": not head.has_next, "transactions": columns})


def decode_head(entry: bytes | str) -> tuple[list[Transaction], bool]:
    table = HeadTable(entry)
    return [table.transaction(i) for i in range(len(table))], table.complete


class HeadTable:
    """A cached head parsed, its transactions made one at a time, only those asked for."""

    def __init__(self, entry: bytes | str) -> None:
        data = from_json(entry)
        self.complete = bool(data["complete"])
        self._columns: dict[str, list[Any]] = data["transactions"]

    def __len__(self) -> int:
        return len(self._columns["id"]) if self._columns else 0

    def kind(self, i: int) -> tuple[str, str]:
        """The type and status of the i-th transaction, newest first."""
        return self._columns["type"][i], self._columns["status"][i]

    def transaction(self, i: int) -> Transaction:
        return transaction_of({name: column[i] for name, column in self._columns.items()})


class Keys:
    """Where the cache keeps each entry: every key starts with the cache's prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def wallet(self, wallet_id: UUID) -> str:
        return f"{self.prefix}:wallet:{wallet_id}"

    def history(self, wallet_id: UUID) -> str:
        return f"{self.prefix}:history:{wallet_id}"
