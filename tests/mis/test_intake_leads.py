"""New intake deals become IDENT tickets by themselves: a deal created in (or routed out of) the intake
pipeline is read with its contact (`get_contact`) and offered to GetTickets, once per deal."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from connectors.types import Contact, DealCreated, DealStageChanged, NewContact, NewDeal, StageRef
from widget_server.appointments.tickets import tickets
from widget_server.jobs.inbox import process_inbox_event
from widget_server.jobs.mis import intake
from widget_server.models import InboxEvent, MisLead, Portal

INTAKE = StageRef("Определение типа приёма", "Новая заявка")
PRIMARY = StageRef("Первичный приём", "Новая заявка")


def _deal(crm, stage: StageRef = INTAKE, phones=("+7 916 123-45-67",), emails=("anna@example.ru",)) -> str:
    contact = crm.create_contact(
        NewContact("Смирнова Анна Петровна", phones=phones, emails=emails), idempotency_key=f"c-{phones}"
    )
    deal = crm.create_deal(
        NewDeal(name="Заявка с сайта", stage=stage, contact_ids=(contact.id,)), idempotency_key=f"d-{phones}"
    )
    return deal.id


def _leads(rt) -> list[MisLead]:
    with rt.db.transaction() as s:
        rows = list(s.scalars(select(MisLead).order_by(MisLead.id)))
        s.expunge_all()
        return rows


def _tickets(rt, clinic) -> list[dict]:
    with rt.db.transaction() as s:
        now = datetime.now(UTC)
        return tickets(
            s, s.get(Portal, clinic.id), now - timedelta(days=1), now + timedelta(days=1), limit=10, offset=0
        )


def _event(clinic, deal_id: str) -> DealCreated:
    return DealCreated(clinic.external_id, datetime.now(UTC), deal_id=deal_id)


class CountingReads:
    def __init__(self, inner) -> None:
        self.inner = inner
        self.reads: list[str] = []

    def get_deal(self, deal_id: str):
        self.reads.append("get_deal")
        return self.inner.get_deal(deal_id)

    def get_contact(self, contact_id: str):
        self.reads.append("get_contact")
        return self.inner.get_contact(contact_id)


@pytest.fixture
def reads(crm, monkeypatch) -> CountingReads:
    counting = CountingReads(crm)
    monkeypatch.setattr(intake, "crm_for", lambda portal, rt=None: counting)
    return counting


def test_a_deal_created_in_the_intake_pipeline_becomes_a_ticket(rt, clinic, crm, reads):
    deal_id = _deal(crm)
    intake.offer_intake_lead(clinic.id, _event(clinic, deal_id))
    [lead] = _leads(rt)
    assert (lead.deal_id, lead.name, lead.phone_e164, lead.email) == (
        deal_id,
        "Смирнова Анна Петровна",
        "+79161234567",
        "anna@example.ru",
    )
    [ticket] = _tickets(rt, clinic)
    assert ticket["Id"] == f"cb-{deal_id}" and ticket["ClientPhone"] == "+79161234567"
    assert reads.reads == ["get_deal", "get_contact"]
    # Once per deal: a later event for it reads nothing.
    again = DealStageChanged(clinic.external_id, None, deal_id=deal_id, stage=INTAKE)
    intake.offer_intake_lead(clinic.id, again)
    assert reads.reads == ["get_deal", "get_contact"] and len(_leads(rt)) == 1


def test_a_deal_routed_out_of_the_intake_pipeline_is_still_a_ticket(rt, clinic, crm, reads):
    deal_id = _deal(crm, stage=PRIMARY)
    # Read after the routing: the created event finds it elsewhere and leaves it to the move's event.
    intake.offer_intake_lead(clinic.id, _event(clinic, deal_id))
    assert _leads(rt) == []
    moved = DealStageChanged(clinic.external_id, None, deal_id=deal_id, stage=PRIMARY, previous=INTAKE)
    intake.offer_intake_lead(clinic.id, moved)
    assert [lead.deal_id for lead in _leads(rt)] == [deal_id]


def test_other_pipelines_closed_deals_and_portals_without_intake_are_left_alone(rt, clinic, crm, reads):
    elsewhere = _deal(crm, stage=PRIMARY)
    moved = DealStageChanged(clinic.external_id, None, deal_id=elsewhere, stage=PRIMARY)
    intake.offer_intake_lead(clinic.id, moved)
    assert reads.reads == []  # a move between other pipelines costs no CRM read
    closed = _deal(crm, phones=("+7 916 765-43-21",))
    crm.move_deal(closed, StageRef(INTAKE.pipeline_id, "lost"), loss_reason="Спам")
    intake.offer_intake_lead(clinic.id, _event(clinic, closed))
    assert _leads(rt) == []
    with rt.db.transaction() as s:
        row = s.get(Portal, clinic.id)
        row.settings = {**row.settings, "mis": {**row.settings["mis"], "intake_pipeline_id": None}}
    reads.reads.clear()
    intake.offer_intake_lead(clinic.id, _event(clinic, _deal(crm, phones=("+7 916 000-00-01",))))
    assert _leads(rt) == [] and reads.reads == []


def test_the_first_number_ident_can_take_is_offered(rt, clinic, crm, reads, monkeypatch):
    deal_id = _deal(crm, emails=())
    typed = ("+7 (888) 888-88-88", "8 916 555-44-33")  # amoCRM keeps numbers as typed
    monkeypatch.setattr(reads, "get_contact", lambda cid: Contact(cid, "Смирнова Анна", phones=typed))
    intake.offer_intake_lead(clinic.id, _event(clinic, deal_id))
    [lead] = _leads(rt)
    assert lead.phone_e164 == "+79165554433" and lead.email is None


def test_a_contact_without_a_valid_number_is_kept_but_not_offered(rt, clinic, crm, reads, monkeypatch):
    deal_id = _deal(crm, emails=())
    invalid = ("+7 (888) 888-88-88",)
    monkeypatch.setattr(reads, "get_contact", lambda cid: Contact(cid, "Аноним", phones=invalid))
    intake.offer_intake_lead(clinic.id, _event(clinic, deal_id))
    [lead] = _leads(rt)
    assert lead.phone_raw == "+7 (888) 888-88-88" and lead.phone_e164 is None
    assert _tickets(rt, clinic) == []


def test_the_inbox_offers_a_new_intake_deal(rt, clinic, crm):
    deal_id = _deal(crm)
    with rt.db.transaction() as s:
        event = InboxEvent(
            portal_id=clinic.id,
            source="sandbox",
            dedupe_key=f"deal.created:{deal_id}",
            raw_body=json.dumps({"event": "deal.created", "deal_id": deal_id}),
        )
        s.add(event)
        s.flush()
        event_id = event.id
    assert process_inbox_event(event_id) == "handled"
    with rt.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(MisLead)) == 1
    assert [t["Id"] for t in _tickets(rt, clinic)] == [f"cb-{deal_id}"]
