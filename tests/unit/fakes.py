"""An in-memory unit of work, for unit tests of the use cases and of group commit.

Like the real one it works on a copy of what is stored and keeps nothing unless committed.
It counts what a test may want to hold the code to: units of work, writes, commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from copy import deepcopy
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Self
from uuid import UUID

from tests.callers import ADMIN, ALICE
from wallet.domain import services
from wallet.domain.callers import Caller
from wallet.domain.group_commit import run_alone
from wallet.domain.model import (
    Hold,
    HoldStatus,
    IdempotencyRecord,
    LedgerEntry,
    ScopedKey,
    Transaction,
    TransactionStatus,
    Wallet,
    WalletFacts,
)


@dataclass
class Stored:
    """What the fake database holds."""

    wallets: dict[UUID, Wallet] = field(default_factory=dict)
    transactions: dict[UUID, Transaction] = field(default_factory=dict)
    keys: dict[ScopedKey, IdempotencyRecord] = field(default_factory=dict)
    entries: list[LedgerEntry] = field(default_factory=list)
    holds: dict[UUID, Hold] = field(default_factory=dict)


@dataclass
class FakeDatabase:
    stored: Stored = field(default_factory=Stored)
    opened: int = 0
    writes: int = 0
    commits: int = 0
    # Raise this from write() when it writes more than one request's rows (see fail_batches).
    batch_failure: Exception | None = None

    def unit_of_work(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self)

    def balance(self, wallet_id: UUID) -> int:
        return self.stored.wallets[wallet_id].balance.minor

    def explained(self, wallet_id: UUID) -> int:
        """The wallet's balance as its ledger entries tell it."""
        return sum(e.delta for e in self.stored.entries if e.wallet_id == wallet_id)

    def reserved(self, wallet_id: UUID) -> int:
        """What the wallet's ACTIVE holds reserve, which its `held` must equal."""
        return sum(
            h.amount.minor
            for h in self.stored.holds.values()
            if h.wallet_id == wallet_id and h.is_active
        )


async def new_wallet(
    db: FakeDatabase, balance: str = "0", *, owner: Caller = ALICE, currency: str = "USD"
) -> UUID:
    """A wallet of `owner`, opened by an admin (who may fund it)."""
    command = services.CreateWallet(currency=currency, initial_balance=balance, owner_id=owner.id)
    return (await run_alone(db.unit_of_work, services.create_wallet, ADMIN, command)).id


