"""Distribution fixtures: a clinic whose CRM is the sandbox, operators mirrored as portal users, a frozen
clock in the clinic's wall time."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from widget_server import clock
from widget_server.models import Portal, PortalUser
from widget_server.sandbox.crm import SandboxCrm


class FrozenClock:
    def __init__(self, monkeypatch) -> None:  # type: ignore[no-untyped-def]
        self.now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
        monkeypatch.setattr(clock, "now_utc", lambda: self.now)

    def set_local(self, text: str, tz: str = "Europe/Moscow") -> None:
        self.now = datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).astimezone(UTC)

    def advance(self, **delta) -> None:  # type: ignore[no-untyped-def]
        from datetime import timedelta

        self.now += timedelta(**delta)


@pytest.fixture
def frozen(monkeypatch) -> FrozenClock:  # type: ignore[no-untyped-def]
    return FrozenClock(monkeypatch)


@pytest.fixture
def clinic(rt, make_portal) -> Portal:  # type: ignore[no-untyped-def]
    portal = make_portal(slug="dental-a", timezone="Europe/Moscow", currency="RUB")
    with rt.db.transaction() as s:
        row = s.get(Portal, portal.id)
        row.settings = {
            "distribution": {"shift_mode": "manual", "auto_off_minutes": 30},
            "pipelines": {"primary": ["new", "in_work", "booked"], "repeat": ["new", "in_work"]},
        }
    with rt.db.transaction() as s:
        return s.get(Portal, portal.id)


@pytest.fixture
def crm(rt, clinic) -> SandboxCrm:  # type: ignore[no-untyped-def]
    return SandboxCrm(rt.db, clinic.id, timezone=clinic.timezone)


OPERATOR_NAMES = ("Иванова Анна", "Петрова Мария", "Сидорова Ольга", "Кузнецова Ирина", "Смирнова Елена")


@pytest.fixture
def operators(rt, clinic, crm) -> list[int]:  # type: ignore[no-untyped-def]
    """Five operators (PortalUser ids) who exist in the sandbox CRM too, and one supervisor."""
    ids = []
    crm_users = [crm.seed_user(name, email=f"op{n}@example.ru") for n, name in enumerate(OPERATOR_NAMES)]
    boss = crm.seed_user("Орлова Наталья", email="boss@example.ru")
    with rt.db.transaction() as s:
        for crm_user in crm_users:
            user = PortalUser(
                portal_id=clinic.id, crm_user_id=crm_user.id, name=crm_user.name, roles=["staff"]
            )
            s.add(user)
            s.flush()
            ids.append(user.id)
        s.add(
            PortalUser(portal_id=clinic.id, crm_user_id=boss.id, name="Орлова Наталья", roles=["supervisor"])
        )
    return ids


@pytest.fixture
def supervisor_crm_id(rt, clinic, operators) -> str:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        from sqlalchemy import select

        return s.scalar(
            select(PortalUser.crm_user_id).where(
                PortalUser.portal_id == clinic.id, PortalUser.name == "Орлова Наталья"
            )
        )


@pytest.fixture(autouse=True)
def every_decision_rederives(request):  # type: ignore[no-untyped-def]
    """After every test that touched the database, `verify` must re-derive each decision it left behind."""
    # Asked for before the test runs, so that it is torn down after this check.
    rt = request.getfixturevalue("rt") if "rt" in request.fixturenames else None
    if getattr(request.function, "tampers_with_decisions", False):
        rt = None
    yield
    if rt is None:
        return
    from widget_server.distribution.decisions import Mismatch, verify_pools

    with rt.db.transaction() as s:
        broken = [r for r in verify_pools(s) if isinstance(r, Mismatch)]
    assert broken == []
