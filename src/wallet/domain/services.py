"""The use cases: create a wallet, deposit, withdraw, transfer, and settle what was submitted.

Every write runs in one unit of work. Lock order is always the same: wallet rows in
ascending id order, then the idempotency key, then the transaction row, so two units
of work can wait for each other but never in a cycle. PostgreSQL may still abort one
(a deadlock or a serialization failure); the whole unit of work is then run again.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar
from uuid import UUID, uuid4

from wallet.domain.errors import (
    ConcurrencyConflict,
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
    Transaction,
    TransactionStatus,
    TransactionType,
    Wallet,
    fingerprint,
)
from wallet.domain.money import Currency, Money, parse_positive_amount
from wallet.domain.ports import UnitOfWork, UnitOfWorkFactory

log = logging.getLogger(__name__)

MAX_KEY_LENGTH = 255
MAX_ATTEMPTS = 8

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CreateWallet:
    currency: str = "USD"
    initial_balance: str = "0"
    client_transaction_id: str | None = None


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


async def retrying(attempt: Callable[[], Awaitable[T]], *, attempts: int = MAX_ATTEMPTS) -> T:
    """Run a unit of work again when the database aborted it to break a conflict.

    The backoff is jittered so that the transactions that collided do not collide again.
    """
    for n in range(attempts):
        try:
            return await attempt()
        except ConcurrencyConflict:
            if n == attempts - 1:
                raise
            await asyncio.sleep(random.uniform(0, 0.005 * 2**n))
    raise AssertionError("unreachable")


def parse_wallet_id(text: str, field: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise InvalidInput(f"{text!r} is not a wallet id (a UUID)", field=field) from None


def check_key(key: str | None, field: str = "clientTransactionId") -> str | None:
    if key is None:
        return None
    if not key or key.strip() != key:
        raise InvalidInput(
            "clientTransactionId must be non-empty, without surrounding spaces", field=field
        )
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(
            f"clientTransactionId may have at most {MAX_KEY_LENGTH} characters", field=field
        )
    return key


async def _replay_or_claim(uow: UnitOfWork, record: IdempotencyRecord) -> IdempotencyRecord | None:
    """Claim the key for this request; return the earlier record when this is a replay."""
    earlier = await uow.idempotency_keys.claim(record)
    return None if earlier is None else _replayed(earlier, record)


def _replayed(earlier: IdempotencyRecord, record: IdempotencyRecord) -> IdempotencyRecord:
    """The earlier record, when this request is the same one again."""
    if earlier.operation != record.operation or earlier.fingerprint != record.fingerprint:
        raise IdempotencyKeyReused(
            f"clientTransactionId {record.key!r} was already used for a different request",
            field="clientTransactionId",
        )
    return earlier


async def _recorded_transaction(uow: UnitOfWork, record: IdempotencyRecord) -> Transaction:
    assert record.transaction_id is not None
    transaction = await uow.transactions.get(record.transaction_id)
    assert transaction is not None, "an idempotency key points at its transaction"
    return transaction


async def create_wallet(uow_factory: UnitOfWorkFactory, command: CreateWallet) -> Wallet:
    key = check_key(command.client_transaction_id)
    currency = Currency.of(command.currency)
    initial = Money.parse(command.initial_balance, currency, field="initialBalance")
    if initial.minor > 0:
        initial = parse_positive_amount(command.initial_balance, currency, field="initialBalance")

    async def attempt() -> Wallet:
        async with uow_factory() as uow:
            wallet_id = uuid4()
            if key is not None:
                record = IdempotencyRecord(
                    key,
                    "createWallet",
                    fingerprint("createWallet", currency=currency.code, initial=initial.minor),
                    wallet_id=wallet_id,
                )
                earlier = await _replay_or_claim(uow, record)
                if earlier is not None:
                    assert earlier.wallet_id is not None
                    wallet = await uow.wallets.get(earlier.wallet_id)
                    assert wallet is not None
                    return wallet
            wallet = await uow.wallets.add(Wallet(wallet_id, currency, Money(0, currency)))
            if initial.minor > 0:
                await _record_deposit(
                    uow,
                    Transaction(
                        uuid4(),
                        TransactionType.DEPOSIT,
                        TransactionStatus.PENDING,
                        initial,
                        None,
                        wallet.id,
                        key,
                    ),
                    wallet,
                )
            await uow.commit()
            return wallet

    return await retrying(attempt)


async def deposit(uow_factory: UnitOfWorkFactory, command: Deposit) -> Transaction:
    """Deposits are applied at once: there is nothing they can wait for."""
    return _raised(await deposit_many(uow_factory, [command]))


def _raised(outcomes: Sequence[Transaction | Exception]) -> Transaction:
    (outcome,) = outcomes
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


async def deposit_many(
    uow_factory: UnitOfWorkFactory, commands: Sequence[Deposit]
) -> list[Transaction | Exception]:
    """Apply deposits together: one lock pass, one write and one commit for them all.

    Each is decided on its own, as if it came alone: applied, refused (its WalletError in
    its place), or, for a clientTransactionId used before, answered with what it recorded.
    Only the database work is shared. A deposit repeating a key of an earlier one in the
    same call waits for that one's commit, then replays it.
    """
    outcomes: list[Transaction | Exception | None] = [None] * len(commands)
    checked: list[tuple[int, UUID, str | None]] = []
    for n, command in enumerate(commands):
        try:
            wallet_id = parse_wallet_id(command.wallet_id, "walletId")
            checked.append((n, wallet_id, check_key(command.client_transaction_id)))
        except WalletError as refusal:
            outcomes[n] = refusal
    now, later = _first_use_of_each_key(checked)
    decided = await _together_or_each_alone(partial(_deposit_together, uow_factory, commands), now)
    for n, *_ in later:
        (decided[n],) = await deposit_many(uow_factory, [commands[n]])
    return _in_order(outcomes, decided)


Checked = TypeVar("Checked", bound=tuple[Any, ...])


async def _together_or_each_alone(
    run: Callable[[Sequence[Checked]], Awaitable[dict[int, Transaction | Exception]]],
    checked: Sequence[Checked],
) -> dict[int, Transaction | Exception]:
    """Run checked commands (each numbered first) in one unit of work. When that fails for
    a reason none of them was refused for (a constraint, a bug), run each alone, so that a
    bad one fails alone; its error then stands in its place."""
    if not checked:
        return {}
    try:
        return await retrying(partial(run, checked))
    except Exception as failure:
        if len(checked) == 1:
            return {checked[0][0]: failure}
        log.warning(
            "a batch of %d failed (%s: %s); deciding each one at a time",
            len(checked),
            type(failure).__name__,
            failure,
        )
    decided: dict[int, Transaction | Exception] = {}
    for one in checked:
        try:
            decided.update(await retrying(partial(run, [one])))
        except Exception as failure:
            decided[one[0]] = failure
    return decided


def _in_order(
    outcomes: list[Transaction | Exception | None], decided: dict[int, Transaction | Exception]
) -> list[Transaction | Exception]:
    for n, outcome in decided.items():
        outcomes[n] = outcome
    assert all(outcome is not None for outcome in outcomes), "every command is answered"
    return [outcome for outcome in outcomes if outcome is not None]


def _first_use_of_each_key(checked: Sequence[Checked]) -> tuple[list[Checked], list[Checked]]:
    """Split checked commands (their key last) into those that can go together, and those
    repeating the key of one before them: they go after it, and so replay it."""
    together: list[Checked] = []
    after: list[Checked] = []
    keys: set[str] = set()
    for item in checked:
        key = item[-1]
        if key is None or key not in keys:
            together.append(item)
            if key is not None:
                keys.add(key)
        else:
            after.append(item)
    return together, after


async def _deposit_together(
    uow_factory: UnitOfWorkFactory,
    commands: Sequence[Deposit],
    now: Sequence[tuple[int, UUID, str | None]],
) -> dict[int, Transaction | Exception]:
    decided: dict[int, Transaction | Exception] = {}
    async with uow_factory() as uow:
        wallets = await uow.wallets.lock({wallet_id for _, wallet_id, _ in now})
        fresh: list[tuple[int, Transaction, IdempotencyRecord | None]] = []
        for n, wallet_id, key in now:
            wallet = wallets.get(wallet_id)
            if wallet is None:
                decided[n] = WalletNotFound(f"there is no wallet {wallet_id}", field="walletId")
                continue
            try:
                amount = parse_positive_amount(commands[n].amount, wallet.currency)
            except WalletError as refusal:
                decided[n] = refusal
                continue
            transaction = Transaction(
                uuid4(),
                TransactionType.DEPOSIT,
                TransactionStatus.PENDING,
                amount,
                None,
                wallet_id,
                key,
            )
            record = None
            if key is not None:
                record = IdempotencyRecord(
                    key,
                    "deposit",
                    fingerprint("deposit", wallet=wallet_id, amount=amount.minor),
                    transaction_id=transaction.id,
                )
            fresh.append((n, transaction, record))

        earlier = await uow.idempotency_keys.claim_many([r for _, _, r in fresh if r])
        applied: list[tuple[int, Transaction]] = []
        replayed: list[tuple[int, IdempotencyRecord]] = []
        entries: list[LedgerEntry] = []
        released: list[str] = []
        for n, transaction, record in fresh:
            if record is not None and record.key in earlier:
                try:
                    replayed.append((n, _replayed(earlier[record.key], record)))
                except WalletError as refusal:
                    decided[n] = refusal
                continue
            try:
                # In the order they came: each sees the balance the ones before it left.
                entries += transaction.apply(wallets)
            except WalletError as refusal:
                # Refused, so recorded nowhere (not as FAILED: nobody waits on it), and its
                # key is free again for a corrected request.
                decided[n] = refusal
                if record is not None:
                    released.append(record.key)
                continue
            applied.append((n, transaction))
        if released:
            await uow.idempotency_keys.release(released)
        if applied:
            touched = {t.receiver_wallet_id for _, t in applied}
            stored = await uow.write(
                recorded=[t for _, t in applied],
                balances=[w for i, w in wallets.items() if i in touched],
                entries=entries,
            )
            decided.update(zip((n for n, _ in applied), stored, strict=True))
        for n, record in replayed:
            decided[n] = await _recorded_transaction(uow, record)
        await uow.commit()
    return decided


async def _record_deposit(uow: UnitOfWork, transaction: Transaction, wallet: Wallet) -> Transaction:
    entries = transaction.apply({wallet.id: wallet})
    (transaction,) = await uow.write(recorded=[transaction], balances=[wallet], entries=entries)
    return transaction


async def submit_withdrawal(uow_factory: UnitOfWorkFactory, command: Withdraw) -> Transaction:
    """Record a PENDING withdrawal; settle() decides it under the wallet's lock."""
    return _raised(await submit_many(uow_factory, [command]))


