"""The rules of holds, each run alone over the in-memory unit of work."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from uuid import UUID, uuid4

import pytest

from tests.callers import ADMIN, ALICE, BOB, FUNDER
from tests.unit.fakes import FakeDatabase, new_wallet
from wallet.domain import services
from wallet.domain.callers import Caller
from wallet.domain.errors import (
    CaptureExceedsHold,
    CurrencyMismatch,
    HoldNotActive,
    HoldNotFound,
    IdempotencyKeyReused,
    InsufficientFunds,
    InvalidAmount,
    InvalidInput,
    SameWallet,
    WalletNotFound,
)
from wallet.domain.group_commit import run_alone, run_unattended
from wallet.domain.model import (
    Hold,
    HoldStatus,
    Transaction,
    TransactionStatus,
    TransactionType,
    now,
)
from wallet.domain.money import MAX_BALANCE_MINOR


@pytest.fixture
def db() -> FakeDatabase:
    return FakeDatabase()


async def place(
    db: FakeDatabase,
    wallet: UUID,
    amount: str,
    *,
    receiver: UUID | None = None,
    caller: Caller = ALICE,
    key: str = "",
    seconds: int = 60,
) -> Hold:
    command = services.PlaceHold(
        str(wallet),
        amount,
        key or uuid4().hex,
        receiver_wallet_id=str(receiver) if receiver else None,
        expires_in_seconds=seconds,
    )
    return await run_alone(db.unit_of_work, services.place_hold, caller, command)


async def capture(
    db: FakeDatabase,
    hold: Hold,
    amount: str | None = None,
    *,
    caller: Caller = ALICE,
    key: str = "",
) -> Transaction:
    command = services.CaptureHold(str(hold.id), key or uuid4().hex, amount)
    return await run_alone(db.unit_of_work, services.capture_hold, caller, command)


async def void(db: FakeDatabase, hold: Hold, *, caller: Caller = ALICE, key: str = "") -> Hold:
    command = services.VoidHold(str(hold.id), key or uuid4().hex)
    return await run_alone(db.unit_of_work, services.void_hold, caller, command)


def held(db: FakeDatabase, wallet: UUID) -> int:
    """The wallet's held total, checked against the ACTIVE holds it must equal."""
    stored = db.stored.wallets[wallet].held
    assert stored == db.reserved(wallet)
    return stored


def expire_now(db: FakeDatabase, hold: Hold) -> None:
    """Make the hold due, as time passing would."""
    stored = db.stored.holds[hold.id]
    db.stored.holds[hold.id] = replace(stored, expires_at=now() - timedelta(seconds=1))


async def test_a_hold_reserves_its_amount_and_leaves_the_balance_as_it_is(
    db: FakeDatabase,
) -> None:
    wallet = await new_wallet(db, "10.00")

    hold = await place(db, wallet, "4.00")

    assert hold.status is HoldStatus.ACTIVE
    assert db.balance(wallet) == 10_00
    assert held(db, wallet) == 4_00
    assert db.stored.wallets[wallet].available.minor == 6_00


async def test_a_hold_past_the_available_balance_is_refused_and_records_nothing(
    db: FakeDatabase,
) -> None:
    wallet = await new_wallet(db, "10.00")
    await place(db, wallet, "7.00")
    keys = len(db.stored.keys)

    with pytest.raises(InsufficientFunds):
        await place(db, wallet, "3.01")

    assert len(db.stored.holds) == 1
    assert len(db.stored.keys) == keys
    assert held(db, wallet) == 7_00
    assert (await place(db, wallet, "3.00")).status is HoldStatus.ACTIVE


async def test_a_hold_sent_again_with_its_key_is_the_same_hold_even_once_money_ran_short(
    db: FakeDatabase,
) -> None:
    wallet = await new_wallet(db, "10.00")
    first = await place(db, wallet, "6.00", key="fare")

    again = await place(db, wallet, "6.00", key="fare")

    assert again.id == first.id
    assert held(db, wallet) == 6_00
    with pytest.raises(IdempotencyKeyReused):
        await place(db, wallet, "5.00", key="fare")


