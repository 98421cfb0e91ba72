"""The unit of work over one PostgreSQL transaction, and the repositories it hands out."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any, Self
from uuid import UUID

from sqlalchemy import RowMapping, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from wallet.domain.errors import ConcurrencyConflict, ErrorCode
from wallet.domain.model import (
    IdempotencyRecord,
    LedgerEntry,
    Transaction,
    TransactionStatus,
    TransactionType,
    Wallet,
)
from wallet.domain.money import Currency, Money
from wallet.domain.ports import CommitListener
from wallet.persistence.tables import idempotency_keys, ledger_entries, transactions, wallets

# deadlock_detected and serialization_failure: PostgreSQL aborted us to let another through.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})


def sqlstate(error: DBAPIError) -> str | None:
    orig = error.orig
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return str(state) if state is not None else None


def wallet_from_row(row: RowMapping) -> Wallet:
    currency = Currency.of(row["currency"])
    return Wallet(
        id=row["id"],
        currency=currency,
        balance=Money(row["balance"], currency),
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def transaction_from_row(row: RowMapping) -> Transaction:
    failure = row["failure_code"]
    return Transaction(
        id=row["id"],
        type=TransactionType(row["type"]),
        status=TransactionStatus(row["status"]),
        amount=Money(row["amount"], Currency.of(row["currency"])),
        sender_wallet_id=row["sender_wallet_id"],
        receiver_wallet_id=row["receiver_wallet_id"],
        client_transaction_id=row["client_transaction_id"],
        failure_code=ErrorCode(failure) if failure is not None else None,
        error_message=row["error_message"],
        created_at=row["created_at"],
        completed_at=row["completed_at"],
    )


def _transaction_values(transaction: Transaction) -> dict[str, Any]:
    return {
        "id": transaction.id,
        "type": transaction.type.value,
        "status": transaction.status.value,
        "amount": transaction.amount.minor,
        "currency": transaction.amount.currency.code,
        "sender_wallet_id": transaction.sender_wallet_id,
        "receiver_wallet_id": transaction.receiver_wallet_id,
        "client_transaction_id": transaction.client_transaction_id,
        "failure_code": transaction.failure_code.value if transaction.failure_code else None,
        "error_message": transaction.error_message,
    }


_SAVE_BALANCES = text(
    """
    UPDATE wallets AS w
    SET balance = v.balance, version = w.version + 1, updated_at = clock_timestamp()
    FROM unnest(CAST(:ids AS uuid[]), CAST(:balances AS bigint[])) AS v(id, balance)
    WHERE w.id = v.id
    RETURNING w.id, w.version, w.updated_at
    """
)

_SAVE_OUTCOMES = text(
    """
    UPDATE transactions AS t
    SET status = v.status, failure_code = v.code, error_message = v.message,
        completed_at = coalesce(t.completed_at, clock_timestamp())
    FROM unnest(
        CAST(:ids AS uuid[]), CAST(:statuses AS text[]),
        CAST(:codes AS text[]), CAST(:messages AS text[])
    ) AS v(id, status, code, message)
    WHERE t.id = v.id
    RETURNING t.*
    """
).columns(*transactions.c)


class SqlWallets:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection
        self.changed: dict[UUID, Wallet] = {}

    async def add(self, wallet: Wallet) -> Wallet:
        result = await self._connection.execute(
            insert(wallets)
            .values(id=wallet.id, currency=wallet.currency.code, balance=wallet.balance.minor)
            .returning(*wallets.c)
        )
        added = wallet_from_row(result.mappings().one())
        self.changed[added.id] = added
        return added

    async def get(self, wallet_id: UUID) -> Wallet | None:
        result = await self._connection.execute(select(wallets).where(wallets.c.id == wallet_id))
        row = result.mappings().one_or_none()
        return wallet_from_row(row) if row is not None else None

    async def get_many(self, wallet_ids: Iterable[UUID]) -> dict[UUID, Wallet]:
        result = await self._connection.execute(
            select(wallets).where(wallets.c.id.in_(list(wallet_ids)))
        )
        return {row["id"]: wallet_from_row(row) for row in result.mappings()}

    async def lock(self, wallet_ids: Iterable[UUID]) -> dict[UUID, Wallet]:
        ids = sorted(set(wallet_ids))
        # LockRows sits above the Sort in the plan, so the rows are locked in id order.
        # FOR NO KEY UPDATE, not FOR UPDATE: inserting a transaction takes KEY SHARE locks on
        # its wallets (the foreign keys), which FOR UPDATE would conflict with, so recording
        # a transfer would wait for (and deadlock with) settlements of the same wallets.
        result = await self._connection.execute(
            select(wallets)
            .where(wallets.c.id.in_(ids))
            .order_by(wallets.c.id)
            .with_for_update(key_share=True)
        )
        return {row["id"]: wallet_from_row(row) for row in result.mappings()}

    async def save(self, changed: Sequence[Wallet]) -> None:
        if not changed:
            return
        # One statement for the whole batch: the new balances travel as two arrays.
        result = await self._connection.execute(
            _SAVE_BALANCES,
            {"ids": [w.id for w in changed], "balances": [w.balance.minor for w in changed]},
        )
        stored = {row.id: (row.version, row.updated_at) for row in result}
        for wallet in changed:
            wallet.version, wallet.updated_at = stored[wallet.id]
            self.changed[wallet.id] = wallet


class SqlTransactions:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection
        self.changed: dict[UUID, Transaction] = {}

    async def add(self, transaction: Transaction) -> Transaction:
        values = _transaction_values(transaction)
        if transaction.is_final:
            values["completed_at"] = func.clock_timestamp()
        result = await self._connection.execute(
            insert(transactions).values(**values).returning(*transactions.c)
        )
        added = transaction_from_row(result.mappings().one())
        self.changed[added.id] = added
        return added

    async def get(self, transaction_id: UUID, *, lock: bool = False) -> Transaction | None:
        query = select(transactions).where(transactions.c.id == transaction_id)
        if lock:
            query = query.with_for_update()
        row = (await self._connection.execute(query)).mappings().one_or_none()
        return transaction_from_row(row) if row is not None else None

    async def pending(
        self, transaction_ids: Sequence[UUID], *, lock: bool = False
    ) -> list[Transaction]:
        query = (
            select(transactions)
            .where(
                transactions.c.id.in_(transaction_ids),
                transactions.c.status == TransactionStatus.PENDING.value,
            )
            .order_by(transactions.c.created_at, transactions.c.id)
        )
        if lock:
            query = query.with_for_update()
        result = await self._connection.execute(query)
        return [transaction_from_row(row) for row in result.mappings()]

    async def save_many(self, changed: Sequence[Transaction]) -> list[Transaction]:
        if not changed:
            return []
        result = await self._connection.execute(
            _SAVE_OUTCOMES,
            {
                "ids": [t.id for t in changed],
                "statuses": [t.status.value for t in changed],
                "codes": [t.failure_code.value if t.failure_code else None for t in changed],
                "messages": [t.error_message for t in changed],
            },
        )
        saved = {row["id"]: transaction_from_row(row) for row in result.mappings()}
        self.changed.update(saved)
        return [saved[t.id] for t in changed]

    async def save(self, transaction: Transaction) -> Transaction:
        values: dict[str, Any] = {
            "status": transaction.status.value,
            "failure_code": transaction.failure_code.value if transaction.failure_code else None,
            "error_message": transaction.error_message,
        }
        if transaction.is_final:
            values["completed_at"] = func.coalesce(
                transactions.c.completed_at, func.clock_timestamp()
            )
        result = await self._connection.execute(
            update(transactions)
            .where(transactions.c.id == transaction.id)
            .values(**values)
            .returning(*transactions.c)
        )
        saved = transaction_from_row(result.mappings().one())
        self.changed[saved.id] = saved
        return saved

    async def add_entries(self, entries: Sequence[LedgerEntry]) -> None:
        if not entries:
            return
        await self._connection.execute(
            insert(ledger_entries),
            [
                {
                    "transaction_id": e.transaction_id,
                    "wallet_id": e.wallet_id,
                    "delta": e.delta,
                    "balance_after": e.balance_after,
                }
                for e in entries
            ],
        )


class SqlIdempotencyKeys:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def claim(self, record: IdempotencyRecord) -> IdempotencyRecord | None:
        # ON CONFLICT waits for a concurrent holder of the key to commit or roll back,
        # so a duplicate sent at the same time sees the first one's outcome.
        inserted = await self._connection.execute(
            insert(idempotency_keys)
            .values(
                key=record.key,
                operation=record.operation,
                fingerprint=record.fingerprint,
                transaction_id=record.transaction_id,
                wallet_id=record.wallet_id,
            )
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(idempotency_keys.c.key)
        )
        if inserted.first() is not None:
            return None
        row = (
            (
                await self._connection.execute(
                    select(idempotency_keys).where(idempotency_keys.c.key == bindparam("key")),
                    {"key": record.key},
                )
            )
            .mappings()
            .one()
        )
        return IdempotencyRecord(
            key=row["key"],
            operation=row["operation"],
            fingerprint=row["fingerprint"],
            transaction_id=row["transaction_id"],
            wallet_id=row["wallet_id"],
        )


class SqlUnitOfWork:
    """`async with SqlUnitOfWork(engine) as uow: ...; await uow.commit()`."""

    wallets: SqlWallets
    transactions: SqlTransactions
    idempotency_keys: SqlIdempotencyKeys

    def __init__(self, engine: AsyncEngine, listeners: Sequence[CommitListener] = ()) -> None:
        self._engine = engine
        self._listeners = listeners
        self._connection: AsyncConnection | None = None
        self._committed = False

    async def __aenter__(self) -> Self:
        self._committed = False
        connection = await self._engine.connect()
        await connection.begin()
        self._connection = connection
        self.wallets = SqlWallets(connection)
        self.transactions = SqlTransactions(connection)
        self.idempotency_keys = SqlIdempotencyKeys(connection)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        connection = self._connection
        assert connection is not None
        self._connection = None
        try:
            if connection.in_transaction():
                await connection.rollback()
        finally:
            await connection.close()
        if isinstance(exc, DBAPIError) and sqlstate(exc) in RETRYABLE_SQLSTATES:
            raise ConcurrencyConflict(str(exc.orig)) from exc
        if self._committed:
            # Whatever happened after the commit, the change is in PostgreSQL: the cache and
            # the subscribers must hear of it. And only now, with the connection back in the
            # pool: a listener's Redis round trip should not hold a PostgreSQL connection.
            wallets_changed = list(self.wallets.changed.values())
            transactions_changed = list(self.transactions.changed.values())
            for listener in self._listeners:
                await listener(wallets_changed, transactions_changed)

    async def commit(self) -> None:
        assert self._connection is not None
        await self._connection.commit()
        self._committed = True
