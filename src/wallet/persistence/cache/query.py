"""A HistoryQuery that reads through the cache."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from wallet.domain.ledger import (
    BalanceRequest,
    EntriesRequest,
    EntryPage,
    Statement,
    StatementRequest,
)
from wallet.domain.model import (
    HistoryRequest,
    Hold,
    HoldPage,
    HoldsRequest,
    OwnedWalletsRequest,
    Page,
    Transaction,
    Wallet,
    WalletPage,
)
from wallet.domain.ports import HistoryQuery
from wallet.persistence.cache.pages import HEAD_SIZE, is_first_page, page_from_entry, page_from_head
from wallet.persistence.cache.reads import CacheReads


class CachedHistoryQuery:
    """A HistoryQuery that answers from the cache what it can and asks `inner` the rest.

    The wallets it returns may be shared by concurrent requests: they are read, never changed.
    """

    def __init__(self, inner: HistoryQuery, cache: CacheReads) -> None:
        self._inner = inner
        self._cache = cache

    async def wallets(self, wallet_ids: Sequence[UUID]) -> list[Wallet | None]:
        opened = await self._cache.open_wallets(wallet_ids)
        if opened is None:
            return await self._inner.wallets(wallet_ids)
        found, generations = opened
        if len(found) == len(wallet_ids):
            return [found[i] for i in wallet_ids]
        missing = [i for i in wallet_ids if i not in found]
        if missing:
            read = await self._inner.wallets(missing)
            fills = []
            for wallet_id, wallet in zip(missing, read, strict=True):
                if wallet is None:
                    continue
                found[wallet_id] = wallet
                if wallet_id in generations:
                    fills.append((generations[wallet_id], wallet))
            await self._cache.fill_wallets(fills)
        return [found.get(i) for i in wallet_ids]

    async def transactions(self, transaction_ids: Sequence[UUID]) -> list[Transaction | None]:
        return await self._inner.transactions(transaction_ids)

    async def owned_wallets(self, request: OwnedWalletsRequest) -> WalletPage:
        # Not cached: a caller's list of wallets is read rarely, and a new wallet must be in it.
        return await self._inner.owned_wallets(request)

    # Holds are not cached: what they reserve is in the wallet's cached entry (`held`), and
    # a hold itself is read rarely, by the few who may see it.
    async def holds(self, hold_ids: Sequence[UUID]) -> list[Hold | None]:
        return await self._inner.holds(hold_ids)

    async def wallet_holds(self, request: HoldsRequest) -> HoldPage:
        return await self._inner.wallet_holds(request)

    async def entries(self, request: EntriesRequest) -> EntryPage:
        # Not cached: pages past the first are read rarely, and the first changes with each
        # movement; one range of an index answers it.
        return await self._inner.entries(request)

    # Not cached: an entry's created_at is the clock reading of the statement that wrote it,
    # and its transaction may commit any time later (no statement or transaction timeout
    # bounds how long), so no instant is known to be final, and a cached balance at it or a
    # cached statement ending after it could go stale. Each is one index lookup (or one
    # range) anyway, no dearer than asking Redis.
    async def balances_at(self, requests: Sequence[BalanceRequest]) -> list[int]:
        return await self._inner.balances_at(requests)

    async def statements(self, requests: Sequence[StatementRequest]) -> list[Statement]:
        return await self._inner.statements(requests)

    async def reversals(self, transaction_ids: Sequence[UUID]) -> list[list[Transaction]]:
        return await self._inner.reversals(transaction_ids)

    async def history(self, request: HistoryRequest) -> Page:
        if not is_first_page(request):
            return await self._inner.history(request)
        opened = await self._cache.open_history(request.wallet_id)
        if opened is None:
            return await self._inner.history(request)
        stats = self._cache.history_stats
        generation, entry = opened
        if entry is not None:
            page = page_from_entry(entry, request)
            if page is not None:
                stats.hits += 1
                return page
        stats.misses += 1
        if entry is not None or request.types or request.statuses:
            # The head is cached, just not deep enough for this filter; or this filtered
            # page could not fill the head anyway. Either way one query answers it.
            return await self._inner.history(request)
        head = await self._inner.history(HistoryRequest(request.wallet_id, limit=HEAD_SIZE))
        await self._cache.fill_history(request.wallet_id, generation, head)
        page = page_from_head(head.transactions, not head.has_next, request)
        assert page is not None, "an unfiltered head answers any first page"
        return page
