"""Reads for the API: wallets, transactions and holds by id in one statement each, pages
of history and of holds, and the ledger's reads (ledger_queries.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import ColumnElement, Select, select, tuple_, union_all
from sqlalchemy.ext.asyncio import AsyncEngine

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
from wallet.persistence.history_filter import HistoryFilter
from wallet.persistence.ledger_queries import (
    balances_statement,
    entries_statement,
    reversals_statement,
    statements_statement,
)
from wallet.persistence.rows import (
    entry_from_row,
    hold_from_row,
    transaction_from_row,
    wallet_from_row,
)
from wallet.persistence.tables import holds, transactions, wallets


class SqlHistoryQuery:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def wallets(self, wallet_ids: Sequence[UUID]) -> list[Wallet | None]:
        async with self._engine.connect() as connection:
            result = await connection.execute(select(wallets).where(wallets.c.id.in_(wallet_ids)))
            found = {row["id"]: wallet_from_row(row) for row in result.mappings()}
        return [found.get(i) for i in wallet_ids]

    async def transactions(self, transaction_ids: Sequence[UUID]) -> list[Transaction | None]:
        async with self._engine.connect() as connection:
            result = await connection.execute(
                select(transactions).where(transactions.c.id.in_(transaction_ids))
            )
            found = {row["id"]: transaction_from_row(row) for row in result.mappings()}
        return [found.get(i) for i in transaction_ids]

    async def owned_wallets(self, request: OwnedWalletsRequest) -> WalletPage:
        # One range of the wallets_by_owner index: (owner_id, created_at, id).
        statement = select(wallets).where(wallets.c.owner_id == request.owner_id)
        if request.after is not None:
            position = tuple_(wallets.c.created_at, wallets.c.id)
            statement = statement.where(position > tuple_(*request.after))
        statement = statement.order_by(wallets.c.created_at, wallets.c.id).limit(request.limit + 1)
        async with self._engine.connect() as connection:
            rows = [wallet_from_row(r) for r in (await connection.execute(statement)).mappings()]
        return WalletPage(rows[: request.limit], has_next=len(rows) > request.limit)

    async def holds(self, hold_ids: Sequence[UUID]) -> list[Hold | None]:
        async with self._engine.connect() as connection:
            result = await connection.execute(select(holds).where(holds.c.id.in_(hold_ids)))
            found = {row["id"]: hold_from_row(row) for row in result.mappings()}
        return [found.get(i) for i in hold_ids]

    async def wallet_holds(self, request: HoldsRequest) -> HoldPage:
        # One range of the holds_by_wallet index: (wallet_id, created_at DESC, id DESC).
        statement = select(holds).where(holds.c.wallet_id == request.wallet_id)
        if request.after is not None:
            position = tuple_(holds.c.created_at, holds.c.id)
            statement = statement.where(position < tuple_(*request.after))
        if request.statuses:
            statement = statement.where(holds.c.status.in_(sorted(request.statuses)))
        statement = statement.order_by(holds.c.created_at.desc(), holds.c.id.desc())
        async with self._engine.connect() as connection:
            result = await connection.execute(statement.limit(request.limit + 1))
            rows = [hold_from_row(r) for r in result.mappings()]
        return HoldPage(rows[: request.limit], has_next=len(rows) > request.limit)

    async def history(self, request: HistoryRequest) -> Page:
        async with self._engine.connect() as connection:
            result = await connection.execute(history_statement(request))
            rows = [transaction_from_row(r) for r in result.mappings()]
        more = len(rows) > request.limit
        rows = rows[: request.limit]
        if request.backward:
            rows.reverse()
            return Page(rows, has_next=request.before is not None, has_previous=more)
        return Page(rows, has_next=more, has_previous=request.after is not None)

    async def entries(self, request: EntriesRequest) -> EntryPage:
        async with self._engine.connect() as connection:
            result = await connection.execute(entries_statement(request))
            rows = [entry_from_row(r) for r in result.mappings()]
        return EntryPage(rows[: request.limit], has_next=len(rows) > request.limit)

    async def balances_at(self, requests: Sequence[BalanceRequest]) -> list[int]:
        if not requests:
            return []
        async with self._engine.connect() as connection:
            result = await connection.execute(balances_statement(requests))
            return [int(balance) for balance in result.scalars()]

    async def statements(self, requests: Sequence[StatementRequest]) -> list[Statement]:
        if not requests:
            return []
        async with self._engine.connect() as connection:
            result = await connection.execute(statements_statement(requests))
            rows = result.mappings().all()
        return [
            Statement(
                wallet_id=request.wallet_id,
                since=request.since,
                until=request.until,
                opening=int(row["opening"]),
                credits=int(row["credits"]),
                debits=int(row["debits"]),
                count=row["count"],
            )
            for request, row in zip(requests, rows, strict=True)
        ]

    async def reversals(self, transaction_ids: Sequence[UUID]) -> list[list[Transaction]]:
        found: dict[UUID, list[Transaction]] = {i: [] for i in transaction_ids}
        if not found:
            return []
        async with self._engine.connect() as connection:
            result = await connection.execute(reversals_statement(list(found)))
            for row in result.mappings():
                found[row["reversal_of"]].append(transaction_from_row(row))
        return [found[i] for i in transaction_ids]


def history_statement(request: HistoryRequest) -> Select[Any]:
    """One page of a wallet's history and one transaction more (to tell if there is a next).

    One index scan per side of the wallet (sent, received), merged: an OR across the two
    columns could not walk an index in order. tests/integration/test_history_indexes.py shows
    the plan.
    """
    position = tuple_(transactions.c.created_at, transactions.c.id)
    newest_first = (transactions.c.created_at.desc(), transactions.c.id.desc())
    oldest_first = (transactions.c.created_at.asc(), transactions.c.id.asc())
    order = oldest_first if request.backward else newest_first
    kept = HistoryFilter.of(request)

    def side(column: ColumnElement[UUID]) -> Select[Any]:
        query = select(transactions).where(column == request.wallet_id)
        if request.after is not None:
            query = query.where(position < tuple_(*request.after))
        if request.before is not None:
            query = query.where(position > tuple_(*request.before))
        query = query.where(*kept.where(transactions.c.type, transactions.c.status))
        return query.order_by(*order).limit(request.limit + 1)

    both = union_all(
        side(transactions.c.sender_wallet_id), side(transactions.c.receiver_wallet_id)
    ).subquery()
    merged_order = (
        (both.c.created_at.asc(), both.c.id.asc())
        if request.backward
        else (both.c.created_at.desc(), both.c.id.desc())
    )
    return select(both).order_by(*merged_order).limit(request.limit + 1)
