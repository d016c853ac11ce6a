"""Visits and patients written the way the MIS sync stores them; shared by the reports, payroll and
caller tests."""

from __future__ import annotations

import itertools
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import create_engine, text

from connectors.types import Appointment
from widget_server.appointments.sync import appointment_doc, content_hash
from widget_server.models import MisAppointment, MisPatient, Portal

MSK = ZoneInfo("Europe/Moscow")
_ids = itertools.count(1)


class Clinic:
    """Writes MIS patients and visits the way the sync stores them (the doc is the sync's own)."""

    def __init__(self, rt, portal: Portal) -> None:  # type: ignore[no-untyped-def]
        self.rt = rt
        self.portal = portal

    def patient(self, name: str, phone: str | None = "+79161234567", **extra: object) -> int:
        with self.rt.db.transaction() as s:
            row = MisPatient(
                portal_id=self.portal.id, source="helix", source_patient_id=f"P{next(_ids)}", name=name,
                name_key=name.lower(), phone_raw=phone, phone_e164=phone, **extra,
            )  # fmt: skip
            s.add(row)
            s.flush()
            return row.id

    def visit(self, patient_id: int, at: datetime, status: str = "completed", **fields: object) -> int:
        source_id = f"V{next(_ids)}"
        deal_id = fields.pop("deal_id", None)
        appointment = Appointment(
            source="helix", source_id=source_id, status=status, starts_at=at, ends_at=None,
            patient_id=str(patient_id), patient_name="", patient_phone=None, **fields,  # type: ignore[arg-type]
        )  # fmt: skip
        with self.rt.db.transaction() as s:
            row = MisAppointment(
                portal_id=self.portal.id, source="helix", source_id=source_id, patient_id=patient_id,
                status=status, starts_at=at, ends_at=None, content_hash=content_hash(appointment),
                doc=appointment_doc(appointment), kind="primary", deal_id=deal_id,
            )  # fmt: skip
            s.add(row)
            s.flush()
            return row.id


def msk(*args: int) -> datetime:
    return datetime(*args, tzinfo=MSK)  # type: ignore[misc]


def scratch_url(database_url: str, tmp_path: Path, name: str) -> str:
    """An empty database of its own beside the test one, for a test that migrates step by step: a file on
    SQLite, a fresh database on the same PostgreSQL server."""
    if database_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / f'{name}.sqlite3'}"
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return database_url.rsplit("/", 1)[0] + f"/{name}"
