"""The use cases: create a wallet, deposit, withdraw, transfer, reverse a transaction, and
settle what was submitted; place a hold, capture or void it, and expire those that are due.

Each runs in the unit of work it is given and commits explicitly; leaving without a commit
rolls everything back. Each is written as if it ran alone: `group_commit.py` runs many of
them in one unit of work, and a retry policy (`retries.py`) runs them again when PostgreSQL
aborts one to break a conflict. Neither happens in here.

Lock order is always the same: wallet rows in ascending id order, then the idempotency key,
then the transaction or hold row (a PENDING transaction before the original it reverses), so
two units of work can wait for each other but never in a cycle.
Field names in errors are the commands' own; the edge maps them to its input paths.

Every request's use case is told its caller first, and asks access.py what that caller may
do; settle() and fail_pending() are the worker's, which acts for nobody in particular.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import TypeVar
from uuid import UUID, uuid4

from wallet.domain import access
from wallet.domain.callers import Caller
from wallet.domain.errors import (
    CurrencyMismatch,
    HoldNotFound,
    IdempotencyKeyReused,
    InvalidInput,
    LinkedTransferFailed,
    SameWallet,
    TransactionNotFound,
    TransfersRejected,
    WalletError,
    WalletNotFound,
)
from wallet.domain.model import (
    DEFAULT_HOLD_SECONDS,
    MAX_BATCH_TRANSFERS,
    MAX_DESCRIPTION_LENGTH,
    MAX_HOLD_SECONDS,
    MIN_HOLD_SECONDS,
    Hold,
    IdempotencyRecord,
    LedgerEntry,
    Operation,
    ScopedKey,
    Transaction,
    TransactionStatus,
    Wallet,
    WalletFacts,
    apply_all_or_none,
    fingerprint,
    now,
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
    description: str | None = None


@dataclass(frozen=True, slots=True)
class Withdraw:
    wallet_id: str
    amount: str
    client_transaction_id: str
    description: str | None = None


@dataclass(frozen=True, slots=True)
class Transfer:
    from_wallet_id: str
    to_wallet_id: str
    amount: str
    client_transaction_id: str
    description: str | None = None


@dataclass(frozen=True, slots=True)
class TransferBatch:
    transfers: Sequence[Transfer]
    # All or none: accepted together and settled together.
    atomic: bool = False


@dataclass(frozen=True, slots=True)
class Batch:
    """An atomic batch as its transfers know it: its id, and a digest of everything it asks,
    in order, which each transfer's key is claimed with. Sent again whole, the batch replays;
    any of its keys used for anything else is IDEMPOTENCY_KEY_REUSED."""

    id: UUID
    digest: str

    @classmethod
    def of(cls, transfers: Sequence[Transaction]) -> Batch:
        """The batch of these transfers, which it links (each names it from now on)."""
        batch = cls(uuid4(), fingerprint("atomic batch", transfers=[_asked(t) for t in transfers]))
        for transfer in transfers:
            transfer.batch_id = batch.id
        return batch


def _asked(transfer: Transaction) -> tuple[object, ...]:
    """What a transfer asks, normalized: "1.0" and "1.00", or an id's letter case, ask alike."""
    asked = (
        transfer.client_transaction_id,
        transfer.sender_wallet_id,
        transfer.receiver_wallet_id,
        transfer.amount.minor,
    )
    # Only when there is one: batches sent before descriptions existed keep their digest.
    return asked if transfer.description is None else (*asked, transfer.description)


@dataclass(frozen=True, slots=True)
class PlaceHold:
    wallet_id: str
    amount: str
    client_transaction_id: str
    receiver_wallet_id: str | None = None
    expires_in_seconds: int = DEFAULT_HOLD_SECONDS
    description: str | None = None


@dataclass(frozen=True, slots=True)
class CaptureHold:
    hold_id: str
    client_transaction_id: str
    # The whole of the hold when None.
    amount: str | None = None


@dataclass(frozen=True, slots=True)
class VoidHold:
    hold_id: str
    client_transaction_id: str


@dataclass(frozen=True, slots=True)
class ReverseTransaction:
    transaction_id: str
    client_transaction_id: str
    # All that is left to reverse when None.
    amount: str | None = None
    description: str | None = None


