"""What each caller is shown: wallets and transactions read through the served schema, over
the in-memory fake. The rules are domain/access.py's; this holds the resolvers to them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from strawberry.types import ExecutionResult

from tests.callers import ADMIN, ALICE, BOB, FUNDER
from tests.unit.fakes import FakeDatabase
from wallet.app import build_schema
from wallet.domain import services
from wallet.domain.callers import Caller
from wallet.domain.group_commit import run_alone
from wallet.domain.ledger import (
    BalanceRequest,
    EntriesRequest,
    EntryPage,
    PostedEntry,
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
    TransactionStatus,
    TransactionType,
    Wallet,
)
from wallet.domain.money import Money
from wallet.schema.context import Context, Identity

EXTENSION_INSTANCES = "ignore:Passing an extension instance:DeprecationWarning"
pytestmark = pytest.mark.filterwarnings(EXTENSION_INSTANCES)


class FakeReads:
    def __init__(self, db: FakeDatabase) -> None:
        self._db = db

    async def wallets(self, wallet_ids: Sequence[UUID]) -> list[Wallet | None]:
        return [self._db.stored.wallets.get(i) for i in wallet_ids]

    async def transactions(self, transaction_ids: Sequence[UUID]) -> list[Transaction | None]:
        return [self._db.stored.transactions.get(i) for i in transaction_ids]

    async def holds(self, hold_ids: Sequence[UUID]) -> list[Hold | None]:
        return [self._db.stored.holds.get(i) for i in hold_ids]

    async def wallet_holds(self, request: HoldsRequest) -> HoldPage:
        holds = [h for h in self._db.stored.holds.values() if h.wallet_id == request.wallet_id]
        return HoldPage(holds=holds[::-1][: request.limit])

    async def history(self, request: HistoryRequest) -> Page:
        touching = [
            t for t in self._db.stored.transactions.values() if request.wallet_id in t.wallet_ids
        ]
        return Page(transactions=touching[::-1][: request.limit])

    def _posted(self, wallet_id: UUID) -> list[PostedEntry]:
        """The wallet's entries, oldest first, each dated when its transaction ended."""
        posted = []
        for n, entry in enumerate(self._db.stored.entries, 1):
            ended = self._db.stored.transactions[entry.transaction_id].completed_at
            if entry.wallet_id == wallet_id and ended is not None:
                posted.append(
                    PostedEntry(
                        n, entry.transaction_id, wallet_id, entry.delta, entry.balance_after, ended
                    )
                )
        return posted

    async def entries(self, request: EntriesRequest) -> EntryPage:
        return EntryPage(entries=self._posted(request.wallet_id)[::-1][: request.limit])

    async def balances_at(self, requests: Sequence[BalanceRequest]) -> list[int]:
        def at(request: BalanceRequest) -> int:
            posted = [e for e in self._posted(request.wallet_id) if e.created_at <= request.at]
            return posted[-1].balance_after if posted else 0

        return [at(r) for r in requests]

    async def statements(self, requests: Sequence[StatementRequest]) -> list[Statement]:
        def of(r: StatementRequest) -> Statement:
            posted = self._posted(r.wallet_id)
            before = [e.balance_after for e in posted if e.created_at < r.since]
            inside = [e.delta for e in posted if r.since <= e.created_at < r.until]
            credits, debits = sum(d for d in inside if d > 0), -sum(d for d in inside if d < 0)
            opening = before[-1] if before else 0
            return Statement(r.wallet_id, r.since, r.until, opening, credits, debits, len(inside))

        return [of(r) for r in requests]

    async def reversals(self, transaction_ids: Sequence[UUID]) -> list[list[Transaction]]:
        stored = sorted(
            (t for t in self._db.stored.transactions.values() if t.reversal_of is not None),
            key=lambda t: (t.created_at, t.id),
        )
        return [[t for t in stored if t.reversal_of == i] for i in transaction_ids]


class QuietFeed:
    """A feed on which nothing ever changes."""

    @contextlib.asynccontextmanager
    async def _quiet(self) -> AsyncIterator[QuietFeed]:
        yield self

    def transaction(self, _: UUID) -> contextlib.AbstractAsyncContextManager[QuietFeed]:
        return self._quiet()

    def wallet(self, _: UUID) -> contextlib.AbstractAsyncContextManager[QuietFeed]:
        return self._quiet()

    async def next(self, wait: float) -> Transaction | None:
        await asyncio.sleep(0)
        return None