async def submit_transfer(uow_factory: UnitOfWorkFactory, command: Transfer) -> Transaction:
    """Record a PENDING transfer; settle() decides it under both wallets' locks."""
    return _raised(await submit_many(uow_factory, [command]))


async def submit_many(
    uow_factory: UnitOfWorkFactory, commands: Sequence[Withdraw | Transfer]
) -> list[Transaction | Exception]:
    """Record withdrawals and transfers as PENDING, together in one statement.

    Each is checked and answered on its own, as if it came alone: recorded, refused (its
    WalletError in its place), or, for a clientTransactionId used before, answered with what
    it recorded. Nothing is locked: a wallet's existence and currency never change, and the
    balance is only looked at when settle() decides. A command repeating a key of another in
    the same call waits for that one, then replays it.
    """
    outcomes: list[Transaction | Exception | None] = [None] * len(commands)
    valid: list[Submission] = []
    for n, command in enumerate(commands):
        try:
            valid.append((n, command, *_check_submission(command)))
        except WalletError as refusal:
            outcomes[n] = refusal
    now, later = _first_use_of_each_key(valid)
    decided = await _together_or_each_alone(partial(_submit_together, uow_factory), now)
    for n, *_ in later:
        (decided[n],) = await submit_many(uow_factory, [commands[n]])
    return _in_order(outcomes, decided)


