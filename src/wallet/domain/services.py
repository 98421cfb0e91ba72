"""The use cases: create a wallet, deposit, withdraw, transfer, and settle what was submitted.

Each runs in the unit of work it is given and commits explicitly; leaving without a commit
rolls everything back. Each is written as if it ran alone: `group_commit.py` runs many of
them in one unit of work, and a retry policy (`retries.py`) runs them again when PostgreSQL
aborts one to break a conflict. Neither happens in here.

Lock order is always the same: wallet rows in ascending id order, then the idempotency key,
then the transaction row, so two units of work can wait for each other but never in a cycle.
Field names in errors are the commands' own; the edge maps them to its input paths.

Every request's use case is told its caller first, and asks access.py what that caller may
do; settle() and fail_pending() are the worker's, which acts for nobody in particular.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar
from uuid import UUID

from wallet.domain import access
from wallet.domain.callers import Caller
from wallet.domain.errors import (
    CurrencyMismatch,
    IdempotencyKeyReused,
    InvalidInput,
    SameWallet,
    WalletError,
    WalletNotFound,
)
from wallet.domain.model import (
    IdempotencyRecord,
    LedgerEntry,
    Operation,
    Transaction,
    Wallet,
    WalletFacts,
)
from wallet.domain.money import Currency, Money, parse_positive_amount
from wallet.domain.ports import UnitOfWork

MAX_KEY_LENGTH = 255

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CreateWallet:
    currency: str = "USD"
    initial_balance: str = "0"
    client_transaction_id: str | None = None
    # Admins only: whose wallet it is; the caller's when None.
    owner_id: str | None = None


@dataclass(frozen=True, slots=True)
class Deposit:
    wallet_id: str
    amount: str
    client_transaction_id: str


@dataclass(frozen=True, slots=True)
class Withdraw:
    wallet_id: str
    amount: str
    client_transaction_id: str


@dataclass(frozen=True, slots=True)
class Transfer:
    from_wallet_id: str
    to_wallet_id: str
    amount: str
    client_transaction_id: str


async def create_wallet(caller: Caller, uow: UnitOfWork, command: CreateWallet) -> Wallet:
    key = check_key(command.client_transaction_id)
    currency = Currency.of(command.currency)
    initial = Money.parse(command.initial_balance, currency, field="initial_balance")
    if initial.minor > 0:
        initial = parse_positive_amount(command.initial_balance, currency, field="initial_balance")
    owner_id = access.owner_of_new_wallet(caller, command.owner_id, funded=initial.minor > 0)
    wallet = Wallet.open(currency, owner_id=owner_id)
    async with uow:
        if key is not None:
            request = {"currency": currency.code, "initial": initial.minor, "owner": owner_id}
            record = IdempotencyRecord.of(
                caller.id, key, Operation.CREATE_WALLET, request, wallet_id=wallet.id
            )
            earlier = await claim(uow, record)
            if earlier is not None:
                return await _recorded_wallet(uow, earlier)
        wallet = await uow.wallets.add(wallet)
        if initial.minor > 0:
            deposit = Transaction.deposit(initial, receiver=wallet.id, key=key)
            entries = deposit.apply({wallet.id: wallet})
            await uow.write(recorded=[deposit], balances=[wallet], entries=entries)
        await uow.commit()
    return wallet


async def deposit(caller: Caller, uow: UnitOfWork, command: Deposit) -> Transaction:
    """Deposits are applied at once: there is nothing they can wait for. A caller who may
    deposit may deposit into any wallet."""
    wallet_id = parse_wallet_id(command.wallet_id, field="wallet_id")
    key = check_key(command.client_transaction_id)
    access.check_deposit(caller)
    async with uow:
        wallet = _found(await uow.wallets.lock([wallet_id]), wallet_id, field="wallet_id")
        amount = parse_positive_amount(command.amount, wallet.currency)
        deposit = Transaction.deposit(amount, receiver=wallet_id, key=key)
        record = _record(
            caller, key, Operation.DEPOSIT, deposit, wallet=wallet_id, amount=amount.minor
        )
        if record is not None:
            earlier = await claim(uow, record)
            if earlier is not None:
                return await _recorded_transaction(uow, earlier)
        entries = deposit.apply({wallet_id: wallet})
        (deposit,) = await uow.write(recorded=[deposit], balances=[wallet], entries=entries)
        await uow.commit()
    return deposit


async def withdraw(caller: Caller, uow: UnitOfWork, command: Withdraw) -> Transaction:
    """Record a PENDING withdrawal; settle() decides it under the wallet's lock."""
    wallet_id = parse_wallet_id(command.wallet_id, field="wallet_id")
    key = check_key(command.client_transaction_id)
    async with uow:
        facts = await uow.wallets.facts([wallet_id])
        wallet = _owned(caller, facts, wallet_id, field="wallet_id")
        amount = parse_positive_amount(command.amount, wallet.currency)
        withdrawal = Transaction.withdrawal(amount, sender=wallet_id, key=key)
        record = _record(
            caller, key, Operation.WITHDRAW, withdrawal, wallet=wallet_id, amount=amount.minor
        )
        return await _submit(uow, withdrawal, record)


