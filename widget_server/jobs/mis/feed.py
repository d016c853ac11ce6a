"""A visit's notes and field updates go out as outbox jobs (origin `mis-feed:<visit>`) through the outbox's
note batches, 50 per request where the CRM takes batches. An import queues hundreds of visit jobs; while more
of them wait, notes are held until a full batch has gathered, and the last visit job sends the rest. The
outbox sweep sends any left behind by a crash."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ... import runtime
from ...appointments.sync import MIRROR_OPERATION
from ...models import OutboxJob, utcnow

__all__ = ["FEED_BATCH", "FEED_ORIGIN", "queue_feed", "send_waiting_feed"]


FEED_ORIGIN = "mis-feed:"
FEED_BATCH = 50
"""Notes per CRM request (amoCRM's `POST /api/v4/leads/notes` takes 50): held until this many wait."""


def queue_feed(
    s: Session, portal_id: int, row_id: int, deal_id: str, feed: list[tuple[str, dict[str, Any], str]]
) -> None:
    """The visit's notes and field updates as outbox jobs; a key already queued (the invalid-phone flag of an
    earlier job) is not queued twice."""
    keys = [key for *_rest, key in feed]
    known = set(
        s.scalars(
            select(OutboxJob.idempotency_key).where(
                OutboxJob.portal_id == portal_id, OutboxJob.idempotency_key.in_(keys)
            )
        )
    )
    for operation, payload, key in feed:
        if key not in known:
            s.add(
                OutboxJob(
                    portal_id=portal_id,
                    operation=operation,
                    payload=payload,
                    idempotency_key=key,
                    deal_id=deal_id,
                    origin=f"{FEED_ORIGIN}{row_id}",
                )
            )


def send_waiting_feed(portal_id: int) -> str:
    """Send the portal's waiting MIS notes and field updates through the outbox's batches: full batches while
    visit jobs are still to run, everything once none is. Two workers doing this at once is harmless: each
    job is claimed once."""
    from ..mirror import mirror_outbox_jobs  # the mirror imports the operations table, which reaches here

    now = utcnow()
    with runtime.current().db.transaction() as s:
        busy = s.scalar(
            select(OutboxJob.id)
            .where(
                OutboxJob.portal_id == portal_id,
                OutboxJob.operation == MIRROR_OPERATION,
                OutboxJob.state == "pending",
                OutboxJob.attempts == 0,
                OutboxJob.next_attempt_at <= now,
            )
            .limit(1)
        )
        waiting = list(
            s.scalars(
                select(OutboxJob.id)
                .where(
                    OutboxJob.portal_id == portal_id,
                    OutboxJob.state == "pending",
                    OutboxJob.attempts == 0,
                    OutboxJob.origin.like(f"{FEED_ORIGIN}%"),
                )
                .order_by(OutboxJob.id)
                .limit(FEED_BATCH * 10)
            )
        )
    if busy is not None:
        waiting = waiting[: len(waiting) // FEED_BATCH * FEED_BATCH]
    return mirror_outbox_jobs(waiting) if waiting else "held"
