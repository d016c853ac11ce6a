"""Not losing Bitrix24 events: the offline queue drain and the reconciliation sweep (research §4).

Online events are at-most-once. Every deal change is also queued offline on the portal (one record per
deal, our own writes skipped through `auth_connector`), and a drain moves it into our inbox: read with
`clear=0` (a reservation under a `process_id`), store each record under its `MESSAGE_ID`, then
`event.offline.clear` what was stored and `event.offline.error` what was not. Without the
`rest_offline_extended` feature only `clear=1` exists, so the reconciliation, which lists the deals
changed since its watermark minus an overlap, is what catches a lost event there.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select

from .bitrix24_client import b24_settings, build_client
from .inbox import receive_event
from .models import Portal, utcnow
from .runtime import Runtime

__all__ = ["RECONCILE_OVERLAP", "drain_offline", "reconcile", "usable_portals"]

log = logging.getLogger(__name__)

RECONCILE_OVERLAP = timedelta(minutes=5)
"""Deals changed this long before the watermark are listed again: clocks and slow commits differ."""
OFFLINE_LIMIT = 50


def usable_portals(rt: Runtime) -> list[int]:
    with rt.db.transaction() as session:
        return list(
            session.scalars(
                select(Portal.id).where(
                    Portal.kind == "bitrix24", Portal.status == "active", Portal.token_ciphertext.is_not(None)
                )
            )
        )


def _detached(rt: Runtime, portal_id: int) -> Portal:
    with rt.db.transaction() as session:
        portal = session.get(Portal, portal_id)
        assert portal is not None
        session.expunge(portal)
    return portal


def _store(rt: Runtime, portal_id: int, key: str, body: dict[str, Any], event_type: str) -> bool:
    with rt.db.transaction() as session:
        _, created = receive_event(
            session,
            portal_id=portal_id,
            source="bitrix24",
            dedupe_key=key,
            raw_body=urlencode(body),
            content_type="application/x-www-form-urlencoded",
            event_type=event_type,
        )
    return created


def drain_offline(rt: Runtime, portal_id: int, *, max_rounds: int = 20) -> dict[str, int]:
    portal = _detached(rt, portal_id)
    extended = bool(b24_settings(portal).get("offline_extended"))
    transport = build_client(portal, rt).transport
    stored = duplicates = failed = 0
    for _ in range(max_rounds):
        result = transport.call("event.offline.get", {"clear": 0 if extended else 1, "limit": OFFLINE_LIMIT})
        body = result.get("result") or {}
        events = body.get("events") or []
        done, errors = [], []
        for message in events:
            data = message.get("EVENT_DATA") or {}
            fields = data.get("FIELDS") or {}
            form = {
                "event": str(message.get("EVENT_NAME", "")).upper(),
                "data[FIELDS][ID]": str(fields.get("ID", "")),
                "message_id": str(message.get("MESSAGE_ID", "")),
                "offline": "1",
            }
            for key in ("CATEGORY_ID", "STAGE_ID"):
                if fields.get(key) not in (None, ""):
                    form[f"data[FIELDS][{key}]"] = str(fields[key])
            try:
                created = _store(rt, portal_id, f"offline:{form['message_id']}", form, form["event"])
            except Exception:
                log.exception("portal %s: offline message %s not stored", portal_id, form["message_id"])
                errors.append(form["message_id"])
                failed += 1
                continue
            stored += created
            duplicates += not created
            done.append(form["message_id"])
        process_id = body.get("process_id")
        if extended and process_id:
            if done:
                transport.call("event.offline.clear", {"process_id": process_id, "message_id": done})
            if errors:
                transport.call("event.offline.error", {"process_id": process_id, "message_id": errors})
        if len(events) < OFFLINE_LIMIT:
            break
    return {"stored": stored, "duplicates": duplicates, "failed": failed}


def reconcile(rt: Runtime, portal_id: int, *, now: datetime | None = None) -> dict[str, int]:
    """Every deal changed since the watermark (minus the overlap) goes to the inbox as an update."""
    portal = _detached(rt, portal_id)
    started = now or utcnow()
    watermark = b24_settings(portal).get("reconciled_at")
    since = (
        datetime.fromisoformat(watermark) - RECONCILE_OVERLAP if watermark else started - timedelta(days=1)
    )
    transport = build_client(portal, rt).transport
    params = {
        "entityTypeId": 2,
        "select": ["id", "updatedTime"],
        "filter": {">=updatedTime": since.isoformat()},
    }
    seen = stored = 0
    for item in transport.export("crm.item.list", params, lambda r: (r or {}).get("items") or []):
        seen += 1
        key = f"reconcile:{item['id']}:{item.get('updatedTime')}"
        form = {"event": "ONCRMDEALUPDATE", "data[FIELDS][ID]": str(item["id"]), "reconciled": "1"}
        stored += _store(rt, portal_id, key, form, "ONCRMDEALUPDATE")
    with rt.db.transaction() as session:
        row = session.get(Portal, portal_id)
        assert row is not None
        settings = dict(row.settings or {})
        settings["bitrix24"] = {**(settings.get("bitrix24") or {}), "reconciled_at": started.isoformat()}
        row.settings = settings
    return {"seen": seen, "stored": stored}