# A checked withdrawal or transfer: its place in the call, the command, its wallets, its key.
Submission = tuple[int, Withdraw | Transfer, tuple[UUID, ...], str | None]


async def _submit_together(
    uow_factory: UnitOfWorkFactory, checked: Sequence[Submission]
) -> dict[int, Transaction | Exception]:
    decided: dict[int, Transaction | Exception] = {}
    async with uow_factory() as uow:
        currencies = await uow.wallets.currencies({i for _, _, ids, _ in checked for i in ids})
        submissions: list[tuple[int, Transaction, IdempotencyRecord | None]] = []
        for n, command, wallet_ids, key in checked:
            try:
                submissions.append((n, *_submission(command, wallet_ids, key, currencies)))
            except WalletError as refusal:
                decided[n] = refusal
        stored = await uow.submit_and_commit([(t, r) for _, t, r in submissions])
        for (n, _, record), submitted in zip(submissions, stored, strict=True):
            if submitted is not None:
                decided[n] = submitted
                continue
            assert record is not None, "only a taken key stops a submission"
            earlier = await uow.idempotency_keys.get(record.key)
            assert earlier is not None, "a taken key is never given back once committed"
            try:
                decided[n] = await _recorded_transaction(uow, _replayed(earlier, record))
            except WalletError as refusal:
                decided[n] = refusal
    return decided


def _check_submission(command: Withdraw | Transfer) -> tuple[tuple[UUID, ...], str | None]:
    """What can be checked without the database: the wallets named, and the key."""
    if isinstance(command, Withdraw):
        wallet_ids: tuple[UUID, ...] = (parse_wallet_id(command.wallet_id, "walletId"),)
    else:
        sender_id = parse_wallet_id(command.from_wallet_id, "fromWalletId")
        receiver_id = parse_wallet_id(command.to_wallet_id, "toWalletId")
        wallet_ids = (sender_id, receiver_id)
    key = check_key(command.client_transaction_id)
    if len(wallet_ids) == 2 and wallet_ids[0] == wallet_ids[1]:
        raise SameWallet("a transfer needs two different wallets", field="toWalletId")
    return wallet_ids, key


