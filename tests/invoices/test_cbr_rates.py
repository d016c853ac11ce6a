"""CBR rates: windows-1251 XML with Nominal 1/10/100, the effective date, the cache and the job."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import requests
from sqlalchemy import func, select

from tests.invoices.conftest import cbr_body, serve
from widget_server.cbr import quote_for, rate_set
from widget_server.invoices.errors import RateUnavailable
from widget_server.invoices.rates import Quote, convert_rate, parse_daily
from widget_server.jobs.invoices import refresh_cbr_rates
from widget_server.models import CbrRate, CbrRateDay


def _count(rt, model) -> int:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_parse_windows_1251_with_nominals() -> None:
    rate_set_ = parse_daily(cbr_body("2025-12-13"))
    assert rate_set_.effective_date == date(2025, 12, 13)
    assert rate_set_.rates["EUR"] == (1, Decimal("93.5412"))
    assert rate_set_.rates["TRY"] == (10, Decimal("18.6713"))
    assert rate_set_.rates["KZT"] == (100, Decimal("15.4837"))
    assert rate_set_.per_unit("KZT") == Decimal("0.154837")
    assert rate_set_.per_unit("TRY") == Decimal("1.86713")


def test_cross_rate_at_full_precision() -> None:
    rates = parse_daily(cbr_body("2025-12-13"))
    assert convert_rate(rates, "EUR", "RUB") == Decimal("93.5412")
    eur_kzt = convert_rate(rates, "EUR", "KZT")
    assert abs(eur_kzt * Decimal("0.154837") - Decimal("93.5412")) < Decimal("1e-25")
    assert len(eur_kzt.as_tuple().digits) > 20  # unrounded: rounding happens per line
    assert str(convert_rate(rates, "RUB", "EUR")).startswith("0.0106904764959183760738583640150")
    with pytest.raises(RateUnavailable):
        convert_rate(rates, "EUR", "XTS")


def test_printed_rate() -> None:
    quote = Quote(Decimal("93.5412"), date(2025, 12, 13), "EUR", "RUB")
    assert quote.printed() == "Курс ЦБ РФ на 13.12.2025: 1 EUR = 93,5412 ₽"
    inverse = Quote(Decimal(1) / Decimal("93.5412"), date(2025, 12, 13), "RUB", "EUR")
    assert inverse.printed() == "Курс ЦБ РФ на 13.12.2025: 1 EUR = 93,5412 ₽"
    cross = Quote(Decimal("604.1266"), date(2025, 12, 13), "EUR", "KZT")
    assert cross.printed() == "Кросс-курс по курсам ЦБ РФ на 13.12.2025: 1 EUR = 604,1266 KZT"


def test_sunday_gets_saturdays_set_and_prints_its_date(rt, cbr_http) -> None:  # type: ignore[no-untyped-def]
    serve(cbr_http, "14/12/2025", "2025-12-13")
    quote = quote_for(rt.db, date(2025, 12, 14), "EUR", "RUB", today=date(2025, 12, 15))
    assert quote.effective_date == date(2025, 12, 13)
    assert quote.printed().startswith("Курс ЦБ РФ на 13.12.2025")
    with rt.db.transaction() as s:
        assert s.get(CbrRateDay, date(2025, 12, 14)).effective_date == date(2025, 12, 13)


def test_cache_hit_sends_nothing(rt, cbr_http) -> None:  # type: ignore[no-untyped-def]
    serve(cbr_http, "13/12/2025", "2025-12-13")
    quote_for(rt.db, date(2025, 12, 13), "EUR", "RUB", today=date(2025, 12, 15))
    assert len(cbr_http.calls) == 1
    for target in ("RUB", "KZT", "USD"):
        quote_for(rt.db, date(2025, 12, 13), "EUR", target, today=date(2025, 12, 15))
    assert len(cbr_http.calls) == 1


def test_5xx_and_timeouts_are_retried_then_refused(rt, cbr_http) -> None:  # type: ignore[no-untyped-def]
    serve(cbr_http, "12/12/2025", "2025-12-12", status=502)
    cbr_http.add(
        "GET", "https://www.cbr.ru/scripts/XML_daily.asp", body=requests.exceptions.ReadTimeout("slow")
    )
    serve(cbr_http, "12/12/2025", "2025-12-12")
    # responses serves registrations in order for the same URL: 502, timeout, then the set.
    quote = quote_for(rt.db, date(2025, 12, 12), "EUR", "RUB", today=date(2025, 12, 15))
    assert quote.rate == Decimal("93.2840")
    assert len(cbr_http.calls) == 3


def test_persistent_outage_is_rate_unavailable_and_caches_nothing(rt, cbr_http) -> None:  # type: ignore[no-untyped-def]
    for _ in range(3):
        serve(cbr_http, "12/12/2025", "2025-12-12", status=503)
    with pytest.raises(RateUnavailable) as caught:
        quote_for(rt.db, date(2025, 12, 12), "EUR", "RUB", today=date(2025, 12, 15))
    assert caught.value.field == "rate"
    assert len(cbr_http.calls) == 3
    assert _count(rt, CbrRate) == 0


def test_future_day_is_cached_only_once_published(rt, cbr_http) -> None:  # type: ignore[no-untyped-def]
    # On Friday 12th before publication the CBR answers the 13th with Friday's set: not remembered.
    serve(cbr_http, "13/12/2025", "2025-12-12")
    early = rate_set(rt.db, date(2025, 12, 13), today=date(2025, 12, 12))
    assert early.effective_date == date(2025, 12, 12)
    with rt.db.transaction() as s:
        assert s.get(CbrRateDay, date(2025, 12, 13)) is None
    cbr_http.replace(
        "GET",
        "https://www.cbr.ru/scripts/XML_daily.asp",
        body=cbr_body("2025-12-13"),
        match=[__import__("responses").matchers.query_param_matcher({"date_req": "13/12/2025"})],
    )
    rate_set(rt.db, date(2025, 12, 13), today=date(2025, 12, 12))
    with rt.db.transaction() as s:
        assert s.get(CbrRateDay, date(2025, 12, 13)).effective_date == date(2025, 12, 13)


def test_two_job_runs_store_one_set(rt, cbr_http) -> None:  # type: ignore[no-untyped-def]
    now = datetime(2025, 12, 13, 9, 0, tzinfo=UTC)  # Saturday in Moscow: catch up Friday, today, tomorrow
    serve(cbr_http, "12/12/2025", "2025-12-12")
    serve(cbr_http, "13/12/2025", "2025-12-13")
    serve(cbr_http, "14/12/2025", "2025-12-13")  # Sunday's set is Saturday's: not cached ahead of time
    assert refresh_cbr_rates(now, catch_up_days=1) == "fetched 3 failed 0"
    assert (_count(rt, CbrRate), _count(rt, CbrRateDay)) == (2 * 8, 2)
    assert refresh_cbr_rates(now, catch_up_days=1) == "fetched 1 failed 0"  # only tomorrow is asked again
    assert (_count(rt, CbrRate), _count(rt, CbrRateDay)) == (2 * 8, 2)
    assert len(cbr_http.calls) == 4
    # On Sunday the 14th is today: Saturday's set answers it and is remembered, nothing new is stored;
    # Monday's request fails (not served here) and is counted, not cached.
    assert refresh_cbr_rates(datetime(2025, 12, 14, 9, 0, tzinfo=UTC), catch_up_days=1) == (
        "fetched 1 failed 1"
    )
    assert (_count(rt, CbrRate), _count(rt, CbrRateDay)) == (2 * 8, 3)


def test_three_line_invoice_follows_the_per_line_rule(rt, clinic, roles, cbr_http, frozen) -> None:  # type: ignore[no-untyped-def]
    """100.00 + 150.50 + 99.99 EUR at 93,5412: the lines convert to 9 354,12 + 14 077,95 + 9 353,18 =
    32 785,25 ₽, while converting the 350.49 EUR total at once would give 32 785,26 ₽."""
    from tests.invoices.helpers import PATIENT_PAYER, create

    serve(cbr_http, "13/12/2025", "2025-12-13")
    finance = roles["finance"]
    payer = create(finance, PATIENT_PAYER)
    invoice = finance.post(
        "/api/v1/deals/5/invoices",
        json={
            "kind": "patient",
            "counterparty_id": payer["id"],
            "price_currency": "EUR",
            "invoice_currency": "RUB",
            "issue_date": "2025-12-13",
            "lines": [
                {"name": "Консультация", "quantity": "1", "unit_price": "100.00"},
                {"name": "Диагностика", "quantity": "1", "unit_price": "150.50"},
                {"name": "Процедура", "quantity": "1", "unit_price": "99.99"},
            ],
            "issue": True,
        },
    ).get_json()
    assert [line["converted"] for line in invoice["lines"]] == ["9354.12", "14077.95", "9353.18"]
    assert invoice["total"] == "32785.25"
    assert (Decimal("350.49") * Decimal("93.5412")).quantize(Decimal("0.01")) == Decimal("32785.26")