# Holds expired by one unit of work, at most.
EXPIRY_BATCH = 500
# A hold due this long is worth waiting for its wallet's lock (up to EXPIRY_WAIT); until
# then, wallets another worker (or a request) holds are left for the next round.
EXPIRY_PATIENCE = timedelta(seconds=2)
EXPIRY_WAIT = timedelta(seconds=1)


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
    description = check_description(command.description)
    access.check_deposit(caller)
    async with uow:
        wallet = _found(await uow.wallets.lock([wallet_id]), wallet_id, field="wallet_id")
        amount = parse_positive_amount(command.amount, wallet.currency)
        deposit = Transaction.deposit(amount, receiver=wallet_id, key=key, description=description)
        record = _record(
            caller,
            key,
            Operation.DEPOSIT,
            deposit,
            wallet=wallet_id,
            amount=amount.minor,
            **_described(description),
        )
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
    description = check_description(command.description)
    async with uow:
        facts = await uow.wallets.facts([wallet_id])
        wallet = _owned(caller, facts, wallet_id, field="wallet_id")
        amount = parse_positive_amount(command.amount, wallet.currency)
        withdrawal = Transaction.withdrawal(
            amount, sender=wallet_id, key=key, description=description
        )
        record = _record(
            caller,
            key,
            Operation.WITHDRAW,
            withdrawal,
            wallet=wallet_id,
            amount=amount.minor,
            **_described(description),
        )
        return await _submit(uow, withdrawal, record)


async def transfer(caller: Caller, uow: UnitOfWork, command: Transfer) -> Transaction:
    """Record a PENDING transfer; settle() decides it under both wallets' locks. The sender
    must be the caller's to move money out of; the receiver may be anyone's."""
    wallet_ids = _transfer_wallet_ids(command)
    async with uow:
        # A wallet's currency and owner never change, so nothing needs locking until settle().
        facts = await uow.wallets.facts(wallet_ids)
        transfer = _transfer_of(caller, command, facts)
        return await _submit(uow, transfer, _transfer_record(caller, transfer))


