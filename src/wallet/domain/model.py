"""Wallets, the transactions that move money between them, and the ledger entries that explain
every balance."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from uuid import UUID, uuid4

from wallet.domain.errors import (
    CurrencyMismatch,
    ErrorCode,
    InsufficientFunds,
    InvalidAmount,
)
from wallet.domain.money import MAX_BALANCE_MINOR, Currency, Money


class TransactionType(StrEnum):
    DEPOSIT = "DEPOSIT"
    WITHDRAWAL = "WITHDRAWAL"
    TRANSFER = "TRANSFER"


class TransactionStatus(StrEnum):
    PENDING = "PENDING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


FINAL_STATUSES = frozenset({TransactionStatus.COMPLETED, TransactionStatus.FAILED})

# The most transactions one history page holds, whatever the client asks for.
MAX_PAGE_SIZE = 100


@dataclass(slots=True)
class Wallet:
    id: UUID
    # The caller id of its owner: who created it, or whom an admin created it for.
    owner_id: str
    currency: Currency
    balance: Money
    # Bumped on every change of the row, so that a cached copy can tell which is newer.
    version: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def open(cls, currency: Currency, *, owner_id: str) -> Wallet:
        """A new, empty wallet of `owner_id`."""
        return cls(id=uuid4(), owner_id=owner_id, currency=currency, balance=Money(0, currency))

    @property
    def facts(self) -> WalletFacts:
        return WalletFacts(self.currency, self.owner_id)

    def credit(self, amount: Money) -> None:
        self._check_currency(amount)
        if self.balance.minor + amount.minor > MAX_BALANCE_MINOR:
            raise InvalidAmount(
                "the balance would exceed the largest amount a wallet can hold", field="amount"
            )
        self.balance = Money(self.balance.minor + amount.minor, self.currency)

    def debit(self, amount: Money) -> None:
        self._check_currency(amount)
        if amount.minor > self.balance.minor:
            # Not the balance: the message is stored on the transaction, and a transfer's
            # receiver sees it.
            raise InsufficientFunds(
                f"wallet {self.id} holds less than {amount} {self.currency.code}",
                field="amount",
            )
        self.balance = Money(self.balance.minor - amount.minor, self.currency)

    def _check_currency(self, amount: Money) -> None:
        if amount.currency != self.currency:
            raise CurrencyMismatch(
                f"wallet {self.id} holds {self.currency.code}, not {amount.currency.code}"
            )


@dataclass(frozen=True, slots=True)
class WalletFacts:
    """What is fixed when a wallet opens and never changes: its currency and its owner."""

    currency: Currency
    owner_id: str


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One wallet's side of a completed transaction."""

    transaction_id: UUID
    wallet_id: UUID
    delta: int
    balance_after: int


@dataclass(slots=True)
class Transaction:
    id: UUID
    type: TransactionType
    status: TransactionStatus
    amount: Money
    sender_wallet_id: UUID | None
    receiver_wallet_id: UUID | None
    client_transaction_id: str | None
    failure_code: ErrorCode | None = None
    error_message: str | None = None
    created_at: datetime | None = None
    completed_at: datetime | None = None

    @classmethod
    def deposit(cls, amount: Money, *, receiver: UUID, key: str | None) -> Transaction:
        """A new deposit into `receiver`, PENDING until it is applied."""
        return cls._new(TransactionType.DEPOSIT, amount, sender=None, receiver=receiver, key=key)

    @classmethod
    def withdrawal(cls, amount: Money, *, sender: UUID, key: str | None) -> Transaction:
        """A new withdrawal from `sender`, PENDING until it is settled."""
        return cls._new(TransactionType.WITHDRAWAL, amount, sender=sender, receiver=None, key=key)

    @classmethod
    def transfer(
        cls, amount: Money, *, sender: UUID, receiver: UUID, key: str | None
    ) -> Transaction:
        """A new transfer from `sender` to `receiver`, PENDING until it is settled."""
        return cls._new(TransactionType.TRANSFER, amount, sender=sender, receiver=receiver, key=key)

    @classmethod
    def _new(
        cls,
        type: TransactionType,
        amount: Money,
        *,
        sender: UUID | None,
        receiver: UUID | None,
        key: str | None,
    ) -> Transaction:
        return cls(
            id=uuid4(),
            type=type,
            status=TransactionStatus.PENDING,
            amount=amount,
            sender_wallet_id=sender,
            receiver_wallet_id=receiver,
            client_transaction_id=key,
        )

    @property
    def wallet_ids(self) -> tuple[UUID, ...]:
        """The wallets this transaction touches, in the order their rows must be locked."""
        ids = {i for i in (self.sender_wallet_id, self.receiver_wallet_id) if i is not None}
        return tuple(sorted(ids))

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    def apply(self, wallets: dict[UUID, Wallet]) -> list[LedgerEntry]:
        """Move the money between the locked wallets and mark this COMPLETED.

        Raises the domain error that makes it fail; the wallets are then left untouched.
        """
        sender = wallets[self.sender_wallet_id] if self.sender_wallet_id else None
        receiver = wallets[self.receiver_wallet_id] if self.receiver_wallet_id else None
        # Check everything before changing anything, so a refusal leaves no half-move behind.
        trial = {w.id: replace(w) for w in (sender, receiver) if w is not None}
        if sender is not None:
            trial[sender.id].debit(self.amount)
        if receiver is not None:
            trial[receiver.id].credit(self.amount)
        entries = []
        if sender is not None:
            sender.balance = trial[sender.id].balance
            entries.append(
                LedgerEntry(self.id, sender.id, -self.amount.minor, sender.balance.minor)
            )
        if receiver is not None:
            receiver.balance = trial[receiver.id].balance
            entries.append(
                LedgerEntry(self.id, receiver.id, self.amount.minor, receiver.balance.minor)
            )
        self.status = TransactionStatus.COMPLETED
        return entries

    def fail(self, code: ErrorCode, message: str) -> None:
        self.status = TransactionStatus.FAILED
        self.failure_code = code
        self.error_message = message


