"""What the CRM sees: contact, one deal per appointment moved along the stage map, a note per change; no
change, no job; a deleted reception closes its deal as «Удалено в МИС»; a deal a user closed stays closed."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select

from connectors.types import NewContact, StageRef
from widget_server.models import MisAppointment, MisPatient, OutboxJob

from .conftest import MSK, visit

LATER = datetime(2026, 3, 12, 11, 0, tzinfo=MSK)


def _deal_id(rt, source_id="R1") -> str:
    with rt.db.transaction() as s:
        return s.scalar(select(MisAppointment.deal_id).where(MisAppointment.source_id == source_id))


def _jobs(rt) -> int:
    with rt.db.transaction() as s:
        return s.scalar(select(func.count()).select_from(OutboxJob))


def test_booking_then_completion_moves_one_deal_with_notes(rt, crm, sync, jobs):
    sync(visit())
    jobs()
    deal_id = _deal_id(rt)
    deal = crm.get_deal(deal_id)
    assert deal.stage == StageRef("Первичный приём", "Записан на приём")
    assert len(deal.contact_ids) == 1
    sync(visit(status="completed", changed_at=LATER))
    jobs()
    assert _deal_id(rt) == deal_id
    assert crm.get_deal(deal_id).stage == StageRef("Первичный приём", "Посетил клинику")
    assert crm.notes_for(deal_id) == [
        "Запись 12.03.2026 10:00, Смирнов И. П. (терапия): Записан на приём",
        "Запись 12.03.2026 10:00, Смирнов И. П. (терапия): Посетил клинику",
    ]


def test_the_same_data_twice_queues_nothing_and_calls_nothing(rt, crm, sync, jobs):
    sync(visit())
    jobs()
    before = _jobs(rt)
    result = sync(visit())
    assert result.counts == {"unchanged": 1} and result.jobs == 0
    assert jobs() == 0
    assert _jobs(rt) == before


def test_an_existing_contact_with_phone_and_name_is_used(rt, crm, sync, jobs):
    existing = crm.create_contact(NewContact("Смирнова Анна", phones=("+79161234567",)), idempotency_key="c1")
    sync(visit())
    jobs()
    assert crm.get_deal(_deal_id(rt)).contact_ids == (existing.id,)
    with rt.db.transaction() as s:
        assert s.scalar(select(MisPatient.contact_id)) == existing.id


def test_a_cancellation_closes_as_lost_with_the_reason(rt, crm, sync, jobs):
    sync(visit())
    jobs()
    sync(visit(status="cancelled", changed_at=LATER))
    jobs()
    deal_id = _deal_id(rt)
    assert crm.get_deal(deal_id).stage == StageRef("Первичный приём", "lost")
    assert crm.loss_reason_for(deal_id) == "Отменил запись"


def test_a_deleted_reception_becomes_void_with_its_note(rt, crm, sync, jobs):
    from connectors.types import AppointmentBatch

    sync(visit())
    jobs()
    day = visit().starts_at.date()
    result = sync(batch=AppointmentBatch((), (), None, (day, day)))
    assert result.counts == {"void": 1}
    jobs()
    deal_id = _deal_id(rt)
    assert crm.get_deal(deal_id).stage.stage_id == "lost"
    assert crm.loss_reason_for(deal_id) == "Удалено в МИС"
    assert crm.notes_for(deal_id)[-1].endswith(": Удалено в МИС")


def test_a_deal_a_user_closed_is_never_reopened(rt, crm, sync, jobs):
    sync(visit())
    jobs()
    deal_id = _deal_id(rt)
    crm.move_deal(deal_id, StageRef("Первичный приём", "lost"), loss_reason="Передумал")
    sync(visit(status="completed", changed_at=LATER + timedelta(hours=1)))
    jobs()
    assert crm.get_deal(deal_id).stage == StageRef("Первичный приём", "lost")
    assert crm.notes_for(deal_id)[-1].endswith(": Посетил клинику")


def test_invalid_phone_is_flagged_on_the_deal(rt, crm, sync, jobs):
    sync(visit(patient_phone="+7 (888) 888-88-88"))
    jobs()
    notes = crm.notes_for(_deal_id(rt))
    assert "Телефон пациента в МИС недействителен: +7 (888) 888-88-88" in notes


def test_a_visit_back_in_an_earlier_state_is_mirrored_again(rt, crm, sync, jobs):
    sync(visit())
    jobs()
    sync(visit(status="cancelled", changed_at=LATER))
    jobs()
    sync(visit(changed_at=LATER + timedelta(hours=1), comment="снова записан"))
    sync(visit(changed_at=LATER + timedelta(hours=2)))  # booked exactly as at first
    jobs()
    deal_id = _deal_id(rt)
    assert crm.get_deal(deal_id).stage == StageRef("Первичный приём", "Записан на приём")
    assert [n.rsplit(": ", 1)[1] for n in crm.notes_for(deal_id)] == [
        "Записан на приём",
        "Отменил запись",
        "Записан на приём",
    ]


def test_a_rescheduled_visit_keeps_the_deal_whatever_arrives_first(rt, crm, sync, jobs):
    sync(visit())
    jobs()
    deal_id = _deal_id(rt)
    # IDENT cancels the reception and creates one at the new time that names it; the cancellation comes first.
    sync(visit(status="cancelled", changed_at=LATER))
    jobs()
    assert crm.get_deal(deal_id).stage.stage_id == "lost"  # as far as we knew, the patient cancelled
    moved_to = datetime(2026, 3, 19, 12, 0, tzinfo=MSK)
    ends = moved_to + timedelta(minutes=45)
    later = LATER + timedelta(minutes=1)
    result = sync(visit("R2", starts_at=moved_to, ends_at=ends, rescheduled_from="R1", changed_at=later))
    jobs()
    assert _deal_id(rt, "R2") == deal_id
    assert crm.get_deal(deal_id).stage == StageRef("Первичный приём", "Записан на приём")
    assert crm.notes_for(deal_id)[-1] == "Запись 19.03.2026 12:00, Смирнов И. П. (терапия): Записан на приём"
    with rt.db.transaction() as s:
        assert s.scalar(select(MisAppointment.target).where(MisAppointment.source_id == "R1")) is None
    assert result.counts["created"] == 1


def test_a_reschedule_in_one_batch_with_its_cancellation_moves_nothing_back(rt, crm, sync, jobs):
    sync(visit())
    jobs()
    deal_id = _deal_id(rt)
    moved_to = datetime(2026, 3, 19, 12, 0, tzinfo=MSK)
    sync(
        visit(status="cancelled", changed_at=LATER),
        visit("R2", starts_at=moved_to, ends_at=moved_to + timedelta(minutes=45), rescheduled_from="R1",
              changed_at=LATER),
    )  # fmt: skip
    jobs()
    assert _deal_id(rt, "R2") == deal_id
    assert crm.get_deal(deal_id).stage == StageRef("Первичный приём", "Записан на приём")
    assert crm.loss_reason_for(deal_id) is None
    visits = [n.split(",")[0] for n in crm.notes_for(deal_id)]
    assert visits == ["Запись 12.03.2026 10:00", "Запись 19.03.2026 12:00"]
    with rt.db.transaction() as s:
        deals = s.scalar(select(func.count(func.distinct(MisAppointment.deal_id))))
    assert deals == 1
