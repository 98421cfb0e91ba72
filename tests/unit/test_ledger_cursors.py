"""Cursors of ledger entries: they round-trip, and anything else is refused as InvalidCursor
before it reaches PostgreSQL, a transaction's cursor included (and the other way round)."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

import pytest

from wallet.schema.pagination import (
    InvalidCursor,
    decode_cursor,
    decode_entry_cursor,
    encode_cursor,
    encode_entry_cursor,
)

pytestmark = pytest.mark.timeout(10)
WHEN = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def raw(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize("entry_id", [1, 42, 2**63 - 1])
def test_an_entry_cursor_round_trips(entry_id: int) -> None:
    assert decode_entry_cursor(encode_entry_cursor(WHEN, entry_id)) == (WHEN, entry_id)


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "garbage",
        encode_cursor(WHEN, uuid.uuid4()),
        raw(f"e1:{WHEN.isoformat()}|+1"),
        raw(f"e1:{WHEN.isoformat()}| 1"),
        raw(f"e1:{WHEN.isoformat()}|1_0"),
        raw(f"e1:{WHEN.isoformat()}|-1"),
        raw(f"e1:{WHEN.isoformat()}|{2**63}"),
        raw(f"e1:{WHEN.isoformat()}|{'9' * 5000}"),
        raw(f"e1:{WHEN.isoformat()}|١٢"),  # digits, but not ASCII ones
        raw("e1:2026-01-02T03:04:05|1"),  # no UTC offset
    ],
)
def test_anything_but_an_entry_cursor_is_refused(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_entry_cursor(cursor)


def test_an_entry_cursor_is_no_transaction_cursor() -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(encode_entry_cursor(WHEN, 7))


def test_a_cursor_whose_instant_leaves_the_utc_calendar_is_refused() -> None:
    with pytest.raises(InvalidCursor):
        decode_entry_cursor(raw("e1:0001-01-01T00:00:00+05:00|1"))
