"""What the domain needs from the outside world, as Protocols that adapters implement."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from types import TracebackType
from typing import Protocol, Self
from uuid import UUID

from wallet.domain.ledger import (
    BalanceRequest,
    EntriesRequest,
    EntryPage,
    Statement,
    StatementRequest,
)
from wallet.domain.model import (
    HistoryRequest,
    Hold,
    HoldPage,
    HoldsRequest,
    IdempotencyRecord,
    LedgerEntry,
    OwnedWalletsRequest,
    Page,
    ScopedKey,
    Transaction,
    Wallet,
    WalletFacts,
    WalletPage,
)


class WalletRepository(Protocol):
    async def add(self, wallet: Wallet) -> Wallet: ...

    async def get(self, wallet_id: UUID) -> Wallet | None: ...

    async def get_many(self, wallet_ids: Iterable[UUID]) -> dict[UUID, Wallet]:
        """The wallets that exist, by id, read without locking."""
        ...

    async def facts(self, wallet_ids: Iterable[UUID]) -> dict[UUID, WalletFacts]:
        """The currency and owner of each wallet that exist. They never change, so this may
        be answered without asking the database."""
        ...

    async def lock(
        self,
        wallet_ids: Iterable[UUID],
        *,
        skip_locked: bool = False,
        within: timedelta | None = None,
    ) -> dict[UUID, Wallet]:
        """Lock the wallets that exist until the unit of work ends, in a fixed order. With
        `skip_locked`, only those nobody else has locked, without waiting; `within`, none
        unless all are locked within that time."""
        ...


class TransactionRepository(Protocol):
    async def get(self, transaction_id: UUID, *, lock: bool = False) -> Transaction | None: ...

    async def lock(self, transaction_ids: Iterable[UUID]) -> dict[UUID, Transaction]:
        """Lock the transactions that exist until the unit of work ends, in id order: the
        originals of reversals, after their reversals' wallets and keys."""
        ...

    async def pending(self, transaction_ids: Sequence[UUID]) -> list[Transaction]:
        """Those of the transactions that are still PENDING, with the PENDING rest of their
        atomic batches, in the order they were recorded; unlocked."""
        ...

    async def lock_pending(self, transaction_ids: Sequence[UUID]) -> set[UUID]:
        """Lock those of the transactions that are still PENDING, in the order given (the
        order they were recorded); their ids. Nothing the domain reads of a PENDING one
        changes until it is decided, so what was read of it unlocked needs no reading again."""
        ...


class HoldRepository(Protocol):
    """Holds. A hold's row is locked only by one who holds its wallet's lock, so locking it
    never waits once the wallet is locked."""

    async def add(self, hold: Hold) -> Hold:
        """Record a new ACTIVE hold; returns it as stored."""
        ...

    async def get(self, hold_id: UUID, *, lock: bool = False) -> Hold | None: ...

    async def due(self, at: datetime, limit: int) -> list[Hold]:
        """ACTIVE holds whose expiry is at or before `at`, the longest due first; unlocked."""
        ...

    async def lock(self, hold_ids: Sequence[UUID]) -> list[Hold]:
        """Lock those of the holds that are still ACTIVE (their wallets are locked)."""
        ...

    async def close(self, holds: Sequence[Hold]) -> list[Hold]:
        """Write the end of each (its status and what it captured); returns them as stored."""
        ...


class IdempotencyKeys(Protocol):
    async def claim(self, record: IdempotencyRecord) -> IdempotencyRecord | None:
        """Record the key, or return what it was first recorded for.

        When another transaction holds the same key uncommitted, this waits for it to end.
        """
        ...

    async def get(self, key: ScopedKey) -> IdempotencyRecord | None: ...

    async def claim_many(
        self, records: Sequence[IdempotencyRecord]
    ) -> dict[ScopedKey, IdempotencyRecord]:
        """Record the keys that are free; returns, by (caller id, key), what the others were
        first recorded for. The scoped keys must differ from each other."""
        ...

    async def release(self, keys: Sequence[ScopedKey]) -> None:
        """Forget keys this unit of work claimed, for requests it ended up refusing."""
        ...


