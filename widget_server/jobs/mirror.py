"""Mirror one outbox job to the CRM.

The job row is claimed with a lease in a short transaction, the CRM call runs with no transaction open
(on SQLite an open transaction would hold the database's write lock for the whole HTTP call), and the
outcome is written in a second short transaction.
"""

from __future__ import annotations

import logging
import random
from datetime import timedelta

from sqlalchemy import or_, update

from connectors.errors import ReauthRequired, Rejected, RetryLater

from .. import runtime
from ..models import OutboxJob, Portal, utcnow
from ..registry import UnsupportedPortal, crm_for
from .joblog import logged_job
from .operations import run_operation

__all__ = ["LEASE", "backoff", "mirror_outbox_job", "mirror_outbox_jobs"]

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)
"""Longer than any single CRM call with its retries; a crashed worker's claim expires after it."""
REAUTH_PAUSE = timedelta(minutes=15)


def backoff(attempts: int) -> timedelta:
    """Exponential with full jitter, 10 s doubling up to 1 h: a CRM outage is not hammered."""
    ceiling = min(3600.0, 10.0 * (2 ** max(0, attempts - 1)))
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))  # noqa: S311 - jitter, not security


def _claim(job_id: int) -> bool:
    now = utcnow()
    with runtime.current().db.transaction() as session:
        claimed = session.execute(
            update(OutboxJob)
            .where(
                OutboxJob.id == job_id,
                OutboxJob.state == "pending",
                OutboxJob.next_attempt_at <= now,
                or_(OutboxJob.lease_until.is_(None), OutboxJob.lease_until < now),
            )
            .values(lease_until=now + LEASE, attempts=OutboxJob.attempts + 1)
        )
        return claimed.rowcount == 1


@logged_job("mirror_outbox_job")
def mirror_outbox_job(job_id: int) -> str:
    if not _claim(job_id):
        return "skipped"
    rt = runtime.current()
    with rt.db.transaction() as session:
        job = session.get(OutboxJob, job_id)
        assert job is not None
        portal = session.get(Portal, job.portal_id)
        assert portal is not None
        operation, payload, key = job.operation, dict(job.payload), job.idempotency_key
        portal_usable = portal.is_usable
        if not portal_usable:
            job.attempts -= 1  # waiting for the portal is not the job's failure
            job.lease_until = None
            job.next_attempt_at = utcnow() + REAUTH_PAUSE
            job.last_error = f"portal is {portal.status}; waiting"
            return "deferred"
        crm_portal = portal

    result: dict | None = None
    error: Exception | None = None
    try:
        result = run_operation(crm_for(crm_portal, rt), operation, payload, key)
    except (RetryLater, Rejected, ReauthRequired, UnsupportedPortal) as exc:
        error = exc
    except Exception as exc:  # an unknown failure is treated as transient, and logged in full
        log.exception("outbox job %s raised", job_id)
        error = exc
    return _record(job_id, result, error)


def mirror_outbox_jobs(job_ids: list[int]) -> str:
    """The wake-up for all jobs one transaction queued, in order (a note before the field refresh)."""
    outcomes = [mirror_outbox_job(job_id) for job_id in job_ids]
    return ",".join(outcomes)


def _record(job_id: int, result: dict | None, error: Exception | None) -> str:
    now = utcnow()
    with runtime.current().db.transaction() as session:
        job = session.get(OutboxJob, job_id)
        assert job is not None
        job.lease_until = None
        if error is None:
            job.state, job.result, job.done_at, job.last_error = "done", result or {}, now, None
            return "done"
        job.last_error = f"{type(error).__name__}: {error}"[:2000]
        if isinstance(error, Rejected | UnsupportedPortal):
            job.state = "failed"
            return "failed"
        if isinstance(error, ReauthRequired):
            portal = session.get(Portal, job.portal_id)
            if portal is not None and portal.status == "active":
                portal.status = "needs_reauth"
            job.attempts -= 1
            job.next_attempt_at = now + REAUTH_PAUSE
            return "needs_reauth"
        if job.attempts >= job.max_attempts:
            job.state = "failed"
            return "failed"
        wait = backoff(job.attempts)
        if isinstance(error, RetryLater):
            wait = max(wait, timedelta(seconds=error.retry_after))
        job.next_attempt_at = now + wait
        return "retry_scheduled"
