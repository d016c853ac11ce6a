"""Announce a portal losing its CRM connection the moment it happens, not when an admin next looks.

Every path that changes `Portal.status` (the amo and Bitrix24 token sources, the outbox, an nginx 403)
goes through the ORM, so one attribute listener catches them all; the POST to ALERT_WEBHOOK_URL runs in
an rq job after the commit (`jobs/alerts.py`), with retries, so a slow chat bot never holds a transaction.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import object_session

from .models import Portal

__all__ = ["ALERTING_STATUSES", "install_alert_listener"]

log = logging.getLogger(__name__)

ALERTING_STATUSES = frozenset({"needs_reauth", "blocked"})
"""Statuses that cut the portal off from its CRM; the words sent are the admin panel's (`attention.py`)."""


def _on_status(target: Portal, value: str, oldvalue: Any, _initiator: Any) -> None:
    if value not in ALERTING_STATUSES or value == oldvalue:
        return
    session = object_session(target)
    if session is None:
        return
    from .outbox import after_commit

    portal_id = target.id
    after_commit(session, lambda: _enqueue(portal_id, value))


def _enqueue(portal_id: int, status: str) -> None:
    from . import runtime

    rt = runtime.current()
    log.error("portal %s lost its CRM connection: %s", portal_id, status)
    if rt.settings.alert_webhook_url:
        # By name: the job module makes HTTP calls, which the domain's import graph must not reach.
        rt.queue("default").enqueue(
            "widget_server.jobs.alerts.deliver_portal_alert", portal_id, status, result_ttl=300
        )


_installed = False


def install_alert_listener() -> None:
    global _installed
    if not _installed:
        event.listen(Portal.status, "set", _on_status)
        _installed = True
