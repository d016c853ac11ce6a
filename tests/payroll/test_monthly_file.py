"""The monthly statement goes to the head on the 1st, 08:00 local, once per (portal, month), through the
outbox to the CRM (the sandbox CRM's notifications here)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import func, select

from widget_server.jobs.payroll import due_month, send_payroll_statements
from widget_server.models import OutboxJob, PayrollStatement, Portal, PortalUser
from widget_server.sandbox.crm import SandboxCrm
from widget_server.sandbox.models import SandboxNotification

from ..reports.clinic_data import MSK


def _head(rt, portal) -> PortalUser:  # type: ignore[no-untyped-def]
    crm_user = SandboxCrm(rt.db, portal.id, timezone=portal.timezone).seed_user("Главный врач", is_admin=True)
    with rt.db.transaction() as s:
        head = PortalUser(
            portal_id=portal.id, crm_user_id=str(crm_user.id), name="Главный врач", roles=["admin"]
        )
        s.add(head)
        s.flush()
        row = s.get(Portal, portal.id)
        row.settings = {**row.settings, "payroll": {"head_user_id": head.id}}
        return head


def test_due_month_is_last_month_from_the_first_at_eight_local() -> None:
    assert due_month("Europe/Moscow", datetime(2026, 4, 1, 4, 59, tzinfo=UTC)) is None  # 07:59 MSK
    assert due_month("Europe/Moscow", datetime(2026, 4, 1, 5, 0, tzinfo=UTC)) == "2026-03"
    assert (
        due_month("Asia/Vladivostok", datetime(2026, 3, 31, 22, 0, tzinfo=UTC)) == "2026-03"
    )  # 08:00 on 1.04
    assert due_month("Europe/Moscow", datetime(2026, 1, 15, 9, 0, tzinfo=UTC)) == "2025-12"


def test_march_statement_goes_to_the_head_once(rt, portal, staff, jobs) -> None:  # type: ignore[no-untyped-def]
    head = _head(rt, portal)
    op = staff.operator("Ольга Иванова")
    staff.schedule(op, date(2026, 3, 2))
    staff.work(op, datetime(2026, 3, 2, 9, tzinfo=MSK), datetime(2026, 3, 2, 17, tzinfo=MSK))

    early = send_payroll_statements(datetime(2026, 4, 1, 4, 30, tzinfo=UTC))  # 07:30 MSK
    assert early == "portals 1 sent 0"
    assert send_payroll_statements(datetime(2026, 4, 1, 5, 0, tzinfo=UTC)) == "portals 1 sent 1"
    # A second tick, and a tick days later, send nothing more.
    assert send_payroll_statements(datetime(2026, 4, 1, 5, 15, tzinfo=UTC)) == "portals 1 sent 0"
    assert send_payroll_statements(datetime(2026, 4, 3, 5, 15, tzinfo=UTC)) == "portals 1 sent 0"
    jobs()
    with rt.db.transaction() as s:
        statement = s.scalar(select(PayrollStatement))
        assert (statement.month, str(statement.total), statement.head_user_id) == (
            "2026-03",
            "2000.00",
            head.crm_user_id,
        )
        assert s.scalar(select(func.count()).select_from(OutboxJob)) == 1
        assert s.scalar(select(OutboxJob.state)) == "done"
        (text,) = s.scalars(select(SandboxNotification.text)).all()
    assert text.startswith("Расчёт зарплаты операторов за 2026-03: итого 2\u00a0000,00\u00a0₽.")
    assert "• Ольга Иванова: 2\u00a0000,00\u00a0₽" in text
    assert "/api/v1/payroll/2026-03.csv" in text


def test_a_scheduler_down_on_the_first_catches_up(rt, portal, staff) -> None:  # type: ignore[no-untyped-def]
    _head(rt, portal)
    staff.operator("Ольга Иванова")
    assert send_payroll_statements(datetime(2026, 4, 6, 12, 0, tzinfo=UTC)) == "portals 1 sent 1"
    with rt.db.transaction() as s:
        assert s.scalars(select(PayrollStatement.month)).all() == ["2026-03"]


def test_portals_without_rates_are_left_alone(rt, portal) -> None:  # type: ignore[no-untyped-def]
    _head(rt, portal)
    assert send_payroll_statements(datetime(2026, 4, 1, 6, 0, tzinfo=UTC)) == "portals 0 sent 0"
