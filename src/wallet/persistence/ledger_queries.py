"""The ledger's reads, each one statement walking ledger_entries_by_wallet_time
(wallet_id, created_at, id) or reversals_by_original (reversal_of, created_at, id): a
balance at an instant is one index lookup, a statement one lookup and one range scan, never a
sum over a wallet's whole history. tests/integration/test_ledger_indexes.py shows the plans.

A batch (a DataLoader's keys) is one statement: the asked keys are unnested WITH ORDINALITY
and each joined LATERAL to its own lookup, so the answers come back in the order asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import (
    DateTime,
    Select,
    Uuid,
    bindparam,
    case,
    column,
    func,
    select,
    true,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY

from wallet.domain.ledger import (
    BalanceRequest,
    EntriesRequest,
    StatementRequest,
)
from wallet.persistence.tables import ledger_entries, transactions

_entries = ledger_entries.c
_newest_first = (_entries.created_at.desc(), _entries.id.desc())


def entries_statement(request: EntriesRequest) -> Select[Any]:
    """One page of a wallet's entries and one more (to tell if there is a next): one
    backward range of the index, from `after` (or `until`) down to `since`."""
    query = select(ledger_entries).where(_entries.wallet_id == request.wallet_id)
    if request.after is not None:
        query = query.where(tuple_(_entries.created_at, _entries.id) < tuple_(*request.after))
    if request.since is not None:
        query = query.where(_entries.created_at >= request.since)
    if request.until is not None:
        query = query.where(_entries.created_at < request.until)
    return query.order_by(*_newest_first).limit(request.limit + 1)


def _asked(names: Sequence[tuple[str, Any, Any]]) -> Any:
    """The asked keys as a table `asked` of the given columns and `n`, their order, from one
    array parameter per column."""
    arrays = [bindparam(name, values, type_=ARRAY(kind)) for name, kind, values in names]
    return (
        func.unnest(*arrays)
        .table_valued(*(column(name, kind) for name, kind, _ in names), with_ordinality="n")
        .render_derived(name="asked")
    )


def balances_statement(requests: Sequence[BalanceRequest]) -> Select[Any]:
    """For each (wallet, instant) asked, in order: the balance after its last entry at or
    before the instant, zero when there is none. One index lookup each, newest first, LIMIT 1."""
    asked = _asked(
        [
            ("wallet_id", Uuid(), [r.wallet_id for r in requests]),
            ("at", DateTime(timezone=True), [r.at for r in requests]),
        ]
    )
    last = (
        select(_entries.balance_after)
        .where(_entries.wallet_id == asked.c.wallet_id, _entries.created_at <= asked.c.at)
        .order_by(*_newest_first)
        .limit(1)
        .lateral("last")
    )
    return (
        select(func.coalesce(last.c.balance_after, 0).label("balance"))
        .select_from(asked.outerjoin(last, true()))
        .order_by(asked.c.n)
    )


def statements_statement(requests: Sequence[StatementRequest]) -> Select[Any]:
    """For each (wallet, since, until) asked, in order: the balance just before `since` (one
    index lookup) and the credits, debits and count of the entries in [since, until) (one
    range of the index)."""
    asked = _asked(
        [
            ("wallet_id", Uuid(), [r.wallet_id for r in requests]),
            ("since", DateTime(timezone=True), [r.since for r in requests]),
            ("until", DateTime(timezone=True), [r.until for r in requests]),
        ]
    )
    opening = (
        select(_entries.balance_after)
        .where(_entries.wallet_id == asked.c.wallet_id, _entries.created_at < asked.c.since)
        .order_by(*_newest_first)
        .limit(1)
        .lateral("opening")
    )
    delta = _entries.delta
    period = (
        select(
            func.coalesce(func.sum(case((delta > 0, delta))), 0).label("credits"),
            func.coalesce(func.sum(case((delta < 0, -delta))), 0).label("debits"),
            func.count().label("count"),
        )
        .where(
            _entries.wallet_id == asked.c.wallet_id,
            _entries.created_at >= asked.c.since,
            _entries.created_at < asked.c.until,
        )
        .lateral("period")
    )
    return (
        select(
            func.coalesce(opening.c.balance_after, 0).label("opening"),
            # numeric (sum of bigint): a busy wallet's credits over years may outgrow bigint.
            period.c.credits,
            period.c.debits,
            period.c.count,
        )
        .select_from(asked.outerjoin(opening, true()).join(period, true()))
        .order_by(asked.c.n)
    )


def reversals_statement(transaction_ids: Sequence[UUID]) -> Select[Any]:
    """The reversals of the transactions, grouped by original and oldest first: one range of
    reversals_by_original for each."""
    return (
        select(transactions)
        # Spelled out, so the planner sees the partial index's condition holds.
        .where(transactions.c.reversal_of.is_not(None))
        .where(transactions.c.reversal_of.in_(transaction_ids))
        .order_by(transactions.c.reversal_of, transactions.c.created_at, transactions.c.id)
    )
