"""Holds raced against each other, against withdrawals and transfers, and against expiry, on
the real PostgreSQL: each use case runs in a unit of work of its own, as a request does, and
many at once. An ACTIVE hold ends exactly once, money moves once, and no available balance
goes below zero."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from uuid import UUID

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.callers import ADMIN
from tests.integration.moves import (
    capture_hold,
    expire_holds,
    fresh_key,
    new_wallet,
    place_hold,
    transfer,
    void_hold,
    withdraw,
)
from tests.invariants import assert_audit_clean, assert_balances_explained, assert_holds_explained
from wallet.domain import services
from wallet.domain.errors import ErrorCode, HoldNotActive, InsufficientFunds
from wallet.domain.group_commit import run_alone
from wallet.domain.model import Hold, HoldStatus, Transaction, TransactionStatus
from wallet.domain.ports import UnitOfWorkFactory
from wallet.domain.services import EXPIRY_WAIT
from wallet.persistence.unit_of_work import SqlUnitOfWork

pytestmark = pytest.mark.timeout(60)


@dataclass(frozen=True)
class HoldRow:
    status: HoldStatus
    captured: int


@dataclass(frozen=True)
class WalletRow:
    balance: int
    held: int
    version: int


async def _holds(engine: AsyncEngine, hold_ids: Iterable[UUID]) -> dict[UUID, HoldRow]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT id, status, captured_amount FROM holds WHERE id = ANY(CAST(:ids AS uuid[]))"
            ),
            {"ids": [str(i) for i in hold_ids]},
        )
        return {row[0]: HoldRow(HoldStatus(row[1]), row[2]) for row in rows}


async def _wallets(engine: AsyncEngine, wallet_ids: Iterable[UUID]) -> dict[UUID, WalletRow]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT id, balance, held, version FROM wallets "
                "WHERE id = ANY(CAST(:ids AS uuid[]))"
            ),
            {"ids": [str(i) for i in wallet_ids]},
        )
        return {row[0]: WalletRow(row[1], row[2], row[3]) for row in rows}


async def _captures(engine: AsyncEngine, hold_id: UUID) -> list[UUID]:
    """The transactions that name the hold."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT id FROM transactions WHERE hold_id = CAST(:id AS uuid)"),
            {"id": str(hold_id)},
        )
        return [row[0] for row in rows]


