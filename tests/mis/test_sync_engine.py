"""The sync engine: upsert order, patient matching, primary vs repeat, stage targets and outbox jobs."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from widget_server.models import MisAppointment, MisPatient, MisSyncRecord, OutboxJob

from .conftest import MSK, visit


def _row(rt, source_id="R1") -> MisAppointment:
    with rt.db.transaction() as s:
        row = s.scalar(select(MisAppointment).where(MisAppointment.source_id == source_id))
        s.expunge(row)
        return row


def _count(rt, model) -> int:
    with rt.db.transaction() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_newer_applies_older_is_stale_same_is_unchanged(rt, sync):
    booked = visit()
    done = visit(status="completed", changed_at=booked.changed_at + timedelta(days=7))
    assert sync(booked).counts == {"created": 1}
    assert sync(done).counts == {"updated": 1}
    assert sync(booked).counts == {"stale": 1}
    assert sync(done).counts == {"unchanged": 1}
    # Same content restamped by the MIS is still the same visit.
    assert sync(dataclasses.replace(done, changed_at=done.changed_at + timedelta(hours=1))).counts == {
        "unchanged": 1
    }
    row = _row(rt)
    assert row.status == "completed"
    assert row.target == {"pipeline_id": "Первичный приём", "stage_id": "Посетил клинику"}


def test_version_breaks_a_changed_at_tie(rt, sync):
    a = visit(version="7", status="arrived")
    b = visit(version="12", status="completed")
    sync(b)
    assert sync(a).counts == {"stale": 1}
    assert _row(rt).status == "completed"


STATUSES = ("booked", "confirmed", "arrived", "completed", "cancelled", "no_show")
versions = st.lists(
    st.tuples(st.sampled_from(("R1", "R2")), st.integers(0, 2), st.integers(0, 2), st.sampled_from(STATUSES)),
    min_size=1,
    max_size=8,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(versions=versions, order=st.randoms(use_true_random=False), batch_size=st.integers(1, 3))
def test_any_arrival_order_ends_in_one_state_and_stage(rt, make_portal, versions, order, batch_size):
    """Versions of two visits of one patient (R1 a month before R2), in any order and any batching: every
    visit ends in one status, one kind (R2 is a repeat exactly when R1 was completed) and one stage."""
    from connectors.types import AppointmentBatch
    from widget_server.appointments.settings import SEED002_TEMPLATE
    from widget_server.appointments.sync import ingest, start_run
    from widget_server.models import Portal

    starts = {"R1": datetime(2026, 3, 2, 10, tzinfo=MSK), "R2": datetime(2026, 4, 2, 10, tzinfo=MSK)}
    made = [
        visit(
            source_id,
            starts_at=starts[source_id],
            ends_at=None,
            changed_at=datetime(2026, 3, 1, tzinfo=MSK) + timedelta(hours=h),
            version=str(v),
            status=status,
        )
        for source_id, h, v, status in versions
    ]
    ends = []
    for sequence, size in ((made, 1), (order.sample(made, len(made)), batch_size)):
        portal = make_portal(settings={"mis": SEED002_TEMPLATE})
        for start in range(0, len(sequence), size):
            # One visit appears once per batch, as in a real export.
            chunk = list({a.source_id: a for a in sequence[start : start + size]}.values())
            dropped = [a for a in sequence[start : start + size] if a not in chunk]
            for group in (chunk, dropped):
                if not group:
                    continue
                with rt.db.transaction() as s:
                    p = s.get(Portal, portal.id)
                    ingest(s, p, start_run(s, p, "ident_db"), AppointmentBatch(tuple(group), (), None))
        with rt.db.transaction() as s:
            rows = s.scalars(
                select(MisAppointment)
                .where(MisAppointment.portal_id == portal.id)
                .order_by(MisAppointment.source_id)
            ).all()
            ends.append([(r.source_id, r.status, r.content_hash, r.kind, r.target) for r in rows])
    assert ends[0] == ends[1]
    final = {source_id: (status, kind) for source_id, status, _, kind, _ in ends[0]}
    if "R2" in final:
        assert final["R2"][1] == ("repeat" if final.get("R1", ("",))[0] == "completed" else "primary")


def test_invalid_phone_is_imported_and_flagged(rt, sync):
    result = sync(visit(patient_phone="+7 (888) 888-88-88"))
    assert result.counts == {"created": 1, "invalid_phone": 1}
    assert _row(rt).flags == ["invalid_phone"]
    with rt.db.transaction() as s:
        record = s.scalar(select(MisSyncRecord).where(MisSyncRecord.outcome == "invalid_phone"))
        assert (record.field, record.value) == ("phone", "+7 (888) 888-88-88")


def test_family_sharing_a_phone_stays_two_patients(rt, sync):
    sync(visit("R1"))
    sync(visit("R2", patient_id="4402", patient_name="Смирнов Пётр Игоревич"))
    with rt.db.transaction() as s:
        patients = s.scalars(select(MisPatient).order_by(MisPatient.id)).all()
        assert [p.alias_of_id for p in patients] == [None, None]
        assert all("shared_phone" in p.flags for p in patients)


def test_two_mis_ids_of_one_person_become_one_patient_with_an_alias(rt, sync):
    sync(visit("R1"))
    result = sync(visit("R2", patient_id="9999", patient_name="СМИРНОВА Анна", patient_phone="89161234567"))
    assert result.counts == {"created": 1, "duplicate_linked": 1}
    with rt.db.transaction() as s:
        first, second = s.scalars(select(MisPatient).order_by(MisPatient.id)).all()
        assert second.alias_of_id == first.id
    assert _count(rt, MisPatient) == 2  # nothing merged away


def test_primary_then_repeat_from_our_completed_history_in_any_order(rt, sync):
    earlier = visit("R1", status="completed")
    later = visit("R2", starts_at=earlier.starts_at + timedelta(days=30), ends_at=None)
    sync(later)
    assert _row(rt, "R2").kind == "primary"
    sync(earlier)  # history arriving late re-decides the later visit
    assert (_row(rt, "R1").kind, _row(rt, "R2").kind) == ("primary", "repeat")
    assert _row(rt, "R2").target == {"pipeline_id": "Повторный приём", "stage_id": "Записан на приём"}


def test_a_disagreeing_mis_primary_flag_is_not_trusted(rt, sync):
    sync(
        visit("R1", status="completed"),
        visit("R2", starts_at=datetime(2026, 4, 1, 10, tzinfo=MSK), mis_primary=True),
    )
    assert _row(rt, "R2").kind == "repeat"


def test_changes_queue_one_job_per_appointment_and_no_change_none(rt, sync):
    first = sync(
        visit("R1"),
        visit("R2", patient_id="4402", patient_name="Другой Пациент", patient_phone="+79031234567"),
    )
    assert first.jobs == 2
    again = sync(visit("R1"))
    assert again.jobs == 0
    # Still pending: the queued job will read the newer state, no second job.
    newer = sync(visit("R1", status="completed", changed_at=datetime(2026, 3, 12, 11, tzinfo=MSK)))
    assert newer.jobs == 0
    assert _count(rt, OutboxJob) == 2


def test_unmapped_status_is_logged_and_queues_nothing(rt, sync):
    result = sync(visit(status="requested"))
    assert result.counts == {"created": 1, "unmapped": 1}
    assert result.jobs == 0


def test_a_booking_takes_the_inquiry_before_it_and_a_late_history_visit_none(rt, clinic, sync):
    from widget_server.appointments.tickets import offer_lead
    from widget_server.models import Portal

    inquiry_at = datetime(2026, 3, 5, 17, 0, tzinfo=MSK)  # an hour before the booking (visit() changed 18:00)
    with rt.db.transaction() as s:
        portal = s.get(Portal, clinic.id)
        for deal_id, at in (("701", inquiry_at), ("702", inquiry_at + timedelta(days=200))):
            offer_lead(s, portal, deal_id=deal_id, created_at=at, name="Смирнова Анна", phone="+79161234567")
    sync(visit())
    assert _row(rt).deal_id == "701"
    # A visit of last year first seen now: booked long before the patient's open inquiry 702.
    booked_last_year = datetime(2025, 3, 1, 12, 0, tzinfo=MSK)
    starts = booked_last_year + timedelta(days=3)
    sync(visit("R0", starts_at=starts, ends_at=None, changed_at=booked_last_year))
    assert _row(rt, "R0").deal_id is None
