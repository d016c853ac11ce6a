"""Invoice arithmetic: VAT and rounding, in one place and in one order.

The rule (README, «Счета: округление»): Decimal throughout, ROUND_HALF_UP to the currency's minor units;
1. line = quantity × unit price, rounded to minor units of the price currency;
2. converted line = line × rate (the rate unrounded), rounded to minor units of the invoice currency;
3. VAT per converted line: included × r/(100+r), on top × r/100, rounded;
4. totals are sums of the rounded lines; the total is never converted as a whole.
So a printed total always equals the sum of the printed lines, even where converting the price total at
once would differ by a kopeck.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from babel.numbers import get_currency_precision

__all__ = [
    "DEFAULT_VAT_RATES",
    "EXEMPT_BASIS",
    "LineAmounts",
    "Totals",
    "compute",
    "line_amounts",
    "vat_rate_on",
]

EXEMPT_BASIS = "Без НДС (медицинские услуги, пп. 2 п. 2 ст. 149 НК РФ)"

DEFAULT_VAT_RATES: tuple[tuple[date, Decimal], ...] = (
    (date(2019, 1, 1), Decimal(20)),
    # Federal law 425-FZ raised the general rate from 2026.
    (date(2026, 1, 1), Decimal(22)),
)


def _to_minor(value: Decimal, currency: str) -> int:
    digits = get_currency_precision(currency)
    return int(value.scaleb(digits).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _major(minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-get_currency_precision(currency))


def vat_rate_on(day: date, settings: dict[str, Any] | None) -> Decimal:
    """The portal's rate in force on `day` from its dated table (`invoices.vat_rates`:
    [{"from": "2026-01-01", "rate": "22"}]), or the statutory default table."""
    table = [
        (date.fromisoformat(row["from"]), Decimal(str(row["rate"])))
        for row in ((settings or {}).get("vat_rates") or [])
    ] or list(DEFAULT_VAT_RATES)
    applicable = [rate for start, rate in sorted(table) if start <= day]
    if not applicable:
        raise ValueError(f"no VAT rate in force on {day.isoformat()}")
    return applicable[-1]


@dataclass(frozen=True)
class LineAmounts:
    amount_minor: int
    """quantity × price, in the price currency."""
    converted_minor: int
    """amount × rate, in the invoice currency (VAT included or not, as the kind says)."""
    vat_minor: int


def line_amounts(
    quantity: Decimal,
    unit_price_minor: int,
    *,
    price_currency: str,
    invoice_currency: str,
    rate: Decimal,
    taxed: bool,
    vat_rate: Decimal,
    vat_mode: str,
) -> LineAmounts:
    amount = _to_minor(quantity * _major(unit_price_minor, price_currency), price_currency)
    converted = _to_minor(_major(amount, price_currency) * rate, invoice_currency)
    vat = 0
    if taxed:
        base = _major(converted, invoice_currency)
        share = vat_rate / (100 + vat_rate) if vat_mode == "included" else vat_rate / 100
        vat = _to_minor(base * share, invoice_currency)
    return LineAmounts(amount, converted, vat)


@dataclass(frozen=True)
class Totals:
    lines: list[LineAmounts]
    price_total_minor: int
    net_minor: int
    vat_minor: int
    total_minor: int
    """What the counterparty owes, in the invoice currency: lines plus VAT when VAT is on top."""


def compute(
    lines: list[tuple[Decimal, int, bool]],
    *,
    price_currency: str,
    invoice_currency: str,
    rate: Decimal,
    vat_rate: Decimal,
    vat_mode: str,
    vat_payer: bool = True,
) -> Totals:
    """`lines` as (quantity, unit price minor, taxed). A clinic that is not a VAT payer charges none."""
    computed = [
        line_amounts(
            quantity,
            price,
            price_currency=price_currency,
            invoice_currency=invoice_currency,
            rate=rate,
            taxed=taxed and vat_payer,
            vat_rate=vat_rate,
            vat_mode=vat_mode,
        )
        for quantity, price, taxed in lines
    ]
    net = sum(line.converted_minor for line in computed)
    vat = sum(line.vat_minor for line in computed)
    return Totals(
        lines=computed,
        price_total_minor=sum(line.amount_minor for line in computed),
        net_minor=net,
        vat_minor=vat,
        total_minor=net + vat if vat_mode == "on_top" else net,
    )
