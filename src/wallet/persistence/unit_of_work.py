"""The unit of work over one PostgreSQL transaction, and the repositories it hands out.

Every request that moves money runs through here, so its statements go straight to asyncpg
on a connection borrowed from SQLAlchemy's pool: SQL text prepared once per connection,
no statement building, no result adaptation. That was most of a deposit's CPU (bench/).
The tables themselves are declared once, in tables.py, and the migrations create them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
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
)
from wallet.domain.money import Currency
from wallet.domain.ports import CommitListener
from wallet.persistence.database import is_disconnect
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

# deadlock_detected and serialization_failure: PostgreSQL aborted us to let another through.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
# Wallets whose currency a process remembers; past this it forgets them all and starts over.
MAX_REMEMBERED_CURRENCIES = 200_000


_ADD_WALLET = """
    INSERT INTO wallets (id, currency, balance) VALUES ($1, $2, $3)
    RETURNING *
"""
_GET_WALLETS = "SELECT * FROM wallets WHERE id = ANY($1::uuid[])"
_CURRENCIES = "SELECT id, currency FROM wallets WHERE id = ANY($1::uuid[])"
# LockRows sits above the Sort in the plan, so the rows are locked in id order. FOR NO KEY
# UPDATE, not FOR UPDATE: inserting a transaction takes KEY SHARE locks on its wallets (the
# foreign keys), which FOR UPDATE would conflict with, so recording a transfer would wait for
# (and deadlock with) settlements of the same wallets.
_LOCK_WALLETS = """
    SELECT * FROM wallets WHERE id = ANY($1::uuid[])
    ORDER BY id FOR NO KEY UPDATE
"""
_GET_TRANSACTION = "SELECT * FROM transactions WHERE id = $1"
_PENDING = """
    SELECT * FROM transactions
    WHERE id = ANY($1::uuid[]) AND status = 'PENDING'
    ORDER BY created_at, id
"""
# ON CONFLICT waits for a concurrent holder of the key to commit or roll back, so a duplicate
# sent at the same time sees the first one's outcome. In key order: two units of work claiming
# overlapping keys then wait for each other in one direction only, never in a cycle.
_CLAIM_KEYS = """
    INSERT INTO idempotency_keys (key, operation, fingerprint, transaction_id, wallet_id)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::uuid[], $5::uuid[])
        AS v(key, operation, fingerprint, transaction_id, wallet_id)
    ORDER BY key
    ON CONFLICT (key) DO NOTHING
    RETURNING key
"""
# _CLAIM_KEYS' parameters, the columns of each record in its unnest()'s order.
_CLAIMED = ("key", "operation", "fingerprint", "transaction_id", "wallet_id")
_GET_KEYS = """
    SELECT key, operation, fingerprint, transaction_id, wallet_id
    FROM idempotency_keys WHERE key = ANY($1::text[])
