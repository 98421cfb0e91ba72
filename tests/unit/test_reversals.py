"""The reversal rule on the model (issue 16): `Transaction.reverse` takes a share of a COMPLETED
deposit, withdrawal or transfer at once, never more than is left, and `give_back` returns the
share of a reversal that FAILED. A reversal's wallets are the original's, swapped."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wallet.domain.errors import (
    CurrencyMismatch,
    ErrorCode,
    NotReversible,
    ReversalExceedsOriginal,
)
from wallet.domain.model import (
    REVERSIBLE_TYPES,
    Transaction,
    TransactionStatus,
    TransactionType,
    Wallet,
    apply_all_or_none,
)
from wallet.domain.money import Currency, Money

pytestmark = pytest.mark.timeout(30)

USD = Currency.of("USD")
EUR = Currency.of("EUR")
JPY = Currency.of("JPY")


def usd(minor: int) -> Money:
    return Money(minor, USD)


def wallet(balance: int, currency: Currency = USD) -> Wallet:
    return Wallet(uuid.uuid4(), "someone", currency, Money(balance, currency))


def completed(
    type: TransactionType = TransactionType.TRANSFER, amount: Money | None = None
) -> Transaction:
    """A COMPLETED original of that type, 10.00 USD unless told, between fresh wallet ids."""
    amount = amount if amount is not None else usd(10_00)
    sender, receiver = uuid.uuid4(), uuid.uuid4()
    if type is TransactionType.DEPOSIT:
        original = Transaction.deposit(amount, receiver=receiver, key="original")
    elif type is TransactionType.WITHDRAWAL:
        original = Transaction.withdrawal(amount, sender=sender, key="original")
    else:
        original = Transaction.transfer(amount, sender=sender, receiver=receiver, key="original")
    original.status = TransactionStatus.COMPLETED
    return original


def failed(reversal: Transaction) -> Transaction:
    reversal.fail(ErrorCode.INSUFFICIENT_FUNDS, "too little money left to give back")
    return reversal


# -- what may be reversed ------------------------------------------------------------------


def test_only_deposits_withdrawals_and_transfers_are_reversible_types() -> None:
    assert frozenset(TransactionType) - REVERSIBLE_TYPES == {TransactionType.REVERSAL}


@pytest.mark.parametrize("type", sorted(REVERSIBLE_TYPES))
def test_a_completed_deposit_withdrawal_or_transfer_can_be_reversed(
    type: TransactionType,
) -> None:
    original = completed(type)

    reversal = original.reverse(usd(3_00), key="refund")

    assert (reversal.type, reversal.status, reversal.amount) == (
        TransactionType.REVERSAL,
        TransactionStatus.PENDING,
        usd(3_00),
    )
    assert reversal.reversal_of == original.id
    assert reversal.id != original.id
    assert reversal.client_transaction_id == "refund"
    assert (reversal.failure_code, reversal.completed_at, reversal.reversal_claimed) == (
        None,
        None,
        0,
    )


@pytest.mark.parametrize("status", [TransactionStatus.PENDING, TransactionStatus.FAILED])
@pytest.mark.parametrize("type", sorted(REVERSIBLE_TYPES))
def test_a_pending_or_failed_transaction_is_not_reversible_and_keeps_nothing_claimed(
    type: TransactionType, status: TransactionStatus
) -> None:
    original = completed(type)
    original.status = status

    with pytest.raises(NotReversible) as refused:
        original.reverse(usd(1_00), key="refund")

    assert refused.value.code is ErrorCode.NOT_REVERSIBLE
    assert refused.value.field == "transaction_id"
    assert original.reversal_claimed == 0
    assert original.reversible == usd(10_00)


@pytest.mark.parametrize(
    "status",
    [TransactionStatus.PENDING, TransactionStatus.COMPLETED, TransactionStatus.FAILED],
)
def test_a_reversal_is_never_reversible_whatever_its_status(status: TransactionStatus) -> None:
    reversal = completed().reverse(usd(4_00), key="refund")
    reversal.status = status

    with pytest.raises(NotReversible):
        reversal.reverse(usd(1_00), key="refund of the refund")
    with pytest.raises(NotReversible):
        reversal.reverse(None, key="all of the refund")

    assert reversal.reversal_claimed == 0


# -- how much ------------------------------------------------------------------------------


def test_a_reversal_without_an_amount_takes_all_that_is_left() -> None:
    original = completed()

    reversal = original.reverse(None, key="refund")

    assert reversal.amount == usd(10_00)
    assert original.reversal_claimed == 10_00
    assert original.reversible == usd(0)


def test_partial_reversals_take_their_shares_until_nothing_is_left() -> None:
    original = completed()

    first = original.reverse(usd(2_50), key="a")
    second = original.reverse(usd(1), key="b")
    rest = original.reverse(None, key="c")

    assert [r.amount for r in (first, second, rest)] == [usd(2_50), usd(1), usd(7_49)]
    assert original.reversal_claimed == 10_00
    assert original.reversible == usd(0)
    assert len({first.id, second.id, rest.id}) == 3


def test_a_reversal_of_exactly_what_is_left_is_accepted() -> None:
    original = completed()
    original.reverse(usd(6_00), key="a")

    last = original.reverse(usd(4_00), key="b")

    assert last.amount == usd(4_00)
    assert original.reversible == usd(0)


def test_a_reversal_of_more_than_is_left_is_refused_and_claims_nothing() -> None:
    original = completed()
    original.reverse(usd(6_00), key="a")

    with pytest.raises(ReversalExceedsOriginal) as refused:
        original.reverse(usd(4_01), key="b")

    assert refused.value.code is ErrorCode.REVERSAL_EXCEEDS_ORIGINAL
    assert refused.value.field == "amount"
    assert original.reversal_claimed == 6_00
    assert original.reversible == usd(4_00)


def test_a_reversal_of_more_than_the_original_moved_is_refused_from_the_start() -> None:
    original = completed()

    with pytest.raises(ReversalExceedsOriginal):
        original.reverse(usd(10_01), key="a")

    assert original.reversal_claimed == 0


def test_once_all_of_it_is_reversed_even_a_reversal_of_what_is_left_is_refused() -> None:
    """With nothing left, `amount` omitted means zero, which is no reversal at all."""
    original = completed()
    original.reverse(None, key="all")

    with pytest.raises(ReversalExceedsOriginal):
        original.reverse(None, key="all again")
    with pytest.raises(ReversalExceedsOriginal):
        original.reverse(usd(1), key="a cent more")

    assert original.reversal_claimed == 10_00


def test_a_reversal_in_another_currency_is_refused_and_claims_nothing() -> None:
    original = completed()

    with pytest.raises(CurrencyMismatch) as refused:
        original.reverse(Money(1_00, EUR), key="euros")

    assert refused.value.field == "amount"
    assert original.reversal_claimed == 0


def test_a_reversal_is_in_the_original_s_currency_and_minor_units() -> None:
    original = completed(TransactionType.DEPOSIT, Money(1000, JPY))

    part = original.reverse(Money(300, JPY), key="a")
    rest = original.reverse(None, key="b")

    assert (part.amount, rest.amount) == (Money(300, JPY), Money(700, JPY))


# -- whose money ---------------------------------------------------------------------------


def test_a_transfer_s_reversal_sends_money_from_its_receiver_back_to_its_sender() -> None:
    original = completed(TransactionType.TRANSFER)

    reversal = original.reverse(usd(1_00), key="refund")

    assert (reversal.sender_wallet_id, reversal.receiver_wallet_id) == (
        original.receiver_wallet_id,
        original.sender_wallet_id,
    )
    assert reversal.wallet_ids == original.wallet_ids


def test_a_deposit_s_reversal_takes_money_out_of_its_wallet() -> None:
    original = completed(TransactionType.DEPOSIT)

    reversal = original.reverse(usd(1_00), key="refund")

    assert reversal.sender_wallet_id == original.receiver_wallet_id is not None
    assert reversal.receiver_wallet_id is None


def test_a_withdrawal_s_reversal_puts_money_back_into_its_wallet() -> None:
    original = completed(TransactionType.WITHDRAWAL)

    reversal = original.reverse(usd(1_00), key="refund")

    assert reversal.receiver_wallet_id == original.sender_wallet_id is not None
    assert reversal.sender_wallet_id is None


@pytest.mark.parametrize(
    ("type", "sender_after", "receiver_after"),
    [
        (TransactionType.TRANSFER, 2_00 + 3_00, 10_00 - 3_00),
        (TransactionType.DEPOSIT, None, 10_00 - 3_00),
        (TransactionType.WITHDRAWAL, 2_00 + 3_00, None),
    ],
)
def test_applying_a_reversal_moves_its_amount_the_other_way_and_explains_it_with_entries(
    type: TransactionType, sender_after: int | None, receiver_after: int | None
) -> None:
    # The original's sender has 2.00 left, its receiver 10.00.
    sender, receiver = wallet(2_00), wallet(10_00)
    original = completed(type)
    original.sender_wallet_id = sender.id if original.sender_wallet_id else None
    original.receiver_wallet_id = receiver.id if original.receiver_wallet_id else None
    wallets = {w.id: w for w in (sender, receiver)}

    reversal = original.reverse(usd(3_00), key="refund")
    entries = reversal.apply(wallets)

    assert reversal.status is TransactionStatus.COMPLETED
    expected = []
    if receiver_after is not None:
        expected.append((receiver.id, -3_00, receiver_after))
    if sender_after is not None:
        expected.append((sender.id, 3_00, sender_after))
    assert [(e.transaction_id, e.wallet_id, e.delta, e.balance_after) for e in entries] == [
        (reversal.id, *e) for e in expected
    ]
    assert sender.balance.minor == (sender_after if sender_after is not None else 2_00)
    assert receiver.balance.minor == (receiver_after if receiver_after is not None else 10_00)


@pytest.mark.parametrize("type", [TransactionType.TRANSFER, TransactionType.DEPOSIT])
def test_a_reversal_that_finds_too_little_money_fails_and_moves_nothing(
    type: TransactionType,
) -> None:
    """The money it would take back was spent, or is held: only what is available counts."""
    sender, receiver = wallet(0), wallet(5_00)
    receiver.held = 3_00  # a hold: 2.00 available
    original = completed(type)
    original.sender_wallet_id = sender.id if original.sender_wallet_id else None
    original.receiver_wallet_id = receiver.id
    reversal = original.reverse(usd(2_01), key="refund")

    entries = apply_all_or_none([reversal], {sender.id: sender, receiver.id: receiver})

    assert entries == []
    assert (reversal.status, reversal.failure_code) == (
        TransactionStatus.FAILED,
        ErrorCode.INSUFFICIENT_FUNDS,
    )
    assert reversal.error_message
    assert (sender.balance.minor, receiver.balance.minor, receiver.held) == (0, 5_00, 3_00)


# -- giving back ---------------------------------------------------------------------------


def test_a_failed_reversal_gives_its_share_back_so_it_can_be_reversed_again() -> None:
    original = completed()
    kept = original.reverse(usd(3_00), key="a")
    lost = original.reverse(usd(7_00), key="b")
    with pytest.raises(ReversalExceedsOriginal):
        original.reverse(usd(1), key="c")

    original.give_back(failed(lost))

    assert original.reversal_claimed == 3_00
    assert original.reversible == usd(7_00)
    again = original.reverse(None, key="d")
    assert again.amount == usd(7_00)
    assert original.reversal_claimed == 10_00
    assert kept.status is TransactionStatus.PENDING


def test_only_a_failed_reversal_gives_its_share_back() -> None:
    original = completed()
    pending = original.reverse(usd(3_00), key="a")
    done = original.reverse(usd(2_00), key="b")
    done.status = TransactionStatus.COMPLETED

    for reversal in (pending, done):
        with pytest.raises(AssertionError):
            original.give_back(reversal)

    assert original.reversal_claimed == 5_00


def test_a_reversal_gives_its_share_back_only_to_its_own_original() -> None:
    original, other = completed(), completed()
    reversal = failed(other.reverse(usd(3_00), key="a"))
    original.reverse(usd(3_00), key="b")

    with pytest.raises(AssertionError):
        original.give_back(reversal)

    assert original.reversal_claimed == 3_00


# Each step: reverse this many cents (None: all that is left), or fail the n-th reversal made.
steps = st.lists(
    st.one_of(
        st.tuples(st.just("reverse"), st.one_of(st.none(), st.integers(1, 1_200))),
        st.tuples(st.just("fail"), st.integers(0, 30)),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(steps=steps)
def test_what_reversals_claim_is_always_what_their_live_ones_take_within_the_amount(
    steps: list[tuple[str, int | None]],
) -> None:
    original = completed(amount=usd(10_00))
    made: list[Transaction] = []
    for step, value in steps:
        if step == "reverse":
            left = original.reversible.minor
            amount = None if value is None else usd(value)
            wanted = left if value is None else value
            if wanted > left or left == 0:
                with pytest.raises(ReversalExceedsOriginal):
                    original.reverse(amount, key=f"k{len(made)}")
            else:
                made.append(original.reverse(amount, key=f"k{len(made)}"))
        else:
            assert value is not None
            alive = [r for r in made if r.status is TransactionStatus.PENDING]
            if alive:
                original.give_back(failed(alive[value % len(alive)]))
        live = sum(r.amount.minor for r in made if r.status is not TransactionStatus.FAILED)
        assert original.reversal_claimed == live
        assert 0 <= original.reversal_claimed <= original.amount.minor
        assert original.reversible.minor == original.amount.minor - live
