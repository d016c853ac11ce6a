"""IDENT's database read by the scheduler: changes since the cursor, and the daily window that voids a
deleted reception. SQLite stands in for SQL Server: the reader's queries run unchanged on a `cb_receptions`
table."""

from __future__ import annotations

import json
import sqlite3
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select

import widget_server.jobs.mis.ident as mis_jobs
from connectors.mis_ident.rows import COLUMNS
from widget_server.models import MisAppointment, Portal

FIXTURES = Path(__file__).parent.parent / "fixtures" / "ident"
ROWS = json.loads((FIXTURES / "receptions.json").read_text(encoding="utf-8"))


class _Shared:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def cursor(self):
        return self.conn.cursor()

    def close(self) -> None:
        pass


@pytest.fixture
def ident_db(rt, clinic, monkeypatch):
    conn = sqlite3.connect(":memory:")
    conn.execute(f"CREATE TABLE cb_receptions ({', '.join(COLUMNS)})")
    conn.executemany(
        f"INSERT INTO cb_receptions VALUES ({', '.join('?' for _ in COLUMNS)})",
        [[r[c] for c in COLUMNS] for r in ROWS],
    )
    seen: list[str] = []
    monkeypatch.setattr(mis_jobs, "ident_connect", lambda dsn: seen.append(dsn) or _Shared(conn))
    with rt.db.transaction() as s:
        portal = s.get(Portal, clinic.id)
        mis_jobs.set_ident_dsn(portal, "DRIVER={ODBC Driver 18};SERVER=ident;UID=cb;PWD=secret")
        # The fixture's receptions are of March 2026: the clinic went live before them.
        portal.settings = {**portal.settings, "mis": {**portal.settings["mis"], "mirror_from": "2026-03-01"}}
    return conn, seen


def _statuses(rt) -> dict[str, str]:
    with rt.db.transaction() as s:
        return dict(s.execute(select(MisAppointment.source_id, MisAppointment.status)).all())


def test_the_dsn_is_stored_encrypted(rt, clinic, ident_db):
    with rt.db.transaction() as s:
        assert "PWD=secret" not in json.dumps(s.get(Portal, clinic.id).settings)
    mis_jobs.poll_ident_databases()
    assert ident_db[1][0].endswith("PWD=secret")


def test_poll_reads_changes_since_the_cursor(rt, clinic, ident_db):
    conn, _ = ident_db
    assert "created 5" in mis_jobs.poll_ident_databases()
    assert _statuses(rt)["90001"] == "booked"
    conn.execute(
        "UPDATE cb_receptions SET ReceptionEnded = '2026-03-12 10:44:00', "
        "DateTimeChanged = '2026-03-12 17:00:00', RowVersion = '2001' WHERE ID = 90001"
    )
    result = mis_jobs.poll_ident_databases()
    # The five-minute overlap re-reads 90005 (16:03) beside the change: unchanged, no job.
    assert result == "unchanged 1 updated 1"
    assert _statuses(rt)["90001"] == "completed"


def test_a_reception_deleted_in_ident_becomes_void_at_reconciliation(rt, crm, clinic, ident_db, jobs):
    conn, _ = ident_db
    mis_jobs.poll_ident_databases()
    jobs()
    # 90002, not 90001: 90001 was moved to 90005, whose deal must not close with the old reception.
    conn.execute("DELETE FROM cb_receptions WHERE ID = 90002")
    detail = mis_jobs.reconcile_ident_portal(clinic.id, date(2026, 3, 12))
    assert detail["counts"]["void"] == 1
    assert _statuses(rt)["90002"] == "void"
    jobs()
    with rt.db.transaction() as s:
        deal_id = s.scalar(select(MisAppointment.deal_id).where(MisAppointment.source_id == "90002"))
    assert crm.loss_reason_for(deal_id) == "Удалено в МИС"
    assert crm.notes_for(deal_id)[-1].endswith(": Удалено в МИС")


def test_the_first_read_backfills_24_months_as_history_without_deals(rt, clinic, ident_db, jobs):
    from datetime import timedelta

    from widget_server.clock import local_today

    conn, _ = ident_db
    today = local_today(clinic.timezone)
    with rt.db.transaction() as s:
        portal = s.get(Portal, clinic.id)
        mis = {k: v for k, v in portal.settings["mis"].items() if k != "mirror_from"}
        portal.settings = {**portal.settings, "mis": mis}
        mis_jobs.set_ident_dsn(portal, "DRIVER={ODBC Driver 18};SERVER=ident;UID=cb;PWD=secret")
        assert portal.settings["mis"]["mirror_from"] == today.isoformat()  # set on the first connection
    old, ancient = today - timedelta(days=400), today - timedelta(days=800)
    found = conn.execute("SELECT * FROM cb_receptions WHERE ID = 90002").fetchone()
    template = dict(zip(COLUMNS, found, strict=True))
    insert = f"INSERT INTO cb_receptions VALUES ({', '.join('?' for _ in COLUMNS)})"
    for reception_id, day in ((91001, old), (91002, ancient), (91003, today + timedelta(days=3))):
        row = {**template, "ID": reception_id, "PlanStart": f"{day} 10:00:00", "PlanEnd": f"{day} 10:30:00",
               "DateTimeChanged": f"{min(day, today)} 09:00:00"}  # fmt: skip
        conn.execute(insert, [row[c] for c in COLUMNS])
    mis_jobs.poll_ident_databases()
    statuses = _statuses(rt)
    assert "91001" in statuses and "91003" in statuses
    assert "91002" not in statuses  # older than 24 months: not read at all
    jobs()
    with rt.db.transaction() as s:
        deals = dict(s.execute(select(MisAppointment.source_id, MisAppointment.deal_id)).all())
    assert deals["91003"] is not None  # the coming visit becomes a deal
    assert deals["91001"] is None and deals["90001"] is None  # history counts for primary vs repeat only
