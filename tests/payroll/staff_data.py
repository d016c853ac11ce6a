"""Operators with rates, calendar entries and start/end-of-day events, for the payroll tests."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from widget_server.models import OperatorShift, OperatorStatusEvent, Portal, PortalUser
from widget_server.payroll import RateInput, save_rates

from ..reports.clinic_data import MSK

SEED_RATES = {
    "hourly_rate": "250.00",
    "overtime_rate": "375.00",
    "primary_bonus": "150.00",
    "waiting_list_bonus": "100.00",
}


class Staff:
    """An operator with rates, calendar entries («Рабочие графики») and start/end-of-day events."""

    def __init__(self, rt, portal: Portal) -> None:  # type: ignore[no-untyped-def]
        self.rt = rt
        self.portal = portal

    def operator(self, name: str, crm_user_id: str = "501", basis: str = "month", **rates: str) -> int:
        with self.rt.db.transaction() as s:
            user = PortalUser(portal_id=self.portal.id, crm_user_id=crm_user_id, name=name, roles=["staff"])
            s.add(user)
            s.flush()
            entry = RateInput(user.id, date(2026, 1, 1), {**SEED_RATES, **rates}, basis, ("Иванова О.",))
            save_rates(s, s.get(Portal, self.portal.id), [entry], actor="test")
            return user.id

    def schedule(self, user_id: int, day: date, start: str = "09:00", hours: float = 8) -> None:
        begin = datetime.combine(day, datetime.strptime(start, "%H:%M").time(), MSK)
        with self.rt.db.transaction() as s:
            end = begin + timedelta(hours=hours)
            s.add(OperatorShift(portal_id=self.portal.id, user_id=user_id, kind="entry", spec={},
                                starts_at=begin, ends_at=end, created_by="hr"))  # fmt: skip

    def events(self, user_id: int, *pairs: tuple[datetime, str]) -> None:
        with self.rt.db.transaction() as s:
            for at, state in pairs:
                s.add(OperatorStatusEvent(portal_id=self.portal.id, user_id=user_id, state=state,
                                          source="widget", actor="op", at=at))  # fmt: skip

    def work(self, user_id: int, begin: datetime, end: datetime) -> None:
        self.events(user_id, (begin, "on_shift"), (end, "off"))
