"""Queue a change for the CRM in the same transaction as the change itself.

The OutboxJob row commits with the user's action, so nothing is lost if Redis or the CRM is down; what is
pushed after commit is only a wake-up call, and the periodic sweep re-sends wake-ups that were lost.

Wake-ups are coalesced: the committed job ids go onto one Redis list, and an rq job to drain it is queued
only when none is pending (one script, one round trip). A busy clinic's hundred entries a minute then cost
the worker a few drain jobs instead of a forked work-horse each, and the request a single small command.
In a web worker even that command leaves the request: the ids are handed to the worker's background Redis
thread (`background_redis`), which pushes everything that accumulated in one call.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

from sqlalchemy import event, insert
from sqlalchemy.orm import Session, make_transient_to_detached

from . import background_redis, fast_sql
from .jobs.operations import LAZY_OPERATIONS, OPERATIONS, is_operation
from .models import OutboxJob, utcnow

__all__ = [
    "DRAIN_FLAG",
    "DRAIN_FLAG_TTL_S",
    "WAKE_LIST",
    "after_commit",
    "enqueue_outbox",
    "enqueue_outbox_id",
    "queue_outbox_drain",
    "wake_outbox_job",
    "wake_outbox_jobs",
]

log = logging.getLogger(__name__)


def after_commit(session: Session, action: Callable[[], None]) -> None:
    """Run `action` once the session's current transaction has committed (never on rollback)."""
    pending: list[Callable[[], None]] = session.info.setdefault("after_commit", [])
    pending.append(action)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    actions = session.info.pop("after_commit", [])
    for action in actions:
        try:
            action()
        except Exception:
            # The committed row is the truth; a failed wake-up is retried by the sweep.
            log.exception("after-commit action failed")


@event.listens_for(Session, "after_rollback")
def _drop_after_commit(session: Session) -> None:
    session.info.pop("after_commit", None)
    session.info.pop("outbox_wake", None)


_INSERT = insert(OutboxJob.__table__).returning(OutboxJob.__table__.c.id)
_DEFAULT_MAX_ATTEMPTS = OutboxJob.__table__.c.max_attempts.default.arg  # type: ignore[union-attr]


def enqueue_outbox(
    session: Session,
    *,
    portal_id: int,
    operation: str,
    payload: dict[str, Any],
    idempotency_key: str,
    deal_id: str | None = None,
    origin: str | None = None,
) -> OutboxJob:
    job_id, values = _insert_job(session, portal_id, operation, payload, idempotency_key, deal_id, origin)
    # The job joins the session as if loaded, so callers can read and change it as before.
    job = OutboxJob(id=job_id, **values)
    make_transient_to_detached(job)
    session.add(job)
    return job


def enqueue_outbox_id(
    session: Session,
    *,
    portal_id: int,
    operation: str,
    payload: dict[str, Any],
    idempotency_key: str,
    deal_id: str | None = None,
    origin: str | None = None,
) -> int:
    """`enqueue_outbox` for a caller that needs only the job's id: no ORM object (building and attaching
    one costs a tenth of a millisecond, on every stay-ledger entry)."""
    return _insert_job(session, portal_id, operation, payload, idempotency_key, deal_id, origin)[0]


def _insert_job(
    session: Session,
    portal_id: int,
    operation: str,
    payload: dict[str, Any],
    idempotency_key: str,
    deal_id: str | None,
    origin: str | None,
) -> tuple[int, dict[str, Any]]:
    if not is_operation(operation):
        known = sorted({*OPERATIONS, *LAZY_OPERATIONS})
        raise ValueError(f"operation must be one of {known}, got {operation!r}")
    now = utcnow()
    values = {
        "portal_id": portal_id,
        "operation": operation,
        "deal_id": deal_id,
        "payload": payload,
        "idempotency_key": idempotency_key,
        "origin": origin,
        "state": "pending",
        "attempts": 0,
        "max_attempts": _DEFAULT_MAX_ATTEMPTS,
        "next_attempt_at": now,
        "lease_until": None,
        "last_error": None,
        "result": None,
        "created_at": now,
        "updated_at": now,
        "done_at": None,
    }
    # A Core INSERT: the ORM's unit of work for one row costs several times the statement.
    job_id = fast_sql.run(session, _INSERT, values).scalar_one()
    # One wake-up per transaction, however many jobs it queued: each rq enqueue is Redis round trips.
    pending: list[int] | None = session.info.get("outbox_wake")
    if pending is None:
        pending = session.info["outbox_wake"] = []
        after_commit(session, lambda: wake_outbox_jobs(session.info.pop("outbox_wake", [])))
    pending.append(job_id)
    return job_id, values


