from __future__ import annotations

import strawberry
from strawberry.types import Info

from wallet.domain import access
from wallet.schema.context import Context
from wallet.schema.types import Hold, Transaction, Viewer, Wallet, id_argument


@strawberry.type
class Query:
    @strawberry.field(description="The caller, as its token names it.")
    def viewer(self, info: Info[Context, None]) -> Viewer:
        caller = info.context.caller
        return Viewer(id=strawberry.ID(caller.id), scopes=sorted(caller.scopes))

    # To a caller who may not see it, a wallet does not exist: the same null.
    @strawberry.field(description="The wallet with this id, or null when there is none.")
    async def wallet(self, info: Info[Context, None], id: strawberry.ID) -> Wallet | None:
        wallet_id = id_argument(id, "id")
        # Read at once rather than through the loader: a root field has nothing to batch
        # with, and the loader's two scheduling hops cost more than the read (bench/
        # read_ratio.py).
        (wallet,) = await info.context.reads.wallets([wallet_id])
        wallet = access.visible(info.context.caller, wallet)
        return Wallet.from_domain(wallet) if wallet is not None else None

    # Null too for a caller who may not see it (domain/access.py).
    @strawberry.field(description="The transaction with this id, or null when there is none.")
    async def transaction(
        self,
        info: Info[Context, None],
        id: strawberry.ID,
    ) -> Transaction | None:
        transaction_id = id_argument(id, "id")
        transaction = await info.context.transaction_loader.load(transaction_id)
        if transaction is None or not await info.context.sees(transaction):
            return None
        return Transaction.from_domain(transaction)

    # Null too for a caller who may not see it (domain/access.py).
    @strawberry.field(description="The hold with this id, or null when there is none.")
    async def hold(self, info: Info[Context, None], id: strawberry.ID) -> Hold | None:
        hold = await info.context.hold_loader.load(id_argument(id, "id"))
        if hold is None or not await info.context.sees(hold):
            return None
        return Hold.from_domain(hold)