async def transfer(caller: Caller, uow: UnitOfWork, command: Transfer) -> Transaction:
    """Record a PENDING transfer; settle() decides it under both wallets' locks. The sender
    must be the caller's to move money out of; the receiver may be anyone's."""
    sender_id = parse_wallet_id(command.from_wallet_id, field="from_wallet_id")
    receiver_id = parse_wallet_id(command.to_wallet_id, field="to_wallet_id")
    key = check_key(command.client_transaction_id)
    if sender_id == receiver_id:
        raise SameWallet("a transfer needs two different wallets", field="to_wallet_id")
    async with uow:
        # A wallet's currency and owner never change, so nothing needs locking until settle().
        facts = await uow.wallets.facts([sender_id, receiver_id])
        sender = _owned(caller, facts, sender_id, field="from_wallet_id").currency
        receiver = _found(facts, receiver_id, field="to_wallet_id").currency
        if sender != receiver:
            raise CurrencyMismatch(
                f"wallet {sender_id} holds {sender.code} and wallet "
                f"{receiver_id} holds {receiver.code}",
                field="to_wallet_id",
            )
        amount = parse_positive_amount(command.amount, sender)
        transfer = Transaction.transfer(amount, sender=sender_id, receiver=receiver_id, key=key)
        record = _record(
            caller,
            key,
            Operation.TRANSFER,
            transfer,
            sender=sender_id,
            receiver=receiver_id,
            amount=amount.minor,
        )
        return await _submit(uow, transfer, record)


async def submit(caller: Caller, uow: UnitOfWork, command: Withdraw | Transfer) -> Transaction:
    """A withdrawal or a transfer: both are recorded PENDING the same way, so they can share
    a group commit."""
    if isinstance(command, Withdraw):
        return await withdraw(caller, uow, command)
    return await transfer(caller, uow, command)


async def settle(uow: UnitOfWork, transaction_ids: Sequence[UUID]) -> list[Transaction]:
    """Apply PENDING transactions, or fail them, exactly once however often asked to.

    Returns those it decided: ones already final (a job run twice) are left as they are.
    Every wallet they touch is locked in one sorted pass, then they are applied in the order
    they were recorded, so the earlier of two debits wins when funds run short, and a hot
    wallet pays for one lock per batch instead of one per transfer.
    """
    async with uow:
        unlocked = await uow.transactions.pending(transaction_ids)
        if not unlocked:
            return []
        wallets = await uow.wallets.lock({i for t in unlocked for i in t.wallet_ids})
        # Read again under the wallets' locks: another worker may have settled some meanwhile.
        pending = await uow.transactions.pending(transaction_ids, lock=True)
        entries: list[LedgerEntry] = []
        touched: set[UUID] = set()
        for transaction in pending:
            try:
                entries += transaction.apply(wallets)
                touched.update(transaction.wallet_ids)
            except WalletError as refusal:
                transaction.fail(refusal.code, refusal.message)
        balances = [wallets[i] for i in sorted(touched)]
        settled = await uow.write(decided=pending, balances=balances, entries=entries)
        await uow.commit()
    return settled


