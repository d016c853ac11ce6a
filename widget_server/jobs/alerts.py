"""Deliver a portal's connection-loss alert to ALERT_WEBHOOK_URL (queued by `widget_server.alerts`)."""

from __future__ import annotations

from typing import Any

import requests
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from .. import runtime
from ..attention import portal_attention
from ..models import Portal
from .joblog import logged_job

__all__ = ["deliver_portal_alert"]


@retry(
    retry=retry_if_exception_type(requests.RequestException),
    stop=stop_after_attempt(4),
    wait=wait_exponential_jitter(initial=1, max=30),
    reraise=True,
)
def _post(url: str, body: dict[str, Any]) -> None:
    response = requests.post(url, json=body, timeout=10)
    response.raise_for_status()


@logged_job("deliver_portal_alert")
def deliver_portal_alert(portal_id: int, status: str) -> str:
    """POST the alert; skipped if the portal recovered before the job ran (the alert would be stale)."""
    rt = runtime.current()
    url = rt.settings.alert_webhook_url
    if not url:
        return "no ALERT_WEBHOOK_URL"
    with rt.db.transaction() as session:
        portal = session.get(Portal, portal_id)
        if portal is None or portal.status != status:
            return "recovered before delivery"
        # The same words and action the admin sees in the panel's banner.
        notices = portal_attention(session, portal, rt.settings.public_base_url)
        [item] = [notice for notice in notices if notice.code == status]
        body = {
            "event": "portal.connection_lost",
            "portal": {"id": portal.id, "slug": portal.slug, "kind": portal.kind, "domain": portal.domain},
            "status": status,
            "text": f"ClinicBridge — {portal.name or portal.slug}: {item.message_ru} / {item.message_en}",
            "action": item.action,
            "reason": (portal.settings or {}).get("reauth_reason"),
        }
    _post(url, body)
    return "delivered"
