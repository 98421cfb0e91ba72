"""The unit of work over one PostgreSQL transaction (repositories.py holds what it hands out).

Every request that moves money runs through here, so its statements go straight to asyncpg
on a connection borrowed from SQLAlchemy's pool: SQL text prepared once per connection,
no statement building, no result adaptation. That was most of a deposit's CPU (bench/).
The tables themselves are declared once, in tables.py, and the migrations create them.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self
from uuid import UUID

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from wallet.domain.errors import ConcurrencyConflict
from wallet.domain.model import (
    IdempotencyRecord,
    LedgerEntry,
    Transaction,
    Wallet,
    WalletFacts,
)
from wallet.domain.ports import CommitListener
from wallet.persistence import statements as sql
from wallet.persistence.database import is_disconnect
from wallet.persistence.repositories import (
    FactBook,
    SqlHolds,
    SqlIdempotencyKeys,
    SqlTransactions,
    SqlWallets,
)
from wallet.persistence.rows import (
    IDEMPOTENCY_KEY_COLUMNS,
    LEDGER_ENTRY_COLUMNS,
    TRANSACTION_COLUMNS,
    WALLET_COLUMNS,
    column_arrays,
    transaction_from_row,
)

# deadlock_detected and serialization_failure: PostgreSQL aborted us to let another through.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})


class SqlUnitOfWork:
    """`async with SqlUnitOfWork(engine) as uow: ...; await uow.commit()`."""

    def __init__(
        self,
        engine: AsyncEngine,
        listeners: Sequence[CommitListener] = (),
        facts: FactBook | None = None,
    ) -> None:
        self._engine = engine
        self._listeners = listeners
        self.facts = facts or FactBook()
        self._pooled: AsyncConnection | None = None
        self._connection: asyncpg.Connection | None = None
        self._transaction: Any = None
        self._committed = False
        self.wallets = SqlWallets(self)
        self.transactions = SqlTransactions(self)
        self.idempotency_keys = SqlIdempotencyKeys(self)
        self.holds = SqlHolds(self)
        self.wallets_changed: dict[UUID, Wallet] = {}
        self.transactions_changed: dict[UUID, Transaction] = {}

    @property
    def connection(self) -> asyncpg.Connection:
        assert self._connection is not None, "outside `async with`"
        return self._connection

    async def __aenter__(self) -> Self:
        self._committed = False
        self.wallets_changed = {}
        self.transactions_changed = {}
        pooled = await self._engine.connect()
        try:
            connection = (await pooled.get_raw_connection()).driver_connection
            assert connection is not None
        except BaseException as error:
            await self._give_back(pooled, broken=is_disconnect(error))
            raise
        self._pooled, self._connection, self._transaction = pooled, connection, None
        return self

    async def begun(self) -> asyncpg.Connection:
        """The connection, inside this unit of work's transaction, begun on first use (a
        submission alone, one statement, needs none: see submit_and_commit)."""
        assert not self._committed, "a committed unit of work writes nothing more"
        connection = self.connection
        if self._transaction is None:
            transaction = connection.transaction()
            await transaction.start()
            self._transaction = transaction
        return connection

    async def reading(self) -> asyncpg.Connection:
        """The connection for a read: in the transaction while the unit of work may still
        write, on its own once it has committed (a read needs no transaction to be whole)."""
        return self.connection if self._committed else await self.begun()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pooled, connection, transaction = self._pooled, self._connection, self._transaction
        assert pooled is not None
        assert connection is not None
        self._pooled = self._connection = self._transaction = None
        broken = exc is not None and is_disconnect(exc)
        try:
            if (
                transaction is not None
                and not self._committed
                and not broken
                and not connection.is_closed()
            ):
                await transaction.rollback()
        except BaseException as error:
            broken = broken or is_disconnect(error)
            if not broken:
                raise
        finally:
            await self._give_back(pooled, broken=broken or connection.is_closed())
        if getattr(exc, "sqlstate", None) in RETRYABLE_SQLSTATES:
            raise ConcurrencyConflict(str(exc)) from exc
        if self._committed:
            # Whatever happened after the commit, the change is in PostgreSQL: the cache and
            # the subscribers must hear of it. And only now, with the connection back in the
            # pool: a listener's Redis round trip should not hold a PostgreSQL connection.
            wallets_changed = list(self.wallets_changed.values())
            transactions_changed = list(self.transactions_changed.values())
            for listener in self._listeners:
                await listener(wallets_changed, transactions_changed)

    @staticmethod
    async def _give_back(pooled: AsyncConnection, *, broken: bool) -> None:
        if broken:
            # The pool must not hand this connection out again.
            await pooled.invalidate()
        await pooled.close()

    async def write(
        self,
        *,
        recorded: Sequence[Transaction] = (),
        decided: Sequence[Transaction] = (),
        balances: Sequence[Wallet] = (),
        entries: Sequence[LedgerEntry] = (),
        originals: Sequence[Transaction] = (),
    ) -> list[Transaction]:
        arrays: dict[str, list[list[Any]]] = {}
        if recorded:
            arrays["recorded"] = column_arrays(recorded, TRANSACTION_COLUMNS, sql.names("recorded"))
        if decided:
            arrays["decided"] = column_arrays(decided, TRANSACTION_COLUMNS, sql.names("decided"))
        if balances:
            arrays["balances"] = column_arrays(balances, WALLET_COLUMNS, sql.names("balances"))
        if entries:
            arrays["entries"] = column_arrays(entries, LEDGER_ENTRY_COLUMNS, sql.names("entries"))
        if originals:
            names = sql.names("originals")
            arrays["originals"] = column_arrays(originals, TRANSACTION_COLUMNS, names)
        if not arrays:
            return []
        statement = sql.write_statement(tuple(arrays))
        rows = await (await self.begun()).fetch(
            statement, *(a for part in arrays.values() for a in part)
        )
        written_at = rows[0]["written_at"]
        written = rows[0]["decided"]
        if written is not None and written != len({t.id for t in decided}):
            # Each was locked when read: only a bug gets here, and nothing is committed.
            raise RuntimeError(f"{written} of {len(decided)} decisions written")
        for wallet in {w.id: w for w in balances}.values():
            wallet.version += 1
            wallet.updated_at = written_at
            self.wallets_changed[wallet.id] = wallet
        for transaction in decided:
            # All else in its row is what it holds: it was read whole, and only decided since.
            transaction.completed_at = transaction.completed_at or written_at
        stored = {row["id"]: transaction_from_row(row) for row in rows if row["id"] is not None}
        stored |= {t.id: t for t in decided}
        self.transactions_changed.update(stored)
        return [stored[t.id] for t in (*recorded, *decided)]

    async def submit_and_commit(
        self, submissions: Sequence[tuple[Transaction, IdempotencyRecord | None]]
    ) -> list[Transaction | None]:
        if not submissions:
            await self.commit()
            return []
        transactions = [t for t, _ in submissions]
        claims = [c for _, c in submissions]
        alone = self._transaction is None
        # First in the unit of work, it is one statement committed as it ends: no BEGIN or
        # COMMIT round trips, which were half a submission's time.
        connection = self.connection if alone else await self.begun()
        rows = await connection.fetch(
            sql.SUBMIT,
            *column_arrays(transactions, TRANSACTION_COLUMNS, sql.SUBMITTED),
            *column_arrays(claims, IDEMPOTENCY_KEY_COLUMNS, sql.SUBMITTED_KEYS),
        )
        if alone:
            self._committed = True
        else:
            await self.commit()
        submitted = {row["id"]: transaction_from_row(row) for row in rows}
        self.transactions_changed.update(submitted)
        # None where the key was taken: nothing was written for that one.
        return [submitted.get(t.id) for t in transactions]

    async def commit(self) -> None:
        assert self._connection is not None, "outside `async with`"
        if self._transaction is not None and not self._committed:
            await self._transaction.commit()
            # A wallet created here is known from now on: its first withdrawal or transfer
            # need not ask PostgreSQL for its currency and owner.
            for wallet in self.wallets_changed.values():
                if self.facts.get(wallet.id) is None:
                    self.facts.learn(wallet.id, WalletFacts(wallet.currency, wallet.owner_id))
        self._committed = True
