"""Mirror one outbox job to the CRM.

The job row is claimed with a lease in a short transaction, the CRM call runs with no transaction open
(on SQLite an open transaction would hold the database's write lock for the whole HTTP call), and the
outcome is written in a second short transaction.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import or_, select, update

from connectors.base import CrmClient, NoteBatching
from connectors.errors import ReauthRequired, Rejected, RetryLater
from connectors.types import DealUpdate, NewNote

from .. import runtime
from ..ledger.notes import note_text
from ..models import OutboxJob, Portal, utcnow
from ..outbox import DRAIN_FLAG, DRAIN_FLAG_TTL_S, WAKE_LIST, queue_outbox_drain
from ..registry import UnsupportedPortal, crm_for
from .joblog import logged_job
from .operations import BATCHED_OPERATIONS, deal_update_of, run_operation

__all__ = ["LEASE", "backoff", "drain_outbox_wakes", "mirror_outbox_job", "mirror_outbox_jobs"]

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


def _load(job_id: int) -> tuple[Portal, str, dict, str] | None:
    """The claimed job's portal, operation, payload and key; None (and the job deferred) while its portal
    cannot take calls."""
    with runtime.current().db.transaction() as session:
        job = session.get(OutboxJob, job_id)
        assert job is not None
        portal = session.get(Portal, job.portal_id)
        assert portal is not None
        if not portal.is_usable:
            job.attempts -= 1  # waiting for the portal is not the job's failure
            job.lease_until = None
            job.next_attempt_at = utcnow() + REAUTH_PAUSE
            job.last_error = f"portal is {portal.status}; waiting"
            return None
        session.expunge(portal)
        return portal, job.operation, dict(job.payload), job.idempotency_key


def _run(job_id: int, call: Callable[[], dict | None]) -> str:
    result: dict | None = None
    error: Exception | None = None
    try:
        result = call()
    except (RetryLater, Rejected, ReauthRequired, UnsupportedPortal) as exc:
        error = exc
    except Exception as exc:  # an unknown failure is treated as transient, and logged in full
        log.exception("outbox job %s raised", job_id)
        error = exc
    return _record(job_id, result, error)


@logged_job("mirror_outbox_job")
def mirror_outbox_job(job_id: int) -> str:
    if not _claim(job_id):
        return "skipped"
    loaded = _load(job_id)
    if loaded is None:
        return "deferred"
    portal, operation, payload, key = loaded
    rt = runtime.current()
    return _run(job_id, lambda: run_operation(crm_for(portal, rt), operation, payload, key))


FIELD_BATCH = 50
"""Jobs sent together: amoCRM's and Bitrix24's batch size, so one request carries them all."""


def mirror_outbox_jobs(job_ids: list[int]) -> str:
    """The wake-up for the jobs one transaction (or one sweep) queued. Tasks, moves and the like go one by
    one, in order; notes, then deal-field jobs, go in batches per portal, so a daily-charge run that writes
    300 notes and refreshes 300 deals costs the CRM 12 requests, not 600."""
    with runtime.current().db.transaction() as session:
        rows = session.execute(
            select(OutboxJob.id, OutboxJob.portal_id, OutboxJob.operation).where(OutboxJob.id.in_(job_ids))
        ).all()
    operations = {row.id: (row.portal_id, row.operation) for row in rows}
    outcomes: dict[int, str] = {}
    notes: dict[int, list[int]] = {}
    fields: dict[int, list[int]] = {}
    for job_id in job_ids:
        portal_id, operation = operations.get(job_id, (None, None))
        if operation == "add_note" and portal_id is not None:
            notes.setdefault(portal_id, []).append(job_id)
        elif operation in BATCHED_OPERATIONS and portal_id is not None:
            fields.setdefault(portal_id, []).append(job_id)
        else:
            outcomes[job_id] = mirror_outbox_job(job_id)
    for groups, send in ((notes, _send_notes), (fields, _send_fields)):
        for ids in groups.values():
            for start in range(0, len(ids), FIELD_BATCH):
                outcomes.update(_mirror_batch(ids[start : start + FIELD_BATCH], send))
    return ",".join(outcomes.get(job_id, "skipped") for job_id in job_ids)


DRAIN_BATCH = 200
"""Ids taken off the wake list at a time (each batch is one `mirror_outbox_jobs`)."""
DRAIN_BATCHES = 25
"""Batches per drain job; a longer backlog continues in a fresh job, well inside rq's job timeout."""


