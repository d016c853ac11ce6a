"""Callers found by their other phones (the MIS's second and third numbers): marked as such, still one
statement, from an index alone; the rows follow whatever sets `other_phones`, and migration 0018 backfills
them."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, select, text

from widget_server import clock
from widget_server.callers import lookup_callers
from widget_server.db import Database
from widget_server.migrations import upgrade
from widget_server.models import MisPatient, Portal
from widget_server.models.appointments import MisPatientPhone
from widget_server.portals import create_portal

from ..reports.clinic_data import msk, scratch_url

MOBILE, WORK, HOME = "+79161234567", "+79035550011", "+74951112233"


@pytest.fixture(autouse=True)
def frozen(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(clock, "now_utc", lambda: datetime(2026, 11, 23, 9, 0, tzinfo=UTC))


def _lookup(rt, portal, phone: str) -> dict:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        return lookup_callers(s, s.get(Portal, portal.id), phone)


def test_a_patient_is_found_by_an_other_phone_and_marked(rt, portal, clinic, statements) -> None:  # type: ignore[no-untyped-def]
    anna = clinic.patient("Смирнова Анна Петровна", phone=MOBILE, other_phones=[WORK, HOME])
    boss = clinic.patient("Директор Офиса", phone=WORK)
    clinic.visit(anna, msk(2026, 12, 1, 11), status="booked", doctor_name="Иванов И.И.", card_number="A-17")
    with rt.db.transaction() as s, statements() as seen:
        found = lookup_callers(s, s.get(Portal, portal.id), "8 903 555-00-11")
    assert len(seen) <= 3
    by_id = {m["patient_id"]: m for m in found["matches"]}
    assert set(by_id) == {anna, boss}
    assert by_id[anna]["matched_phone"] == "other"
    assert by_id[boss]["matched_phone"] == "primary"
    assert by_id[anna]["next_visit"]["doctor"] == "Иванов И.И." and by_id[anna]["card_number"] == "A-17"
    assert by_id[anna]["shared_phone"] is True  # two people answer on that number
    (home,) = _lookup(rt, portal, HOME)["matches"]
    assert (home["patient_id"], home["matched_phone"]) == (anna, "other")
    (mobile,) = _lookup(rt, portal, MOBILE)["matches"]
    assert (mobile["patient_id"], mobile["matched_phone"]) == (anna, "primary")


def test_other_portals_other_phones_are_invisible(rt, portal, clinic, make_portal) -> None:  # type: ignore[no-untyped-def]
    clinic.patient("Смирнова Анна Петровна", phone=MOBILE, other_phones=[WORK])
    other = make_portal(slug="other")
    assert _lookup(rt, other, WORK)["matches"] == []


def test_the_rows_follow_other_phones(rt, portal, clinic) -> None:  # type: ignore[no-untyped-def]
    anna = clinic.patient("Смирнова Анна", phone=MOBILE, other_phones=[WORK, HOME, WORK, MOBILE])
    with rt.db.transaction() as s:
        rows = s.scalars(select(MisPatientPhone)).all()
        # Duplicates and the main number itself are not rows.
        assert sorted((r.portal_id, r.phone_e164) for r in rows) == [(portal.id, HOME), (portal.id, WORK)]
        kept = {r.phone_e164: r.id for r in rows}
        s.get(MisPatient, anna).other_phones = [WORK, "+78120001122"]
    with rt.db.transaction() as s:
        now = {r.phone_e164: r.id for r in s.scalars(select(MisPatientPhone))}
    assert set(now) == {WORK, "+78120001122"}
    assert now[WORK] == kept[WORK]  # a kept number keeps its row
    assert _lookup(rt, portal, HOME)["matches"] == []
    with rt.db.transaction() as s:
        s.delete(s.get(MisPatient, anna))
    with rt.db.transaction() as s:
        assert s.scalars(select(MisPatientPhone)).all() == []


def test_the_other_phone_arm_reads_the_index_alone(rt, portal, clinic) -> None:  # type: ignore[no-untyped-def]
    for i in range(50):
        clinic.patient(f"Пациент {i}", phone=f"+7916000{i:04d}", other_phones=[f"+7903000{i:04d}"])
    select_other = (
        "SELECT patient_id FROM mis_patient_phones WHERE portal_id = :portal AND phone_e164 = :phone"
    )
    params = {"portal": portal.id, "phone": "+79030000007"}
    with rt.db.transaction() as s:
        if rt.db.is_sqlite:
            plan = " ".join(str(r[-1]) for r in s.execute(text(f"EXPLAIN QUERY PLAN {select_other}"), params))
            # SQLite names a UNIQUE constraint's index itself (sqlite_autoindex_…).
            assert "mis_patient_phones USING COVERING INDEX" in plan and "phone_e164=?" in plan, plan
        else:
            s.execute(text("ANALYZE mis_patient_phones"))
            s.execute(text("SET LOCAL enable_seqscan = off"))  # 50 rows: a heap scan would win on cost
            s.execute(text("SET LOCAL enable_bitmapscan = off"))
            plan = " ".join(r[0] for r in s.execute(text(f"EXPLAIN {select_other}"), params))
            assert "Index Only Scan using uq_mis_patient_phones_portal_id_phone_e164_patient_id" in plan, plan


def test_migration_0018_backfills_other_phones(tmp_path, database_url) -> None:  # type: ignore[no-untyped-def]
    url = scratch_url(database_url, tmp_path, "cb_reports_phones")
    upgrade(url, "0017")
    db = Database(url)
    with db.transaction() as s:
        portal = create_portal(s, kind="sandbox", name="Клиника", timezone="Europe/Moscow", currency="RUB")
        portal_id = portal.id
    db.dispose()
    engine = create_engine(url)
    with engine.begin() as conn:
        for pid, main, others in [(1, MOBILE, [WORK, HOME, WORK]), (2, WORK, []), (3, None, [MOBILE])]:
            conn.execute(
                text(
                    "INSERT INTO mis_patients (id, portal_id, source, source_patient_id, name, name_key, "
                    "phone_e164, other_phones, flags, created_at, updated_at) VALUES (:id, :portal, 'helix', "
                    ":sid, 'П', 'п', :main, :others, '[]', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {"id": pid, "portal": portal_id, "sid": f"P{pid}", "main": main,
                 "others": json.dumps(others)},
            )
    engine.dispose()
    upgrade(url)
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT portal_id, patient_id, phone_e164 FROM mis_patient_phones")).all()
    engine.dispose()
    expected = [(portal_id, 1, HOME), (portal_id, 1, WORK), (portal_id, 3, MOBILE)]
    assert sorted(tuple(r) for r in rows) == expected
