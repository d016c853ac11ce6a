"""Money as integer minor units; decimal strings at the edges; Babel for display.

Amounts never pass through float. The API takes decimal strings ("1500.00"), which become integer minor
units of the portal's currency (kopecks for RUB) using the currency's own precision (ISO 4217 via Babel).
Rounding, where a computation needs it, is ROUND_HALF_UP, the rule Russian accounting uses.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import cache

from babel import Locale
from babel.numbers import NumberPattern, get_currency_precision

__all__ = ["AmountError", "format_minor", "minor_to_decimal", "parse_amount", "quantize_minor"]

MAX_MINOR = 10**15
"""Upper bound for one amount (10 trillion roubles): far above any real stay, far below BIGINT."""

_AMOUNT = re.compile(r"^\d{1,16}(\.\d+)?$")


class AmountError(ValueError):
    """An amount that cannot be accepted; `reason` is safe to show to the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_amount(raw: object, currency: str, *, allow_zero: bool = False) -> int:
    """A positive decimal string like "1500.00" → minor units. JSON numbers are refused: they may already
    have been through a float on the way in."""
    if isinstance(raw, bool) or not isinstance(raw, str):
        raise AmountError(f'must be a decimal string like "1500.00", got {type(raw).__name__}')
    text = raw.strip()
    if text.startswith("-"):
        raise AmountError("must be positive")
    if not _AMOUNT.match(text):
        raise AmountError(f"not a decimal amount: {raw!r}")
    digits = get_currency_precision(currency)
    fraction = text.partition(".")[2]
    if len(fraction) > digits:
        raise AmountError(f"at most {digits} decimal places for {currency}")
    try:
        minor = int(Decimal(text).scaleb(digits))
    except InvalidOperation:
        raise AmountError(f"not a decimal amount: {raw!r}") from None
    if minor == 0 and not allow_zero:
        raise AmountError("must be greater than zero")
    if minor > MAX_MINOR:
        raise AmountError("is unrealistically large")
    return minor


def minor_to_decimal(minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-get_currency_precision(currency))


def quantize_minor(value: Decimal, currency: str) -> int:
    """A computed Decimal amount (in major units) → minor units, rounded half up."""
    digits = get_currency_precision(currency)
    return int(value.scaleb(digits).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def format_minor(minor: int, currency: str, locale: str = "ru_RU") -> str:
    """`1230000, "RUB"` → "12 300,00 ₽" (with non-breaking spaces, as Babel's CLDR data has them): what
    `babel.numbers.format_currency` writes, with the locale and its currency pattern looked up once."""
    parsed, pattern = _currency_format(locale)
    return pattern.apply(minor_to_decimal(minor, currency), parsed, currency=currency)


@cache
def _currency_format(locale: str) -> tuple[Locale, NumberPattern]:
    parsed = Locale.parse(locale)
    return parsed, parsed.currency_formats["standard"]
