"""Wallets, the transactions that move money between them, and the ledger entries that explain
every balance."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from uuid import UUID, uuid4

from wallet.domain.errors import (
    CaptureExceedsHold,
    CurrencyMismatch,
    ErrorCode,
    HoldNotActive,
    InsufficientFunds,
    InvalidAmount,
    LinkedTransferFailed,
    NotReversible,
    ReversalExceedsOriginal,
    WalletError,
)
from wallet.domain.money import MAX_BALANCE_MINOR, Currency, Money


class TransactionType(StrEnum):
    DEPOSIT = "DEPOSIT"
    WITHDRAWAL = "WITHDRAWAL"
    TRANSFER = "TRANSFER"
    REVERSAL = "REVERSAL"


# What a reversal may return money of.
REVERSIBLE_TYPES = frozenset(
    {TransactionType.DEPOSIT, TransactionType.WITHDRAWAL, TransactionType.TRANSFER}
)


class TransactionStatus(StrEnum):
    PENDING = "PENDING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


FINAL_STATUSES = frozenset({TransactionStatus.COMPLETED, TransactionStatus.FAILED})

# The most transactions one history page holds, whatever the client asks for.
MAX_PAGE_SIZE = 100
# The most transfers one batch may hold.
MAX_BATCH_TRANSFERS = 1_000
# The most reversals one transaction may have, FAILED ones included: each is listed under it
# (Transaction.reversals, which is not paged), so their number bounds what a read returns.
MAX_REVERSALS = 50


@dataclass(slots=True)
class Wallet:
    id: UUID
    # The caller id of its owner: who created it, or whom an admin created it for.
    owner_id: str
    currency: Currency
    balance: Money
    # What its ACTIVE holds reserve, in minor units: part of the balance nothing else may move.
    held: int = 0
    # Bumped on every change of the row, so that a cached copy can tell which is newer.
    version: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def open(cls, currency: Currency, *, owner_id: str) -> Wallet:
        """A new, empty wallet of `owner_id`."""
        return cls(id=uuid4(), owner_id=owner_id, currency=currency, balance=Money(0, currency))

    @property
    def available(self) -> Money:
        """The balance less what holds reserve: what a withdrawal, transfer or hold may take."""
        return Money(self.balance.minor - self.held, self.currency)

    @property
    def facts(self) -> WalletFacts:
        return WalletFacts(self.currency, self.owner_id)

    def credit(self, amount: Money) -> None:
        self.check_credit(amount)
        self.balance = Money(self.balance.minor + amount.minor, self.currency)

    def debit(self, amount: Money) -> None:
        self.check_debit(amount)
        self.balance = Money(self.balance.minor - amount.minor, self.currency)

    def check_credit(self, amount: Money) -> None:
        """Raise what credit() would, changing nothing."""
        self._check_currency(amount)
        if self.balance.minor + amount.minor > MAX_BALANCE_MINOR:
            raise InvalidAmount(
                "the balance would exceed the largest amount a wallet can hold", field="amount"
            )

    def check_debit(self, amount: Money) -> None:
        """Raise what debit() would, changing nothing."""
        self._check_available(amount)

    def reserve(self, amount: Money) -> None:
        """Set `amount` aside for a hold: it stays in the balance, out of what is available."""
        self._check_available(amount)
        self.held += amount.minor

    def release(self, amount: Money) -> None:
        """Give back what a hold set aside."""
        self._check_currency(amount)
        assert amount.minor <= self.held, "a hold releases no more than was reserved"
        self.held -= amount.minor

    def _check_available(self, amount: Money) -> None:
        self._check_currency(amount)
        if amount.minor > self.balance.minor - self.held:
            # Not the balance: the message is stored on the transaction, and a transfer's
            # receiver sees it.
            raise InsufficientFunds(
                f"wallet {self.id} has less than {amount} {self.currency.code} available",
                field="amount",
            )

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
    # The hold this transaction captured, when it is a capture.
    hold_id: UUID | None = None
    # The atomic batch it was sent in: settled together with the rest of it, all or none.
    batch_id: UUID | None = None
    description: str | None = None
    # For a REVERSAL: the transaction whose money it returns.
    reversal_of: UUID | None = None
    # What its reversals take of it, in minor units: those PENDING or COMPLETED. A FAILED one
    # gives its share back, so this never exceeds the amount.
    reversal_claimed: int = 0
    # How many reversals it has had, FAILED ones included: at most MAX_REVERSALS.
    reversal_count: int = 0

    @classmethod
    def deposit(
        cls, amount: Money, *, receiver: UUID, key: str | None, description: str | None = None
    ) -> Transaction:
        """A new deposit into `receiver`, PENDING until it is applied."""
        return cls._new(
            TransactionType.DEPOSIT, amount, None, receiver, key=key, description=description
        )

    @classmethod
    def withdrawal(
        cls, amount: Money, *, sender: UUID, key: str | None, description: str | None = None
    ) -> Transaction:
        """A new withdrawal from `sender`, PENDING until it is settled."""
        return cls._new(
            TransactionType.WITHDRAWAL, amount, sender, None, key=key, description=description
        )

    @classmethod
    def transfer(
        cls,
        amount: Money,
        *,
        sender: UUID,
        receiver: UUID,
        key: str | None,
        description: str | None = None,
    ) -> Transaction:
        """A new transfer from `sender` to `receiver`, PENDING until it is settled."""
        return cls._new(
            TransactionType.TRANSFER, amount, sender, receiver, key=key, description=description
        )

    @classmethod
    def _new(
        cls,
        type: TransactionType,
        amount: Money,
        sender: UUID | None,
        receiver: UUID | None,
        *,
        key: str | None,
        description: str | None,
    ) -> Transaction:
        return cls(
            id=uuid4(),
            type=type,
            status=TransactionStatus.PENDING,
            amount=amount,
            sender_wallet_id=sender,
            receiver_wallet_id=receiver,
            client_transaction_id=key,
            description=description,
        )

    @property
    def reversible(self) -> Money:
        """What is left to reverse of it: its amount less what its reversals take."""
        return Money(self.amount.minor - self.reversal_claimed, self.amount.currency)

    def reverse(
        self,
        amount: Money | None,
        *,
        key: str | None,
        description: str | None = None,
        id: UUID | None = None,
    ) -> Transaction:
        """A new REVERSAL of `amount` of this (all that is left when None), PENDING until it
        is settled: a transfer's money goes back from its receiver to its sender, a deposit's
        leaves its wallet, a withdrawal's comes back. Its share is taken at once, so two
        reversals asked for together can never return more than this moved."""
        if self.type not in REVERSIBLE_TYPES or self.status is not TransactionStatus.COMPLETED:
            raise NotReversible(
                f"transaction {self.id} is a {self.status.value} {self.type.value}: only a "
                "COMPLETED deposit, withdrawal or transfer can be reversed",
                field="transaction_id",
            )
        if self.reversal_count >= MAX_REVERSALS:
            raise NotReversible(
                f"transaction {self.id} has had {MAX_REVERSALS} reversals, the most one may have",
                field="transaction_id",
            )
        left = self.reversible
        amount = amount if amount is not None else left
        if amount.currency != left.currency:
            raise CurrencyMismatch(
                f"transaction {self.id} moved {left.currency.code}, not {amount.currency.code}",
                field="amount",
            )
        if amount.minor > left.minor or left.minor == 0:
            raise ReversalExceedsOriginal(
                f"{left} {left.currency.code} of transaction {self.id} is left to reverse",
                field="amount",
            )
        self.reversal_claimed += amount.minor
        self.reversal_count += 1
        reversal = Transaction._new(
            TransactionType.REVERSAL,
            amount,
            self.receiver_wallet_id,
            self.sender_wallet_id,
            key=key,
            description=description,
        )
        reversal.reversal_of = self.id
        if id is not None:
            reversal.id = id
        return reversal

    def give_back(self, reversal: Transaction) -> None:
        """Return the share a reversal of this took, once it FAILED and moved nothing."""
        assert reversal.reversal_of == self.id
        assert reversal.status is TransactionStatus.FAILED
        self.reversal_claimed -= reversal.amount.minor

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
        # Check everything before changing anything, so a refusal leaves no half-move behind
        # (the two are never one wallet).
        if sender is not None:
            sender.check_debit(self.amount)
        if receiver is not None:
            receiver.check_credit(self.amount)
        entries = []
        if sender is not None:
            sender.debit(self.amount)
            entries.append(
                LedgerEntry(self.id, sender.id, -self.amount.minor, sender.balance.minor)
            )
        if receiver is not None:
            receiver.credit(self.amount)
            entries.append(
                LedgerEntry(self.id, receiver.id, self.amount.minor, receiver.balance.minor)
            )
        self.status = TransactionStatus.COMPLETED
        return entries

    def fail(self, code: ErrorCode, message: str) -> None:
        self.status = TransactionStatus.FAILED
        self.failure_code = code
        self.error_message = message


def apply_all_or_none(
    transactions: Sequence[Transaction], wallets: dict[UUID, Wallet]
) -> list[LedgerEntry]:
    """Apply the transactions to the locked wallets in order, every one or none: when one is
    refused it fails with its own error, the others with LINKED_TRANSFER_FAILED, and the
    wallets are left as they were. One transaction alone is applied or fails on its own."""
    if len(transactions) == 1:
        # Alone, it is its own trial: apply() changes nothing before all is checked.
        (transaction,) = transactions
        try:
            return transaction.apply(wallets)
        except WalletError as refusal:
            transaction.fail(refusal.code, refusal.message)
            return []
    trial = {i: replace(wallets[i]) for t in transactions for i in t.wallet_ids}
    entries: list[LedgerEntry] = []
    for transaction in transactions:
        try:
            entries += transaction.apply(trial)
        except WalletError as refusal:
            linked = LinkedTransferFailed(f"transaction {transaction.id} of its batch failed")
            for other in transactions:
                failure = refusal if other is transaction else linked
                other.fail(failure.code, failure.message)
            return []
    for wallet_id, wallet in trial.items():
        wallets[wallet_id].balance = wallet.balance
    return entries


class HoldStatus(StrEnum):
    ACTIVE = "ACTIVE"
    CAPTURED = "CAPTURED"
    VOIDED = "VOIDED"
    EXPIRED = "EXPIRED"


# How long a hold may last, and how long it lasts unless told.
MIN_HOLD_SECONDS = 1
MAX_HOLD_SECONDS = 30 * 24 * 3600
DEFAULT_HOLD_SECONDS = 7 * 24 * 3600
MAX_DESCRIPTION_LENGTH = 280


def now() -> datetime:
    """The time holds are placed and measured by."""
    return datetime.now(UTC)


@dataclass(slots=True)
class Hold:
    """Money reserved in a wallet until it is captured, voided, or expires: ACTIVE, then
    exactly one of CAPTURED, VOIDED or EXPIRED.

    While ACTIVE its amount counts in its wallet's `held`, so nothing else can take it; every
    way out gives all of it back, and a capture then moves what it captures.
    """

    id: UUID
    wallet_id: UUID
    receiver_wallet_id: UUID | None
    amount: Money
    client_transaction_id: str | None
    expires_at: datetime
    status: HoldStatus = HoldStatus.ACTIVE
    captured: int = 0
    capture_id: UUID | None = None
    description: str | None = None
    created_at: datetime | None = None
    closed_at: datetime | None = None

    @classmethod
    def place(
        cls,
        wallet_id: UUID,
        amount: Money,
        *,
        receiver: UUID | None,
        key: str | None,
        expires_at: datetime,
        description: str | None = None,
    ) -> Hold:
        """A new ACTIVE hold of `amount` in the wallet; `Wallet.reserve` sets it aside there."""
        return cls(
            id=uuid4(),
            wallet_id=wallet_id,
            receiver_wallet_id=receiver,
            amount=amount,
            client_transaction_id=key,
            expires_at=expires_at,
            description=description,
        )

    @property
    def wallet_ids(self) -> tuple[UUID, ...]:
        """The wallets a capture touches, in the order their rows must be locked."""
        ids = {i for i in (self.wallet_id, self.receiver_wallet_id) if i is not None}
        return tuple(sorted(ids))

    @property
    def is_active(self) -> bool:
        return self.status is HoldStatus.ACTIVE

    def is_due(self, at: datetime) -> bool:
        """Whether it is ACTIVE past its expiry, so its money must go back."""
        return self.is_active and at >= self.expires_at

    def capture_of(self, amount: Money, *, key: str | None) -> Transaction:
        """The transaction a capture of `amount` records: a transfer to its receiver, or a
        withdrawal when it has none."""
        if self.receiver_wallet_id is None:
            capture = Transaction.withdrawal(amount, sender=self.wallet_id, key=key)
        else:
            capture = Transaction.transfer(
                amount, sender=self.wallet_id, receiver=self.receiver_wallet_id, key=key
            )
        capture.hold_id = self.id
        return capture

    def capture(
        self, capture: Transaction, wallets: dict[UUID, Wallet], at: datetime
    ) -> list[LedgerEntry]:
        """Give all of it back to its locked wallet, then apply `capture` (from capture_of),
        which can take at most what it held."""
        self._check_active(at)
        if capture.amount.minor > self.amount.minor:
            raise CaptureExceedsHold(
                f"hold {self.id} holds {self.amount} {self.amount.currency.code}",
                field="amount",
            )
        wallet = wallets[self.wallet_id]
        wallet.release(self.amount)
        try:
            entries = capture.apply(wallets)
        except WalletError:
            wallet.reserve(self.amount)  # as it was: the capture moved nothing
            raise
        self.status = HoldStatus.CAPTURED
        self.captured = capture.amount.minor
        self.capture_id = capture.id
        return entries

    def void(self, wallet: Wallet, at: datetime) -> None:
        """Give all of it back to its locked wallet."""
        self._check_active(at)
        wallet.release(self.amount)
        self.status = HoldStatus.VOIDED

    def expire(self, wallet: Wallet, at: datetime) -> None:
        """Give all of it back to its locked wallet, once it is due."""
        assert self.is_due(at), "only a due hold expires"
        wallet.release(self.amount)
        self.status = HoldStatus.EXPIRED

    def _check_active(self, at: datetime) -> None:
        # Past its expiry a hold is over, whether or not a worker has released it yet.
        if not self.is_active or at >= self.expires_at:
            status = HoldStatus.EXPIRED if self.is_active else self.status
            raise HoldNotActive(f"hold {self.id} is {status.value}, not ACTIVE", field="hold_id")


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
    PLACE_HOLD = "placeHold"
    CAPTURE_HOLD = "captureHold"
    VOID_HOLD = "voidHold"
    REVERSE_TRANSACTION = "reverseTransaction"


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
    hold_id: UUID | None = None

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
        hold_id: UUID | None = None,
    ) -> IdempotencyRecord:
        """The record of a request, its fingerprint taken over the request's parameters."""
        digest = fingerprint(operation, **request)
        return cls(
            caller_id,
            key,
            operation,
            digest,
            transaction_id=transaction_id,
            wallet_id=wallet_id,
            hold_id=hold_id,
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
class HoldsRequest:
    """Which of a wallet's holds to read, newest first: `limit` older than the (created_at, id)
    position `after`, of the given statuses (all when None)."""

    wallet_id: UUID
    limit: int
    after: tuple[datetime, UUID] | None = None
    statuses: frozenset[HoldStatus] | None = None


@dataclass(frozen=True, slots=True)
class HoldPage:
    """A slice of a wallet's holds, newest first."""

    holds: list[Hold] = field(default_factory=list)
    has_next: bool = False


@dataclass(frozen=True, slots=True)
class Page:
    """A slice of a wallet's history, newest first."""

    transactions: list[Transaction] = field(default_factory=list)
    has_next: bool = False
    has_previous: bool = False