def wake_outbox_job(job_id: int) -> None:
    wake_outbox_jobs([job_id])


WAKE_LIST = "cb:outbox:wake"
"""Ids of committed outbox jobs waiting for the drain job."""
DRAIN_FLAG = "cb:outbox:drain"
"""Set while a drain job is queued or running; it expires, so a drain that died is replaced."""
DRAIN_FLAG_TTL_S = 120

# KEYS[1] the wake list, KEYS[2] the drain flag; ARGV[1] the flag's TTL, ARGV[2..] job ids.
# 1: the caller must queue a drain job (none was pending).
_PUSH_LUA = """
redis.call('RPUSH', KEYS[1], unpack(ARGV, 2))
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then
  return 1
end
return 0
"""
_DRAIN_JOB = "widget_server.jobs.mirror.drain_outbox_wakes"
_PUSH_SCRIPTS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
"""The push script per Redis client (registering hashes the script: once, not on every wake-up)."""


def wake_outbox_jobs(job_ids: list[int], *, force_drain: bool = False) -> None:
    """Wake the mirror for committed outbox jobs. `force_drain`: queue a drain job even if one is pending."""
    from . import runtime

    if not job_ids:
        return
    # By dotted path: domain code that queues CRM changes must not import the job (and with it the
    # connector registry).
    queue = runtime.current().queue("crm")
    if not queue.is_async:  # in-process jobs (REDIS_URL=memory://) run inside enqueue
        queue.enqueue("widget_server.jobs.mirror.mirror_outbox_jobs", list(job_ids), result_ttl=300)
        return
    if background_redis.running() and not force_drain:
        with _deferred_lock:
            _deferred_wakes.extend(job_ids)
        background_redis.notify()
        return
    _push_wakes(queue.connection, job_ids, force_drain=force_drain)


def _push_wakes(redis: Any, job_ids: list[int], *, force_drain: bool = False) -> None:
    push = _PUSH_SCRIPTS.get(redis)
    if push is None:
        push = _PUSH_SCRIPTS[redis] = redis.register_script(_PUSH_LUA)
    if push(keys=[WAKE_LIST, DRAIN_FLAG], args=[DRAIN_FLAG_TTL_S, *job_ids]) or force_drain:
        queue_outbox_drain()


_deferred_wakes: list[int] = []
"""Committed job ids this web worker's background Redis thread has yet to push."""
_deferred_lock = threading.Lock()


def _flush_deferred_wakes() -> None:
    from . import runtime

    with _deferred_lock:
        job_ids = _deferred_wakes[:]
        del _deferred_wakes[:]
    if job_ids:
        # A push that fails loses only the wake-up: the rows are pending and the sweep wakes them.
        _push_wakes(runtime.current().queue("crm").connection, job_ids)


background_redis.register(_flush_deferred_wakes)


def queue_outbox_drain() -> None:
    """Queue the job that drains the wake list (the caller holds the drain flag)."""
    from . import runtime

    queue = runtime.current().queue("crm")
    # rq's own enqueue takes two round trips (register the queue, then save and push the job); one pipeline
    # sends them together.
    with queue.connection.pipeline() as pipeline:
        queue.enqueue(_DRAIN_JOB, job_id=f"outbox-drain-{_wake_nonce()}", result_ttl=300, pipeline=pipeline)
        pipeline.execute()


def _wake_nonce() -> str:
    # A fixed id would make rq refuse to re-enqueue while an old finished job is still kept.
    import secrets

    return secrets.token_hex(4)
