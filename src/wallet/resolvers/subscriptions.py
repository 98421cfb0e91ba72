from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from uuid import UUID

import strawberry
from strawberry.types import Info

from wallet.domain import access
from wallet.domain.model import Transaction as DomainTransaction
from wallet.persistence.database import is_disconnect
from wallet.schema.context import Context
from wallet.schema.types import PublicError, Transaction, WalletNotFoundError, id_argument

# How long a subscriber waits for news before it checks PostgreSQL itself, so that an event
# lost while Redis was away delays an update by seconds at most, never forever.
RECHECK_SECONDS = 5.0
# While PostgreSQL is out of reach, the first recheck comes this soon, then twice as late each
# time, up to RECHECK_SECONDS: the final status reaches the subscriber soon after it is back.
OUTAGE_RECHECK_SECONDS = 0.25

log = logging.getLogger(__name__)


async def _current(info: Info[Context, None], transaction_id: UUID) -> DomainTransaction | None:
    (transaction,) = await info.context.reads.transactions([transaction_id])
    return transaction


async def _recheck(info: Info[Context, None], transaction_id: UUID) -> DomainTransaction | None:
    """The transaction as PostgreSQL has it now, or None while PostgreSQL is out of reach: a
    subscriber waits out an outage (a restart, a failover) rather than losing its answer."""
    try:
        return await _current(info, transaction_id)
    except Exception as error:
        if not is_disconnect(error):
            raise
        # At info: an outage is told once, by readiness; this is one subscriber's share of it.
        log.info("could not recheck %s: PostgreSQL is out of reach (%s)", transaction_id, error)
        return None


def _fresh(info: Info[Context, None], transaction: DomainTransaction) -> Transaction:
    # A WebSocket's context lives as long as the connection: drop what its loaders remember,
    # so nested wallets, transactions and holds show themselves as of this event.
    info.context.forget_all()
    return Transaction.from_domain(transaction)


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description=(
            "The transaction as it is now, then again at each change of its status; "
            "ends once it is COMPLETED or FAILED."
        )
    )
    async def transaction_updated(
        self,
        info: Info[Context, None],
        id: strawberry.ID,
    ) -> AsyncGenerator[Transaction, None]:
        transaction_id = id_argument(id, "id")
        # Listen before reading, so that no change falls between the read and the listening.
        async with info.context.feed.transaction(transaction_id) as changes:
            current = await _current(info, transaction_id)
            # One the caller may not see is told exactly as one that does not exist.
            if current is None or not await info.context.sees(current):
                raise PublicError(f"there is no transaction {transaction_id}")
            yield _fresh(info, current)
            misses = 0  # rechecks in a row that could not reach PostgreSQL
            while not current.is_final:
                wait = RECHECK_SECONDS
                if misses:
                    wait = min(OUTAGE_RECHECK_SECONDS * 2 ** (misses - 1), RECHECK_SECONDS)
                change = await changes.next(wait)
                if change is None:
                    change = await _recheck(info, transaction_id)
                    if change is None:
                        misses += 1
                        continue
                misses = 0
                if change.status == current.status:
                    continue
                current = change
                # Its wallets and their owners never change, so neither does the answer; asked
                # again so that no event reaches a caller the rules would not show it to.
                if not await info.context.sees(current):
                    raise PublicError(f"there is no transaction {transaction_id}")
                yield _fresh(info, current)

    @strawberry.subscription(
        description=(
            "Every transaction that touches the wallet, when it is recorded "
            "and at each change of its status."
        )
    )
    async def wallet_activity(
        self, info: Info[Context, None], wallet_id: strawberry.ID
    ) -> AsyncGenerator[Transaction, None]:
        wallet = id_argument(wallet_id, "walletId")
        async with info.context.feed.wallet(wallet) as changes:
            (found,) = await info.context.reads.wallets([wallet])
            # For its owner and admins only; to anyone else it does not exist.
            if found is None or not access.may_see(info.context.caller, found):
                raise WalletNotFoundError(f"there is no wallet {wallet}")
            while True:
                change = await changes.next(RECHECK_SECONDS)
                if change is None:
                    continue
                # A wallet's owner never changes; asked at each event all the same, so that
                # what this stream sends is decided by the rules, not by how it was opened.
                if not access.may_see(info.context.caller, found):
                    raise WalletNotFoundError(f"there is no wallet {wallet}")
                yield _fresh(info, change)