"""
_RELEASE_KEYS = "DELETE FROM idempotency_keys WHERE key = ANY($1::text[])"

# What one step writes goes in one statement, whatever its size: each part (transactions
# recorded, outcomes decided, balances, ledger entries) travels as arrays. Only the parts a
# step has are in its statement: an empty part still costs the executor its set-up (a third
# of a submission's statement, on both ends). The foreign keys are checked at the end of the
# statement, when every part has run, so entries may refer to transactions recorded with
# them. One clock reading stamps them all. Versions need no reading back: the wallets are
# locked, so each goes up by exactly one. Each part names the columns (rows.py) it takes,
# with their types, in the order its unnest() takes them.
_PARTS: dict[str, tuple[tuple[tuple[str, str], ...], str]] = {
    "recorded": (
        (
            ("id", "uuid"),
            ("type", "text"),
            ("status", "text"),
            ("amount", "bigint"),
            ("currency", "text"),
            ("sender_wallet_id", "uuid"),
            ("receiver_wallet_id", "uuid"),
            ("client_transaction_id", "text"),
            ("failure_code", "text"),
            ("error_message", "text"),
        ),
        """
        INSERT INTO transactions (
            id, type, status, amount, currency, sender_wallet_id, receiver_wallet_id,
            client_transaction_id, failure_code, error_message, created_at, completed_at
        )
        SELECT v.id, v.type, v.status, v.amount, v.currency, v.sender, v.receiver, v.key,
               v.code, v.message, now.at, CASE WHEN v.status <> 'PENDING' THEN now.at END
        FROM now, unnest({}) WITH ORDINALITY
            AS v(id, type, status, amount, currency, sender, receiver, key, code, message, n)
        ORDER BY v.n
        RETURNING *
        """,
    ),
    "decided": (
        (("id", "uuid"), ("status", "text"), ("failure_code", "text"), ("error_message", "text")),
        """
        UPDATE transactions AS t
        SET status = v.status, failure_code = v.code, error_message = v.message,
            completed_at = coalesce(t.completed_at, now.at)
        FROM now, unnest({}) AS v(id, status, code, message)
        WHERE t.id = v.id
        RETURNING t.*
        """,
    ),
    "balances": (
        (("id", "uuid"), ("balance", "bigint")),
        """
        UPDATE wallets AS w
        SET balance = v.balance, version = w.version + 1, updated_at = now.at
        FROM now, unnest({}) AS v(id, balance)
        WHERE w.id = v.id
        """,
    ),
    "entries": (
        (
            ("transaction_id", "uuid"),
            ("wallet_id", "uuid"),
            ("delta", "bigint"),
            ("balance_after", "bigint"),
        ),
        """
        INSERT INTO ledger_entries (transaction_id, wallet_id, delta, balance_after, created_at)
        SELECT v.transaction_id, v.wallet_id, v.delta, v.balance_after, now.at
        FROM now, unnest({}) AS v(transaction_id, wallet_id, delta, balance_after)
        """,
    ),
}


@functools.cache
def _names(part: str) -> tuple[str, ...]:
    return tuple(name for name, _ in _PARTS[part][0])


@functools.cache
def write_statement(parts: tuple[str, ...]) -> str:
    """The statement writing these parts (in _PARTS' order), from constant fragments only."""
    ctes = ["now AS (SELECT clock_timestamp() AS at)"]
    number = 0
    for name in parts:
        columns, body = _PARTS[name]
        arrays = []
        for _, sql_type in columns:
            number += 1
            arrays.append(f"${number}::{sql_type}[]")
        ctes.append(f"{name} AS ({body.format(', '.join(arrays))})")
    # S608: every piece is one of the constants above; the values travel as parameters.
    stored = [
        f"SELECT {n} AS part, * FROM {name}"  # noqa: S608
        for n, name in enumerate(parts, 1)
        if name in ("recorded", "decided")
    ]
    if stored:
        union = " UNION ALL ".join(stored)
        joined = f"LEFT JOIN ({union}) AS stored ON true"
        tail = f"SELECT now.at AS written_at, stored.* FROM now {joined}"  # noqa: S608
    else:
        tail = "SELECT now.at AS written_at, NULL::int AS part FROM now"
    return f"WITH {', '.join(ctes)} {tail}"


# Submissions in one statement: each one's idempotency key and its PENDING transaction
# together, or, when its key is already taken, neither (ON CONFLICT waits for a concurrent
# holder of the key to commit or roll back). Keys are claimed in key order, so statements
# claiming overlapping keys never wait for each other in a cycle. The keys' foreign keys to
# their transactions are deferred: checked once every row is in.
_SUBMIT = """
    WITH now AS (SELECT clock_timestamp() AS at),
    v AS (
        SELECT * FROM unnest(
            $1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::uuid[], $6::uuid[],
            $7::text[], $8::text[], $9::text[], $10::text[]
        ) WITH ORDINALITY AS v(
            id, type, amount, currency, sender, receiver, reference, key, operation,
            fingerprint, n
        )
    ),
    claimed AS (
        INSERT INTO idempotency_keys (key, operation, fingerprint, transaction_id)
        SELECT key, operation, fingerprint, id FROM v WHERE key IS NOT NULL ORDER BY key
        ON CONFLICT (key) DO NOTHING
        RETURNING transaction_id
    )
    INSERT INTO transactions (
        id, type, status, amount, currency, sender_wallet_id, receiver_wallet_id,
        client_transaction_id, created_at
    )
    SELECT v.id, v.type, 'PENDING', v.amount, v.currency, v.sender, v.receiver, v.reference,
           now.at
    FROM now, v
    WHERE v.key IS NULL OR v.id IN (SELECT transaction_id FROM claimed)
    ORDER BY v.n
    RETURNING *
"""
# _SUBMIT's parameters: these columns of each transaction, then these of its key's record.
_SUBMITTED = (
    "id",
    "type",
    "amount",
    "currency",
    "sender_wallet_id",
    "receiver_wallet_id",
    "client_transaction_id",
)
_SUBMITTED_KEYS = ("key", "operation", "fingerprint")


class CurrencyBook:
    """The currency of each wallet this process has met. Shared by its units of work: a
    wallet's currency is fixed when it is created and wallets are never deleted, so what
    is remembered is never out of date."""

    def __init__(self) -> None:
        self._known: dict[UUID, Currency] = {}

    def get(self, wallet_id: UUID) -> Currency | None:
        return self._known.get(wallet_id)

    def learn(self, wallet_id: UUID, currency: Currency) -> None:
        if len(self._known) >= MAX_REMEMBERED_CURRENCIES:
            self._known.clear()
        self._known[wallet_id] = currency


class SqlWallets:
    def __init__(self, uow: SqlUnitOfWork) -> None:
        self._uow = uow

    async def add(self, wallet: Wallet) -> Wallet:
        row = await (await self._uow.reading()).fetchrow(
            _ADD_WALLET, wallet.id, wallet.currency.code, wallet.balance.minor
        )
        added = wallet_from_row(row)
        self._uow.wallets_changed[added.id] = added
        return added

    async def get(self, wallet_id: UUID) -> Wallet | None:
        return (await self.get_many([wallet_id])).get(wallet_id)

    async def get_many(self, wallet_ids: Iterable[UUID]) -> dict[UUID, Wallet]:
        rows = await (await self._uow.reading()).fetch(_GET_WALLETS, list(wallet_ids))
        return {row["id"]: wallet_from_row(row) for row in rows}

    async def currencies(self, wallet_ids: Iterable[UUID]) -> dict[UUID, Currency]:
        book = self._uow.currencies
        known: dict[UUID, Currency] = {}
        unknown: list[UUID] = []
        for wallet_id in wallet_ids:
            currency = book.get(wallet_id)
            if currency is None:
                unknown.append(wallet_id)
            else:
                known[wallet_id] = currency
        if unknown:
            # Outside the transaction, if none is open: nothing else depends on this read.
            for row in await self._uow.connection.fetch(_CURRENCIES, unknown):
                known[row["id"]] = currency = Currency.of(row["currency"])
                book.learn(row["id"], currency)
        return known

    async def lock(self, wallet_ids: Iterable[UUID]) -> dict[UUID, Wallet]:
        rows = await (await self._uow.begun()).fetch(_LOCK_WALLETS, sorted(set(wallet_ids)))
        return {row["id"]: wallet_from_row(row) for row in rows}

    async def save(self, wallets: Sequence[Wallet]) -> None:
        await self._uow.write(balances=wallets)


class SqlTransactions:
    def __init__(self, uow: SqlUnitOfWork) -> None:
        self._uow = uow

    async def get(self, transaction_id: UUID, *, lock: bool = False) -> Transaction | None:
        query = _GET_TRANSACTION + " FOR UPDATE" if lock else _GET_TRANSACTION
        connection = await (self._uow.begun() if lock else self._uow.reading())
        row = await connection.fetchrow(query, transaction_id)
        return transaction_from_row(row) if row is not None else None

    async def pending(
        self, transaction_ids: Sequence[UUID], *, lock: bool = False
    ) -> list[Transaction]:
        query = _PENDING + " FOR UPDATE" if lock else _PENDING
        connection = await (self._uow.begun() if lock else self._uow.reading())
        rows = await connection.fetch(query, list(transaction_ids))
        return [transaction_from_row(row) for row in rows]


class SqlIdempotencyKeys:
    def __init__(self, uow: SqlUnitOfWork) -> None:
        self._uow = uow

    async def claim(self, record: IdempotencyRecord) -> IdempotencyRecord | None:
        return (await self.claim_many([record])).get(record.key)

    async def claim_many(
        self, records: Sequence[IdempotencyRecord]
    ) -> dict[str, IdempotencyRecord]:
        if not records:
            return {}
        connection = await self._uow.begun()
        claimed = {
            row["key"]
            for row in await connection.fetch(
                _CLAIM_KEYS, *column_arrays(records, IDEMPOTENCY_KEY_COLUMNS, _CLAIMED)
            )
        }
        taken = [r.key for r in records if r.key not in claimed]
        if not taken:
            return {}
        return {
            row["key"]: idempotency_record_from_row(row)
            for row in await connection.fetch(_GET_KEYS, taken)
        }

    async def release(self, keys: Sequence[str]) -> None:
        await (await self._uow.begun()).execute(_RELEASE_KEYS, list(keys))

    async def get(self, key: str) -> IdempotencyRecord | None:
        row = await (await self._uow.reading()).fetchrow(_GET_KEYS, [key])
        return idempotency_record_from_row(row) if row is not None else None


class SqlUnitOfWork:
    """`async with SqlUnitOfWork(engine) as uow: ...; await uow.commit()`."""

    def __init__(
        self,
        engine: AsyncEngine,
        listeners: Sequence[CommitListener] = (),
        currencies: CurrencyBook | None = None,
    ) -> None:
        self._engine = engine
        self._listeners = listeners
        self.currencies = currencies or CurrencyBook()
        self._pooled: AsyncConnection | None = None
        self._connection: asyncpg.Connection | None = None
        self._transaction: Any = None
        self._committed = False
        self.wallets = SqlWallets(self)
        self.transactions = SqlTransactions(self)
        self.idempotency_keys = SqlIdempotencyKeys(self)
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
    ) -> list[Transaction]:
        arrays: dict[str, list[list[Any]]] = {}
        if recorded:
            arrays["recorded"] = column_arrays(recorded, TRANSACTION_COLUMNS, _names("recorded"))
        if decided:
            arrays["decided"] = column_arrays(decided, TRANSACTION_COLUMNS, _names("decided"))
        if balances:
            arrays["balances"] = column_arrays(balances, WALLET_COLUMNS, _names("balances"))
        if entries:
            arrays["entries"] = column_arrays(entries, LEDGER_ENTRY_COLUMNS, _names("entries"))
        if not arrays:
            return []
        statement = write_statement(tuple(arrays))
        rows = await (await self.begun()).fetch(
            statement, *(a for part in arrays.values() for a in part)
        )
        written_at = rows[0]["written_at"]
        for wallet in {w.id: w for w in balances}.values():
            wallet.version += 1
            wallet.updated_at = written_at
            self.wallets_changed[wallet.id] = wallet
        stored = {row["id"]: transaction_from_row(row) for row in rows if row["part"] is not None}
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
            _SUBMIT,
            *column_arrays(transactions, TRANSACTION_COLUMNS, _SUBMITTED),
            *column_arrays(claims, IDEMPOTENCY_KEY_COLUMNS, _SUBMITTED_KEYS),
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
        self._committed = True