async def fail_pending(
    uow: UnitOfWork, transaction_id: UUID, error: WalletError
) -> Transaction | None:
    """Give up on a transaction that could not be settled; a final one is left as it is."""
    async with uow:
        transaction = await uow.transactions.get(transaction_id, lock=True)
        if transaction is None or transaction.is_final:
            return transaction
        transaction.fail(error.code, error.message)
        (transaction,) = await uow.write(decided=[transaction])
        await uow.commit()
    return transaction


# What the use cases share.


def parse_wallet_id(text: str, field: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise InvalidInput(f"{text!r} is not a wallet id (a UUID)", field=field) from None


def check_key(key: str | None, field: str = "client_transaction_id") -> str | None:
    if key is None:
        return None
    if not key or key.strip() != key:
        raise InvalidInput(
            "a client transaction id must be non-empty, without surrounding spaces", field=field
        )
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(
            f"a client transaction id may have at most {MAX_KEY_LENGTH} characters", field=field
        )
    return key


def _record(
    caller: Caller,
    key: str | None,
    operation: Operation,
    transaction: Transaction,
    **request: object,
) -> IdempotencyRecord | None:
    """What the caller's key is claimed with, when the request has one."""
    if key is None:
        return None
    return IdempotencyRecord.of(caller.id, key, operation, request, transaction_id=transaction.id)


async def claim(uow: UnitOfWork, record: IdempotencyRecord) -> IdempotencyRecord | None:
    """Claim the key for this request; return the earlier record when this is a replay."""
    earlier = await uow.idempotency_keys.claim(record)
    return None if earlier is None else _replayed(earlier, record)


def _replayed(earlier: IdempotencyRecord, record: IdempotencyRecord) -> IdempotencyRecord:
    if not earlier.is_replayed_by(record):
        raise IdempotencyKeyReused(
            f"client transaction id {record.key!r} was already used for a different request",
            field="client_transaction_id",
        )
    return earlier


def _found(found: dict[UUID, T], wanted: UUID, field: str) -> T:
    if wanted not in found:
        raise WalletNotFound(f"there is no wallet {wanted}", field=field)
    return found[wanted]


def _owned(caller: Caller, found: dict[UUID, WalletFacts], wanted: UUID, field: str) -> WalletFacts:
    """The wallet money moves out of: one the caller may not touch is refused exactly as an
    unknown one, so an id never tells whether someone else's wallet exists."""
    wallet = found.get(wanted)
    if wallet is None or not access.may_move_out_of(caller, wallet):
        raise WalletNotFound(f"there is no wallet {wanted}", field=field)
    return wallet


async def _submit(
    uow: UnitOfWork, transaction: Transaction, record: IdempotencyRecord | None
) -> Transaction:
    (submitted,) = await uow.submit_and_commit([(transaction, record)])
    if submitted is not None:
        return submitted
    assert record is not None, "only a taken key stops a submission"
    earlier = await uow.idempotency_keys.get(record.scoped_key)
    assert earlier is not None, "a taken key is never given back once committed"
    return await _recorded_transaction(uow, _replayed(earlier, record))


async def _recorded_transaction(uow: UnitOfWork, record: IdempotencyRecord) -> Transaction:
    assert record.transaction_id is not None
    transaction = await uow.transactions.get(record.transaction_id)
    assert transaction is not None, "an idempotency key points at its transaction"
    return transaction


async def _recorded_wallet(uow: UnitOfWork, record: IdempotencyRecord) -> Wallet:
    assert record.wallet_id is not None
    wallet = await uow.wallets.get(record.wallet_id)
    assert wallet is not None, "an idempotency key points at its wallet"
    return wallet
