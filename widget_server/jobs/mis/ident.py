"""The IDENT database: incremental poll and daily reconciliation."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from connectors.mis_ident.readers import IdentDbReader
from connectors.types import OAuthToken

from ... import runtime
from ...appointments.settings import mis_settings
from ...appointments.sync import ingest, start_run
from ...clock import local_today, now_utc
from ...models import Portal
from ..joblog import logged_job

__all__ = [
    "ident_reader",
    "poll_ident_databases",
    "reconcile_ident_databases",
    "reconcile_ident_portal",
    "set_ident_dsn",
    "sync_ident_portal",
]


IDENT_SOURCE = "ident_db"
BACKFILL = timedelta(days=731)
"""24 months of receptions on the first read: the completed-visit history primary vs repeat needs."""
RECONCILE_BACK = timedelta(days=30)
RECONCILE_AHEAD = timedelta(days=90)


def ident_connect(dsn: str) -> Any:
    """A read-only pyodbc connection (extra `ident-db`); imported here so the app runs without it."""
    import pyodbc  # type: ignore[import-not-found]

    return pyodbc.connect(dsn, readonly=True, timeout=30)


def set_ident_dsn(portal: Portal, dsn: str | None) -> None:
    """Store the clinic's ODBC connection string encrypted (it carries the SQL login's password). The first
    connection also sets `mirror_from` to today: the backfill's past visits are history for primary vs
    repeat, not deals to create."""
    settings = dict(portal.settings or {})
    mis = dict(settings.get("mis") or {})
    if dsn:
        token = OAuthToken(access_token=dsn, refresh_token=None, expires_at=None)
        mis["ident_db"] = {"dsn_ciphertext": runtime.current().cipher.encrypt_token(token)}
        mis.setdefault("mirror_from", local_today(portal.timezone).isoformat())
    else:
        mis.pop("ident_db", None)
    settings["mis"] = mis
    portal.settings = settings


def ident_reader(portal: Portal) -> IdentDbReader | None:
    mis = (portal.settings or {}).get("mis") or {}
    ciphertext = (mis.get("ident_db") or {}).get("dsn_ciphertext")
    if not ciphertext:
        return None
    dsn = runtime.current().cipher.decrypt_token(ciphertext).access_token
    return IdentDbReader(
        lambda: ident_connect(dsn),
        tz=ZoneInfo(portal.timezone),
        no_show_reasons=mis_settings(portal.settings).no_show_reasons,
        backfill_from=local_today(portal.timezone) - BACKFILL,
    )


def _ident_portals() -> list[int]:
    with runtime.current().db.transaction() as s:
        return [
            p.id
            for p in s.scalars(select(Portal).where(Portal.status == "active").order_by(Portal.id))
            if ((p.settings or {}).get("mis") or {}).get("ident_db")
        ]


def sync_ident_portal(portal_id: int) -> dict[str, int]:
    """Receptions changed since the cursor (re-read from five minutes before it) into the sync engine."""
    db = runtime.current().db
    with db.transaction() as s:
        portal = s.get(Portal, portal_id)
        if portal is None:
            return {}
        reader = ident_reader(portal)
        cursor = ((portal.settings or {}).get("mis") or {}).get("ident_cursor")
    if reader is None:
        return {}
    batch = reader.fetch(cursor)
    with db.transaction() as s:
        portal = s.get(Portal, portal_id)
        assert portal is not None
        run = start_run(s, portal, IDENT_SOURCE)
        result = ingest(s, portal, run, batch)
        run.state, run.finished_at = "done", now_utc()
        if batch.next_cursor and batch.next_cursor != cursor:
            settings = dict(portal.settings)
            settings["mis"] = {**settings.get("mis", {}), "ident_cursor": batch.next_cursor}
            portal.settings = settings
    return dict(result.counts)


@logged_job("poll_ident_databases")
def poll_ident_databases() -> str:
    totals: dict[str, int] = {}
    for portal_id in _ident_portals():
        for key, value in sync_ident_portal(portal_id).items():
            totals[key] = totals.get(key, 0) + value
    return " ".join(f"{k} {v}" for k, v in sorted(totals.items())) or "nothing"


def reconcile_ident_portal(portal_id: int, today: date) -> dict[str, Any]:
    """The whole window −30…+90 days re-read: what changed is applied, what is gone becomes `void`."""
    db = runtime.current().db
    with db.transaction() as s:
        portal = s.get(Portal, portal_id)
        reader = ident_reader(portal) if portal is not None else None
    if reader is None:
        return {"skipped": "no IDENT database"}
    batch = reader.fetch_window(today - RECONCILE_BACK, today + RECONCILE_AHEAD)
    with db.transaction() as s:
        portal = s.get(Portal, portal_id)
        assert portal is not None
        run = start_run(s, portal, IDENT_SOURCE, period=batch.period)
        result = ingest(s, portal, run, batch)
        run.state, run.finished_at = "done", now_utc()
    return {"counts": dict(result.counts), "day": today.isoformat()}


def _reconcile_if_configured(portal_id: int, day: date) -> dict[str, Any]:
    return reconcile_ident_portal(portal_id, day)


@logged_job("reconcile_ident_databases")
def reconcile_ident_databases() -> str:
    from ..periodic import run_once_per_portal_day  # periodic → inbox → this module (intake reaction)

    counts = run_once_per_portal_day("reconcile_ident_databases", _reconcile_if_configured)
    return f"done {counts['done']} skipped {counts['skipped']}"