def _submission(
    command: Withdraw | Transfer,
    wallet_ids: tuple[UUID, ...],
    key: str | None,
    currencies: dict[UUID, Currency],
) -> tuple[Transaction, IdempotencyRecord | None]:
    """The PENDING transaction a checked command records, and its key's record."""
    if isinstance(command, Withdraw):
        (wallet_id,) = wallet_ids
        currency = currencies.get(wallet_id)
        if currency is None:
            raise WalletNotFound(f"there is no wallet {wallet_id}", field="walletId")
        amount = parse_positive_amount(command.amount, currency)
        transaction = Transaction(
            uuid4(),
            TransactionType.WITHDRAWAL,
            TransactionStatus.PENDING,
            amount,
            wallet_id,
            None,
            key,
        )
        operation = "withdraw"
        digest = fingerprint("withdraw", wallet=wallet_id, amount=amount.minor)
    else:
        sender_id, receiver_id = wallet_ids
        sender, receiver = currencies.get(sender_id), currencies.get(receiver_id)
        if sender is None:
            raise WalletNotFound(f"there is no wallet {sender_id}", field="fromWalletId")
        if receiver is None:
            raise WalletNotFound(f"there is no wallet {receiver_id}", field="toWalletId")
        if sender != receiver:
            raise CurrencyMismatch(
                f"wallet {sender_id} holds {sender.code} and wallet "
                f"{receiver_id} holds {receiver.code}",
                field="toWalletId",
            )
        amount = parse_positive_amount(command.amount, sender)
        transaction = Transaction(
            uuid4(),
            TransactionType.TRANSFER,
            TransactionStatus.PENDING,
            amount,
            sender_id,
            receiver_id,
            key,
        )
        operation = "transfer"
        digest = fingerprint(
            "transfer", sender=sender_id, receiver=receiver_id, amount=amount.minor
        )
    record = None
    if key is not None:
        record = IdempotencyRecord(key, operation, digest, transaction_id=transaction.id)
    return transaction, record


async def settle(uow_factory: UnitOfWorkFactory, transaction_id: UUID) -> Transaction | None:
    """Apply a PENDING transaction, or fail it, exactly once however often it is asked to.

    Returns the transaction as stored afterwards, or None when there is no such transaction.
    """
    settled = await settle_many(uow_factory, [transaction_id])
    if settled:
        return settled[0]
    async with uow_factory() as uow:
        return await uow.transactions.get(transaction_id)


async def settle_many(
    uow_factory: UnitOfWorkFactory, transaction_ids: Sequence[UUID]
) -> list[Transaction]:
    """Settle many PENDING transactions in one unit of work; returns those it settled.

    Every wallet they touch is locked in one sorted pass, then the transactions are applied
    one after another in the order they were recorded, so a hot wallet pays for one lock per
    batch instead of one per transfer. Ones already final (a duplicate job) are skipped.
    """

    async def attempt() -> list[Transaction]:
        async with uow_factory() as uow:
            unlocked = await uow.transactions.pending(transaction_ids)
            if not unlocked:
                return []
            wallet_ids = {i for t in unlocked for i in t.wallet_ids}
            wallets = await uow.wallets.lock(wallet_ids)
            # Re-read under the wallets' locks: another worker may have settled some meanwhile.
            pending = await uow.transactions.pending(transaction_ids, lock=True)
            entries: list[LedgerEntry] = []
            touched: set[UUID] = set()
            for transaction in pending:
                try:
                    entries += transaction.apply(wallets)
                    touched.update(transaction.wallet_ids)
                except WalletError as refusal:
                    transaction.fail(refusal.code, refusal.message)
            settled = await uow.write(
                decided=pending, balances=[wallets[i] for i in sorted(touched)], entries=entries
            )
            await uow.commit()
            return settled

    return await retrying(attempt)


async def fail_pending(
    uow_factory: UnitOfWorkFactory, transaction_id: UUID, error: WalletError
) -> Transaction | None:
    """Give up on a transaction that could not be settled; a final one is left as it is."""

    async def attempt() -> Transaction | None:
        async with uow_factory() as uow:
            transaction = await uow.transactions.get(transaction_id, lock=True)
            if transaction is None or transaction.is_final:
                return transaction
            transaction.fail(error.code, error.message)
            (transaction,) = await uow.write(decided=[transaction])
            await uow.commit()
            return transaction

    return await retrying(attempt)
