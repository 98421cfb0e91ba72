"""Opaque history cursors: a position (created_at, id) in base64, with a version tag."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from uuid import UUID

_PREFIX = "v1:"


class InvalidCursor(ValueError):
    pass


def encode_cursor(created_at: datetime, transaction_id: UUID) -> str:
    raw = f"{_PREFIX}{created_at.isoformat()}|{transaction_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith(_PREFIX):
            raise ValueError(raw)
        when, _, ident = raw.removeprefix(_PREFIX).partition("|")
        created_at = datetime.fromisoformat(when)
        if created_at.tzinfo is None:
            raise ValueError(when)
        return created_at, UUID(ident)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidCursor(f"{cursor!r} is not a cursor this API gave out") from None