@logged_job("drain_outbox_wakes")
def drain_outbox_wakes() -> str:
    """Mirror the jobs whose ids wait on the wake list, batch by batch, then stand down.

    The drain flag stays set while this runs, so pushes in the meantime only add to the list. Standing down
    deletes the flag and then looks at the list once more: an id pushed between the last empty pop and the
    delete saw the flag and queued no drain, so this one takes the flag back and carries on. Ids popped by a
    drain that then dies are not lost: their rows are still pending and the periodic sweep wakes them."""
    redis = runtime.current().redis
    mirrored = 0
    try:
        for _ in range(DRAIN_BATCHES):
            raw = redis.lpop(WAKE_LIST, DRAIN_BATCH)
            if not raw:
                redis.delete(DRAIN_FLAG)
                if not redis.llen(WAKE_LIST) or not redis.set(DRAIN_FLAG, "1", nx=True, ex=DRAIN_FLAG_TTL_S):
                    return f"mirrored {mirrored}"
                continue
            ids = list(dict.fromkeys(int(item) for item in raw))  # a re-sent wake-up needs one run
            mirror_outbox_jobs(ids)
            mirrored += len(ids)
            redis.expire(DRAIN_FLAG, DRAIN_FLAG_TTL_S)
    except BaseException:
        redis.delete(DRAIN_FLAG)  # the next wake-up queues a fresh drain
        raise
    queue_outbox_drain()  # still more: the flag stays ours, a fresh job goes on
    return f"mirrored {mirrored}, continued"


Loaded = list[tuple[int, str, dict, str]]
"""(job id, operation, payload, idempotency key) of the claimed jobs of one batch."""
Send = Callable[[CrmClient, Loaded], dict[int, dict] | None]
"""Sends a batch; per-job results, or None to send each job alone."""


def _send_fields(crm: CrmClient, jobs: Loaded) -> dict[int, dict] | None:
    """One `update_deals` for all of them (fields and responsible users)."""
    updates: list[DealUpdate] = []
    written: dict[int, dict] = {}
    for job_id, operation, payload, _key in jobs:
        update = deal_update_of(operation, payload)
        written[job_id] = {"fields": sorted(update.fields)} if operation == "sync_stay_fields" else {}
        if update.fields or update.responsible_user_id is not None:
            updates.append(update)
    if updates:
        crm.update_deals(updates)
    return written


def _send_notes(crm: CrmClient, jobs: Loaded) -> dict[int, dict] | None:
    """One `add_notes` where the CRM has it; None (each job alone) where it does not."""
    if not isinstance(crm, NoteBatching):
        return None
    refs = crm.add_notes(
        [NewNote(str(payload["deal_id"]), note_text(payload), key) for _id, _op, payload, key in jobs]
    )
    return {job_id: {"note_id": ref.id} for (job_id, *_), ref in zip(jobs, refs, strict=True)}


def _mirror_batch(job_ids: list[int], send: Send) -> dict[int, str]:
    """Jobs of one portal in one CRM request. A refused batch is retried job by job, so one bad value
    fails only its own job; an unknown outcome leaves them all for a retry, which stays exactly-once
    because every create carries its job's idempotency key."""
    if len(job_ids) == 1:
        return {job_ids[0]: mirror_outbox_job(job_ids[0])}
    claimed = [job_id for job_id in job_ids if _claim(job_id)]
    outcomes = {job_id: "skipped" for job_id in job_ids if job_id not in claimed}
    jobs: Loaded = []
    portal: Portal | None = None
    for job_id in claimed:
        found = _load(job_id)
        if found is None:
            outcomes[job_id] = "deferred"
        else:
            portal = found[0]
            jobs.append((job_id, found[1], found[2], found[3]))
    if portal is None or not jobs:
        return outcomes
    rt = runtime.current()
    try:
        crm = crm_for(portal, rt)
        results = send(crm, jobs)
    except Rejected:
        results = None
    except (RetryLater, ReauthRequired, UnsupportedPortal) as exc:
        return outcomes | {job_id: _record(job_id, None, exc) for job_id, *_ in jobs}
    except Exception as exc:
        log.exception("outbox batch %s raised", [job_id for job_id, *_ in jobs])
        return outcomes | {job_id: _record(job_id, None, exc) for job_id, *_ in jobs}
    if results is None:
        # Refused as a whole, or no batch form: each job alone, with the lease it already holds.
        for job_id, operation, payload, key in jobs:
            outcomes[job_id] = _run(
                job_id, lambda op=operation, p=payload, k=key: run_operation(crm_for(portal, rt), op, p, k)
            )
        return outcomes
    return outcomes | {job_id: _record(job_id, results[job_id], None) for job_id, *_ in jobs}


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