class UnitOfWork(Protocol):
    """One database transaction. Leaving it without commit() rolls everything back."""

    @property
    def wallets(self) -> WalletRepository: ...

    @property
    def transactions(self) -> TransactionRepository: ...

    @property
    def idempotency_keys(self) -> IdempotencyKeys: ...

    @property
    def holds(self) -> HoldRepository: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def write(
        self,
        *,
        recorded: Sequence[Transaction] = (),
        decided: Sequence[Transaction] = (),
        balances: Sequence[Wallet] = (),
        entries: Sequence[LedgerEntry] = (),
        originals: Sequence[Transaction] = (),
    ) -> list[Transaction]:
        """Write one step's changes together: new transactions, the outcomes of existing
        ones, the new balances of locked wallets, their ledger entries, and what reversals
        take of locked originals.

        Returns the transactions as stored (recorded first, then decided).
        """
        ...

    async def submit_and_commit(
        self, submissions: Sequence[tuple[Transaction, IdempotencyRecord | None]]
    ) -> list[Transaction | None]:
        """Record new PENDING transactions, each together with its key, in one step, and
        commit: the one write that commits without commit(), so it says so in its name.

        Returns each as stored, or None where its key was already taken (nothing is written
        for that one: read what the key recorded). The keys must differ from each other.
        First in a unit of work it is one statement; after others, it commits with them.
        Only reads may follow it.
        """
        ...

    async def commit(self) -> None: ...


UnitOfWorkFactory = Callable[[], UnitOfWork]


class CommitListener(Protocol):
    """Told what a unit of work changed, once its commit has succeeded.

    Listeners keep derived state in step (the balance cache) and tell the world (live
    subscriptions). They must not raise: the money has moved whatever they do.
    """

    async def __call__(
        self, wallets: Sequence[Wallet], transactions: Sequence[Transaction]
    ) -> None: ...


class HistoryQuery(Protocol):
    """Read-only access for the API: no locks, nothing written."""

    async def wallets(self, wallet_ids: Sequence[UUID]) -> list[Wallet | None]:
        """The wallets in the order asked, None for those that do not exist."""
        ...

    async def transactions(self, transaction_ids: Sequence[UUID]) -> list[Transaction | None]: ...

    async def history(self, request: HistoryRequest) -> Page: ...

    async def owned_wallets(self, request: OwnedWalletsRequest) -> WalletPage:
        """The owner's wallets, oldest first."""
        ...

    async def holds(self, hold_ids: Sequence[UUID]) -> list[Hold | None]:
        """The holds in the order asked, None for those that do not exist."""
        ...

    async def wallet_holds(self, request: HoldsRequest) -> HoldPage:
        """A wallet's holds, newest first."""
        ...

    async def entries(self, request: EntriesRequest) -> EntryPage:
        """A wallet's ledger entries, newest first."""
        ...

    async def balances_at(self, requests: Sequence[BalanceRequest]) -> list[int]:
        """Each wallet's balance at each instant, in minor units, in the order asked: zero
        before its first entry (and for a wallet that does not exist)."""
        ...

    async def statements(self, requests: Sequence[StatementRequest]) -> list[Statement]:
        """Each wallet's statement for each period, in the order asked."""
        ...

    async def reversals(self, transaction_ids: Sequence[UUID]) -> list[list[Transaction]]:
        """The reversals of each transaction, oldest first, in the order asked."""
        ...


class TransactionFeed(Protocol):
    """Live changes of transactions, as they are committed by any process."""

    def transaction(self, transaction_id: UUID) -> AbstractAsyncContextManager[Changes]:
        """Changes of one transaction, from the moment the context is entered."""
        ...

    def wallet(self, wallet_id: UUID) -> AbstractAsyncContextManager[Changes]:
        """Every transaction touching the wallet, as it is recorded and as it changes."""
        ...


class Changes(Protocol):
    async def next(self, wait: float) -> Transaction | None:
        """The next change, or None when none came within `wait` seconds."""
        ...
