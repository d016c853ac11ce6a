"""Invoice fixtures: CBR answers from tests/fixtures/cbr, a frozen clock, a clinic with requisites."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import responses

from widget_server import cbr, clock
from widget_server.models import Portal

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "cbr"


def cbr_body(effective: str) -> bytes:
    return (FIXTURES / f"XML_daily_{effective}.xml").read_bytes()


class FrozenClock:
    def __init__(self, monkeypatch) -> None:  # type: ignore[no-untyped-def]
        self.now = datetime(2025, 12, 15, 9, 0, tzinfo=UTC)
        monkeypatch.setattr(clock, "now_utc", lambda: self.now)

    def set_local(self, text: str, tz: str = "Europe/Moscow") -> None:
        self.now = datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).astimezone(UTC)


@pytest.fixture
def frozen(monkeypatch) -> FrozenClock:  # type: ignore[no-untyped-def]
    return FrozenClock(monkeypatch)


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(cbr, "WAIT_MULTIPLIER", 0)


@pytest.fixture
def cbr_http():  # type: ignore[no-untyped-def]
    """`responses` serving the CBR: by default the 13.12.2025 set for 13th and 14th (Sat, Sun) and the
    12.12 set for the 12th. Anything else unmatched fails the test."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def serve(mock: responses.RequestsMock, day: str, effective: str, *, status: int = 200) -> None:
    """Answer `date_req=day` (DD/MM/YYYY) with the set effective `effective` (YYYY-MM-DD)."""
    mock.add(
        responses.GET,
        cbr.CBR_DAILY_URL,
        body=cbr_body(effective) if status == 200 else b"<html>Bad gateway</html>",
        status=status,
        content_type="application/xml; charset=windows-1251",
        match=[responses.matchers.query_param_matcher({"date_req": day})],
    )


CLINIC_REQUISITES = {
    "legal_name": "ООО «Клиника Здоровье»",
    "inn": "7707083893",
    "kpp": "773601001",
    "ogrn": "1027700132195",
    "address": "123456, г. Москва, ул. Лечебная, д. 1",
    "bank_name": "ПАО Сбербанк",
    "bik": "044525225",
    "corr_account": "30101810400000000225",
    "account": "40702810938000000001",
}


@pytest.fixture
def clinic(rt, make_portal) -> Portal:  # type: ignore[no-untyped-def]
    portal = make_portal(slug="syedra", timezone="Europe/Moscow", currency="RUB")
    with rt.db.transaction() as s:
        row = s.get(Portal, portal.id)
        row.settings = {"invoices": {"clinic": CLINIC_REQUISITES, "vat_payer": True}}
    return portal


@pytest.fixture
def roles(clinic, make_api):  # type: ignore[no-untyped-def]
    return {role: make_api(clinic, role) for role in ("viewer", "staff", "finance", "admin")}