async def test_a_withdrawal_cannot_take_what_a_hold_reserves(db: FakeDatabase) -> None:
    wallet = await new_wallet(db, "10.00")
    await place(db, wallet, "0.01")
    command = services.Withdraw(str(wallet), "10.00", "all")
    withdrawal = await run_alone(db.unit_of_work, services.withdraw, ALICE, command)

    (settled,) = await run_unattended(db.unit_of_work, services.settle, [withdrawal.id])

    assert settled.status is TransactionStatus.FAILED
    assert settled.failure_code is InsufficientFunds.code
    assert db.balance(wallet) == 10_00


async def test_a_partial_capture_moves_what_it_captures_and_releases_the_rest(
    db: FakeDatabase,
) -> None:
    wallet = await new_wallet(db, "10.00")
    shop = await new_wallet(db, owner=BOB)
    hold = await place(db, wallet, "6.00", receiver=shop)

    moved = await capture(db, hold, "2.50")

    assert (moved.type, moved.status) == (TransactionType.TRANSFER, TransactionStatus.COMPLETED)
    assert (moved.amount.minor, moved.hold_id) == (2_50, hold.id)
    stored = db.stored.holds[hold.id]
    assert (stored.status, stored.captured, stored.capture_id) == (
        HoldStatus.CAPTURED,
        2_50,
        moved.id,
    )
    assert db.balance(wallet) == db.explained(wallet) == 7_50
    assert db.balance(shop) == db.explained(shop) == 2_50
    assert held(db, wallet) == 0


async def test_a_capture_without_a_receiver_is_a_withdrawal_of_the_whole_hold(
    db: FakeDatabase,
) -> None:
    wallet = await new_wallet(db, "10.00")
    hold = await place(db, wallet, "6.00")

    moved = await capture(db, hold)

    assert (moved.type, moved.amount.minor) == (TransactionType.WITHDRAWAL, 6_00)
    assert db.balance(wallet) == db.explained(wallet) == 4_00
    assert held(db, wallet) == 0


async def test_a_capture_sent_again_with_its_key_is_the_same_transaction_applied_once(
    db: FakeDatabase,
) -> None:
    wallet = await new_wallet(db, "10.00")
    hold = await place(db, wallet, "6.00")

    first = await capture(db, hold, "1.00", key="capture")
    again = await capture(db, hold, "1.00", key="capture")

    assert again.id == first.id
    assert db.balance(wallet) == 9_00
    with pytest.raises(IdempotencyKeyReused):
        await capture(db, hold, "2.00", key="capture")


async def test_a_capture_past_the_hold_is_refused_and_leaves_it_active(db: FakeDatabase) -> None:
    wallet = await new_wallet(db, "10.00")
    hold = await place(db, wallet, "6.00")

    with pytest.raises(CaptureExceedsHold):
        await capture(db, hold, "6.01")

    assert db.stored.holds[hold.id].status is HoldStatus.ACTIVE
    assert (db.balance(wallet), held(db, wallet)) == (10_00, 6_00)


async def test_a_hold_ends_once_whichever_way_out_comes_first(db: FakeDatabase) -> None:
    wallet = await new_wallet(db, "10.00")
    captured, voided = await place(db, wallet, "1.00"), await place(db, wallet, "2.00")
    await capture(db, captured)
    await void(db, voided)

    for hold in (captured, voided):
        with pytest.raises(HoldNotActive):
            await capture(db, hold)
        with pytest.raises(HoldNotActive):
            await void(db, hold)

    assert (db.balance(wallet), held(db, wallet)) == (9_00, 0)


async def test_a_void_sent_again_with_its_key_is_the_same_voided_hold(db: FakeDatabase) -> None:
    wallet = await new_wallet(db, "10.00")
    hold = await place(db, wallet, "6.00")

    first = await void(db, hold, key="cancel")
    again = await void(db, hold, key="cancel")

    assert first.id == again.id == hold.id
    assert again.status is HoldStatus.VOIDED
    assert held(db, wallet) == 0


