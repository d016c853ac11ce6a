"""Store every inbound webhook / robot call before acknowledging it; a job processes it afterwards."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .models import InboxEvent
from .outbox import after_commit

__all__ = ["receive_event", "wake_inbox_event"]


def receive_event(
    session: Session,
    *,
    portal_id: int,
    source: str,
    dedupe_key: str,
    raw_body: str,
    content_type: str | None,
    event_type: str | None,
) -> tuple[InboxEvent, bool]:
    """Insert the event; a replay (same dedupe key) returns the stored one and False."""
    existing = session.scalar(
        select(InboxEvent).where(InboxEvent.portal_id == portal_id, InboxEvent.dedupe_key == dedupe_key)
    )
    if existing is not None:
        return existing, False
    event = InboxEvent(
        portal_id=portal_id,
        source=source,
        dedupe_key=dedupe_key,
        raw_body=raw_body,
        content_type=content_type,
        event_type=event_type,
    )
    try:
        with session.begin_nested():
            session.add(event)
    except IntegrityError:
        # A concurrent delivery of the same event won the insert.
        existing = session.scalar(
            select(InboxEvent).where(InboxEvent.portal_id == portal_id, InboxEvent.dedupe_key == dedupe_key)
        )
        assert existing is not None
        return existing, False
    event_id = event.id
    after_commit(session, lambda: wake_inbox_event(event_id))
    return event, True


def wake_inbox_event(event_id: int) -> None:
    from . import runtime
    from .jobs.inbox import process_inbox_event

    runtime.current().queue("default").enqueue(process_inbox_event, event_id, result_ttl=300)
