"""The ledger read back from PostgreSQL (SqlHistoryQuery), after movements made by the real use
cases: a balance at an instant, statements of periods, and pages of entries.

The contract's rules checked here: a balance at an instant is the balance after the last entry
at or before it, zero before the first; a statement's opening balance is the balance just
before `since`, and its closing balance, computed from the period's entries, equals the balance
just before `until`. FAILED movements write no entry, so they change no statement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID, uuid4

import pytest
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.callers import ADMIN
from tests.integration import moves
from wallet.domain import services
from wallet.domain.group_commit import run_alone
from wallet.domain.ledger import (
    BalanceRequest,
    EntriesRequest,
    PostedEntry,
    Statement,
    StatementRequest,
)
from wallet.domain.model import (
    HistoryRequest,
    Transaction,
    TransactionStatus,
    TransactionType,
)
from wallet.domain.ports import UnitOfWorkFactory
from wallet.persistence.queries import SqlHistoryQuery
from wallet.persistence.tables import transactions

pytestmark = pytest.mark.timeout(120)

MICROSECOND = timedelta(microseconds=1)
LONG_AGO = datetime.fromisoformat("2000-01-01T00:00:00+00:00")


async def deposit(uow_factory: UnitOfWorkFactory, wallet: UUID, amount: str) -> Transaction:
    command = services.Deposit(str(wallet), amount, moves.fresh_key("deposit"))
    return await run_alone(uow_factory, services.deposit, ADMIN, command)


@dataclass(frozen=True)
class Story:
    wallet: UUID
    other: UUID
    # Every transaction that touched `wallet`, as it ended, in the order they were made.
    moved: list[Transaction]
    # The wallet's entries, oldest first, read in one page.
    entries: list[PostedEntry]


@pytest.fixture(scope="module")
async def story(uow_factory: UnitOfWorkFactory, engine: AsyncEngine) -> Story:
    """Deposits, withdrawals and transfers both ways, some FAILED for want of money, made one
    after another through the use cases."""
    wallet = (await moves.new_wallet(uow_factory, "100.00")).id
    other = (await moves.new_wallet(uow_factory, "50.00")).id
    moved: list[Transaction] = []
    for round_ in range(6):
        moved.append(await deposit(uow_factory, wallet, f"{round_ + 1}.25"))
        moved.append(await moves.withdraw(uow_factory, wallet, "3.10"))
        moved.append(await moves.transfer(uow_factory, wallet, other, "7.00"))
        moved.append(await moves.transfer(uow_factory, other, wallet, "2.55"))
        # Far more than either wallet holds: FAILED, INSUFFICIENT_FUNDS.
        moved.append(await moves.withdraw(uow_factory, wallet, "10000.00"))
        moved.append(await moves.transfer(uow_factory, wallet, other, "9999.00"))
    page = await SqlHistoryQuery(engine).entries(EntriesRequest(wallet, limit=1000))
    assert not page.has_next
    return Story(wallet, other, moved, list(reversed(page.entries)))


def test_the_story_has_completed_and_failed_movements_of_every_kind(story: Story) -> None:
    kinds = {(t.type, t.status) for t in story.moved}
    assert kinds == {
        (TransactionType.DEPOSIT, TransactionStatus.COMPLETED),
        (TransactionType.WITHDRAWAL, TransactionStatus.COMPLETED),
        (TransactionType.WITHDRAWAL, TransactionStatus.FAILED),
        (TransactionType.TRANSFER, TransactionStatus.COMPLETED),
        (TransactionType.TRANSFER, TransactionStatus.FAILED),
    }
    assert sum(t.status is TransactionStatus.FAILED for t in story.moved) == 12


async def test_entries_are_one_per_completed_movement_and_none_for_a_failed_one(
    story: Story, engine: AsyncEngine
) -> None:
    page = await SqlHistoryQuery(engine).history(HistoryRequest(story.wallet, limit=100))
    completed = {t.id for t in page.transactions if t.status is TransactionStatus.COMPLETED}
    failed = {t.id for t in story.moved if t.status is TransactionStatus.FAILED}

    ids = [e.transaction_id for e in story.entries]
    assert len(set(ids)) == len(ids)
    assert set(ids) == completed
    assert len(story.entries) == len(completed) == 1 + 24
    assert not failed & {e.transaction_id for e in story.entries}


async def test_the_entries_explain_every_balance_in_the_order_they_were_written(
    story: Story, engine: AsyncEngine
) -> None:
    balance = 0
    for entry in story.entries:
        balance += entry.delta
        assert entry.balance_after == balance
    (wallet,) = await SqlHistoryQuery(engine).wallets([story.wallet])
    assert wallet is not None
    assert wallet.balance.minor == balance
    times = [e.created_at for e in story.entries]
    assert times == sorted(times)
    assert len(set(times)) == len(times)


async def test_the_balance_before_the_first_entry_is_zero(
    story: Story, engine: AsyncEngine
) -> None:
    first = story.entries[0].created_at
    balances = await SqlHistoryQuery(engine).balances_at(
        [BalanceRequest(story.wallet, LONG_AGO), BalanceRequest(story.wallet, first - MICROSECOND)]
    )
    assert balances == [0, 0]


async def test_the_balance_at_an_entrys_exact_time_includes_it_and_a_microsecond_before_not(
    story: Story, engine: AsyncEngine
) -> None:
    requests = []
    expected = []
    before = 0
    for entry in story.entries:
        requests += [
            BalanceRequest(story.wallet, entry.created_at),
            BalanceRequest(story.wallet, entry.created_at - MICROSECOND),
        ]
        expected += [entry.balance_after, before]
        before = entry.balance_after

    # All of them in one call, as one DataLoader batch sends them.
    assert await SqlHistoryQuery(engine).balances_at(requests) == expected


async def test_balances_come_back_in_the_order_asked_with_zero_for_an_unknown_wallet(
    story: Story, engine: AsyncEngine
) -> None:
    now = story.entries[-1].created_at + timedelta(days=1)
    first = story.entries[0]
    requests = [
        BalanceRequest(story.other, now),
        BalanceRequest(uuid4(), now),
        BalanceRequest(story.wallet, now),
        BalanceRequest(story.wallet, first.created_at),
        BalanceRequest(story.other, now),
    ]
    reads = SqlHistoryQuery(engine)
    wallet, other = await reads.wallets([story.wallet, story.other])
    assert wallet is not None
    assert other is not None

    balances = await reads.balances_at(requests)

    assert balances == [
        other.balance.minor,
        0,
        wallet.balance.minor,
        first.balance_after,
        other.balance.minor,
    ]
    assert await reads.balances_at([]) == []


def boundaries(story: Story) -> list[datetime]:
    """Instants worth cutting a period at: before everything, at each entry, a microsecond
    either side of it, and after everything."""
    times = [LONG_AGO, story.entries[-1].created_at + timedelta(days=1)]
    for entry in story.entries:
        times += [entry.created_at - MICROSECOND, entry.created_at, entry.created_at + MICROSECOND]
    return sorted(set(times))


def periods(story: Story) -> list[tuple[datetime, datetime]]:
    times = boundaries(story)
    # Every third start against every fifth end: a few hundred periods, short and long.
    return [(since, until) for since in times[::3] for until in times[1::5] if since < until]


async def test_a_statements_opening_and_closing_equal_the_balances_just_before_its_ends(
    story: Story, engine: AsyncEngine
) -> None:
    reads = SqlHistoryQuery(engine)
    asked = [StatementRequest(story.wallet, since, until) for since, until in periods(story)]
    assert len(asked) > 200

    found = await reads.statements(asked)
    just_before = await reads.balances_at(
        [
            BalanceRequest(story.wallet, instant - MICROSECOND)
            for request in asked
            for instant in (request.since, request.until)
        ]
    )

    for n, (request, statement) in enumerate(zip(asked, found, strict=True)):
        assert (statement.since, statement.until) == (request.since, request.until)
        assert statement.opening == just_before[2 * n], request
        assert statement.closing == just_before[2 * n + 1], request


async def test_a_statements_totals_are_its_periods_entries(
    story: Story, engine: AsyncEngine
) -> None:
    asked = [StatementRequest(story.wallet, since, until) for since, until in periods(story)]

    found = await SqlHistoryQuery(engine).statements(asked)

    for request, statement in zip(asked, found, strict=True):
        inside = [e.delta for e in story.entries if request.since <= e.created_at < request.until]
        assert statement.credits == sum(d for d in inside if d > 0), request
        assert statement.debits == -sum(d for d in inside if d < 0), request
        assert statement.count == len(inside), request


async def test_a_statement_of_the_whole_history_closes_at_the_balance_and_ignores_failures(
    story: Story, engine: AsyncEngine
) -> None:
    reads = SqlHistoryQuery(engine)
    failed = [t for t in story.moved if t.status is TransactionStatus.FAILED]
    # A period holding nothing but a FAILED withdrawal: nothing moved in it.
    lone = failed[0].created_at
    assert lone is not None
    whole, around_failure = await reads.statements(
        [
            StatementRequest(story.wallet, LONG_AGO, datetime.max.replace(tzinfo=LONG_AGO.tzinfo)),
            StatementRequest(story.wallet, lone, lone + MICROSECOND),
        ]
    )
    (wallet,) = await reads.wallets([story.wallet])
    assert wallet is not None

    assert whole == Statement(
        story.wallet,
        whole.since,
        whole.until,
        opening=0,
        credits=sum(e.delta for e in story.entries if e.delta > 0),
        debits=-sum(e.delta for e in story.entries if e.delta < 0),
        count=len(story.entries),
    )
    assert whole.closing == wallet.balance.minor
    assert around_failure.count == 0
    assert around_failure.closing == around_failure.opening


def test_a_period_that_ends_where_it_starts_is_refused(story: Story) -> None:
    instant = story.entries[0].created_at
    with pytest.raises(ValueError, match="ends after it starts"):
        StatementRequest(story.wallet, instant, instant)


async def every_entry(
    reads: SqlHistoryQuery, request: EntriesRequest
) -> tuple[list[PostedEntry], int]:
    """Every entry the request's pages hold, read page by page after each page's last entry,
    and how many pages that took."""
    found: list[PostedEntry] = []
    pages = 0
    after = None
    while True:
        page = await reads.entries(
            EntriesRequest(request.wallet_id, request.limit, after, request.since, request.until)
        )
        pages += 1
        assert len(page.entries) <= request.limit
        found += page.entries
        if not page.has_next:
            return found, pages
        assert len(page.entries) == request.limit
        after = page.entries[-1].position


def newest_first(entries: Sequence[PostedEntry]) -> list[PostedEntry]:
    return sorted(entries, key=lambda e: e.position, reverse=True)


@pytest.mark.parametrize("limit", [1, 4, 25, 100])
async def test_pages_of_entries_give_every_entry_once_newest_first(
    story: Story, engine: AsyncEngine, limit: int
) -> None:
    found, pages = await every_entry(SqlHistoryQuery(engine), EntriesRequest(story.wallet, limit))

    assert found == newest_first(story.entries)
    # The page that fills up to the last entry knows it is the last: no empty page follows.
    assert pages == -(-len(story.entries) // limit)


@pytest.mark.parametrize(("first", "last"), [(0, 25), (3, 17), (10, 11), (24, 25)])
async def test_pages_of_a_period_give_its_entries_since_inclusive_until_exclusive(
    story: Story, engine: AsyncEngine, first: int, last: int
) -> None:
    since = story.entries[first].created_at
    until = story.entries[last].created_at if last < len(story.entries) else None
    request = EntriesRequest(story.wallet, limit=4, since=since, until=until)

    found, _ = await every_entry(SqlHistoryQuery(engine), request)

    assert found == newest_first(story.entries[first:last])


async def test_a_period_with_only_an_upper_bound_pages_from_it(
    story: Story, engine: AsyncEngine
) -> None:
    until = story.entries[10].created_at
    found, _ = await every_entry(
        SqlHistoryQuery(engine), EntriesRequest(story.wallet, limit=3, until=until)
    )
    assert found == newest_first(story.entries[:10])


async def test_reversals_come_back_oldest_first_for_each_transaction_asked(
    story: Story, engine: AsyncEngine
) -> None:
    # Written as rows, at times of the test's choosing, to read them back in time order:
    # FAILED ones, which move nothing, each counted on its original as reverse_transaction
    # counts it, so the database still holds every rule of the ledger for the tests (and the
    # audit) that check it whole.
    deposits = [t for t in story.moved if t.type is TransactionType.DEPOSIT][:2]
    start = datetime.fromisoformat("2030-01-01T00:00:00+00:00")
    rows = [
        {
            "id": uuid4(),
            "type": "REVERSAL",
            "status": "FAILED",
            "failure_code": "INSUFFICIENT_FUNDS",
            "amount": 10,
            "currency": "USD",
            "sender_wallet_id": story.wallet,
            "receiver_wallet_id": None,
            "reversal_of": original.id,
            "created_at": start + timedelta(seconds=seconds),
            "completed_at": start + timedelta(seconds=seconds),
        }
        for original, seconds in [
            (deposits[0], 3),
            (deposits[0], 1),
            (deposits[1], 5),
            (deposits[0], 2),
        ]
    ]
    async with engine.begin() as connection:
        await connection.execute(insert(transactions), rows)
        await connection.execute(
            text(
                "UPDATE transactions AS o SET reversal_count = (SELECT count(*) FROM transactions"
                " AS r WHERE r.reversal_of = o.id) WHERE o.id IN (:a, :b)"
            ),
            {"a": deposits[0].id, "b": deposits[1].id},
        )

    reads = SqlHistoryQuery(engine)
    without = story.moved[1].id
    found = await reads.reversals([deposits[1].id, without, deposits[0].id, deposits[1].id])

    by_id = {r["id"]: r for r in rows}
    assert [[by_id[t.id]["created_at"] for t in group] for group in found] == [
        [start + timedelta(seconds=5)],
        [],
        [start + timedelta(seconds=s) for s in (1, 2, 3)],
        [start + timedelta(seconds=5)],
    ]
    assert all(t.reversal_of == deposits[0].id for t in found[2])
    assert await reads.reversals([]) == []