async def test_a_capture_after_the_expiry_is_refused_before_any_worker_releases_the_hold(
    db: FakeDatabase,
) -> None:
    wallet = await new_wallet(db, "10.00")
    hold = await place(db, wallet, "6.00")
    expire_now(db, hold)

    with pytest.raises(HoldNotActive, match="EXPIRED"):
        await capture(db, hold)
    with pytest.raises(HoldNotActive):
        await void(db, hold)

    assert db.stored.holds[hold.id].status is HoldStatus.ACTIVE
    assert db.balance(wallet) == 10_00


async def test_expiry_releases_exactly_the_due_holds_and_only_once(db: FakeDatabase) -> None:
    wallet = await new_wallet(db, "10.00")
    due, later = await place(db, wallet, "6.00"), await place(db, wallet, "1.00")
    expire_now(db, due)

    expired = await run_unattended(db.unit_of_work, services.expire_holds, 100)
    again = await run_unattended(db.unit_of_work, services.expire_holds, 100)

    assert [h.id for h in expired] == [due.id]
    assert again == []
    assert db.stored.holds[due.id].status is HoldStatus.EXPIRED
    assert db.stored.holds[later.id].status is HoldStatus.ACTIVE
    assert held(db, wallet) == 1_00
    assert db.stored.wallets[wallet].available.minor == 9_00


async def test_a_capture_the_receiver_cannot_take_moves_nothing_and_keeps_the_hold(
    db: FakeDatabase,
) -> None:
    wallet = await new_wallet(db, "10.00")
    full = await new_wallet(db, owner=BOB)
    db.stored.wallets[full] = replace(
        db.stored.wallets[full],
        balance=replace(db.stored.wallets[full].balance, minor=MAX_BALANCE_MINOR),
    )
    hold = await place(db, wallet, "6.00", receiver=full)

    with pytest.raises(InvalidAmount):
        await capture(db, hold)

    assert db.stored.holds[hold.id].status is HoldStatus.ACTIVE
    assert (db.balance(wallet), held(db, wallet)) == (10_00, 6_00)


async def test_a_hold_names_another_wallet_of_the_same_currency_as_its_receiver(
    db: FakeDatabase,
) -> None:
    wallet = await new_wallet(db, "10.00")
    euros = await new_wallet(db, owner=BOB, currency="EUR")

    with pytest.raises(SameWallet):
        await place(db, wallet, "1.00", receiver=wallet)
    with pytest.raises(CurrencyMismatch):
        await place(db, wallet, "1.00", receiver=euros)
    with pytest.raises(WalletNotFound):
        await place(db, wallet, "1.00", receiver=uuid4())
    with pytest.raises(InvalidInput):
        await place(db, wallet, "1.00", seconds=0)
    with pytest.raises(InvalidInput):
        await place(db, wallet, "1.00", seconds=30 * 24 * 3600 + 1)
    assert db.stored.holds == {}


async def test_only_the_wallet_s_owner_or_an_admin_places_a_hold_on_it(db: FakeDatabase) -> None:
    wallet = await new_wallet(db, "10.00")

    for stranger in (BOB, FUNDER):
        with pytest.raises(WalletNotFound):
            await place(db, wallet, "1.00", caller=stranger)

    assert (await place(db, wallet, "1.00", caller=ADMIN)).status is HoldStatus.ACTIVE


async def test_the_owner_the_receiver_s_owner_and_admins_capture_and_void_no_one_else(
    db: FakeDatabase,
) -> None:
    wallet = await new_wallet(db, "10.00")
    shop = await new_wallet(db, owner=BOB)
    holds = [await place(db, wallet, "1.00", receiver=shop) for _ in range(4)]

    for hold in holds:
        with pytest.raises(HoldNotFound):
            await capture(db, hold, caller=FUNDER)
        with pytest.raises(HoldNotFound):
            await void(db, hold, caller=FUNDER)
    with pytest.raises(HoldNotFound):
        await void(db, replace(holds[0], id=uuid4()))

    await capture(db, holds[0], caller=BOB)
    await void(db, holds[1], caller=BOB)
    await capture(db, holds[2], caller=ADMIN)
    await void(db, holds[3], caller=ALICE)
    assert [db.stored.holds[h.id].status for h in holds] == [
        HoldStatus.CAPTURED,
        HoldStatus.VOIDED,
        HoldStatus.CAPTURED,
        HoldStatus.VOIDED,
    ]
    assert db.balance(shop) == 2_00
