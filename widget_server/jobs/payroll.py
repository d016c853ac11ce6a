"""The monthly payroll statement: from the 1st of a month, 08:00 in the clinic's timezone, last month's
statement is stored and the head (settings.payroll.head_user_id) gets a CRM notification with the totals and
the CSV's address, through the outbox.

Once per (portal, month): the PayrollStatement row (unique per portal and month) commits in the same
transaction as the outbox job, so a second tick, a second scheduler or a retry after a crash finds it and
sends nothing; a scheduler that was down on the 1st catches up at its next tick.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .. import runtime
from ..models import PayrollRate, PayrollStatement, Portal, PortalUser, utcnow
from ..outbox import enqueue_outbox
from ..payroll import head_user_id, payroll_statement
from .joblog import logged_job

__all__ = ["SEND_AT_HOUR", "due_month", "send_payroll_statements", "statement_text"]

SEND_AT_HOUR = 8


def due_month(timezone: str, now: datetime) -> str | None:
    """The month whose statement is due at `now` (last month once the 1st's 08:00 local has passed)."""
    local = now.astimezone(ZoneInfo(timezone))
    if local.day == 1 and local.hour < SEND_AT_HOUR:
        return None
    previous = local.date().replace(day=1) - timedelta(days=1)
    return f"{previous.year}-{previous.month:02d}"


def statement_text(statement: dict[str, Any], url: str) -> str:
    lines = [f"Расчёт зарплаты операторов за {statement['month']}: итого {statement['total_text']}."]
    lines += [f"• {op['name']}: {op['total_text']}" for op in statement["operators"]]
    lines.append(f"Подробный расчёт (CSV): {url}")
    lines.append(f"Operator payroll for {statement['month']}: total {statement['total_text']}. CSV: {url}")
    return "\n".join(lines)


def _send(portal_id: int, now: datetime) -> str:
    rt = runtime.current()
    with rt.db.transaction() as session:
        portal = session.get(Portal, portal_id)
        if portal is None:
            return "gone"
        month = due_month(portal.timezone, now)
        if month is None:
            return "not yet"
        exists = session.scalar(
            select(PayrollStatement.id).where(
                PayrollStatement.portal_id == portal_id, PayrollStatement.month == month
            )
        )
        if exists is not None:
            return "sent"
        statement = payroll_statement(session, portal, month)
        head_id = head_user_id(portal)
        head = session.get(PortalUser, head_id) if head_id is not None else None
        session.add(
            PayrollStatement(
                portal_id=portal_id,
                month=month,
                total=Decimal(statement["total"]),
                document=statement,
                head_user_id=head.crm_user_id if head is not None else None,
            )
        )
        session.flush()
        if head is None or head.portal_id != portal_id:
            return "stored, no head"
        url = f"{rt.settings.public_base_url.rstrip('/')}/api/v1/payroll/{month}.csv"
        enqueue_outbox(
            session,
            portal_id=portal_id,
            operation="notify_user",
            payload={"user_id": head.crm_user_id, "text": statement_text(statement, url)},
            idempotency_key=f"payroll-statement:{portal_id}:{month}",
            origin="payroll",
        )
    return "sent now"


@logged_job("payroll_statements")
def send_payroll_statements(now: datetime | None = None) -> str:
    now = now or utcnow()
    with runtime.current().db.transaction() as session:
        # Only portals that keep a rate directory run payroll at all.
        portal_ids = list(
            session.scalars(
                select(Portal.id)
                .where(Portal.status == "active", Portal.id.in_(select(PayrollRate.portal_id)))
                .order_by(Portal.id)
            )
        )
    sent = 0
    for portal_id in portal_ids:
        try:
            sent += _send(portal_id, now) == "sent now"
        except IntegrityError:
            # Another worker stored the same month a moment earlier: it sent the notification.
            continue
    return f"portals {len(portal_ids)} sent {sent}"
