"""The rounding rule and VAT: per line, half up, totals as sums of rounded lines."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from widget_server.invoices.calc import compute, line_amounts, vat_rate_on

EUR_RATE = Decimal("93.5412")


def test_three_lines_total_is_the_sum_of_converted_lines_not_the_converted_sum() -> None:
    lines = [(Decimal(1), 10000, False), (Decimal(1), 15050, False), (Decimal(1), 9999, False)]
    totals = compute(
        lines,
        price_currency="EUR",
        invoice_currency="RUB",
        rate=EUR_RATE,
        vat_rate=Decimal(20),
        vat_mode="included",
    )
    # 100.00 × 93.5412 = 9354.12; 150.50 × … = 14077.95 (14077.9506); 99.99 × … = 9353.18 (9353.184588)
    assert [line.converted_minor for line in totals.lines] == [935412, 1407795, 935318]
    assert totals.total_minor == 3278525
    # Converting the 350.49 EUR total at once would give 32785.26: the rule deliberately does not.
    assert (Decimal("350.49") * EUR_RATE).quantize(Decimal("0.01")) == Decimal("32785.26")
    assert totals.price_total_minor == 35049


def test_line_is_quantity_times_price_rounded_half_up() -> None:
    amounts = line_amounts(
        Decimal("1.125"),
        1000,  # 10.00 × 1.125 = 11.25
        price_currency="RUB",
        invoice_currency="RUB",
        rate=Decimal(1),
        taxed=False,
        vat_rate=Decimal(20),
        vat_mode="included",
    )
    assert amounts.amount_minor == 1125
    half = line_amounts(
        Decimal("0.5"),
        1,
        price_currency="RUB",
        invoice_currency="RUB",
        rate=Decimal(1),
        taxed=False,
        vat_rate=Decimal(20),
        vat_mode="included",
    )
    assert half.amount_minor == 1  # 0.005 → 0.01, half up (banker's rounding would give 0.00)


def test_vat_included_and_on_top() -> None:
    included = compute(
        [(Decimal(1), 12000, True)],
        price_currency="RUB",
        invoice_currency="RUB",
        rate=Decimal(1),
        vat_rate=Decimal(20),
        vat_mode="included",
    )
    assert (included.vat_minor, included.total_minor) == (2000, 12000)
    on_top = compute(
        [(Decimal(1), 10000, True), (Decimal(1), 50000, False)],
        price_currency="RUB",
        invoice_currency="RUB",
        rate=Decimal(1),
        vat_rate=Decimal(22),
        vat_mode="on_top",
    )
    assert (on_top.vat_minor, on_top.net_minor, on_top.total_minor) == (2200, 60000, 62200)


def test_a_clinic_that_pays_no_vat_charges_none() -> None:
    totals = compute(
        [(Decimal(1), 10000, True)],
        price_currency="RUB",
        invoice_currency="RUB",
        rate=Decimal(1),
        vat_rate=Decimal(20),
        vat_mode="on_top",
        vat_payer=False,
    )
    assert (totals.vat_minor, totals.total_minor) == (0, 10000)


def test_dated_vat_table() -> None:
    assert vat_rate_on(date(2025, 12, 31), None) == 20
    assert vat_rate_on(date(2026, 1, 1), None) == 22
    custom = {"vat_rates": [{"from": "2020-01-01", "rate": "10"}]}
    assert vat_rate_on(date(2026, 5, 1), custom) == 10
    with pytest.raises(ValueError):
        vat_rate_on(date(2019, 1, 1), custom)