async def _make_due(engine: AsyncEngine, hold_ids: Iterable[UUID], seconds_ago: float) -> None:
    """Set the holds' expiry `seconds_ago` in the past: due, as if time had passed."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE holds SET expires_at = clock_timestamp() - make_interval(secs => :s) "
                "WHERE id = ANY(CAST(:ids AS uuid[]))"
            ),
            {"s": seconds_ago, "ids": [str(i) for i in hold_ids]},
        )


async def _active(engine: AsyncEngine, hold_ids: Iterable[UUID]) -> int:
    rows = await _holds(engine, hold_ids)
    return sum(1 for row in rows.values() if row.status is HoldStatus.ACTIVE)


async def _expire_until_none_active(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine, hold_ids: list[UUID], limit: int = 500
) -> Counter[UUID]:
    """Run the worker's expiry until none of the holds is ACTIVE; how often each of them was
    returned as expired (others' holds, due in the same database, are left out)."""
    mine = set(hold_ids)
    expired: Counter[UUID] = Counter()
    for _ in range(400):
        expired.update(h.id for h in await expire_holds(uow_factory, limit) if h.id in mine)
        if await _active(engine, hold_ids) == 0:
            return expired
        await asyncio.sleep(0.01)
    raise AssertionError(f"holds still ACTIVE: {await _active(engine, hold_ids)}")


def _outcome(result: object) -> str:
    """What one racer got: 'won', 'not active', or a failure the test reports as it is."""
    if isinstance(result, HoldNotActive):
        return "not active"
    if isinstance(result, BaseException):
        raise AssertionError(f"unexpected {result!r}") from result
    return "won"


async def test_available_balance_never_goes_below_zero_under_50_concurrent_holds_and_debits(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    wallet = (await new_wallet(uow_factory, "100.00")).id
    receivers = [(await new_wallet(uow_factory)).id for _ in range(3)]
    rng = random.Random(15)
    # Ten holds of 5.00 placed first (50.00 reserved) for the race's captures and voids: the
    # first five are each captured and voided at once, three captured in part, two voided.
    early = [
        await place_hold(uow_factory, wallet, "5.00", receiver=receivers[n % 3] if n % 2 else None)
        for n in range(10)
    ]
    contested, in_part, voided = early[:5], early[5:8], early[8:]

    def amount() -> str:
        return f"{rng.randint(200, 900) / 100:.2f}"

    # Each racer: what it does, the early hold it ends (if any), and the request itself.
    racers: list[tuple[str, UUID | None, Callable[[], Awaitable[object]]]] = []
    for _ in range(15):
        racers.append(("hold", None, partial(place_hold, uow_factory, wallet, amount())))
    for n in range(10):
        racers.append(("withdraw", None, partial(withdraw, uow_factory, wallet, amount())))
        receiver = receivers[n % 3]
        racers.append(
            ("transfer", None, partial(transfer, uow_factory, wallet, receiver, amount()))
        )
    for hold in contested:
        racers.append(("capture", hold.id, partial(capture_hold, uow_factory, hold.id)))
        racers.append(("void", hold.id, partial(void_hold, uow_factory, hold.id)))
    for hold in in_part:
        racers.append(("capture", hold.id, partial(capture_hold, uow_factory, hold.id, "3.00")))
    for hold in voided:
        racers.append(("void", hold.id, partial(void_hold, uow_factory, hold.id)))
    rng.shuffle(racers)
    assert len(racers) == 50

    results = await asyncio.gather(*(race() for _, _, race in racers), return_exceptions=True)

    placed: list[Hold] = []
    debits: list[Transaction] = []
    captures: list[Transaction] = []
    ended: dict[UUID, list[str]] = {h.id: [] for h in early}
    refused = 0
    for (kind, hold_id, _), result in zip(racers, results, strict=True):
        if kind == "hold":
            if isinstance(result, InsufficientFunds):
                refused += 1
                continue
            assert isinstance(result, Hold), (kind, result)
            placed.append(result)
        elif kind in ("withdraw", "transfer"):
            assert isinstance(result, Transaction), (kind, result)
            assert result.is_final, result
            if result.status is TransactionStatus.FAILED:
                assert result.failure_code is ErrorCode.INSUFFICIENT_FUNDS, result
                refused += 1
            else:
                debits.append(result)
        else:
            assert hold_id is not None
            # Only a capture and a void of the same hold may refuse each other.
            if _outcome(result) == "won":
                ended[hold_id].append(kind)
                if kind == "capture":
                    assert isinstance(result, Transaction)
                    captures.append(result)
                else:
                    assert isinstance(result, Hold)
                    assert result.status is HoldStatus.VOIDED
    assert refused > 0, "the race asked for more than the wallet holds"
    assert all(c.status is TransactionStatus.COMPLETED for c in captures)

    # Each early hold ended once: a contested one by its capture or by its void, never both.
    assert {h: len(kinds) for h, kinds in ended.items()} == {h.id: 1 for h in early}, ended
    statuses = await _holds(engine, [h.id for h in early])
    for hold in early:
        (kind,) = ended[hold.id]
        expected = HoldStatus.CAPTURED if kind == "capture" else HoldStatus.VOIDED
        assert statuses[hold.id].status is expected
        assert len(await _captures(engine, hold.id)) == (kind == "capture")
    assert {statuses[h.id].status for h in in_part} == {HoldStatus.CAPTURED}
    assert {statuses[h.id].captured for h in in_part} == {3_00}
    assert {statuses[h.id].status for h in voided} == {HoldStatus.VOIDED}

    # What stays taken: the debits settled, the captures, and the new holds (all ACTIVE still).
    taken = sum(t.amount.minor for t in debits + captures)
    reserved = sum(h.amount.minor for h in placed)
    assert taken + reserved <= 100_00, "holds and debits took more than the wallet had"
    figures = await assert_holds_explained(engine, [wallet, *receivers])
    assert figures[str(wallet)].balance == 100_00 - taken
    assert figures[str(wallet)].held == reserved
    balances = await assert_balances_explained(engine, [wallet, *receivers])
    withdrawn = sum(t.amount.minor for t in debits + captures if t.receiver_wallet_id is None)
    assert sum(balances.values()) == 100_00 - withdrawn
    await assert_audit_clean(engine)


@pytest.mark.parametrize("receiver", [True, False], ids=["to a receiver", "out"])
async def test_a_capture_racing_a_void_ends_the_hold_once_and_moves_the_money_at_most_once(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine, receiver: bool
) -> None:
    winners: Counter[str] = Counter()
    for round_ in range(20):
        wallet = (await new_wallet(uow_factory, "10.00")).id
        to = (await new_wallet(uow_factory)).id
        hold = await place_hold(uow_factory, wallet, "4.00", receiver=to if receiver else None)
        racers = [capture_hold(uow_factory, hold.id), void_hold(uow_factory, hold.id)]
        if round_ % 2:
            racers.reverse()  # either may reach PostgreSQL first
        results = await asyncio.gather(*racers, return_exceptions=True)

        outcomes = sorted(_outcome(r) for r in results)
        assert outcomes == ["not active", "won"], results
        captured = any(isinstance(r, Transaction) for r in results)
        winners["capture" if captured else "void"] += 1
        status = (await _holds(engine, [hold.id]))[hold.id].status
        assert status is (HoldStatus.CAPTURED if captured else HoldStatus.VOIDED)
        captures = await _captures(engine, hold.id)
        assert len(captures) == captured
        rows = await _wallets(engine, [wallet, to])
        assert rows[wallet].held == 0
        assert rows[wallet].balance == (6_00 if captured else 10_00)
        assert rows[to].balance == (4_00 if captured and receiver else 0)
        await assert_balances_explained(engine, [wallet, to])
        await assert_holds_explained(engine, [wallet, to])
    print(f"capture vs void, 20 rounds: {dict(winners)}")
    await assert_audit_clean(engine)


@pytest.mark.parametrize(
    "overdue",
    [0.5, 5.0],
    ids=["within the expirer's patience", "past the expirer's patience"],
)
async def test_a_capture_racing_the_expiry_of_a_due_hold_is_refused_and_the_hold_expires_once(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine, overdue: float
) -> None:
    # Within EXPIRY_PATIENCE the expirer skips a wallet the capture has locked; past it, it
    # waits for it.
    assert (overdue > services.EXPIRY_PATIENCE.total_seconds()) == (overdue == 5.0)
    for round_ in range(8):
        wallet = (await new_wallet(uow_factory, "10.00")).id
        to = (await new_wallet(uow_factory)).id
        # Another hold of the wallet stays ACTIVE: the expiry must give back exactly its own.
        other = await place_hold(uow_factory, wallet, "1.00")
        hold = await place_hold(uow_factory, wallet, "4.00", receiver=to)
        await _make_due(engine, [hold.id], overdue)

        capture = capture_hold(uow_factory, hold.id)
        expiry = expire_holds(uow_factory)
        if round_ % 2:
            captured, expired = await asyncio.gather(capture, expiry, return_exceptions=True)
        else:
            expired, captured = await asyncio.gather(expiry, capture, return_exceptions=True)

        assert isinstance(captured, HoldNotActive), "a capture after expiresAt is refused"
        assert isinstance(expired, list), expired
        times = Counter(h.id for h in expired if h.id == hold.id)
        # Skipped when the capture held the wallet: the next round of the expirer takes it.
        times += await _expire_until_none_active(uow_factory, engine, [hold.id])
        assert times == {hold.id: 1}
        rows = await _holds(engine, [hold.id, other.id])
        assert rows[hold.id].status is HoldStatus.EXPIRED
        assert rows[other.id].status is HoldStatus.ACTIVE
        assert await _captures(engine, hold.id) == []
        wallets = await _wallets(engine, [wallet, to])
        assert (wallets[wallet].balance, wallets[wallet].held) == (10_00, 1_00)
        assert wallets[to].balance == 0
        await assert_balances_explained(engine, [wallet, to])
        await assert_holds_explained(engine, [wallet, to])
    await assert_audit_clean(engine)


async def test_a_hold_captured_as_it_expires_is_either_captured_or_expired_never_both(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    # Each capture is sent at its own moment around its hold's expiry, while two expirers run.
    offsets = [-0.3, -0.2, -0.1, -0.05, -0.02, -0.01, -0.005, 0.0, 0.005, 0.01, 0.02, 0.05]
    wallets = [(await new_wallet(uow_factory, "10.00")).id for _ in offsets]
    receivers = [(await new_wallet(uow_factory)).id for _ in offsets]
    holds = list(
        await asyncio.gather(
            *(
                place_hold(uow_factory, w, "4.00", receiver=r, expires_in_seconds=1)
                for w, r in zip(wallets, receivers, strict=True)
            )
        )
    )
    ids = [h.id for h in holds]

    async def capture_at(hold: Hold, offset: float) -> Transaction:
        delay = (hold.expires_at - datetime.now(UTC)).total_seconds() + offset
        await asyncio.sleep(max(delay, 0))
        return await capture_hold(uow_factory, hold.id)

    async def expirer() -> Counter[UUID]:
        return await _expire_until_none_active(uow_factory, engine, ids, limit=50)

    *captured, first, second = await asyncio.gather(
        *(capture_at(h, o) for h, o in zip(holds, offsets, strict=True)),
        expirer(),
        expirer(),
        return_exceptions=True,
    )
    assert isinstance(first, Counter), first
    assert isinstance(second, Counter), second
    expired = first + second

    rows = await _holds(engine, ids)
    balances = await _wallets(engine, wallets + receivers)
    ended: Counter[HoldStatus] = Counter()
    for hold, offset, result, wallet, receiver in zip(
        holds, offsets, captured, wallets, receivers, strict=True
    ):
        status = rows[hold.id].status
        ended[status] += 1
        if _outcome(result) == "won":
            assert isinstance(result, Transaction)
            assert status is HoldStatus.CAPTURED, (offset, status)
            assert expired[hold.id] == 0, (offset, "captured, then expired")
            assert await _captures(engine, hold.id) == [result.id]
            assert (balances[wallet].balance, balances[receiver].balance) == (6_00, 4_00)
        else:
            assert status is HoldStatus.EXPIRED, (offset, status)
            assert expired[hold.id] == 1, (offset, expired[hold.id])
            assert await _captures(engine, hold.id) == []
            assert (balances[wallet].balance, balances[receiver].balance) == (10_00, 0)
        assert offset < 0 or status is HoldStatus.EXPIRED, "a capture at or after expiresAt"
        assert balances[wallet].held == 0
    # The earliest captures were well before expiry: both outcomes were raced.
    assert ended[HoldStatus.CAPTURED] >= 1
    assert ended[HoldStatus.EXPIRED] >= 1
    print(f"captured as they expire: {dict(ended)}")
    await assert_balances_explained(engine, wallets + receivers)
    await assert_holds_explained(engine, wallets + receivers)
    await assert_audit_clean(engine)


@pytest.mark.parametrize("amounts", [(None, None), ("1.00", "3.00")], ids=["whole", "parts"])
async def test_two_captures_racing_with_different_keys_capture_once(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine, amounts: tuple[str | None, str | None]
) -> None:
    for _ in range(10):
        wallet = (await new_wallet(uow_factory, "10.00")).id
        to = (await new_wallet(uow_factory)).id
        hold = await place_hold(uow_factory, wallet, "4.00", receiver=to)
        results = await asyncio.gather(
            *(capture_hold(uow_factory, hold.id, a) for a in amounts), return_exceptions=True
        )

        assert sorted(_outcome(r) for r in results) == ["not active", "won"], results
        (winner,) = (r for r in results if isinstance(r, Transaction))
        assert winner.status is TransactionStatus.COMPLETED
        assert await _captures(engine, hold.id) == [winner.id]
        row = (await _holds(engine, [hold.id]))[hold.id]
        assert (row.status, row.captured) == (HoldStatus.CAPTURED, winner.amount.minor)
        rows = await _wallets(engine, [wallet, to])
        assert (rows[wallet].balance, rows[wallet].held) == (10_00 - winner.amount.minor, 0)
        assert rows[to].balance == winner.amount.minor
        await assert_balances_explained(engine, [wallet, to])
        await assert_holds_explained(engine, [wallet, to])
    await assert_audit_clean(engine)


async def test_a_capture_sent_twice_at_once_with_one_key_replays_and_moves_the_money_once(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    for _ in range(10):
        wallet = (await new_wallet(uow_factory, "10.00")).id
        to = (await new_wallet(uow_factory)).id
        hold = await place_hold(uow_factory, wallet, "4.00", receiver=to)
        key = fresh_key("capture")
        results = await asyncio.gather(
            *(capture_hold(uow_factory, hold.id, "2.50", key) for _ in range(2)),
            return_exceptions=True,
        )

        first, second = results
        assert isinstance(first, Transaction), first
        assert isinstance(second, Transaction), second
        assert first.id == second.id
        assert first.status is second.status is TransactionStatus.COMPLETED
        assert await _captures(engine, hold.id) == [first.id]
        rows = await _wallets(engine, [wallet, to])
        assert (rows[wallet].balance, rows[wallet].held, rows[to].balance) == (7_50, 0, 2_50)
        await assert_balances_explained(engine, [wallet, to])
        await assert_holds_explained(engine, [wallet, to])
    await assert_audit_clean(engine)


async def test_a_hold_placed_twice_at_once_with_one_key_reserves_once(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    for _ in range(10):
        wallet = (await new_wallet(uow_factory, "10.00")).id
        key = fresh_key("hold")
        results = await asyncio.gather(
            *(place_hold(uow_factory, wallet, "6.00", key=key) for _ in range(2)),
            return_exceptions=True,
        )

        assert all(isinstance(r, Hold) for r in results), results
        assert len({r.id for r in results if isinstance(r, Hold)}) == 1
        rows = await _wallets(engine, [wallet])
        assert (rows[wallet].balance, rows[wallet].held) == (10_00, 6_00)
        await assert_holds_explained(engine, [wallet])
    await assert_audit_clean(engine)


async def test_a_void_sent_twice_at_once_with_one_key_replays_and_releases_once(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    for _ in range(10):
        wallet = (await new_wallet(uow_factory, "10.00")).id
        other = await place_hold(uow_factory, wallet, "1.00")
        hold = await place_hold(uow_factory, wallet, "4.00")
        key = fresh_key("void")
        results = await asyncio.gather(
            *(void_hold(uow_factory, hold.id, key) for _ in range(2)), return_exceptions=True
        )

        assert all(isinstance(r, Hold) for r in results), results
        assert {(r.id, r.status) for r in results if isinstance(r, Hold)} == {
            (hold.id, HoldStatus.VOIDED)
        }
        rows = await _wallets(engine, [wallet])
        assert (rows[wallet].balance, rows[wallet].held) == (10_00, 1_00)
        assert (await _holds(engine, [other.id]))[other.id].status is HoldStatus.ACTIVE
        await assert_holds_explained(engine, [wallet])
    await assert_audit_clean(engine)


async def test_concurrent_expirers_expire_each_of_200_due_holds_exactly_once(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    wallets = [(await new_wallet(uow_factory, "100.00")).id for _ in range(20)]

    async def ten_holds(wallet: UUID) -> list[Hold]:
        return [await place_hold(uow_factory, wallet, f"{n}.00") for n in range(1, 11)]

    holds = [h for placed in await asyncio.gather(*map(ten_holds, wallets)) for h in placed]
    ids = [h.id for h in holds]
    # Half long overdue (expirers wait for each other's wallets), half just due (they skip
    # wallets another has locked).
    await _make_due(engine, ids[::2], 10.0)
    await _make_due(engine, ids[1::2], 0.2)

    expirers = await asyncio.gather(
        *(_expire_until_none_active(uow_factory, engine, ids, limit=20) for _ in range(4))
    )

    expired = sum(expirers, Counter[UUID]())
    assert set(expired) == set(ids), "every due hold expired"
    assert [i for i, times in expired.items() if times > 1] == [], "none expired twice"
    assert {r.status for r in (await _holds(engine, ids)).values()} == {HoldStatus.EXPIRED}
    rows = await _wallets(engine, wallets)
    assert {(r.balance, r.held) for r in rows.values()} == {(100_00, 0)}
    await assert_balances_explained(engine, wallets)
    await assert_holds_explained(engine, wallets)
    print(f"holds expired by each expirer: {[sum(c.values()) for c in expirers]}")
    await assert_audit_clean(engine)


async def test_a_hold_on_a_wallet_kept_busy_still_expires_within_seconds(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    wallet = (await new_wallet(uow_factory, "100.00")).id
    hold = await place_hold(uow_factory, wallet, "1.00", expires_in_seconds=1)
    released: list[Hold] = []
    done = asyncio.Event()

    async def depositor() -> None:
        # Each deposit locks the wallet: with twenty at once, it is locked nearly all the time.
        while not done.is_set():
            await run_alone(
                uow_factory,
                services.deposit,
                ADMIN,
                services.Deposit(str(wallet), "0.01", fresh_key("deposit")),
            )

    async def expirer() -> None:
        # As the worker does: a round every second.
        while not done.is_set():
            released.extend(h for h in await expire_holds(uow_factory) if h.id == hold.id)
            if released:
                done.set()
            else:
                await asyncio.sleep(1.0)

    async def patience() -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 15)
        done.set()

    await asyncio.gather(*(depositor() for _ in range(20)), expirer(), patience())

    assert len(released) == 1, "expired once, while the wallet was busy"
    (expired,) = released
    assert expired.closed_at is not None
    waited = (expired.closed_at - hold.expires_at).total_seconds()
    limit = services.EXPIRY_PATIENCE.total_seconds() + 2
    assert waited < limit, f"released {waited:.1f} s after its expiry"
    figures = await assert_holds_explained(engine, [wallet])
    assert figures[str(wallet)].held == 0
    await assert_balances_explained(engine, [wallet])
    print(f"released {waited:.2f} s after its expiry")
    await assert_audit_clean(engine)


async def test_a_wallet_locked_elsewhere_keeps_no_other_wallet_s_holds_from_expiring(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine, database_url: str
) -> None:
    """Another connection holds one wallet's row lock and never lets go while the test looks:
    its hold, the longest overdue of all, stays ACTIVE, and every other wallet's due hold is
    released within seconds all the same; the stuck one goes once the lock is released."""
    stuck = (await new_wallet(uow_factory, "10.00")).id
    others = [(await new_wallet(uow_factory, "10.00")).id for _ in range(3)]
    stuck_hold = await place_hold(uow_factory, stuck, "4.00")
    other_holds = [await place_hold(uow_factory, wallet, "3.00") for wallet in others]
    other_ids = {h.id for h in other_holds}
    # Past EXPIRY_PATIENCE, so the expirer waits for its wallet first (up to EXPIRY_WAIT).
    await _make_due(engine, [stuck_hold.id], 10.0)
    await _make_due(engine, other_ids, 3.0)

    locker = await asyncpg.connect(database_url)
    locked = locker.transaction()
    await locker.execute("SET lock_timeout = 0")
    await locked.start()
    try:
        await locker.fetch("SELECT id FROM wallets WHERE id = $1 FOR NO KEY UPDATE", stuck)
        rounds = []
        for _ in range(2):
            started = asyncio.get_running_loop().time()
            expired = await asyncio.wait_for(expire_holds(uow_factory), 10)
            rounds.append((asyncio.get_running_loop().time() - started, expired))
        while_locked = await _holds(engine, [stuck_hold.id, *other_ids])
        held_while_locked = (await _wallets(engine, [stuck]))[stuck].held
    finally:
        await locked.rollback()
        await locker.close()

    _, first = rounds[0]
    assert other_ids <= {h.id for h in first}, "the other wallets' holds expired at once"
    # A round waits for the stuck wallet at most EXPIRY_WAIT (1 s); the rest is slack for a
    # busy machine. Without the bound it would wait for the lock as long as it is held.
    bound = EXPIRY_WAIT.total_seconds() + 4
    for took, expired in rounds:
        assert stuck_hold.id not in {h.id for h in expired}
        assert took < bound, f"a round took {took:.1f} s behind one locked wallet"
    assert while_locked[stuck_hold.id].status is HoldStatus.ACTIVE
    assert held_while_locked == 4_00
    assert {while_locked[i].status for i in other_ids} == {HoldStatus.EXPIRED}
    released = await _expire_until_none_active(uow_factory, engine, [stuck_hold.id])
    assert released == Counter({stuck_hold.id: 1}), "released once its wallet was free"
    rows = await _wallets(engine, [stuck, *others])
    assert {(r.balance, r.held) for r in rows.values()} == {(10_00, 0)}
    await assert_holds_explained(engine, [stuck, *others])
    await assert_balances_explained(engine, [stuck, *others])
    await assert_audit_clean(engine)


@pytest.mark.parametrize("way", ["withdrawal", "transfer"])
async def test_a_hold_then_a_debit_of_the_whole_balance_fails_with_insufficient_funds(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine, way: str
) -> None:
    wallet = (await new_wallet(uow_factory, "100.00")).id
    to = (await new_wallet(uow_factory)).id
    await place_hold(uow_factory, wallet, "30.00")
    before = await _wallets(engine, [wallet, to])

    if way == "withdrawal":
        debit = await withdraw(uow_factory, wallet, "100.00")
    else:
        debit = await transfer(uow_factory, wallet, to, "100.00")

    assert debit.status is TransactionStatus.FAILED
    assert debit.failure_code is ErrorCode.INSUFFICIENT_FUNDS
    assert await _wallets(engine, [wallet, to]) == before, "nothing moved"
    await assert_balances_explained(engine, [wallet, to])
    await assert_holds_explained(engine, [wallet, to])
    # What is available still moves: the rule is the available balance, not the balance.
    if way == "withdrawal":
        debit = await withdraw(uow_factory, wallet, "70.00")
    else:
        debit = await transfer(uow_factory, wallet, to, "70.00")
    assert debit.status is TransactionStatus.COMPLETED
    rows = await _wallets(engine, [wallet])
    assert (rows[wallet].balance, rows[wallet].held) == (30_00, 30_00)
    await assert_audit_clean(engine)


async def test_a_hold_refused_for_insufficient_funds_records_nothing(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine
) -> None:
    wallet = (await new_wallet(uow_factory, "100.00")).id
    await place_hold(uow_factory, wallet, "30.00")
    before = await _wallets(engine, [wallet])
    key = fresh_key("hold")

    with pytest.raises(InsufficientFunds):
        await place_hold(uow_factory, wallet, "70.01", key=key)

    assert await _wallets(engine, [wallet]) == before
    async with engine.connect() as conn:
        holds, keys = (
            await conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM holds WHERE wallet_id = CAST(:w AS uuid)),"
                    " (SELECT count(*) FROM idempotency_keys WHERE key = :k)"
                ),
                {"w": str(wallet), "k": key},
            )
        ).one()
    assert (holds, keys) == (1, 0)
    # Nothing was recorded under the key, so it still places the hold once funds allow it.
    await run_alone(
        uow_factory,
        services.deposit,
        ADMIN,
        services.Deposit(str(wallet), "0.01", fresh_key("deposit")),
    )
    hold = await place_hold(uow_factory, wallet, "70.01", key=key)
    assert hold.status is HoldStatus.ACTIVE
    assert (await _wallets(engine, [wallet]))[wallet].held == 100_01


# PostgreSQL keeps the rules even when code breaks them: statements no use case sends.
BROKEN_WRITES = {
    "held above the balance": (
        "UPDATE wallets SET held = balance + 1 WHERE id = $1",
        "wallet",
        asyncpg.CheckViolationError,
        "held_within_balance",
    ),
    "held below zero": (
        "UPDATE wallets SET held = -1 WHERE id = $1",
        "wallet",
        asyncpg.CheckViolationError,
        "held_within_balance",
    ),
    "a second transaction naming a captured hold": (
        "INSERT INTO transactions (id, type, status, amount, currency, sender_wallet_id,"
        " created_at, completed_at, hold_id)"
        " VALUES (gen_random_uuid(), 'WITHDRAWAL', 'COMPLETED', 100, 'USD',"
        " (SELECT wallet_id FROM holds WHERE id = $1), now(), now(), $1)",
        "hold",
        asyncpg.UniqueViolationError,
        "one_capture_per_hold",
    ),
    "a capture above the hold": (
        "UPDATE holds SET captured_amount = amount + 1 WHERE id = $1",
        "hold",
        asyncpg.CheckViolationError,
        "capture_within_hold",
    ),
}


@pytest.mark.parametrize("broken", list(BROKEN_WRITES))
async def test_postgresql_refuses_what_breaks_the_hold_rules_whatever_the_code_does(
    uow_factory: UnitOfWorkFactory, engine: AsyncEngine, broken: str
) -> None:
    statement, target, error, constraint = BROKEN_WRITES[broken]
    wallet = (await new_wallet(uow_factory, "10.00")).id
    await place_hold(uow_factory, wallet, "2.00")
    hold = await place_hold(uow_factory, wallet, "4.00")
    await capture_hold(uow_factory, hold.id, "3.00")
    before = await _wallets(engine, [wallet])

    async with SqlUnitOfWork(engine) as uow:
        connection = await uow.begun()
        with pytest.raises(error) as refused:
            await connection.execute(statement, wallet if target == "wallet" else hold.id)
    assert refused.value.constraint_name == constraint
    assert await _wallets(engine, [wallet]) == before
    await assert_holds_explained(engine, [wallet])