async def transfer_atomically(
    caller: Caller, uow: UnitOfWork, command: TransferBatch
) -> list[Transaction]:
    """Record every transfer of the batch PENDING, linked so that settle() applies all of them
    or none; or, when any one is refused, record nothing (TransfersRejected says why, each)."""
    check_batch(command)
    async with uow:
        wallet_ids = {i for t in command.transfers for i in _parsable_wallet_ids(t)}
        facts = await uow.wallets.facts(wallet_ids)
        made = [_outcome(partial(_transfer_of, caller, t, facts)) for t in command.transfers]
        transfers = _all_accepted(made, _duplicate_keys(command.transfers))
        batch = Batch.of(transfers)
        records = [r for t in transfers if (r := _transfer_record(caller, t, batch))]
        earlier = await uow.idempotency_keys.claim_many(records)
        if earlier:
            return await _replayed_batch(uow, records, earlier)
        recorded = await uow.write(recorded=transfers)
        await uow.commit()
    return recorded


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
    wallet pays for one lock per batch instead of one per transfer. A transfer of an atomic
    batch brings the rest of its batch along: they are applied all together or not at all.
    """
    async with uow:
        unlocked = await uow.transactions.pending(transaction_ids)
        if not unlocked:
            return []
        wallets = await uow.wallets.lock({i for t in unlocked for i in t.wallet_ids})
        # Under the wallets' locks: another worker may have settled some meanwhile.
        pending = await _locked(uow, unlocked)
        entries: list[LedgerEntry] = []
        for linked in _linked(pending):
            entries += apply_all_or_none(linked, wallets)
        balances = [wallets[i] for i in sorted({e.wallet_id for e in entries})]
        originals = await _given_back(uow, pending)
        settled = await uow.write(
            decided=pending, balances=balances, entries=entries, originals=originals
        )
        await uow.commit()
    return settled


async def fail_pending(
    uow: UnitOfWork, transaction_id: UUID, error: WalletError
) -> Transaction | None:
    """Give up on a transaction that could not be settled, and on the rest of its atomic
    batch (LINKED_TRANSFER_FAILED): none of it may then be applied. A final one is left as
    it is."""
    async with uow:
        pending = await _locked(uow, await uow.transactions.pending([transaction_id]))
        if not pending:
            return await uow.transactions.get(transaction_id)
        linked = LinkedTransferFailed(f"transaction {transaction_id} of its batch failed")
        for transaction in pending:
            failure = error if transaction.id == transaction_id else linked
            transaction.fail(failure.code, failure.message)
        originals = await _given_back(uow, pending)
        decided = await uow.write(decided=pending, originals=originals)
        await uow.commit()
    return next((t for t in decided if t.id == transaction_id), None)


async def place_hold(caller: Caller, uow: UnitOfWork, command: PlaceHold) -> Hold:
    """Reserve money in the caller's wallet, decided at once: ACTIVE, or refused with nothing
    recorded. A capture sends it to the receiver wallet, or out when there is none."""
    wallet_id = parse_wallet_id(command.wallet_id, field="wallet_id")
    receiver_id = _optional_wallet_id(command.receiver_wallet_id, field="receiver_wallet_id")
    key = check_key(command.client_transaction_id)
    seconds = _hold_seconds(command.expires_in_seconds)
    description = check_description(command.description)
    if receiver_id == wallet_id:
        raise SameWallet("a hold's receiver must be another wallet", field="receiver_wallet_id")
    async with uow:
        facts = await uow.wallets.facts([i for i in (wallet_id, receiver_id) if i is not None])
        currency = _owned(caller, facts, wallet_id, field="wallet_id").currency
        if receiver_id is not None:
            receiver = _found(facts, receiver_id, field="receiver_wallet_id").currency
            _check_same_currency(wallet_id, currency, receiver_id, receiver, "receiver_wallet_id")
        amount = parse_positive_amount(command.amount, currency)
        expires_at = now() + timedelta(seconds=seconds)
        hold = Hold.place(
            wallet_id,
            amount,
            receiver=receiver_id,
            key=key,
            expires_at=expires_at,
            description=description,
        )
        wallet = (await uow.wallets.lock([wallet_id]))[wallet_id]
        record = _record(
            caller,
            key,
            Operation.PLACE_HOLD,
            hold,
            wallet=wallet_id,
            receiver=receiver_id,
            amount=amount.minor,
            seconds=seconds,
            description=description,
        )
        earlier = await claim(uow, record)
        if earlier is not None:
            return await _recorded_hold(uow, earlier)
        wallet.reserve(amount)
        await uow.write(balances=[wallet])
        hold = await uow.holds.add(hold)
        await uow.commit()
    return hold


async def capture_hold(caller: Caller, uow: UnitOfWork, command: CaptureHold) -> Transaction:
    """Move up to the held amount to the hold's receiver (or out), as one COMPLETED
    transaction, and release the rest."""
    hold_id = _parse_hold_id(command.hold_id)
    key = check_key(command.client_transaction_id)
    async with uow:
        hold = await _seen_hold(caller, uow, hold_id)
        amount = hold.amount
        if command.amount is not None:
            amount = parse_positive_amount(command.amount, amount.currency)
        wallets = await uow.wallets.lock(hold.wallet_ids)
        capture = hold.capture_of(amount, key=key)
        record = _record(
            caller, key, Operation.CAPTURE_HOLD, capture, hold=hold_id, amount=amount.minor
        )
        earlier = await claim(uow, record)
        if earlier is not None:
            return await _recorded_transaction(uow, earlier)
        hold = await _locked_hold(uow, hold_id)
        entries = hold.capture(capture, wallets, now())
        balances = [wallets[i] for i in hold.wallet_ids]
        (capture,) = await uow.write(recorded=[capture], balances=balances, entries=entries)
        await uow.holds.close([hold])
        await uow.commit()
    return capture


async def void_hold(caller: Caller, uow: UnitOfWork, command: VoidHold) -> Hold:
    """Release all of an ACTIVE hold."""
    hold_id = _parse_hold_id(command.hold_id)
    key = check_key(command.client_transaction_id)
    async with uow:
        hold = await _seen_hold(caller, uow, hold_id)
        wallet = (await uow.wallets.lock([hold.wallet_id]))[hold.wallet_id]
        record = _record(caller, key, Operation.VOID_HOLD, hold, hold=hold_id)
        earlier = await claim(uow, record)
        if earlier is not None:
            return await _recorded_hold(uow, earlier)
        hold = await _locked_hold(uow, hold_id)
        hold.void(wallet, now())
        await uow.write(balances=[wallet])
        (hold,) = await uow.holds.close([hold])
        await uow.commit()
    return hold


async def reverse_transaction(
    caller: Caller, uow: UnitOfWork, command: ReverseTransaction
) -> Transaction:
    """Record a PENDING reversal of a COMPLETED deposit, withdrawal or transfer; settle()
    moves the money back, or fails it. Its share of the original is taken at once, under
    the original's lock, so reversals asked for together never return more than it moved."""
    original_id = _parse_id(command.transaction_id, "transaction", "transaction_id")
    key = check_key(command.client_transaction_id)
    description = check_description(command.description)
    async with uow:
        currency = (await _to_reverse(caller, uow, original_id)).amount.currency
        amount = None
        if command.amount is not None:
            amount = parse_positive_amount(command.amount, currency)
        # The key points at the reversal, which is made only once the original is locked.
        reversal_id = uuid4()
        record = None
        if key is not None:
            asked = amount.minor if amount is not None else None
            request = {"original": original_id, "amount": asked}
            record = IdempotencyRecord.of(
                caller.id,
                key,
                Operation.REVERSE_TRANSACTION,
                {**request, **_described(description)},
                transaction_id=reversal_id,
            )
        earlier = await claim(uow, record)
        if earlier is not None:
            return await _recorded_transaction(uow, earlier)
        original = (await uow.transactions.lock([original_id]))[original_id]
        reversal = original.reverse(amount, key=key, description=description, id=reversal_id)
        (reversal,) = await uow.write(recorded=[reversal], originals=[original])
        await uow.commit()
    return reversal


