"""The mirror in the CRM's batches: an import's notes go through the outbox's note batches (50 per request
where the CRM takes them, as amoCRM does), a patient's contact is looked up and created once, and a change
that keeps the stage costs no deal read and no move."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from connectors.types import NewNote, NoteRef
from widget_server.jobs import mirror
from widget_server.models import MisAppointment, OutboxJob

from .conftest import MSK, visit

LATER = datetime(2026, 3, 12, 11, 0, tzinfo=MSK)


class BatchingCrm:
    """The sandbox with amoCRM's note batch (`NoteBatching`); every call counted by verb."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: Counter[str] = Counter()
        self.note_batches: list[int] = []

    def add_notes(self, notes: Sequence[NewNote]) -> list[NoteRef]:
        self.calls["add_notes"] += 1
        self.note_batches.append(len(notes))
        return [self._inner.add_note(n.deal_id, n.text, idempotency_key=n.idempotency_key) for n in notes]

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return target(*args, **kwargs)

        return call


@pytest.fixture
def counted(crm, monkeypatch) -> BatchingCrm:
    wrapped = BatchingCrm(crm)
    monkeypatch.setattr(mirror, "crm_for", lambda portal, rt=None: wrapped)
    return wrapped


def _patient(i: int, **changes: Any):
    return visit(
        f"R{i}",
        patient_id=f"P{i}",
        patient_name=f"Пациентов{i} Иван",
        patient_phone=f"+7 916 200-{i // 100:02d}-{i % 100:02d}",
        **changes,
    )


def test_an_imports_notes_go_fifty_per_request(rt, crm, counted, sync, jobs):
    result = sync(*(_patient(i) for i in range(60)))
    assert result.jobs == 60
    jobs()
    assert counted.note_batches == [50, 10]
    assert counted.calls["add_note"] == 0
    # Per visit: the patient's contact looked up and created, the deal created; notes in two requests.
    assert counted.calls == {
        "find_contacts_by_phone": 60,
        "create_contact": 60,
        "create_deal": 60,
        "add_notes": 2,
    }
    with rt.db.transaction() as s:
        deals = list(s.scalars(select(MisAppointment.deal_id).order_by(MisAppointment.id)))
        assert s.scalar(select(func.count()).where(OutboxJob.state != "done")) == 0
    booked = "Запись 12.03.2026 10:00, Смирнов И. П. (терапия): Записан на приём"
    assert all(crm.notes_for(deal) == [booked] for deal in deals)


def test_a_patients_contact_is_looked_up_and_created_once(rt, crm, counted, sync, jobs):
    sync(*(visit(f"R{i}", starts_at=LATER + timedelta(days=i)) for i in range(3)))
    jobs()
    assert counted.calls["find_contacts_by_phone"] == 1
    assert counted.calls["create_contact"] == 1
    assert counted.calls["create_deal"] == 3
    with rt.db.transaction() as s:
        deals = list(s.scalars(select(MisAppointment.deal_id)))
    assert len({crm.get_deal(d).contact_ids for d in deals}) == 1


def test_a_change_that_keeps_the_stage_is_a_note_only(rt, crm, counted, sync, jobs):
    sync(visit(patient_phone="+7 (888) 888-88-88"))
    jobs()
    counted.calls.clear()
    sync(visit(status="confirmed", patient_phone="+7 (888) 888-88-88", changed_at=LATER))
    jobs()
    assert counted.calls == {"add_note": 1}  # one note: one request, no read, no move
    with rt.db.transaction() as s:
        deal_id = s.scalar(select(MisAppointment.deal_id))
    notes = crm.notes_for(deal_id)
    assert notes[-1].endswith(": Подтвердил запись")
    # The invalid number is flagged once per visit, not once per change.
    assert sum(n.startswith("Телефон пациента в МИС недействителен") for n in notes) == 1


def test_notes_left_by_a_crashed_worker_go_with_the_sweep(rt, crm, counted, sync, jobs, monkeypatch):
    from widget_server.jobs.mis import appointment_mirror
    from widget_server.jobs.periodic import sweep_outbox

    monkeypatch.setattr(appointment_mirror, "send_waiting_feed", lambda portal_id: "crashed")
    sync(*(_patient(i) for i in range(3)))
    jobs()
    assert counted.calls["add_notes"] == 0
    with rt.db.transaction() as s:
        assert s.scalar(select(func.count()).where(OutboxJob.operation == "add_note")) == 3
    sweep_outbox()
    jobs()
    assert counted.note_batches == [3]


FIELD_MAP = {"visit_at": "901", "visit_date": "902", "doctor": "903", "status": "904", "amount": "905"}


@pytest.fixture
def mapped(rt, clinic):
    from widget_server.models import Portal

    with rt.db.transaction() as s:
        row = s.get(Portal, clinic.id)
        row.settings = {**row.settings, "mis": {**row.settings["mis"], "field_map": FIELD_MAP}}


def test_mapped_fields_go_with_the_new_deal_then_in_one_batch_per_fifty(rt, crm, counted, mapped, sync, jobs):
    from datetime import date

    sync(*(_patient(i, amount_minor=150000) for i in range(3)))
    jobs()
    assert counted.calls["update_deals"] == 0 and counted.calls["update_deal_fields"] == 0  # in the create
    with rt.db.transaction() as s:
        deals = list(s.scalars(select(MisAppointment.deal_id).order_by(MisAppointment.id)))
    assert crm.get_deal(deals[0]).fields == {
        "901": "12.03.2026 10:00",
        "902": date(2026, 3, 12),
        "903": "Смирнов И. П.",
        "904": "Записан на приём",
        "905": "1500.00",
    }
    counted.calls.clear()
    sync(*(_patient(i, amount_minor=150000, status="completed", changed_at=LATER) for i in range(3)))
    jobs()
    assert counted.calls["update_deals"] == 1 and counted.calls["update_deal_fields"] == 0
    assert all(crm.get_deal(d).fields["904"] == "Посетил клинику" for d in deals)


def test_a_field_map_is_checked_and_kept(rt, make_api, clinic):
    admin = make_api(clinic, "admin")
    bad = admin.put("/api/v1/mis/settings", json={"field_map": {"doctor_phone": "1"}})
    assert bad.status_code == 422 and "field_map.doctor_phone" in bad.get_json()["error"]["fields"]
    empty = admin.put("/api/v1/mis/settings", json={"field_map": {"doctor": " "}})
    assert empty.status_code == 422 and "field_map.doctor" in empty.get_json()["error"]["fields"]
    ok = admin.put("/api/v1/mis/settings", json={"field_map": {"doctor": 903, "visit_at": "901"}})
    assert ok.status_code == 200
    assert ok.get_json()["settings"]["field_map"] == {"doctor": "903", "visit_at": "901"}
