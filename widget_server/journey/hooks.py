"""The calls other flows make into the journey, kept to one line at their end."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.orm import Session

from .. import clock
from ..models import MisAppointment, Portal
from ..outbox import after_commit

__all__ = ["plan_from_visits", "wake_evaluation"]


def wake_evaluation(session: Session, portal_id: int) -> None:
    """After commit, evaluate what is due now (a booking notice) instead of waiting for the sweep."""
    from .. import runtime

    def wake() -> None:
        # By dotted path: the job reaches the connector registry, which domain code must not import.
        runtime.current().queue("default").enqueue(
            "widget_server.jobs.journey.evaluate_journey", portal_id, result_ttl=300
        )

    if not session.info.get("journey_wake"):
        session.info["journey_wake"] = True
        after_commit(session, lambda: (session.info.pop("journey_wake", None), wake()))


def plan_from_visits(session: Session, portal: Portal, rows: Iterable[MisAppointment]) -> int:
    """Called by the MIS sync with the visits its batch changed, in its transaction."""
    from .engine import on_appointments

    now = clock.now_utc()
    planned = on_appointments(session, portal, rows, now)
    if planned:
        wake_evaluation(session, portal.id)
    return planned
