"""The ledger read back: posted entries, a wallet's balance at an instant, and statements.

Every COMPLETED movement writes one entry per wallet it touches, stamped with the clock
reading of the statement that wrote it, under the wallet's row lock: per wallet, the order of
(created_at, id) is the order its balance changed. So a wallet's balance at an instant is the
`balance_after` of its last entry at or before it (zero before the first), and the entries of
a period explain how the balance went from the period's start to its end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

# A position in a wallet's entries: (created_at, id).
EntryPosition = tuple[datetime, int]


@dataclass(frozen=True, slots=True)
class PostedEntry:
    """A ledger entry as stored: one wallet's side of a COMPLETED transaction, signed
    (positive for money in), with the wallet's balance after it."""

    id: int
    transaction_id: UUID
    wallet_id: UUID
    delta: int
    balance_after: int
    created_at: datetime

    @property
    def position(self) -> EntryPosition:
        return (self.created_at, self.id)


@dataclass(frozen=True, slots=True)
class EntriesRequest:
    """Which of a wallet's entries to read, newest first: `limit` older than the position
    `after`, of those with since <= created_at < until (either bound left open when None)."""

    wallet_id: UUID
    limit: int
    after: EntryPosition | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class EntryPage:
    """A slice of a wallet's entries, newest first."""

    entries: list[PostedEntry] = field(default_factory=list)
    has_next: bool = False


@dataclass(frozen=True, slots=True)
class BalanceRequest:
    """A wallet's balance at an instant: every entry at or before it."""

    wallet_id: UUID
    at: datetime


class EmptyPeriod(ValueError):
    """A statement asked for a period that ends where or before it starts."""


@dataclass(frozen=True, slots=True)
class StatementRequest:
    """A wallet's statement for [since, until)."""

    wallet_id: UUID
    since: datetime
    until: datetime

    def __post_init__(self) -> None:
        if self.until <= self.since:
            raise EmptyPeriod(f"a period ends after it starts, not at {self.until.isoformat()}")


@dataclass(frozen=True, slots=True)
class Statement:
    """How a wallet's balance went from the start of [since, until) to its end, in minor
    units: `opening` is its balance just before `since`; `credits` and `debits` (a positive
    number) add up the entries with since <= created_at < until, `count` of them."""

    wallet_id: UUID
    since: datetime
    until: datetime
    opening: int
    credits: int
    debits: int
    count: int

    @property
    def closing(self) -> int:
        """Computed from the period's entries, never read on its own: it equals the balance
        just before `until` only because the entries explain every balance."""
        return self.opening + self.credits - self.debits
