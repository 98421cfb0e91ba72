"""Exact money: integer minor units with an ISO 4217 currency.

The decimal places of each currency are read from the ISO 4217 list published by
SIX (the maintainer of the standard), as shipped in the `iso4217` distribution's
`table.xml`; only the data file is read, so this module needs nothing but the
standard library. Currencies without minor units in that list (gold, test codes,
funds) are not supported.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from importlib import resources

from wallet.domain.errors import InvalidAmount, UnsupportedCurrency

# The most a single operation may move, in minor units: far above any real payment,
# far below the BIGINT ceiling, so that sums of a few of them can be checked exactly.
MAX_AMOUNT_MINOR = 10**15
# A balance is stored as a PostgreSQL BIGINT.
MAX_BALANCE_MINOR = 2**63 - 1
# More whole units than any balance can hold in any currency. Checked before the digits are
# converted: Python refuses to convert strings of 4,300 digits or more, and the time it
# takes grows with the square of their number below that.
_MAX_UNIT_DIGITS = len(str(MAX_BALANCE_MINOR))

_AMOUNT = re.compile(r"(?P<units>[0-9]+)(?:\.(?P<fraction>[0-9]+))?")
_CURRENCY_CODE = re.compile(r"[A-Z]{3}")


@cache
def currency_exponents() -> dict[str, int]:
    """Every supported ISO 4217 code and its number of decimal places."""
    table = resources.files("iso4217").joinpath("table.xml").read_bytes()
    exponents: dict[str, int] = {}
    for entry in ET.fromstring(table).iter("CcyNtry"):  # noqa: S314 - a file of an installed package
        code = entry.findtext("Ccy")
        places = entry.findtext("CcyMnrUnts")
        if code and places and places.isdigit():
            exponents[code] = int(places)
    return exponents


@dataclass(frozen=True, slots=True)
class Currency:
    code: str
    exponent: int

    @classmethod
    def of(cls, code: str) -> Currency:
        known = _KNOWN.get(code)
        if known is not None:
            return known  # every stored row names one: this is on the path of each
        if not _CURRENCY_CODE.fullmatch(code):
            raise UnsupportedCurrency(
                f"{code!r} is not an ISO 4217 currency code (three capital letters)",
                field="currency",
            )
        exponent = currency_exponents().get(code)
        if exponent is None:
            raise UnsupportedCurrency(f"{code} is not a supported currency", field="currency")
        return _KNOWN.setdefault(code, cls(code, exponent))


# The currencies met so far: at most the table's few hundred, so never evicted.
_KNOWN: dict[str, Currency] = {}


@dataclass(frozen=True, slots=True, order=True)
class Money:
    """An amount in the smallest unit of its currency (cents for USD, yen for JPY)."""

    minor: int
    currency: Currency

    @classmethod
    def parse(cls, text: str, currency: Currency, *, field: str = "amount") -> Money:
        """Read an exact decimal such as "12.50"; no sign, exponent, spaces or excess places.

        Trailing zeros are accepted ("12.500" is 12.50 USD) because they change nothing;
        a digit that the currency cannot hold is refused, never rounded.
        """
        match = _AMOUNT.fullmatch(text)
        if match is None and text.startswith("-"):
            raise InvalidAmount("an amount is never negative", field=field)
        if match is None:
            raise InvalidAmount(f'{text!r} is not a decimal amount such as "12.50"', field=field)
        units = match["units"].lstrip("0") or "0"
        if len(units) > _MAX_UNIT_DIGITS:
            raise InvalidAmount(
                f"an amount has at most {_MAX_UNIT_DIGITS} digits before the point", field=field
            )
        fraction = (match["fraction"] or "").rstrip("0")
        if len(fraction) > currency.exponent:
            raise InvalidAmount(
                f"{currency.code} amounts have at most {currency.exponent} decimal places",
                field=field,
            )
        minor = int(units) * 10**currency.exponent
        if fraction:
            minor += int(fraction.ljust(currency.exponent, "0"))
        return cls(minor, currency)

    def to_decimal(self) -> Decimal:
        return Decimal(self.minor).scaleb(-self.currency.exponent)

    def __str__(self) -> str:
        """The amount with exactly its currency's decimal places: "12.50", "100", "1.250"."""
        units, fraction = divmod(self.minor, 10**self.currency.exponent)
        if self.currency.exponent == 0:
            return str(units)
        return f"{units}.{fraction:0{self.currency.exponent}d}"


def parse_positive_amount(text: str, currency: Currency, *, field: str = "amount") -> Money:
    """An amount that one operation may move: above zero and at most MAX_AMOUNT_MINOR."""
    money = Money.parse(text, currency, field=field)
    if money.minor <= 0:
        raise InvalidAmount("the amount must be greater than zero", field=field)
    if money.minor > MAX_AMOUNT_MINOR:
        limit = Money(MAX_AMOUNT_MINOR, currency)
        raise InvalidAmount(f"the amount may be at most {limit} {currency.code}", field=field)
    return money
