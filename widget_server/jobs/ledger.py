"""Periodic ledger work: daily tariff debits (with their CRM mirror) and expiry of purchase holds."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import select

from .. import runtime
from ..clock import local_today
from ..ledger.daily import post_daily_charges
from ..ledger.mirror import queue_low_balance_alert, queue_stay_sync
from ..ledger.purchases import expire_holds
from ..ledger.summary import stay_summary
from ..models import Portal, StayAccount
from .joblog import logged_job
from .periodic import claim_period, finish_period

__all__ = ["charge_portal_day", "run_daily_charges", "run_expire_holds"]

MIRROR_CHUNK = 500


def charge_portal_day(portal_id: int, today: date) -> dict[str, int]:
    """Post every due daily charge of one portal through `today`, then refresh what the CRM shows."""
    rt = runtime.current()
    run = post_daily_charges(rt.db.sessions, portal_id, today)
    ids = run.charged_account_ids
    for start in range(0, len(ids), MIRROR_CHUNK):
        with rt.db.transaction() as session:
            portal = session.get(Portal, portal_id)
            assert portal is not None
            for account in session.scalars(
                select(StayAccount).where(StayAccount.id.in_(ids[start : start + MIRROR_CHUNK]))
            ):
                summary = stay_summary(session, portal, account, recent=0, today=today)
                queue_stay_sync(session, portal, account)
                queue_low_balance_alert(session, portal, summary)
    return {"accounts": run.accounts, "entries": run.entries, "charged_accounts": len(ids)}


@logged_job("daily_charges")
def run_daily_charges(now: datetime | None = None) -> str:
    """Idempotent by construction (one charge per account and day), so it runs often: a late or second
    run only catches up what is missing. Each portal's day is recorded in periodic_runs once."""
    rt = runtime.current()
    with rt.db.transaction() as session:
        portals = [
            (p.id, local_today(p.timezone, now))
            for p in session.scalars(select(Portal).where(Portal.status.in_(("active", "needs_reauth"))))
        ]
    entries = 0
    for portal_id, today in portals:
        detail = charge_portal_day(portal_id, today)
        entries += detail["entries"]
        if claim_period("daily_charges", f"portal:{portal_id}", today.isoformat()):
            finish_period("daily_charges", f"portal:{portal_id}", today.isoformat(), "done", detail)
    return f"portals {len(portals)} entries {entries}"


@logged_job("expire_holds")
def run_expire_holds() -> str:
    with runtime.current().db.transaction() as session:
        return f"expired {expire_holds(session)}"
