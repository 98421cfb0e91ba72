from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from uuid import UUID

import strawberry
from strawberry.types import Info

from wallet.domain.model import Transaction as DomainTransaction
from wallet.schema.context import Context
from wallet.schema.types import PublicError, Transaction

# How long a subscriber waits for news before it checks PostgreSQL itself, so that an event
# lost while Redis was away delays an update by seconds at most, never forever.
RECHECK_SECONDS = 5.0
# A recheck that fails waits twice as long for the next, up to this: the subscriber outlasts
# an outage of PostgreSQL without knocking on it five times a second per subscriber.
MAX_RECHECK_SECONDS = 30.0

log = logging.getLogger(__name__)


def _id(text: str, argument: str) -> UUID:
    try:
        return UUID(text)
    except ValueError:
        raise PublicError(f"`{argument}`: {text!r} is not a UUID") from None


async def _current(info: Info[Context, None], transaction_id: UUID) -> DomainTransaction | None:
    (transaction,) = await info.context.reads.transactions([transaction_id])
    return transaction


def _fresh(info: Info[Context, None], transaction: DomainTransaction) -> Transaction:
    # A WebSocket's context lives as long as the connection: drop what its loaders remember,
    # so nested wallets show their balance as of this event.
    info.context.wallet_loader.clear_all()
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
        transaction_id = _id(id, "id")
        # Listen before reading, so that no change falls between the read and the listening.
        async with info.context.feed.transaction(transaction_id) as changes:
            current = await _current(info, transaction_id)
            if current is None:
                raise PublicError(f"there is no transaction {transaction_id}")
            yield _fresh(info, current)
            wait = RECHECK_SECONDS
            while not current.is_final:
                change = await changes.next(wait)
                if change is None:
                    try:
                        change = await _current(info, transaction_id)
                    except Exception:
                        # The recheck only guards against an event lost on the way; its
                        # failure (PostgreSQL away, most likely) must not end a subscription
                        # whose final status is still to come, by event or by a later recheck.
                        wait = min(wait * 2, MAX_RECHECK_SECONDS)
                        log.warning(
                            "could not recheck %s; again in %.0f s",
                            transaction_id,
                            wait,
                            exc_info=True,
                        )
                        continue
                    wait = RECHECK_SECONDS
                    assert change is not None
                if change.status == current.status:
                    continue
                current = change
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
        wallet = _id(wallet_id, "walletId")
        async with info.context.feed.wallet(wallet) as changes:
            (found,) = await info.context.reads.wallets([wallet])
            if found is None:
                raise PublicError(f"there is no wallet {wallet}")
            while True:
                change = await changes.next(RECHECK_SECONDS)
                if change is not None:
                    yield _fresh(info, change)