async def expire_holds(uow: UnitOfWork, limit: int = EXPIRY_BATCH) -> list[Hold]:
    """Release up to `limit` holds past their expiry, the longest due first (the worker's,
    for nobody in particular).

    Several workers share the work, and none waits behind another: wallets someone else has
    locked are skipped this round. Only the wallet of the hold longest due, once it is past
    EXPIRY_PATIENCE, is waited for, at most EXPIRY_WAIT, while nothing else is locked yet:
    so a busy wallet's holds still expire within seconds, and a stuck one stalls only its own.
    """
    at = now()
    async with uow:
        due = await uow.holds.due(at, limit)
        if not due:
            return []
        wallets: dict[UUID, Wallet] = {}
        if at - due[0].expires_at > EXPIRY_PATIENCE:
            wallets = await uow.wallets.lock([due[0].wallet_id], within=EXPIRY_WAIT)
        others = {h.wallet_id for h in due} - wallets.keys()
        wallets.update(await uow.wallets.lock(others, skip_locked=True))
        holds = await uow.holds.lock([h.id for h in due if h.wallet_id in wallets])
        for hold in holds:
            hold.expire(wallets[hold.wallet_id], at)
        await uow.write(balances=[wallets[i] for i in sorted({h.wallet_id for h in holds})])
        expired = await uow.holds.close(holds)
        await uow.commit()
    return expired


# What the use cases share.


def check_batch(command: TransferBatch) -> None:
    """A batch is refused as a whole, before anything else, when it is empty or too big."""
    if not 1 <= len(command.transfers) <= MAX_BATCH_TRANSFERS:
        raise InvalidInput(
            f"a batch holds from 1 to {MAX_BATCH_TRANSFERS:,} transfers", field="transfers"
        )


async def _locked(uow: UnitOfWork, unlocked: Sequence[Transaction]) -> list[Transaction]:
    """Those of the PENDING transactions read unlocked that still are, locked in the order
    they were recorded (as by every settlement: never in a cycle)."""
    still = await uow.transactions.lock_pending([t.id for t in unlocked])
    return [t for t in unlocked if t.id in still]


def _linked(pending: Sequence[Transaction]) -> list[list[Transaction]]:
    """The transactions in the order they were recorded, each alone or, at the place of its
    batch's first, with the rest of its atomic batch."""
    batches: dict[UUID, list[Transaction]] = {}
    linked: list[list[Transaction]] = []
    for transaction in pending:
        if transaction.batch_id is None:
            linked.append([transaction])
        elif transaction.batch_id in batches:
            batches[transaction.batch_id].append(transaction)
        else:
            batches[transaction.batch_id] = [transaction]
            linked.append(batches[transaction.batch_id])
    return linked


def _transfer_wallet_ids(command: Transfer) -> tuple[UUID, UUID]:
    sender_id = parse_wallet_id(command.from_wallet_id, field="from_wallet_id")
    receiver_id = parse_wallet_id(command.to_wallet_id, field="to_wallet_id")
    if sender_id == receiver_id:
        raise SameWallet("a transfer needs two different wallets", field="to_wallet_id")
    return sender_id, receiver_id


def _parsable_wallet_ids(command: Transfer) -> list[UUID]:
    try:
        return list(_transfer_wallet_ids(command))
    except WalletError:
        return []  # refused on its own once the others' facts are known


