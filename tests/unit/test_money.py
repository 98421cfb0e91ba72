from __future__ import annotations

from decimal import Decimal

import pytest

from wallet.domain.errors import InvalidAmount, UnsupportedCurrency
from wallet.domain.money import (
    MAX_AMOUNT_MINOR,
    Currency,
    Money,
    currency_exponents,
    parse_positive_amount,
)

USD = Currency.of("USD")
JPY = Currency.of("JPY")
KWD = Currency.of("KWD")


@pytest.mark.parametrize(
    ("code", "places"), [("USD", 2), ("EUR", 2), ("JPY", 0), ("KWD", 3), ("BHD", 3), ("CLF", 4)]
)
def test_decimal_places_come_from_the_iso_4217_list(code: str, places: int) -> None:
    assert Currency.of(code).exponent == places


def test_the_iso_4217_list_is_read_in_full() -> None:
    assert len(currency_exponents()) > 150


@pytest.mark.parametrize("code", ["XAU", "XXX", "ABC", "usd", "US", "USDD", "", " USD"])
def test_codes_without_minor_units_or_not_iso_are_unsupported(code: str) -> None:
    with pytest.raises(UnsupportedCurrency):
        Currency.of(code)


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("12.50", USD, 1250),
        ("12.5", USD, 1250),
        ("12", USD, 1200),
        ("0.01", USD, 1),
        ("12.500", USD, 1250),
        ("100", JPY, 100),
        ("100.0", JPY, 100),
        ("1.234", KWD, 1234),
        ("0", USD, 0),
        ("007", USD, 700),
    ],
)
def test_amounts_are_read_exactly(text: str, currency: Currency, minor: int) -> None:
    assert Money.parse(text, currency).minor == minor


@pytest.mark.parametrize(
    ("text", "currency"),
    [
        ("12.505", USD),
        ("0.001", USD),
        ("1.5", JPY),
        ("1.2345", KWD),
        ("-1", USD),
        ("+1", USD),
        ("1e3", USD),
        ("1E3", USD),
        ("NaN", USD),
        ("Infinity", USD),
        ("", USD),
        (" 1", USD),
        ("1 ", USD),
        ("1,00", USD),
        (".5", USD),
        ("5.", USD),
        ("0x10", USD),
        ("١٢", USD),
        ("9" * 5000, USD),
        ("1" * 20, JPY),
        ("1." + "1" * 5000, USD),
    ],
)
def test_anything_but_a_plain_exact_decimal_is_an_invalid_amount(
    text: str, currency: Currency
) -> None:
    with pytest.raises(InvalidAmount):
        Money.parse(text, currency)


def test_leading_zeros_do_not_count_against_the_digits_an_amount_may_have() -> None:
    assert Money.parse("0" * 5000 + "12.50", USD).minor == 1250


@pytest.mark.parametrize("text", ["0", "0.00", "-0.01"])
def test_an_amount_to_move_must_be_above_zero(text: str) -> None:
    with pytest.raises(InvalidAmount):
        parse_positive_amount(text, USD)


def test_an_amount_to_move_has_a_ceiling_far_below_bigint() -> None:
    at_limit = str(Money(MAX_AMOUNT_MINOR, USD))
    assert parse_positive_amount(at_limit, USD).minor == MAX_AMOUNT_MINOR
    with pytest.raises(InvalidAmount):
        parse_positive_amount(str(Money(MAX_AMOUNT_MINOR + 1, USD)), USD)
    with pytest.raises(InvalidAmount):
        parse_positive_amount("9" * 40, USD)


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (1250, USD, "12.50"),
        (5, USD, "0.05"),
        (100, JPY, "100"),
        (1, KWD, "0.001"),
        (0, USD, "0.00"),
    ],
)
def test_money_is_written_with_its_currency_places(
    minor: int, currency: Currency, text: str
) -> None:
    money = Money(minor, currency)
    assert str(money) == text
    assert money.to_decimal() == Decimal(text)
