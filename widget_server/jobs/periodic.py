"""Periodic work that is idempotent per (job, portal, period).

A job first claims its period by inserting a PeriodicRun row; the unique constraint makes a second
scheduler tick, a double-started scheduler or a manual re-run a no-op, and a late run still does the
work of the period it was due for.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from .. import runtime
from ..clock import local_today
from ..models import IdempotencyRecord, InboxEvent, OutboxJob, PeriodicRun, Portal, utcnow
from ..outbox import wake_outbox_jobs
from .inbox import process_inbox_event
from .joblog import logged_job

__all__ = [
    "claim_period",
    "portal_today",
    "purge_idempotency_records",
    "run_once_per_portal_day",
    "sweep_inbox",
    "sweep_outbox",
]


def portal_today(portal: Portal, now: datetime | None = None) -> date:
    return local_today(portal.timezone, now)


def claim_period(job_name: str, scope: str, period: str) -> bool:
    """True if this call owns (job, scope, period); False if it was already claimed."""
    try:
        with runtime.current().db.transaction() as session:
            session.add(PeriodicRun(job_name=job_name, scope=scope, period=period))
    except IntegrityError:
        return False
    return True


def finish_period(job_name: str, scope: str, period: str, outcome: str, detail: dict[str, Any]) -> None:
    with runtime.current().db.transaction() as session:
        run = session.scalar(
            select(PeriodicRun).where(
                PeriodicRun.job_name == job_name, PeriodicRun.scope == scope, PeriodicRun.period == period
            )
        )
        if run is not None:
            run.outcome, run.detail, run.finished_at = outcome, detail, utcnow()


def run_once_per_portal_day(
    job_name: str, work: Callable[[int, date], dict[str, Any]], now: datetime | None = None
) -> dict[str, int]:
    """Run `work(portal_id, local_day)` for each active portal whose local day has not been done yet."""
    with runtime.current().db.transaction() as session:
        portals = [
            (p.id, portal_today(p, now))
            for p in session.scalars(select(Portal).where(Portal.status == "active").order_by(Portal.id))
        ]
    done = skipped = 0
    for portal_id, day in portals:
        scope, period = f"portal:{portal_id}", day.isoformat()
        if not claim_period(job_name, scope, period):
            skipped += 1
            continue
        detail = work(portal_id, day)
        finish_period(job_name, scope, period, "done", detail)
        done += 1
    return {"done": done, "skipped": skipped}


@logged_job("sweep_outbox")
def sweep_outbox(limit: int = 500) -> str:
    """Re-send wake-ups for due pending jobs: covers a lost enqueue and scheduled retries."""
    now = utcnow()
    with runtime.current().db.transaction() as session:
        due = session.execute(
            select(OutboxJob.id, OutboxJob.portal_id)
            .where(OutboxJob.state == "pending", OutboxJob.next_attempt_at <= now)
            .where((OutboxJob.lease_until.is_(None)) | (OutboxJob.lease_until < now))
            .order_by(OutboxJob.next_attempt_at)
            .limit(limit)
        ).all()
    # A drain job is queued even if the drain flag says one is pending: the sweep is the recovery path
    # for a drain that was lost with its queue or killed mid-run (a spare drain finds nothing and stops).
    wake_outbox_jobs([job_id for job_id, _portal_id in due], force_drain=True)
    return f"woke {len(due)}"


@logged_job("sweep_inbox")
def sweep_inbox(older_than_s: int = 60, limit: int = 500) -> str:
    cutoff = utcnow() - timedelta(seconds=older_than_s)
    with runtime.current().db.transaction() as session:
        pending = list(
            session.scalars(
                select(InboxEvent.id)
                .where(
                    InboxEvent.outcome == "pending", InboxEvent.received_at < cutoff, InboxEvent.attempts < 10
                )
                .order_by(InboxEvent.id)
                .limit(limit)
            )
        )
    queue = runtime.current().queue("default")
    for event_id in pending:
        queue.enqueue(process_inbox_event, event_id, result_ttl=300)
    return f"woke {len(pending)}"


def _purge_portal_idempotency(portal_id: int, day: date) -> dict[str, Any]:
    from ..http.idempotency import IDEMPOTENCY_TTL

    cutoff = utcnow() - IDEMPOTENCY_TTL
    with runtime.current().db.transaction() as session:
        result = session.execute(
            delete(IdempotencyRecord).where(
                IdempotencyRecord.portal_id == portal_id, IdempotencyRecord.created_at < cutoff
            )
        )
    return {"deleted": result.rowcount, "day": day.isoformat()}


@logged_job("purge_idempotency_records")
def purge_idempotency_records() -> str:
    counts = run_once_per_portal_day("purge_idempotency_records", _purge_portal_idempotency)
    return f"done {counts['done']} skipped {counts['skipped']}"