def _transfer_of(caller: Caller, command: Transfer, facts: dict[UUID, WalletFacts]) -> Transaction:
    """The PENDING transfer the command asks for, once its wallets' facts are known; or the
    refusal."""
    sender_id, receiver_id = _transfer_wallet_ids(command)
    key = check_key(command.client_transaction_id)
    sender = _owned(caller, facts, sender_id, field="from_wallet_id").currency
    receiver = _found(facts, receiver_id, field="to_wallet_id").currency
    _check_same_currency(sender_id, sender, receiver_id, receiver, "to_wallet_id")
    amount = parse_positive_amount(command.amount, sender)
    description = check_description(command.description)
    return Transaction.transfer(
        amount, sender=sender_id, receiver=receiver_id, key=key, description=description
    )


def _transfer_record(
    caller: Caller, transfer: Transaction, batch: Batch | None = None
) -> IdempotencyRecord | None:
    """What the transfer's key is claimed with: its request, and the atomic batch's digest
    when it is in one. A transfer sent alone is fingerprinted as it always was, so that
    stored fingerprints stay valid."""
    linked = {} if batch is None else {"batch": batch.digest}
    return _record(
        caller,
        transfer.client_transaction_id,
        Operation.TRANSFER,
        transfer,
        sender=transfer.sender_wallet_id,
        receiver=transfer.receiver_wallet_id,
        amount=transfer.amount.minor,
        **_described(transfer.description),
        **linked,
    )


def _outcome(make: Callable[[], T]) -> T | WalletError:
    try:
        return make()
    except WalletError as refusal:
        return refusal


def _duplicate_keys(transfers: Sequence[Transfer]) -> set[int]:
    """The transfers whose key an earlier one in the batch already uses."""
    seen: set[str] = set()
    again = set()
    for n, transfer in enumerate(transfers):
        if transfer.client_transaction_id in seen:
            again.add(n)
        seen.add(transfer.client_transaction_id)
    return again


def _all_accepted(
    made: Sequence[Transaction | WalletError], duplicates: set[int]
) -> list[Transaction]:
    """The transfers of an atomic batch, when none was refused; else TransfersRejected."""
    errors: list[WalletError | None] = [m if isinstance(m, WalletError) else None for m in made]
    for n in duplicates:
        errors[n] = errors[n] or IdempotencyKeyReused(
            "this client transaction id is used by another transfer of the batch",
            field="client_transaction_id",
        )
    if any(errors):
        linked = LinkedTransferFailed("another transfer of the batch was refused")
        raise TransfersRejected([e or linked for e in errors])
    return [m for m in made if not isinstance(m, WalletError)]


async def _replayed_batch(
    uow: UnitOfWork,
    records: list[IdempotencyRecord],
    earlier: dict[ScopedKey, IdempotencyRecord],
) -> list[Transaction]:
    """The batch as first recorded, when every key replays it; else TransfersRejected, naming
    each key used before for something else (a batch sent again with a transfer more, say)."""
    reused = {
        n
        for n, record in enumerate(records)
        if record.scoped_key in earlier and not earlier[record.scoped_key].is_replayed_by(record)
    }
    if reused or len(earlier) < len(records):
        error = IdempotencyKeyReused(
            "client transaction id already used for a different request",
            field="client_transaction_id",
        )
        linked = LinkedTransferFailed("another transfer of the batch was refused")
        # Every key replaying this very batch yet some not recorded cannot be: the batch is
        # recorded whole. Were it so, the keys used before are named.
        named = reused or {n for n, r in enumerate(records) if r.scoped_key in earlier}
        raise TransfersRejected([error if n in named else linked for n in range(len(records))])
    return [await _recorded_transaction(uow, earlier[r.scoped_key]) for r in records]


def parse_wallet_id(text: str, field: str) -> UUID:
    return _parse_id(text, "wallet", field)


