"""Invoice jobs: the daily CBR rate refresh.

Runs hourly; each run fetches only what the shared cache lacks: the last week (a missed day is caught
up), today and tomorrow. Tomorrow is cached only once the CBR has published it (`@Date` equals it), so
an early run changes nothing and a later one completes it. Two runs therefore store one set.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from connectors.base import CrmClient

from .. import runtime
from ..cbr import rate_set
from ..clock import local_today
from ..db import mark_read_only
from ..invoices.errors import RateUnavailable
from ..invoices.rates import cached_set
from .joblog import logged_job

__all__ = ["CATCH_UP_DAYS", "CBR_TIMEZONE", "refresh_cbr_rates"]

CBR_TIMEZONE = "Europe/Moscow"
"""The Bank of Russia's day is Moscow's, whatever the clinic's timezone."""
CATCH_UP_DAYS = 7


@logged_job("refresh_cbr_rates")
def refresh_cbr_rates(now: datetime | None = None, catch_up_days: int = CATCH_UP_DAYS) -> str:
    db = runtime.current().db
    today = local_today(CBR_TIMEZONE, now)
    days = [today - timedelta(days=back) for back in range(catch_up_days, 0, -1)] + [
        today,
        today + timedelta(days=1),
    ]
    fetched = failed = 0
    for day in days:
        with db.transaction() as session:
            mark_read_only(session)
            if cached_set(session, day) is not None:
                continue
        try:
            rate_set(db, day, today)
            fetched += 1
        except RateUnavailable:
            failed += 1
    return f"fetched {fetched} failed {failed}"


# --- outbox operations for invoices -------------------------------------------------------------------
# Registered in jobs/operations.py's OPERATIONS, the one table the outbox mirror runs.


def attach_invoice_document(crm: CrmClient, payload: dict[str, Any], key: str) -> dict[str, Any]:
    """The registered PDF, read back and checked against its sha256, attached to the deal (the
    connector puts it in the patient's folder: Bitrix24 Disk subfolder, amoCRM drive + attachment note)."""
    from ..invoices.documents import read_document

    rt = runtime.current()
    root = Path(rt.settings.instance_path) / "documents"
    with rt.db.transaction() as session:
        mark_read_only(session)
        document, content = read_document(
            session, int(payload["portal_id"]), int(payload["invoice_id"]), int(payload["version"]), root
        )
        name = document.file_name
    ref = crm.attach_file(str(payload["deal_id"]), name, content, "application/pdf", idempotency_key=key)
    return {"file_id": ref.id}


def notify_deal_responsible(crm: CrmClient, payload: dict[str, Any], key: str) -> dict[str, Any]:
    """Whoever is responsible for the deal when the job runs gets the text."""
    deal = crm.get_deal(str(payload["deal_id"]))
    if deal.responsible_user_id is None:
        return {"skipped": "deal has no responsible user"}
    crm.notify_user(deal.responsible_user_id, payload["text"], idempotency_key=key)
    return {"user_id": deal.responsible_user_id}


def add_company_note(crm: CrmClient, payload: dict[str, Any], key: str) -> dict[str, Any]:
    """A payment or credit note in the feed of the counterparty's CRM company."""
    note = crm.add_company_note(str(payload["company_id"]), payload["text"], idempotency_key=key)
    return {"note_id": note.id}


INVOICE_OPERATIONS: dict[str, Callable[[CrmClient, dict[str, Any], str], dict[str, Any]]] = {
    "attach_invoice_document": attach_invoice_document,
    "notify_deal_responsible": notify_deal_responsible,
    "add_company_note": add_company_note,
}
