"""What is waiting to reach the CRM, and what failed for good: visible to admins, retryable by them."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy import select

from ..errors import Conflict, NotFound
from ..models import OutboxJob, utcnow
from ..outbox import after_commit, wake_outbox_job
from .auth import current_principal, requires
from .body import load_query
from .idempotency import mutation
from .lifecycle import db_session
from .openapi import api_doc
from .schemas import OutboxJobSchema, OutboxQuerySchema

__all__ = ["outbox_api"]

outbox_api = Blueprint("outbox_api", __name__, url_prefix="/api/v1/outbox")


@outbox_api.get("")
@api_doc(
    summary="Outbox jobs, newest first",
    tags=["outbox"],
    query=OutboxQuerySchema,
    response=OutboxJobSchema(many=True),
)
@requires("admin")
def list_jobs() -> Any:
    query = load_query(OutboxQuerySchema())
    statement = select(OutboxJob).where(OutboxJob.portal_id == current_principal().portal_id)
    if "state" in query:
        statement = statement.where(OutboxJob.state == query["state"])
    jobs = db_session().scalars(statement.order_by(OutboxJob.id.desc()).limit(query["limit"]))
    return OutboxJobSchema(many=True).dump(jobs)


@outbox_api.get("/<int:job_id>")
@api_doc(summary="One outbox job", tags=["outbox"], response=OutboxJobSchema, errors=(404,))
@requires("staff")
def get_job(job_id: int) -> Any:
    return OutboxJobSchema().dump(_job(job_id))


@outbox_api.post("/<int:job_id>/retry")
@api_doc(summary="Send a failed job again", tags=["outbox"], response=OutboxJobSchema, errors=(404,))
@requires("admin")
@mutation
def retry_job(job_id: int) -> Any:
    job = _job(job_id)
    if job.state != "failed":
        raise Conflict(
            f"only failed jobs can be retried; this one is {job.state}",
            fields={"state": [f"is {job.state}, not failed"]},
        )
    job.state = "pending"
    job.attempts = 0
    job.next_attempt_at = utcnow()
    job.lease_until = None
    db_session().flush()
    after_commit(db_session(), lambda: wake_outbox_job(job_id))
    return OutboxJobSchema().dump(job)


def _job(job_id: int) -> OutboxJob:
    job = db_session().get(OutboxJob, job_id)
    if job is None or job.portal_id != current_principal().portal_id:
        raise NotFound(f"no outbox job {job_id} in this portal")
    return job
