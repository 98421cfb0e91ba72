"""The repositories a SQL unit of work hands out: wallets, transactions, holds, idempotency
keys."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from uuid import UUID

import asyncpg

from wallet.domain.model import (
    Hold,
    IdempotencyRecord,
    ScopedKey,
    Transaction,
    TransactionStatus,
    Wallet,
    WalletFacts,
)
from wallet.domain.money import Currency
from wallet.persistence import statements as sql
from wallet.persistence.rows import (
    HOLD_COLUMNS,
    IDEMPOTENCY_KEY_COLUMNS,
    column_arrays,
    hold_from_row,
    idempotency_record_from_row,
    transaction_from_row,
    wallet_from_row,
)

if TYPE_CHECKING:
    from wallet.persistence.unit_of_work import SqlUnitOfWork

_MS = timedelta(milliseconds=1)
# Wallets whose facts a process remembers; past this it forgets them all and starts over.
MAX_REMEMBERED_WALLETS = 200_000


class FactBook:
    """The currency and owner of each wallet this process has met. Shared by its units of
    work: both are fixed when a wallet is created and wallets are never deleted, so what is
    remembered is never out of date."""

    def __init__(self) -> None:
        self._known: dict[UUID, WalletFacts] = {}

    def get(self, wallet_id: UUID) -> WalletFacts | None:
        return self._known.get(wallet_id)

    def learn(self, wallet_id: UUID, facts: WalletFacts) -> None:
        if len(self._known) >= MAX_REMEMBERED_WALLETS:
            self._known.clear()
        self._known[wallet_id] = facts


class SqlWallets:
    def __init__(self, uow: SqlUnitOfWork) -> None:
        self._uow = uow

    async def add(self, wallet: Wallet) -> Wallet:
        row = await (await self._uow.begun()).fetchrow(
            sql.ADD_WALLET, wallet.id, wallet.owner_id, wallet.currency.code, wallet.balance.minor
        )
        added = wallet_from_row(row)
        self._uow.wallets_changed[added.id] = added
        return added

    async def get(self, wallet_id: UUID) -> Wallet | None:
        return (await self.get_many([wallet_id])).get(wallet_id)

    async def get_many(self, wallet_ids: Iterable[UUID]) -> dict[UUID, Wallet]:
        rows = await (await self._uow.reading()).fetch(sql.GET_WALLETS, list(wallet_ids))
        return {row["id"]: wallet_from_row(row) for row in rows}

    async def facts(self, wallet_ids: Iterable[UUID]) -> dict[UUID, WalletFacts]:
        book = self._uow.facts
        known: dict[UUID, WalletFacts] = {}
        unknown: list[UUID] = []
        for wallet_id in wallet_ids:
            facts = book.get(wallet_id)
            if facts is None:
                unknown.append(wallet_id)
            else:
                known[wallet_id] = facts
        if unknown:
            # Outside the transaction, if none is open: nothing else depends on this read.
            for row in await self._uow.connection.fetch(sql.FACTS, unknown):
                facts = WalletFacts(Currency.of(row["currency"]), row["owner_id"])
                known[row["id"]] = facts
                book.learn(row["id"], facts)
        return known

    async def lock(
        self,
        wallet_ids: Iterable[UUID],
        *,
        skip_locked: bool = False,
        within: timedelta | None = None,
    ) -> dict[UUID, Wallet]:
        ids = sorted(set(wallet_ids))
        if not ids:
            return {}
        connection = await self._uow.begun()
        query = sql.LOCK_FREE_WALLETS if skip_locked else sql.LOCK_WALLETS
        if within is None:
            rows = await connection.fetch(query, ids)
        else:
            # In a savepoint: a lock not had in time aborts only the savepoint.
            try:
                async with connection.transaction():
                    await connection.execute(sql.LOCK_TIMEOUT, f"{within // _MS}ms")
                    rows = await connection.fetch(query, ids)
                    await connection.execute(sql.LOCK_TIMEOUT, "0")
            except asyncpg.LockNotAvailableError:
                return {}
        return {row["id"]: wallet_from_row(row) for row in rows}


class SqlTransactions:
    def __init__(self, uow: SqlUnitOfWork) -> None:
        self._uow = uow

    async def get(self, transaction_id: UUID, *, lock: bool = False) -> Transaction | None:
        query = sql.GET_TRANSACTION + " FOR UPDATE" if lock else sql.GET_TRANSACTION
        connection = await (self._uow.begun() if lock else self._uow.reading())
        row = await connection.fetchrow(query, transaction_id)
        return transaction_from_row(row) if row is not None else None

    async def lock(self, transaction_ids: Iterable[UUID]) -> dict[UUID, Transaction]:
        connection = await self._uow.begun()
        rows = await connection.fetch(sql.LOCK_TRANSACTIONS, list(transaction_ids))
        return {row["id"]: transaction_from_row(row) for row in rows}

    async def lock_pending(self, transaction_ids: Sequence[UUID]) -> set[UUID]:
        connection = await self._uow.begun()
        rows = await connection.fetch(sql.LOCK_ASKED, list(dict.fromkeys(transaction_ids)))
        return {row["id"] for row in rows if row["status"] == _PENDING}

    async def pending(self, transaction_ids: Sequence[UUID]) -> list[Transaction]:
        connection = await self._uow.reading()
        asked = list(dict.fromkeys(transaction_ids))
        rows = _pending(await connection.fetch(sql.ASKED, asked))
        batches = list({row["batch_id"] for row in rows if row["batch_id"] is not None})
        if batches:
            found = {row["id"] for row in rows}
            linked = _pending(await connection.fetch(sql.ASKED_BATCHES, batches))
            rows += [row for row in linked if row["id"] not in found]
            rows.sort(key=lambda row: (row["created_at"], row["id"]))
        return [transaction_from_row(row) for row in rows]


_PENDING = TransactionStatus.PENDING.value


def _pending(rows: list[asyncpg.Record]) -> list[asyncpg.Record]:
    return [row for row in rows if row["status"] == _PENDING]


class SqlHolds:
    def __init__(self, uow: SqlUnitOfWork) -> None:
        self._uow = uow

    async def add(self, hold: Hold) -> Hold:
        (values,) = zip(*column_arrays([hold], HOLD_COLUMNS, sql.ADDED_HOLD), strict=True)
        row = await (await self._uow.begun()).fetchrow(sql.ADD_HOLD, *values)
        return hold_from_row(row)

    async def get(self, hold_id: UUID, *, lock: bool = False) -> Hold | None:
        query = sql.GET_HOLD + " FOR UPDATE" if lock else sql.GET_HOLD
        connection = await (self._uow.begun() if lock else self._uow.reading())
        row = await connection.fetchrow(query, hold_id)
        return hold_from_row(row) if row is not None else None

    async def due(self, at: datetime, limit: int) -> list[Hold]:
        rows = await (await self._uow.reading()).fetch(sql.DUE_HOLDS, at, limit)
        return [hold_from_row(row) for row in rows]

    async def lock(self, hold_ids: Sequence[UUID]) -> list[Hold]:
        if not hold_ids:
            return []
        rows = await (await self._uow.begun()).fetch(sql.LOCK_HOLDS, list(hold_ids))
        return [hold_from_row(row) for row in rows]

    async def close(self, holds: Sequence[Hold]) -> list[Hold]:
        if not holds:
            return []
        arrays = column_arrays(holds, HOLD_COLUMNS, sql.CLOSED_HOLD)
        rows = await (await self._uow.begun()).fetch(sql.CLOSE_HOLDS, *arrays)
        closed = {row["id"]: hold_from_row(row) for row in rows}
        # Each was locked and ACTIVE when read: the update cannot miss one.
        assert len(closed) == len(holds), "a locked ACTIVE hold was closed under us"
        return [closed[h.id] for h in holds]


class SqlIdempotencyKeys:
    def __init__(self, uow: SqlUnitOfWork) -> None:
        self._uow = uow

    async def claim(self, record: IdempotencyRecord) -> IdempotencyRecord | None:
        return (await self.claim_many([record])).get(record.scoped_key)

    async def claim_many(
        self, records: Sequence[IdempotencyRecord]
    ) -> dict[ScopedKey, IdempotencyRecord]:
        if not records:
            return {}
        connection = await self._uow.begun()
        claimed = {
            (row["caller_id"], row["key"])
            for row in await connection.fetch(
                sql.CLAIM_KEYS, *column_arrays(records, IDEMPOTENCY_KEY_COLUMNS, sql.CLAIMED)
            )
        }
        taken = [r.scoped_key for r in records if r.scoped_key not in claimed]
        if not taken:
            return {}
        return {
            (row["caller_id"], row["key"]): idempotency_record_from_row(row)
            for row in await connection.fetch(sql.GET_KEYS, *_pairs(taken))
        }

    async def release(self, keys: Sequence[ScopedKey]) -> None:
        await (await self._uow.begun()).execute(sql.RELEASE_KEYS, *_pairs(keys))

    async def get(self, key: ScopedKey) -> IdempotencyRecord | None:
        row = await (await self._uow.reading()).fetchrow(sql.GET_KEYS, *_pairs([key]))
        return idempotency_record_from_row(row) if row is not None else None


def _pairs(keys: Sequence[ScopedKey]) -> tuple[list[str], list[str]]:
    """Scoped keys as the two arrays GET_KEYS and RELEASE_KEYS take: callers, keys."""
    return [caller for caller, _ in keys], [key for _, key in keys]
