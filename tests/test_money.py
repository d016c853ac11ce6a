"""Money: decimal strings in, integer minor units inside, locale formatting out; never a float."""

from __future__ import annotations

from decimal import Decimal

import pytest

from widget_server.money import AmountError, format_minor, minor_to_decimal, parse_amount, quantize_minor


@pytest.mark.parametrize(
    ("raw", "currency", "minor"),
    [
        ("1500.00", "RUB", 150000),
        ("1500", "RUB", 150000),
        ("0.01", "RUB", 1),
        ("12300.5", "EUR", 1230050),
        ("1500", "JPY", 1500),
        ("1.005", "KWD", 1005),
    ],
)
def test_parse_amount(raw, currency, minor):
    assert parse_amount(raw, currency) == minor


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (1500, "must be a decimal string"),
        (15.5, "must be a decimal string"),
        (True, "must be a decimal string"),
        ("-1.00", "must be positive"),
        ("0", "must be greater than zero"),
        ("1.001", "at most 2 decimal places"),
        ("abc", "not a decimal amount"),
        ("1,50", "not a decimal amount"),
        ("NaN", "not a decimal amount"),
        ("99999999999999.00", "unrealistically large"),
    ],
)
def test_parse_amount_refusals(raw, reason):
    with pytest.raises(AmountError, match=reason):
        parse_amount(raw, "RUB")


def test_jpy_has_no_minor_digits():
    with pytest.raises(AmountError, match="at most 0 decimal places"):
        parse_amount("1.5", "JPY")


def test_format_for_the_locale():
    assert format_minor(1230000, "RUB") == "12\xa0300,00\xa0₽"
    assert format_minor(-50, "RUB") == "-0,50\xa0₽"
    assert format_minor(1230000, "USD", "en_US") == "$12,300.00"


def test_rounding_is_half_up():
    assert quantize_minor(Decimal("1234.565"), "RUB") == 123457
    assert quantize_minor(Decimal("1234.564"), "RUB") == 123456
    assert minor_to_decimal(123457, "RUB") == Decimal("1234.57")
