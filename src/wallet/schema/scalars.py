"""The contract's `Decimal`: an exact amount written as a string.

The value is kept as the client's text; the domain reads it against the wallet's currency,
so "12.505" for USD is refused with INVALID_AMOUNT in the payload instead of being rounded.
A JSON or GraphQL float is refused outright: a float never touches money.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NewType

import strawberry
from graphql import IntValueNode, StringValueNode, ValueNode

DecimalText = NewType("DecimalText", str)


def _parse_value(value: Any) -> DecimalText:
    if isinstance(value, str):
        return DecimalText(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return DecimalText(str(value))
    raise ValueError('Decimal values are written as strings, e.g. "12.50"')


def _parse_literal(node: ValueNode, _variables: dict[str, Any] | None = None) -> DecimalText:
    if isinstance(node, StringValueNode | IntValueNode):
        return DecimalText(node.value)
    raise ValueError('Decimal values are written as strings, e.g. "12.50"')


# Handed to the Schema as a scalar override, so that fields can be annotated with DecimalText.
DECIMAL = strawberry.scalar(
    name="Decimal",
    description='An exact decimal number written as a string, e.g. "12.50".',
    serialize=str,
    parse_value=_parse_value,
    parse_literal=_parse_literal,
)


def _parse_datetime(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError("DateTime values are ISO 8601 strings")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("a DateTime needs its UTC offset")
    return in_utc(parsed)


def in_utc(moment: datetime) -> datetime:
    """The instant in UTC, as PostgreSQL is handed it. One whose UTC date falls outside years
    1 to 9999 (0001-01-01T00:00:00+05:00) is refused here, as the client's mistake, rather
    than by the driver, as a failure of the server's."""
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{moment.isoformat()} is outside the years 1 to 9999 in UTC") from None


# The contract's wording for DateTime, with Strawberry's ISO 8601 behaviour.
DATETIME = strawberry.scalar(
    name="DateTime",
    description="An ISO 8601 date-time with its UTC offset.",
    serialize=datetime.isoformat,
    parse_value=_parse_datetime,
)
