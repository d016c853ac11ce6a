"""Ledger fixtures: a clinic with a tariff and articles, a frozen clock, and role-bound API clients."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from widget_server import clock
from widget_server.models import Portal


class FrozenClock:
    def __init__(self, monkeypatch) -> None:  # type: ignore[no-untyped-def]
        self.now = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
        monkeypatch.setattr(clock, "now_utc", lambda: self.now)

    def set_local(self, text: str, tz: str = "Europe/Moscow") -> None:
        """`set_local("2026-12-02 10:00")` — the clinic's wall clock."""
        self.now = datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).astimezone(UTC)


@pytest.fixture
def frozen(monkeypatch) -> FrozenClock:  # type: ignore[no-untyped-def]
    return FrozenClock(monkeypatch)


@pytest.fixture
def clinic(rt, make_portal) -> Portal:  # type: ignore[no-untyped-def]
    portal = make_portal(slug="rehab-center", timezone="Europe/Moscow", currency="RUB")
    with rt.db.transaction() as s:
        row = s.get(Portal, portal.id)
        row.settings = {"ledger": {"purchase_threshold_minor": 500_000, "overdraft_minor": 0}}
    return portal


@pytest.fixture
def roles(clinic, make_api):  # type: ignore[no-untyped-def]
    return {role: make_api(clinic, role) for role in ("viewer", "staff", "finance", "admin")}


@pytest.fixture
def catalogue(roles):  # type: ignore[no-untyped-def]
    admin = roles["admin"]
    standard = admin.post("/api/v1/tariffs", json={"name": "Стандарт", "daily_rate": "3500.00"}).get_json()
    comfort = admin.post("/api/v1/tariffs", json={"name": "Комфорт", "daily_rate": "5000.00"}).get_json()
    dressing = admin.post("/api/v1/articles", json={"name": "Перевязочный материал", "code": "DR"}).get_json()
    drugs = admin.post("/api/v1/articles", json={"name": "Дополнительные лекарства"}).get_json()
    return {
        "standard": standard["id"],
        "comfort": comfort["id"],
        "dressing": dressing["id"],
        "drugs": drugs["id"],
    }
