"""Cutting first pages out of a cached history head, and the cache's encoding, without I/O."""

from __future__ import annotations

import json
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from wallet.domain.errors import ErrorCode
from wallet.domain.model import (
    HistoryRequest,
    Page,
    Transaction,
    TransactionStatus,
    TransactionType,
    Wallet,
)
from wallet.domain.money import Currency, Money
from wallet.persistence.cache import decode_head, encode_head, page_from_entry, page_from_head
from wallet.persistence.codec import (
    transaction_from_json,
    transaction_to_json,
    wallet_from_json,
    wallet_to_json,
)
from wallet.persistence.history_filter import HistoryFilter
from wallet.persistence.tables import transactions

USD = Currency.of("USD")
WALLET = uuid4()
START = datetime(2026, 1, 1, tzinfo=UTC)


def history(kinds: str) -> list[Transaction]:
    """Newest first; D deposit, T transfer, F failed withdrawal."""
    made = []
    for n, kind in enumerate(kinds):
        failed = kind == "F"
        made.append(
            Transaction(
                id=uuid4(),
                type={
                    "D": TransactionType.DEPOSIT,
                    "T": TransactionType.TRANSFER,
                    "F": TransactionType.WITHDRAWAL,
                }[kind],
                status=TransactionStatus.FAILED if failed else TransactionStatus.COMPLETED,
                amount=Money(100 + n, USD),
                sender_wallet_id=None if kind == "D" else WALLET,
                receiver_wallet_id=None if kind == "F" else (WALLET if kind == "D" else uuid4()),
                client_transaction_id=f"key-{n}" if n % 2 else None,
                failure_code=ErrorCode.INSUFFICIENT_FUNDS if failed else None,
                error_message="too little" if failed else None,
                created_at=START - timedelta(seconds=n),
                completed_at=START - timedelta(seconds=n) + timedelta(milliseconds=5),
            )
        )
    return made


def request(limit: int, *, types: str = "", failed_only: bool = False) -> HistoryRequest:
    chosen = frozenset(
        {"D": TransactionType.DEPOSIT, "T": TransactionType.TRANSFER}[k] for k in types
    )
    return HistoryRequest(
        WALLET,
        limit=limit,
        types=chosen or None,
        statuses=frozenset({TransactionStatus.FAILED}) if failed_only else None,
    )


def test_a_page_shorter_than_the_head_is_its_newest_part_and_has_a_next_page() -> None:
    head = history("DTDTDT")
    page = page_from_head(head, complete=True, request=request(4))
    assert page == Page(head[:4], has_next=True, has_previous=False)


def test_the_whole_of_a_complete_head_is_a_last_page() -> None:
    head = history("DTD")
    assert page_from_head(head, complete=True, request=request(20)) == Page(head)


def test_a_filter_is_applied_to_the_head() -> None:
    head = history("DTFDTF")
    page = page_from_head(head, complete=True, request=request(20, failed_only=True))
    assert page is not None
    assert page.transactions == [head[2], head[5]]
    assert page.has_next is False


def test_a_filter_with_more_matches_than_a_page_is_answered_from_a_partial_head() -> None:
    head = history("TTTDT")
    page = page_from_head(head, complete=False, request=request(3, types="T"))
    assert page == Page(head[:3], has_next=True)


@pytest.mark.parametrize("kinds", ["DTDTD", "DDDDD"])
def test_a_partial_head_cannot_say_whether_older_transactions_match(kinds: str) -> None:
    head = history(kinds)
    assert page_from_head(head, complete=False, request=request(3, types="T")) is None


def test_a_head_survives_its_encoding() -> None:
    head = history("DTF")
    assert decode_head(encode_head(Page(head, has_next=True))) == (head, False)
    assert decode_head(encode_head(Page(head)).encode()) == (head, True)


def test_a_wallet_survives_its_encoding() -> None:
    wallet = Wallet(
        UUID(int=7),
        "someone",
        Currency.of("KWD"),
        Money(1_234, Currency.of("KWD")),
        held=1_000,
        version=9,
        created_at=START,
        updated_at=START,
    )
    assert wallet_from_json(wallet_to_json(wallet).encode()) == wallet


def test_a_transaction_survives_its_encoding_failed_or_not() -> None:
    for transaction in history("TF"):
        assert transaction_from_json(transaction_to_json(transaction).encode()) == transaction


def test_records_are_encoded_by_field_name_with_money_as_minor_units_and_currency() -> None:
    (transaction,) = history("F")
    encoded = json.loads(transaction_to_json(transaction))
    money = {"amount", "currency"}
    assert set(encoded) == {f.name for f in fields(Transaction)} | money
    assert (encoded["amount"], encoded["currency"]) == (transaction.amount.minor, "USD")
    assert encoded["failure_code"] == "INSUFFICIENT_FUNDS"
    wallet = Wallet(
        UUID(int=7), "someone", USD, Money(1_234, USD), held=34, version=9, created_at=START
    )
    encoded = json.loads(wallet_to_json(wallet))
    assert set(encoded) == {f.name for f in fields(Wallet)} | {"currency"}
    assert (encoded["balance"], encoded["held"], encoded["version"]) == (1_234, 34, 9)


@pytest.mark.parametrize(
    ("kinds", "complete", "limit", "types", "failed_only"),
    [
        ("DTDTDT", True, 4, "", False),
        ("DTD", True, 20, "", False),
        ("DTFDTF", True, 20, "", True),
        ("TTTDT", False, 3, "T", False),
        ("DTDTD", False, 3, "T", False),
    ],
)
def test_a_page_cut_from_the_cached_text_is_the_page_cut_from_the_decoded_head(
    kinds: str, complete: bool, limit: int, types: str, failed_only: bool
) -> None:
    head = history(kinds)
    entry = encode_head(Page(head, has_next=not complete))
    asked = request(limit, types=types, failed_only=failed_only)
    assert page_from_entry(entry, asked) == page_from_head(head, complete, asked)


def test_the_history_filter_keeps_the_types_and_statuses_asked_for_and_none_means_all() -> None:
    kept = HistoryFilter.of(request(5, types="T", failed_only=True))
    assert kept.keeps("TRANSFER", "FAILED")
    assert not kept.keeps("TRANSFER", "COMPLETED")
    assert not kept.keeps("DEPOSIT", "FAILED")
    assert len(kept.where(transactions.c.type, transactions.c.status)) == 2
    for unfiltered in (request(5), replace(request(5), types=frozenset())):
        everything = HistoryFilter.of(unfiltered)
        assert everything.keeps("DEPOSIT", "PENDING")
        assert everything.where(transactions.c.type, transactions.c.status) == []