async def _unused(_: Any) -> Any:
    raise AssertionError("not reached by a read")


def context_of(db: FakeDatabase, caller: Caller) -> Context:
    return Context(
        identity=Identity(caller),
        uow_factory=db.unit_of_work,
        reads=FakeReads(db),
        dispatch=_unused,
        deposit=_unused,
        submit=_unused,
        feed=QuietFeed(),
    )


async def ask(db: FakeDatabase, caller: Caller, document: str) -> dict[str, Any]:
    result = await build_schema().execute(document, context_value=context_of(db, caller))
    assert result.errors is None, result.errors
    assert result.data is not None
    return result.data


@pytest.fixture
async def world() -> tuple[FakeDatabase, dict[str, str]]:
    db = FakeDatabase()

    async def wallet(owner: Caller) -> str:
        command = services.CreateWallet(initial_balance="10.00", owner_id=owner.id)
        return str((await run_alone(db.unit_of_work, services.create_wallet, ADMIN, command)).id)

    alice, bob = await wallet(ALICE), await wallet(BOB)
    paid = await run_alone(
        db.unit_of_work, services.transfer, ALICE, services.Transfer(alice, bob, "1.00", "t")
    )
    kept = await run_alone(
        db.unit_of_work, services.withdraw, BOB, services.Withdraw(bob, "1.00", "w")
    )
    return db, {"alice": alice, "bob": bob, "paid": str(paid.id), "kept": str(kept.id)}


async def test_a_wallet_is_null_for_a_caller_who_may_not_see_it(
    world: tuple[FakeDatabase, dict[str, str]],
) -> None:
    db, ids = world
    document = (
        f'{{ a: wallet(id: "{ids["alice"]}") {{ id }} b: wallet(id: "{ids["bob"]}") {{ id }} }}'
    )

    seen = {c.id: await ask(db, c, document) for c in (ALICE, BOB, FUNDER, ADMIN)}

    assert seen[ALICE.id] == {"a": {"id": ids["alice"]}, "b": None}
    assert seen[BOB.id] == {"a": None, "b": {"id": ids["bob"]}}
    assert seen[FUNDER.id] == {"a": None, "b": None}
    assert seen[ADMIN.id] == {"a": {"id": ids["alice"]}, "b": {"id": ids["bob"]}}


async def test_a_transaction_is_null_unless_the_caller_owns_one_of_its_wallets(
    world: tuple[FakeDatabase, dict[str, str]],
) -> None:
    db, ids = world
    document = (
        f'{{ paid: transaction(id: "{ids["paid"]}") {{ id }} '
        f'kept: transaction(id: "{ids["kept"]}") {{ id }} }}'
    )

    assert await ask(db, ALICE, document) == {"paid": {"id": ids["paid"]}, "kept": None}
    assert await ask(db, BOB, document) == {
        "paid": {"id": ids["paid"]},
        "kept": {"id": ids["kept"]},
    }
    assert await ask(db, FUNDER, document) == {"paid": None, "kept": None}


async def test_a_transaction_s_wallet_the_caller_may_not_see_is_null(
    world: tuple[FakeDatabase, dict[str, str]],
) -> None:
    db, ids = world
    document = (
        f'{{ transaction(id: "{ids["paid"]}") '
        "{ senderWallet { id } receiverWallet { id } } }"
    )

    assert await ask(db, ALICE, document) == {
        "transaction": {"senderWallet": {"id": ids["alice"]}, "receiverWallet": None}
    }
    assert await ask(db, BOB, document) == {
        "transaction": {"senderWallet": None, "receiverWallet": {"id": ids["bob"]}}
    }


async def test_a_wallet_s_history_shows_other_wallets_only_to_those_who_see_them(
    world: tuple[FakeDatabase, dict[str, str]],
) -> None:
    db, ids = world
    document = (
        f'{{ wallet(id: "{ids["bob"]}") {{ transactions {{ edges {{ node {{ '
        "type senderWallet { id } } } } } }"
    )

    (kept, paid, funded) = (await ask(db, BOB, document))["wallet"]["transactions"]["edges"]
    assert [e["node"]["type"] for e in (kept, paid, funded)] == [
        "WITHDRAWAL",
        "TRANSFER",
        "DEPOSIT",
    ]
    assert paid["node"]["senderWallet"] is None
    assert (await ask(db, ALICE, document)) == {"wallet": None}


