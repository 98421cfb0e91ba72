"""Who may do what: every rule of ownership and scope, in one place.

A wallet is its owner's. Its owner and admins see it and move money out of it; to anyone
else it does not exist, so what they are told is exactly what an unknown id gets. Anyone
may send money *to* any wallet. Deposits, and wallets opened with money in them, need the
deposit scope; opening a wallet for someone else needs the admin scope. A transaction is
seen by the owners of its wallets and by admins.

A hold is placed by whoever may move money out of its wallet. It is seen, captured and
voided by its wallet's owner, its receiver wallet's owner and admins; to anyone else it
does not exist.

A transfer is reversed (a refund) by its receiver's owner; deposits and withdrawals, which
move money in from or out to the world, only by admins.
"""

from __future__ import annotations

from collections.abc import Mapping
from uuid import UUID

from wallet.domain.callers import Caller
from wallet.domain.errors import Forbidden
from wallet.domain.model import (
    REVERSIBLE_TYPES,
    Hold,
    Transaction,
    TransactionType,
    Wallet,
    WalletFacts,
)


def may_see(caller: Caller, wallet: Wallet | WalletFacts) -> bool:
    """Whether the wallet exists for this caller."""
    return caller.is_admin or wallet.owner_id == caller.id


def may_move_out_of(caller: Caller, wallet: Wallet | WalletFacts) -> bool:
    """Whether the caller may withdraw from the wallet or transfer out of it."""
    return may_see(caller, wallet)


def visible(caller: Caller, wallet: Wallet | None) -> Wallet | None:
    """The wallet, or None (as for an unknown id) where the caller may not see it."""
    return wallet if wallet is not None and may_see(caller, wallet) else None


def may_see_transaction(
    caller: Caller, transaction: Transaction | Hold, owners: Mapping[UUID, str]
) -> bool:
    """Whether the caller sees the transaction, or the hold (and may then capture or void
    it): `owners` names the owner of each of its wallets (wallets are never deleted, so
    every one is there)."""
    if caller.is_admin:
        return True
    return any(owners.get(i) == caller.id for i in transaction.wallet_ids)


def check_reversal(caller: Caller, transaction: Transaction, owners: Mapping[UUID, str]) -> None:
    """Refuses a caller who sees the transaction but may not reverse it."""
    if caller.is_admin or transaction.type not in REVERSIBLE_TYPES:
        return  # what is not reversible at all is refused as such, whoever asks
    receiver = transaction.receiver_wallet_id
    transfer = transaction.type is TransactionType.TRANSFER
    if transfer and receiver is not None and owners.get(receiver) == caller.id:
        return
    raise Forbidden(
        "only the receiver's owner reverses a transfer, and only admins reverse deposits and "
        "withdrawals",
        field="transaction_id",
    )


def check_deposit(caller: Caller) -> None:
    """A deposit brings money in from outside: only the funding service (or an admin)."""
    if not caller.may_deposit:
        raise Forbidden("a deposit needs the wallet:deposit scope", field="amount")


def owner_of_new_wallet(caller: Caller, owner_id: str | None, *, funded: bool) -> str:
    """Whose a new wallet is: the caller's, or (for an admin) `owner_id`'s. Refuses a funded
    wallet (a positive initial balance) without the deposit scope."""
    if funded and not caller.may_deposit:
        raise Forbidden(
            "an initial balance needs the wallet:deposit scope", field="initial_balance"
        )
    if owner_id is None:
        return caller.id
    if not caller.is_admin:
        raise Forbidden("creating a wallet for another owner needs wallet:admin", field="owner_id")
    return owner_id
