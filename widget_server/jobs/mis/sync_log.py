"""The MIS sync log's retention."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sqlalchemy import delete

from ... import runtime
from ...clock import now_utc
from ...models import MisSyncRecord, MisSyncRun
from ..joblog import logged_job

__all__ = ["purge_mis_sync_log"]


SYNC_LOG_TTL = timedelta(days=90)


def _purge_portal_sync_log(portal_id: int, day: date) -> dict[str, Any]:
    cutoff = now_utc() - SYNC_LOG_TTL
    with runtime.current().db.transaction() as s:
        records = s.execute(
            delete(MisSyncRecord).where(
                MisSyncRecord.portal_id == portal_id, MisSyncRecord.created_at < cutoff
            )
        ).rowcount
        runs = s.execute(
            delete(MisSyncRun).where(MisSyncRun.portal_id == portal_id, MisSyncRun.created_at < cutoff)
        ).rowcount
    return {"records": records, "runs": runs, "day": day.isoformat()}


@logged_job("purge_mis_sync_log")
def purge_mis_sync_log() -> str:
    """The sync log keeps 90 days; once a day per portal."""
    from ..periodic import run_once_per_portal_day  # periodic → inbox → this module (intake reaction)

    counts = run_once_per_portal_day("purge_mis_sync_log", _purge_portal_sync_log)
    return f"done {counts['done']} skipped {counts['skipped']}"
