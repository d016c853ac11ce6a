"""Migration 0015 copies the visits' document fields into their columns, as the model does on every write."""

from __future__ import annotations

import json

from sqlalchemy import create_engine, text

from connectors.types import Appointment
from widget_server.appointments.sync import appointment_doc
from widget_server.db import Database
from widget_server.migrations import upgrade
from widget_server.models import MisAppointment, MisPatient, doc_columns
from widget_server.portals import create_portal

from .clinic_data import msk, scratch_url


def _doc(**fields: object) -> dict:
    return appointment_doc(Appointment(
        source="helix", source_id="V1", status="completed", starts_at=msk(2026, 3, 12, 10), ends_at=None,
        patient_id="1", patient_name="", patient_phone=None, **fields,  # type: ignore[arg-type]
    ))  # fmt: skip


def test_existing_visits_are_backfilled(tmp_path, database_url) -> None:  # type: ignore[no-untyped-def]
    url = scratch_url(database_url, tmp_path, "cb_reports_backfill")
    upgrade(url, "0014")
    docs = {
        1: _doc(doctor_name=" Иванов И.И. ", specialty="терапия", branch="Центр", card_number="A-17",
                booked_by="Оператор", waiting_list=True, channel="сайт"),
        2: _doc(specialty="   ", channel=None),
    }  # fmt: skip
    db = Database(url)
    with db.transaction() as s:
        # Portals and patients are as 0014 left them; only the visits' table changes in 0015.
        portal = create_portal(s, kind="sandbox", name="Клиника", timezone="Europe/Moscow", currency="RUB")
        patient = MisPatient(
            portal_id=portal.id, source="helix", source_patient_id="P1", name="А", name_key="а"
        )
        s.add(patient)
        s.flush()
        ids = {"portal": portal.id, "patient": patient.id}
    db.dispose()
    engine = create_engine(url)
    with engine.begin() as conn:
        for vid, doc in docs.items():
            conn.execute(
                text(
                    "INSERT INTO mis_appointments (id, portal_id, source, source_id, patient_id, status, "
                    "starts_at, content_hash, doc, kind, flags, created_at, updated_at) VALUES (:id, "
                    ":portal, 'helix', :sid, :patient, 'completed', CURRENT_TIMESTAMP, 'h', :doc, 'primary', "
                    "'[]', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {"id": vid, "sid": f"V{vid}", "doc": json.dumps(doc, ensure_ascii=False), **ids},
            )
    engine.dispose()
    upgrade(url)
    engine = create_engine(url)
    names = [*doc_columns({}).keys()]
    with engine.connect() as conn:
        rows = {
            row[0]: dict(zip(names, row[1:], strict=True))
            for row in conn.execute(text(f"SELECT id, {', '.join(names)} FROM mis_appointments"))
        }
    engine.dispose()
    for vid, doc in docs.items():
        expected = doc_columns(doc)
        assert {k: (bool(v) if k == "waiting_list" else v) for k, v in rows[vid].items()} == expected
    assert rows[1]["doctor_name"] == "Иванов И.И." and rows[2]["specialty"] is None


def test_the_model_fills_the_columns_whenever_the_document_is_set(rt, portal, clinic) -> None:  # type: ignore[no-untyped-def]
    patient = clinic.patient("Смирнова Анна")
    vid = clinic.visit(patient, msk(2026, 3, 12, 10), specialty=" хирургия ", waiting_list=True)
    with rt.db.transaction() as s:
        row = s.get(MisAppointment, vid)
        assert (row.specialty, row.waiting_list, row.doctor_name) == ("хирургия", True, None)
        row.doc = _doc(doctor_name="Петров")
    with rt.db.transaction() as s:
        row = s.get(MisAppointment, vid)
        assert (row.specialty, row.waiting_list, row.doctor_name) == (None, False, "Петров")
