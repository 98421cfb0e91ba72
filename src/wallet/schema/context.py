"""What every resolver can reach: the use cases' dependencies and this request's loaders."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar
from uuid import UUID

from strawberry.dataloader import DataLoader

from wallet.domain import access
from wallet.domain.callers import Caller
from wallet.domain.group_commit import Request
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
    Page,
    Transaction,
    Wallet,
)
from wallet.domain.ports import HistoryQuery, TransactionFeed, UnitOfWorkFactory
from wallet.domain.services import Deposit, Transfer, Withdraw

K = TypeVar("K")
V = TypeVar("V")

# Hands PENDING transactions on to be settled, as one job; returns each as it stands
# afterwards (settled at once when run inline, still PENDING when queued for a worker).
Dispatch = Callable[[Sequence[Transaction]], Awaitable[list[Transaction]]]
# Applies a deposit (together with the others made at the same time); raises its refusal.
Depositor = Callable[[Request[Deposit]], Awaitable[Transaction]]
# Records a withdrawal or transfer as PENDING (together with the others made at the same
# time); raises its refusal.
Submitter = Callable[[Request[Withdraw | Transfer]], Awaitable[Transaction]]


class Identity:
    """Who is asking, once the edge knows: at once over HTTP, on a WebSocket once its
    connection_init named a caller (its context is made before that)."""

    __slots__ = ("caller",)

    def __init__(self, caller: Caller | None = None) -> None:
        self.caller = caller


@dataclass(slots=True)
class Context:
    identity: Identity
    uow_factory: UnitOfWorkFactory
    reads: HistoryQuery
    dispatch: Dispatch
    deposit: Depositor
    submit: Submitter
    feed: TransactionFeed
    request_id: str = ""
    wallet_loader: DataLoader[UUID, Wallet | None] = field(init=False)
    transaction_loader: DataLoader[UUID, Transaction | None] = field(init=False)
    history_loader: DataLoader[HistoryRequest, Page] = field(init=False)
    hold_loader: DataLoader[UUID, Hold | None] = field(init=False)
    holds_loader: DataLoader[HoldsRequest, HoldPage] = field(init=False)
    entries_loader: DataLoader[EntriesRequest, EntryPage] = field(init=False)
    balance_at_loader: DataLoader[BalanceRequest, int] = field(init=False)
    statement_loader: DataLoader[StatementRequest, Statement] = field(init=False)
    reversals_loader: DataLoader[UUID, list[Transaction]] = field(init=False)

    def __post_init__(self) -> None:
        # One set of loaders per request: nothing cached outlives the request that read it.
        self.wallet_loader = DataLoader(load_fn=self.reads.wallets)
        self.transaction_loader = DataLoader(load_fn=self.reads.transactions)
        # Not cached: a WebSocket's context outlives its operations, and a page read for one
        # must not answer the next. Only the pages asked for in the same turn are shared.
        self.history_loader = DataLoader(load_fn=self._histories, cache=False)
        self.hold_loader = DataLoader(load_fn=self.reads.holds)
        self.holds_loader = DataLoader(load_fn=self._holds, cache=False)
        # The ledger's reads, uncached for the same reason; a batch is one statement.
        self.entries_loader = DataLoader(load_fn=self._entries, cache=False)
        self.balance_at_loader = DataLoader(load_fn=self.reads.balances_at, cache=False)
        self.statement_loader = DataLoader(load_fn=self.reads.statements, cache=False)
        self.reversals_loader = DataLoader(load_fn=self.reads.reversals, cache=False)

    async def _histories(self, requests: list[HistoryRequest]) -> list[Page]:
        return await _each_once(self.reads.history, requests)

    async def _holds(self, requests: list[HoldsRequest]) -> list[HoldPage]:
        return await _each_once(self.reads.wallet_holds, requests)

    async def _entries(self, requests: list[EntriesRequest]) -> list[EntryPage]:
        return await _each_once(self.reads.entries, requests)

    @property
    def caller(self) -> Caller:
        """Who is asking: every rule the use cases and reads apply is about this caller."""
        caller = self.identity.caller
        if caller is None:
            # The edge runs no operation before it has named the caller.
            raise RuntimeError("an operation ran before its caller was known")
        return caller

    async def wallet(self, wallet_id: UUID) -> Wallet | None:
        """The wallet, or None where there is none or this caller may not see it. Loaders and
        the cache hold whole wallets, whoever asks; what a caller sees is decided here."""
        return access.visible(self.caller, await self.wallet_loader.load(wallet_id))

    async def sees(self, transaction: Transaction | Hold) -> bool:
        """Whether this caller may see the transaction or hold (it owns one of its wallets)."""
        if self.caller.is_admin:
            return True
        wallets = await self.wallet_loader.load_many(list(transaction.wallet_ids))
        owners = {w.id: w.owner_id for w in wallets if w is not None}
        return access.may_see_transaction(self.caller, transaction, owners)

    def forget_all(self) -> None:
        """Drop everything the loaders remember (a WebSocket's context outlives each event)."""
        self.wallet_loader.clear_all()
        self.transaction_loader.clear_all()
        self.hold_loader.clear_all()

    def forget(self, wallet_ids: tuple[UUID, ...]) -> None:
        """Drop loaded wallets after this request changed them."""
        for wallet_id in wallet_ids:
            with contextlib.suppress(KeyError):  # it was never loaded
                self.wallet_loader.clear(wallet_id)


async def _each_once(read: Callable[[K], Awaitable[V]], requests: list[K]) -> list[V]:
    """Each page asked for, read at once with the others; the same page asked for in many
    places of one document (the sender's history of each of a hundred transactions) once."""
    unique = list(dict.fromkeys(requests))
    pages = await asyncio.gather(*(read(request) for request in unique))
    found = dict(zip(unique, pages, strict=True))
    return [found[request] for request in requests]