class Operation(StrEnum):
    """What a client transaction id was used for.

    The values are stored with every key and hashed into its fingerprint, so they stay as
    they were first written: renaming one would make a retry after an upgrade look like a
    different request.
    """

    CREATE_WALLET = "createWallet"
    DEPOSIT = "deposit"
    WITHDRAW = "withdraw"
    TRANSFER = "transfer"


# A client transaction id with the caller id it belongs to: (caller_id, key).
ScopedKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """What a client transaction id was first used for, by whom, and what it produced."""

    caller_id: str
    key: str
    operation: str
    fingerprint: str
    transaction_id: UUID | None = None
    wallet_id: UUID | None = None

    @classmethod
    def of(
        cls,
        caller_id: str,
        key: str,
        operation: Operation,
        request: Mapping[str, object],
        *,
        transaction_id: UUID | None = None,
        wallet_id: UUID | None = None,
    ) -> IdempotencyRecord:
        """The record of a request, its fingerprint taken over the request's parameters."""
        digest = fingerprint(operation, **request)
        return cls(
            caller_id, key, operation, digest, transaction_id=transaction_id, wallet_id=wallet_id
        )

    @property
    def scoped_key(self) -> ScopedKey:
        """The key as it is stored: the caller's own."""
        return (self.caller_id, self.key)

    def is_replayed_by(self, record: IdempotencyRecord) -> bool:
        """Whether `record` asks again for what this key was first used for."""
        return (self.operation, self.fingerprint) == (record.operation, record.fingerprint)


def fingerprint(operation: str, **params: object) -> str:
    """A digest of the normalized request, so a replay can be told from a different request."""
    canonical = "|".join([operation, *(f"{k}={params[k]}" for k in sorted(params))])
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class HistoryRequest:
    """Which slice of a wallet's history to read, newest first.

    `after` and `before` are (created_at, id) positions: `first` transactions older than
    `after`, or the `last` transactions newer than `before`.
    """

    wallet_id: UUID
    limit: int
    after: tuple[datetime, UUID] | None = None
    before: tuple[datetime, UUID] | None = None
    backward: bool = False
    types: frozenset[TransactionType] | None = None
    statuses: frozenset[TransactionStatus] | None = None


@dataclass(frozen=True, slots=True)
class OwnedWalletsRequest:
    """Which of an owner's wallets to read, oldest first: `limit` after the (created_at, id)
    position `after`."""

    owner_id: str
    limit: int
    after: tuple[datetime, UUID] | None = None


@dataclass(frozen=True, slots=True)
class WalletPage:
    """A slice of an owner's wallets, oldest first."""

    wallets: list[Wallet] = field(default_factory=list)
    has_next: bool = False


@dataclass(frozen=True, slots=True)
class Page:
    """A slice of a wallet's history, newest first."""

    transactions: list[Transaction] = field(default_factory=list)
    has_next: bool = False
    has_previous: bool = False
