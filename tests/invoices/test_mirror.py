"""Mirror to the CRM on the sandbox portal, after commit, through the outbox: the issued PDF attached to
the deal, a note per issue/payment/credit note, the deal's money fields, the responsible user notified.
The two invoice operations are the outbox's own (registered in `jobs/operations.py`)."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select

from connectors.types import NewDeal, StageRef
from tests.invoices.helpers import INSURER, PATIENT_PAYER, create
from widget_server.jobs.invoices import INVOICE_OPERATIONS
from widget_server.jobs.operations import resolve_operation
from widget_server.models import OutboxJob, Portal
from widget_server.sandbox.crm import SandboxCrm


@pytest.fixture
def invoice_operations():  # type: ignore[no-untyped-def]
    assert all(resolve_operation(name) is operation for name, operation in INVOICE_OPERATIONS.items())


def test_issue_and_payment_reach_the_crm(rt, clinic, roles, frozen, jobs, invoice_operations) -> None:  # type: ignore[no-untyped-def]
    finance = roles["finance"]
    with rt.db.transaction() as s:
        portal = s.get(Portal, clinic.id)
        portal.settings = {
            **portal.settings,
            "invoices": {
                **portal.settings["invoices"],
                "deal_fields": {"paid": "UF_PAID", "outstanding": "UF_DUE"},
            },
        }
    crm = SandboxCrm(rt.db, clinic.id, timezone=clinic.timezone)
    manager = crm.seed_user("Ольга Менеджер", "olga@clinic.example")
    deal = crm.create_deal(
        NewDeal(name="Иванова М. П.", stage=StageRef("treatment", "in_care"), responsible_user_id=manager.id),
        idempotency_key="deal",
    ).id
    payer = create(finance, PATIENT_PAYER)
    invoice = finance.post(
        f"/api/v1/deals/{deal}/invoices",
        json={
            "kind": "patient",
            "counterparty_id": payer["id"],
            "issue_date": "2025-12-15",
            "lines": [{"name": "Консультация", "quantity": "1", "unit_price": "3500.00"}],
            "issue": True,
        },
    ).get_json()
    # Nothing reaches the CRM before the jobs run (after commit, through the outbox).
    assert crm.files_for(deal) == [] and crm.notes_for(deal) == []
    finance.post(
        f"/api/v1/invoices/{invoice['id']}/payments",
        json={"payment_date": "2025-12-15", "amount": "1500.00", "bank_reference": "42"},
    )
    jobs()
    with rt.db.transaction() as s:
        assert {j.state for j in s.scalars(select(OutboxJob))} == {"done"}
    files = crm.files_for(deal)
    assert [(f.name, f.mime_type) for f in files] == [("СЧ-2025-000001-v1.pdf", "application/pdf")]
    registered = finance.get(f"/api/v1/deals/{deal}/documents").get_json()[0]
    assert hashlib.sha256(files[0].content).hexdigest() == registered["sha256"]
    notes = crm.notes_for(deal)
    assert notes[0] == "Выставлен счёт СЧ-2025-000001 на 3\xa0500,00\xa0₽"
    assert notes[1].startswith("Оплата 1\xa0500,00\xa0₽ от 15.12.2025. п/п 42. счёт СЧ-2025-000001")
    assert crm.get_deal(deal).fields == {"UF_PAID": "1500.00", "UF_DUE": "2000.00"}
    assert crm.notifications_for(manager.id) == [notes[1]]
    # A replayed job run sends nothing twice.
    jobs()
    assert len(crm.files_for(deal)) == 1 and len(crm.notes_for(deal)) == 2


def test_payments_and_credit_notes_also_reach_the_linked_company(  # type: ignore[no-untyped-def]
    rt, clinic, roles, frozen, jobs
) -> None:
    finance = roles["finance"]
    crm = SandboxCrm(rt.db, clinic.id, timezone=clinic.timezone)
    company = crm.seed_company("ООО «Нефтемаш»")
    new = NewDeal(name="Петров И. С.", stage=StageRef("treatment", "in_care"))
    deal = crm.create_deal(new, idempotency_key="deal").id
    employer = create(
        finance,
        {**INSURER, "kind": "corporate", "name": "ООО «Нефтемаш»", "crm_company_id": company},
    )
    payer = create(finance, PATIENT_PAYER)

    def issued(counterparty_id: int) -> dict:  # type: ignore[type-arg]
        return finance.post(
            f"/api/v1/deals/{deal}/invoices",
            json={
                "kind": "patient",
                "counterparty_id": counterparty_id,
                "issue_date": "2025-12-15",
                "lines": [{"name": "Консультация", "quantity": "1", "unit_price": "3500.00"}],
                "issue": True,
            },
        ).get_json()

    paid, credited, own = issued(employer["id"]), issued(employer["id"]), issued(payer["id"])
    finance.post(
        f"/api/v1/invoices/{paid['id']}/payments", json={"payment_date": "2025-12-15", "amount": "1500.00"}
    )
    finance.post(f"/api/v1/invoices/{credited['id']}/credit-notes", json={"reason": "услуга не оказана"})
    finance.post(
        f"/api/v1/invoices/{own['id']}/payments", json={"payment_date": "2025-12-15", "amount": "3500.00"}
    )
    jobs()
    jobs()

    company_notes = crm.company_notes_for(company)
    assert [n.split(" ")[0] for n in company_notes] == ["Оплата", "Кредит-нота"]
    assert company_notes == [n for n in crm.notes_for(deal) if n in company_notes]
    assert "счёт СЧ-2025-000001" in company_notes[0] and "к счёту СЧ-2025-000002" in company_notes[1]
    with rt.db.transaction() as s:
        sent = s.scalars(select(OutboxJob).where(OutboxJob.operation == "add_company_note")).all()
        assert [(j.state, j.payload["company_id"]) for j in sent] == [("done", company)] * 2
