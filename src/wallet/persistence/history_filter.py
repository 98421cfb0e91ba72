"""Which transactions a history request's filter keeps: one rule, for the SQL query
(queries.py) and for pages cut from the cache's head (cache/pages.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement

from wallet.domain.model import HistoryRequest


@dataclass(frozen=True, slots=True)
class HistoryFilter:
    """The types and statuses kept, as stored in their columns; None keeps every one.

    An empty set asked for keeps every one too, as no filter (the API never sends one).
    """

    types: frozenset[str] | None
    statuses: frozenset[str] | None

    @classmethod
    def of(cls, request: HistoryRequest) -> HistoryFilter:
        types, statuses = request.types, request.statuses
        return cls(
            frozenset(t.value for t in types) if types else None,
            frozenset(s.value for s in statuses) if statuses else None,
        )

    def keeps(self, kind: str, status: str) -> bool:
        """Whether a transaction of this type and status is kept."""
        return (self.types is None or kind in self.types) and (
            self.statuses is None or status in self.statuses
        )

    def where(
        self, type_column: ColumnElement[Any], status_column: ColumnElement[Any]
    ) -> list[ColumnElement[bool]]:
        """`keeps` as SQL, over these columns: the conditions to add to a query."""
        conditions: list[ColumnElement[bool]] = []
        if self.types is not None:
            conditions.append(type_column.in_(sorted(self.types)))
        if self.statuses is not None:
            conditions.append(status_column.in_(sorted(self.statuses)))
        return conditions