def _parse_id(text: str, what: str, field: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise InvalidInput(f"{text!r} is not a {what} id (a UUID)", field=field) from None


def _optional_wallet_id(text: str | None, field: str) -> UUID | None:
    return None if text is None else parse_wallet_id(text, field=field)


def _parse_hold_id(text: str) -> UUID:
    return _parse_id(text, "hold", "hold_id")


def _hold_seconds(seconds: int) -> int:
    if not MIN_HOLD_SECONDS <= seconds <= MAX_HOLD_SECONDS:
        raise InvalidInput(
            f"a hold lasts from {MIN_HOLD_SECONDS} second to {MAX_HOLD_SECONDS:,} seconds",
            field="expires_in_seconds",
        )
    return seconds


def check_description(text: str | None) -> str | None:
    if text is not None and len(text) > MAX_DESCRIPTION_LENGTH:
        raise InvalidInput(
            f"a description may have at most {MAX_DESCRIPTION_LENGTH} characters",
            field="description",
        )
    return text


def _described(description: str | None) -> dict[str, str]:
    """A request's description, as its fingerprint takes it: only when there is one, so that
    requests made before descriptions existed keep their stored fingerprints."""
    return {} if description is None else {"description": description}


def _check_same_currency(
    sender_id: UUID, sender: Currency, receiver_id: UUID, receiver: Currency, field: str
) -> None:
    if sender != receiver:
        raise CurrencyMismatch(
            f"wallet {sender_id} holds {sender.code} and wallet "
            f"{receiver_id} holds {receiver.code}",
            field=field,
        )


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
    result: Transaction | Hold,
    **request: object,
) -> IdempotencyRecord | None:
    """What the caller's key is claimed with, when the request has one: the request, and the
    transaction or hold it makes."""
    if key is None:
        return None
    if isinstance(result, Hold):
        return IdempotencyRecord.of(caller.id, key, operation, request, hold_id=result.id)
    return IdempotencyRecord.of(caller.id, key, operation, request, transaction_id=result.id)


async def claim(uow: UnitOfWork, record: IdempotencyRecord | None) -> IdempotencyRecord | None:
    """Claim the key for this request, if it has one; return the earlier record when this
    is a replay."""
    if record is None:
        return None
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


async def _to_reverse(caller: Caller, uow: UnitOfWork, transaction_id: UUID) -> Transaction:
    """The transaction, read without locking, once the caller may reverse it. One the caller
    may not see is refused exactly as an unknown one."""
    transaction = await uow.transactions.get(transaction_id)
    if transaction is not None:
        owners = await _owners(uow, transaction)
        if access.may_see_transaction(caller, transaction, owners):
            access.check_reversal(caller, transaction, owners)
            return transaction
    raise TransactionNotFound(f"there is no transaction {transaction_id}", field="transaction_id")


async def _given_back(uow: UnitOfWork, decided: Sequence[Transaction]) -> list[Transaction]:
    """The originals of the FAILED reversals among `decided`, locked, each given back the
    share its reversals took: what they did not move may be reversed again."""
    failed = [
        t for t in decided if t.reversal_of is not None and t.status is TransactionStatus.FAILED
    ]
    if not failed:
        return []
    originals = await uow.transactions.lock({t.reversal_of for t in failed if t.reversal_of})
    for reversal in failed:
        assert reversal.reversal_of is not None
        originals[reversal.reversal_of].give_back(reversal)
    return list(originals.values())


async def _seen_hold(caller: Caller, uow: UnitOfWork, hold_id: UUID) -> Hold:
    """The hold, read without locking; one the caller may not see is refused exactly as an
    unknown one."""
    hold = await uow.holds.get(hold_id)
    if hold is not None and access.may_see_transaction(caller, hold, await _owners(uow, hold)):
        return hold
    raise HoldNotFound(f"there is no hold {hold_id}", field="hold_id")


async def _owners(uow: UnitOfWork, moved: Transaction | Hold) -> dict[UUID, str]:
    """The owner of each wallet the transaction or hold touches, as access.py asks for them."""
    facts = await uow.wallets.facts(moved.wallet_ids)
    return {wallet_id: f.owner_id for wallet_id, f in facts.items()}


async def _locked_hold(uow: UnitOfWork, hold_id: UUID) -> Hold:
    """The hold, locked (its wallets are) and read again: it may have ended meanwhile."""
    hold = await uow.holds.get(hold_id, lock=True)
    assert hold is not None, "holds are never deleted"
    return hold


async def _recorded_hold(uow: UnitOfWork, record: IdempotencyRecord) -> Hold:
    assert record.hold_id is not None
    hold = await uow.holds.get(record.hold_id)
    assert hold is not None, "an idempotency key points at its hold"
    return hold


async def _recorded_wallet(uow: UnitOfWork, record: IdempotencyRecord) -> Wallet:
    assert record.wallet_id is not None
    wallet = await uow.wallets.get(record.wallet_id)
    assert wallet is not None, "an idempotency key points at its wallet"
    return wallet
