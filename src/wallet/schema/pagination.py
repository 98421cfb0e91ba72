"""Opaque cursors: a position (created_at, id) in base64, with a tag naming its kind and
version. A transaction's, hold's or wallet's id is a UUID; a ledger entry's is a number, and
its cursors are tagged apart, so neither kind is taken for the other."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from uuid import UUID

from wallet.schema.scalars import in_utc

_PREFIX = "v1:"
_ENTRY_PREFIX = "e1:"
_MAX_BIGINT = 2**63 - 1


class InvalidCursor(ValueError):
    pass


def encode_cursor(created_at: datetime, transaction_id: UUID) -> str:
    return _encode(_PREFIX, created_at, transaction_id)


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    created_at, ident = _decode(cursor, _PREFIX)
    try:
        return created_at, UUID(ident)
    except ValueError:
        raise InvalidCursor(f"{cursor!r} is not a cursor this API gave out") from None


def encode_entry_cursor(created_at: datetime, entry_id: int) -> str:
    return _encode(_ENTRY_PREFIX, created_at, entry_id)


def decode_entry_cursor(cursor: str) -> tuple[datetime, int]:
    created_at, ident = _decode(cursor, _ENTRY_PREFIX)
    # Only the digits an entry's id is written with (int() would take "+1", " 1" or "1_0"),
    # and within bigint, so PostgreSQL is never handed a number it refuses.
    digits = ident.isascii() and ident.isdigit() and len(ident) <= 19
    if not (digits and int(ident) <= _MAX_BIGINT):
        raise InvalidCursor(f"{cursor!r} is not a cursor this API gave out")
    return created_at, int(ident)


def _encode(prefix: str, created_at: datetime, ident: UUID | int) -> str:
    raw = f"{prefix}{created_at.isoformat()}|{ident}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode(cursor: str, prefix: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith(prefix):
            raise ValueError(raw)
        when, _, ident = raw.removeprefix(prefix).partition("|")
        created_at = datetime.fromisoformat(when)
        if created_at.tzinfo is None:
            raise ValueError(when)
        return in_utc(created_at), ident
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidCursor(f"{cursor!r} is not a cursor this API gave out") from None
