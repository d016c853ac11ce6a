"""The representative: found as an existing CRM contact by phone (not created twice), told of low balance
once a day while it lasts, and the arrival date checked."""

from __future__ import annotations

from sqlalchemy import func, select, update

from connectors.types import NewContact
from widget_server.jobs.inpatient import representative_contact, run_inpatient_sweep
from widget_server.models import ExpectedArrival, InpatientStay, OutboxJob, RelativeNotice, StayAccount

from .conftest import admit


def test_an_existing_contact_is_linked_not_duplicated(rt, apis, crm, building, tariff, deal, frozen, jobs):
    existing = crm.create_contact(
        NewContact(name="Петрова О. И.", phones=("+79161234567",)), idempotency_key="c1"
    )
    frozen.set_local("2026-11-24 11:00")
    admit(apis, building, tariff, deal)
    jobs()
    assert [c.id for c in crm.find_contacts_by_phone("+79161234567")] == [existing.id]
    with rt.db.transaction() as s:
        assert s.scalar(select(InpatientStay.representative_contact_id)) == existing.id
    assert crm.get_deal(deal).contact_ids == (existing.id,)


def test_the_representative_is_linked_to_the_deal_once_even_when_the_job_runs_again(
    rt, apis, crm, building, tariff, deal, frozen, jobs
):
    frozen.set_local("2026-11-24 11:00")
    admit(apis, building, tariff, deal)
    jobs()
    [contact] = crm.find_contacts_by_phone("+79161234567")
    assert crm.get_deal(deal).contact_ids == (contact.id,)
    with rt.db.transaction() as s:
        job = s.scalar(select(OutboxJob).where(OutboxJob.operation == "inpatient_representative_contact"))
        payload, key = dict(job.payload), job.idempotency_key
    representative_contact(crm, payload, key)  # a retry after a lost answer
    assert crm.get_deal(deal).contact_ids == (contact.id,)
    assert [c.id for c in crm.find_contacts_by_phone("+79161234567")] == [contact.id]


def test_low_balance_is_told_once_a_day_while_it_lasts(rt, apis, crm, building, tariff, deal, frozen, jobs):
    frozen.set_local("2026-11-24 11:00")
    admit(apis, building, tariff, deal)
    with rt.db.transaction() as s:
        s.execute(update(StayAccount).values(low_balance_alerted=True))
    run_inpatient_sweep(now=frozen.now)
    run_inpatient_sweep(now=frozen.now)
    frozen.set_local("2026-11-25 11:00")
    run_inpatient_sweep(now=frozen.now)
    jobs()
    with rt.db.transaction() as s:
        refs = s.scalars(select(RelativeNotice.ref).where(RelativeNotice.event == "low_balance")).all()
    assert [r.split(":")[1] for r in refs] == ["2026-11-24", "2026-11-25"]
    told = [t.text for t in crm.tasks_for(deal) if "Депозит пациента заканчивается. Пожалуйста" in t.text]
    assert len(told) == 2


def test_an_arrival_in_the_past_is_refused_and_a_new_date_gets_its_own_task(
    rt, apis, crm, staff, building, deal, frozen, jobs
):
    frozen.set_local("2026-11-24 08:00")
    past = apis["staff"].post(f"/api/v1/deals/{deal}/stay/arrival", json={"arrival_date": "2026-11-23"})
    assert past.status_code == 422 and "arrival_date" in past.get_json()["error"]["fields"]
    bad = apis["staff"].post(
        f"/api/v1/deals/{deal}/stay/arrival", json={"arrival_date": "2026-11-25", "budget": 100}
    )
    assert bad.status_code == 422 and "budget" in bad.get_json()["error"]["fields"]
    with rt.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(ExpectedArrival)) == 0
    assert (
        apis["staff"]
        .post(f"/api/v1/deals/{deal}/stay/arrival", json={"arrival_date": "2026-11-24"})
        .status_code
        == 201
    )
    run_inpatient_sweep(now=frozen.now)
    assert (
        apis["staff"]
        .post(f"/api/v1/deals/{deal}/stay/arrival", json={"arrival_date": "2026-11-26"})
        .status_code
        == 201
    )
    frozen.set_local("2026-11-26 08:00")
    run_inpatient_sweep(now=frozen.now)
    run_inpatient_sweep(now=frozen.now)
    jobs()
    arrivals = [t for t in crm.tasks_for(deal) if t.text.startswith("Сегодня прибывает пациент")]
    assert [t.due_at.date().isoformat() for t in arrivals] == ["2026-11-24", "2026-11-26"]
