from __future__ import annotations

import strawberry
from strawberry.types import Info

from wallet.schema.context import Context
from wallet.schema.types import Transaction, Wallet, id_argument


@strawberry.type
class Query:
    @strawberry.field(description="The wallet with this id, or null when there is none.")
    async def wallet(self, info: Info[Context, None], id: strawberry.ID) -> Wallet | None:
        wallet_id = id_argument(id, "id")
        # Read at once rather than through the loader: a root field has nothing to batch
        # with, and the loader's two scheduling hops cost more than the read (bench/
        # read_ratio.py).
        (wallet,) = await info.context.reads.wallets([wallet_id])
        return Wallet.from_domain(wallet) if wallet is not None else None

    @strawberry.field(description="The transaction with this id, or null when there is none.")
    async def transaction(
        self,
        info: Info[Context, None],
        id: strawberry.ID,
    ) -> Transaction | None:
        transaction_id = id_argument(id, "id")
        transaction = await info.context.transaction_loader.load(transaction_id)
        return Transaction.from_domain(transaction) if transaction is not None else None