class FakeUnitOfWork:
    def __init__(self, database: FakeDatabase) -> None:
        self._database = database
        self._working = Stored()
        self.wallets = _Wallets(self)
        self.transactions = _Transactions(self)
        self.idempotency_keys = _Keys(self)
        self.holds = _Holds(self)

    @property
    def working(self) -> Stored:
        return self._working

    async def __aenter__(self) -> Self:
        self._database.opened += 1
        self._working = deepcopy(self._database.stored)
        self._committed = False
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Whatever was not committed is forgotten with the working copy."""

    async def write(
        self,
        *,
        recorded: Sequence[Transaction] = (),
        decided: Sequence[Transaction] = (),
        balances: Sequence[Wallet] = (),
        entries: Sequence[LedgerEntry] = (),
        originals: Sequence[Transaction] = (),
    ) -> list[Transaction]:
        assert not self._committed, "nothing is written after the commit"
        failure = self._database.batch_failure
        if failure is not None and len(recorded) + len(decided) > 1:
            raise failure
        self._database.writes += 1
        now = datetime.now(UTC)
        for transaction in (*recorded, *decided):
            completed = now if transaction.is_final else None
            self._working.transactions[transaction.id] = replace(
                transaction, created_at=transaction.created_at or now, completed_at=completed
            )
        for wallet in {w.id: w for w in balances}.values():
            assert wallet.id in self._working.wallets
            assert wallet.balance.minor >= 0, "the database refuses a negative balance"
            assert 0 <= wallet.held <= wallet.balance.minor, "and a hold past the balance"
            self._working.wallets[wallet.id] = replace(wallet, version=wallet.version + 1)
        self._working.entries += entries
        for original in originals:
            stored = self._working.transactions[original.id]
            claimed = original.reversal_claimed
            assert 0 <= claimed <= stored.amount.minor, "the database keeps reversals within it"
            stored.reversal_claimed = claimed
            assert 0 <= original.reversal_count <= 50, "and their number bounded"
            stored.reversal_count = original.reversal_count
        return [replace(self._working.transactions[t.id]) for t in (*recorded, *decided)]

    async def submit_and_commit(
        self, submissions: Sequence[tuple[Transaction, IdempotencyRecord | None]]
    ) -> list[Transaction | None]:
        stored: list[Transaction | None] = []
        fresh = []
        for transaction, record in submissions:
            if record is not None and record.scoped_key in self._working.keys:
                stored.append(None)
                continue
            if record is not None:
                self._working.keys[record.scoped_key] = record
            fresh.append(transaction)
            stored.append(transaction)
        written = iter(await self.write(recorded=fresh) if fresh else [])
        await self.commit()
        return [next(written) if t is not None else None for t in stored]

    async def commit(self) -> None:
        if not self._committed:
            self._database.stored = self._working
            self._working = deepcopy(self._working)
            self._database.commits += 1
        self._committed = True


class _Wallets:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._uow = uow

    async def add(self, wallet: Wallet) -> Wallet:
        # Stamped as the database's defaults stamp a new row.
        now = datetime.now(UTC)
        added = replace(wallet, created_at=wallet.created_at or now, updated_at=now)
        self._uow.working.wallets[wallet.id] = added
        return replace(added)

    async def get(self, wallet_id: UUID) -> Wallet | None:
        wallet = self._uow.working.wallets.get(wallet_id)
        return None if wallet is None else replace(wallet)

    async def get_many(self, wallet_ids: Iterable[UUID]) -> dict[UUID, Wallet]:
        working = self._uow.working.wallets
        return {i: replace(working[i]) for i in wallet_ids if i in working}

    async def facts(self, wallet_ids: Iterable[UUID]) -> dict[UUID, WalletFacts]:
        working = self._uow.working.wallets
        return {i: working[i].facts for i in wallet_ids if i in working}

    async def lock(
        self,
        wallet_ids: Iterable[UUID],
        *,
        skip_locked: bool = False,
        within: timedelta | None = None,
    ) -> dict[UUID, Wallet]:
        return await self.get_many(sorted(wallet_ids))


class _Transactions:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._uow = uow

    async def get(self, transaction_id: UUID, *, lock: bool = False) -> Transaction | None:
        transaction = self._uow.working.transactions.get(transaction_id)
        return None if transaction is None else replace(transaction)

    async def lock(self, transaction_ids: Iterable[UUID]) -> dict[UUID, Transaction]:
        working = self._uow.working.transactions
        return {i: replace(working[i]) for i in sorted(transaction_ids) if i in working}

    async def lock_pending(self, transaction_ids: Sequence[UUID]) -> set[UUID]:
        working = self._uow.working.transactions
        return {
            i
            for i in transaction_ids
            if i in working and working[i].status is TransactionStatus.PENDING
        }

    async def pending(self, transaction_ids: Sequence[UUID]) -> list[Transaction]:
        working = self._uow.working.transactions
        found = [working[i] for i in dict.fromkeys(transaction_ids) if i in working]
        # With the rest of each one's atomic batch, as PostgreSQL's PENDING statement finds.
        batches = {t.batch_id for t in found if t.batch_id is not None}
        asked = {t.id for t in found}
        found += [t for t in working.values() if t.batch_id in batches and t.id not in asked]
        pending = [t for t in found if t.status is TransactionStatus.PENDING]
        # In the order they were recorded (the dict keeps insertion order).
        order = list(working)
        return [replace(t) for t in sorted(pending, key=lambda t: order.index(t.id))]


class _Holds:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._uow = uow

    async def add(self, hold: Hold) -> Hold:
        assert hold.id not in self._uow.working.holds
        added = replace(hold, created_at=datetime.now(UTC))
        self._uow.working.holds[hold.id] = added
        return replace(added)

    async def get(self, hold_id: UUID, *, lock: bool = False) -> Hold | None:
        hold = self._uow.working.holds.get(hold_id)
        return None if hold is None else replace(hold)

    async def due(self, at: datetime, limit: int) -> list[Hold]:
        due = [h for h in self._uow.working.holds.values() if h.is_due(at)]
        return [replace(h) for h in sorted(due, key=lambda h: h.expires_at)[:limit]]

    async def lock(self, hold_ids: Sequence[UUID]) -> list[Hold]:
        holds = self._uow.working.holds
        return [replace(holds[i]) for i in sorted(hold_ids) if holds[i].is_active]

    async def close(self, holds: Sequence[Hold]) -> list[Hold]:
        now = datetime.now(UTC)
        for hold in holds:
            assert self._uow.working.holds[hold.id].status is HoldStatus.ACTIVE
            assert hold.status is not HoldStatus.ACTIVE
            self._uow.working.holds[hold.id] = replace(hold, closed_at=now)
        return [replace(self._uow.working.holds[h.id]) for h in holds]


class _Keys:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._uow = uow

    async def claim(self, record: IdempotencyRecord) -> IdempotencyRecord | None:
        return (await self.claim_many([record])).get(record.scoped_key)

    async def get(self, key: ScopedKey) -> IdempotencyRecord | None:
        return self._uow.working.keys.get(key)

    async def claim_many(
        self, records: Sequence[IdempotencyRecord]
    ) -> dict[ScopedKey, IdempotencyRecord]:
        keys = self._uow.working.keys
        assert len({r.scoped_key for r in records}) == len(records), "the keys differ"
        earlier = {r.scoped_key: keys[r.scoped_key] for r in records if r.scoped_key in keys}
        keys.update({r.scoped_key: r for r in records if r.scoped_key not in earlier})
        return earlier

    async def release(self, keys: Sequence[ScopedKey]) -> None:
        for key in keys:
            del self._uow.working.keys[key]