async def first_answer(db: FakeDatabase, caller: Caller, document: str) -> ExecutionResult:
    stream = await build_schema().subscribe(document, context_value=context_of(db, caller))
    assert not isinstance(stream, ExecutionResult)
    try:
        return await asyncio.wait_for(anext(stream), 1)
    finally:
        await stream.aclose()


async def test_subscriptions_end_with_an_error_for_a_caller_who_may_not_see_them(
    world: tuple[FakeDatabase, dict[str, str]],
) -> None:
    db, ids = world
    activity = f'subscription {{ walletActivity(walletId: "{ids["bob"]}") {{ id }} }}'
    updates = f'subscription {{ transactionUpdated(id: "{ids["kept"]}") {{ id }} }}'

    for document in (activity, updates):
        refused = await first_answer(db, ALICE, document)
        assert refused.errors is not None, document
    shown = await first_answer(db, BOB, updates)
    assert shown.errors is None
    assert shown.data == {"transactionUpdated": {"id": ids["kept"]}}


async def test_a_wallet_s_entries_and_statement_are_shown_with_it_and_only_with_it(
    world: tuple[FakeDatabase, dict[str, str]],
) -> None:
    db, ids = world
    document = (
        f'{{ wallet(id: "{ids["bob"]}") {{ '
        "entries { edges { node { amount balanceAfter transaction { type } } } } "
        'statement(since: "2000-01-01T00:00:00+00:00", until: "2999-01-01T00:00:00+00:00") '
        "{ openingBalance closingBalance entryCount } } }"
    )

    shown = (await ask(db, BOB, document))["wallet"]

    assert shown["entries"]["edges"][-1]["node"] == {
        "amount": "10.00",
        "balanceAfter": "10.00",
        "transaction": {"type": "DEPOSIT"},
    }
    assert shown["statement"]["openingBalance"] == "0.00"
    assert shown["statement"]["entryCount"] == len(shown["entries"]["edges"])
    assert await ask(db, ALICE, document) == {"wallet": None}
    assert await ask(db, ADMIN, document) == {"wallet": shown}


async def test_reversals_and_what_they_returned_are_shown_to_whoever_sees_the_original(
    world: tuple[FakeDatabase, dict[str, str]],
) -> None:
    db, ids = world
    (funding,) = [
        t
        for t in db.stored.transactions.values()
        if t.type is TransactionType.DEPOSIT and t.receiver_wallet_id == UUID(ids["bob"])
    ]
    start = datetime.now(UTC)
    made = []
    # Recorded out of order: they come back oldest first.
    for seconds, amount, status in [
        (2, "0.10", TransactionStatus.PENDING),
        (0, "0.30", TransactionStatus.COMPLETED),
        (1, "0.20", TransactionStatus.FAILED),
    ]:
        reversal = funding.reverse(Money.parse(amount, funding.amount.currency), key=None)
        reversal.status = status
        reversal.created_at = start + timedelta(seconds=seconds)
        db.stored.transactions[reversal.id] = reversal
        made.append(str(reversal.id))
    of_original = (
        f'{{ transaction(id: "{funding.id}") {{ reversedAmount reversalOf {{ id }} '
        "reversals { id reversalOf { id } } } }"
    )
    of_reversal = f'{{ transaction(id: "{made[0]}") {{ reversalOf {{ id }} }} }}'

    shown = await ask(db, BOB, of_original)

    assert shown == {
        "transaction": {
            # Only the COMPLETED one returned money.
            "reversedAmount": "0.30",
            "reversalOf": None,
            "reversals": [
                {"id": i, "reversalOf": {"id": str(funding.id)}}
                for i in (made[1], made[2], made[0])
            ],
        }
    }
    assert await ask(db, ADMIN, of_original) == shown
    assert await ask(db, BOB, of_reversal) == {
        "transaction": {"reversalOf": {"id": str(funding.id)}}
    }
    assert await ask(db, ALICE, of_original) == {"transaction": None}
    assert await ask(db, ALICE, of_reversal) == {"transaction": None}
