"""Seed 001 replayed: the clinic settles one foreign patient's case with an insurer (EUR prices invoiced
in roubles), an assistance company (VAT on its coordination fee), and a partner clinic it pays; a partial
insurer payment, a credit note for a refused service, the partner clinic paid. Counterparty and deal
views show exact figures, and the CRM gets the notes."""

from __future__ import annotations

from sqlalchemy import select

from connectors.types import NewDeal, StageRef
from tests.invoices.conftest import serve
from tests.invoices.helpers import ASSISTANCE, INSURER, PARTNER, create, insurer_invoice
from widget_server.models import OutboxJob
from widget_server.sandbox.crm import SandboxCrm


def test_seed_001_settlements(rt, clinic, roles, frozen, cbr_http, jobs) -> None:  # type: ignore[no-untyped-def]
    finance = roles["finance"]
    crm = SandboxCrm(rt.db, clinic.id, timezone=clinic.timezone)
    DEAL = crm.create_deal(
        NewDeal(name="Ахмедов Р. К.", stage=StageRef("treatment", "in_care")), idempotency_key="d"
    ).id
    serve(cbr_http, "14/12/2025", "2025-12-13")  # issued on Sunday: Saturday's set, dated 13.12.2025
    # The insurer is a company in the CRM too: its payment and credit note go to its feed as well.
    insurer_company = crm.seed_company("АО «СК Медстрах»")
    insurer = create(finance, {**INSURER, "crm_company_id": insurer_company})
    assistance = create(finance, ASSISTANCE)
    partner = create(finance, PARTNER)

    # 1. The insurer's invoice: EUR price list, issued in roubles at the CBR rate, a line per service date.
    created = finance.post(f"/api/v1/deals/{DEAL}/invoices", json=insurer_invoice(insurer["id"]), key="ins-1")
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["status"] == "draft"
    issued = finance.post(f"/api/v1/invoices/{created.get_json()['id']}/issue", key="ins-1-issue")
    assert issued.status_code == 200, issued.get_json()
    ins = issued.get_json()
    assert ins["number"] == "СК-2025-000001"
    assert ins["rate"] == "93.5412" and ins["rate_date"] == "2025-12-13"
    assert ins["rate_text"] == "Курс ЦБ РФ на 13.12.2025: 1 EUR = 93,5412 ₽"
    # 150.00, 45.50, 3 × 320.00 and 410.25 EUR, each line converted and rounded on its own:
    assert [line["converted"] for line in ins["lines"]] == ["14031.18", "4256.12", "89799.55", "38375.28"]
    assert ins["total"] == "146462.13"
    assert ins["total_in_words"] == "Сто сорок шесть тысяч четыреста шестьдесят два рубля 13 копеек"
    assert ins["vat"] == "0.00"  # medical services: exempt

    # 2. The assistance company's invoice in EUR: medical lines exempt, the coordination fee with VAT on top.
    assistance_body = {
        "kind": "assistance",
        "counterparty_id": assistance["id"],
        "issue_date": "2025-12-14",
        "details": {"case_no": "EC-99812", "insurer_name": "Allianz Care", "insured_name": "Rustam Akhmedov"},
        "lines": [
            {"name": "Medical services per GOP", "quantity": "1", "unit_price": "1565.75"},
            {
                "name": "Case coordination fee",
                "quantity": "1",
                "unit_price": "200.00",
                "vat_category": "taxed",
            },
            {
                "name": "Medical escort, hours",
                "quantity": "2.5",
                "unit_price": "60.00",
                "vat_category": "taxed",
            },
        ],
        "issue": True,
    }
    asst = finance.post(f"/api/v1/deals/{DEAL}/invoices", json=assistance_body, key="asst-1").get_json()
    assert asst["number"] == "АК-2025-000001"
    assert asst["rate"] is None  # priced and invoiced in EUR
    assert asst["vat"] == "70.00"  # 20 % (2025) on 200.00 + 150.00
    assert asst["total"] == "1985.75"
    assert asst["total_in_words"] == "One thousand, nine hundred and eighty-five euro 75 cents"

    # 3. The partner clinic's own invoice, registered against our patient as a payable.
    partner_body = {
        "kind": "partner_clinic",
        "counterparty_id": partner["id"],
        "issue_date": "2025-12-14",
        "details": {
            "partner_invoice_no": "77/12",
            "partner_invoice_date": "2025-12-11",
            "patient_name": "Ахмедов Р. К.",
            "commission_percent": "10",
        },
        "lines": [
            {"name": "Лабораторные исследования (панель)", "quantity": "1", "unit_price": "12500.00"},
            {"name": "Забор крови", "quantity": "2", "unit_price": "350.00"},
        ],
        "issue": True,
    }
    part = finance.post(f"/api/v1/deals/{DEAL}/invoices", json=partner_body, key="part-1").get_json()
    assert (part["number"], part["total"]) == ("ПК-2025-000001", "13200.00")

    # 4. A partial insurer payment.
    paid = finance.post(
        f"/api/v1/invoices/{ins['id']}/payments",
        json={"payment_date": "2025-12-15", "amount": "100000.00", "bank_reference": "п/п 5521"},
        key="ins-pay-1",
    )
    assert paid.status_code == 201, paid.get_json()
    assert paid.get_json()["invoice"]["status"] == "partly_paid"

    # 5. The insurer refuses the MRI: a credit note for that line.
    mri = ins["lines"][3]["id"]
    credited = finance.post(
        f"/api/v1/invoices/{ins['id']}/credit-notes",
        json={"reason": "Страховая отказала: МРТ вне гарантийного письма", "line_ids": [mri]},
        key="ins-cn-1",
    )
    assert credited.status_code == 201, credited.get_json()
    after = credited.get_json()
    assert after["credit_notes"][0]["number"] == "КН-2025-000001"
    assert (after["credited"], after["paid"], after["outstanding"]) == ("38375.28", "100000.00", "8086.85")
    assert after["status"] == "partly_paid"

    # 6. The clinic pays the partner clinic in full.
    out = finance.post(
        f"/api/v1/counterparties/{partner['id']}/payments",
        json={
            "payment_date": "2025-12-15",
            "amount": "13200.00",
            "currency": "RUB",
            "allocations": [{"invoice_id": part["id"], "amount": "13200.00"}],
        },
        key="part-pay-1",
    )
    assert out.status_code == 201, out.get_json()
    assert out.get_json()["payment"]["direction"] == "out"
    assert out.get_json()["invoices"][0]["status"] == "paid"

    # Counterparty view: the insurer owes 8 086,85 ₽, not yet due (0–30 bucket).
    view = finance.get(f"/api/v1/counterparties/{insurer['id']}/settlements").get_json()
    assert view["receivable"]["RUB"] == {
        "invoiced": "146462.13",
        "credited": "38375.28",
        "paid": "100000.00",
        "outstanding": "8086.85",
        "ageing": {"0-30": "8086.85", "31-60": "0.00", "61-90": "0.00", "90+": "0.00"},
    }
    assert view["payable"] == {}
    partner_view = finance.get(f"/api/v1/counterparties/{partner['id']}/settlements").get_json()
    assert partner_view["payable"]["RUB"]["paid"] == "13200.00"
    assert partner_view["payable"]["RUB"]["outstanding"] == "0.00"

    # Deal view: who still owes what, per currency.
    deal = finance.get(f"/api/v1/deals/{DEAL}/settlements").get_json()["by_kind"]
    assert deal["insurer"]["RUB"]["outstanding"] == "8086.85"
    assert deal["assistance"]["EUR"]["outstanding"] == "1985.75"
    assert deal["partner_clinic"]["RUB"] == {
        "invoiced": "13200.00",
        "credited": "0.00",
        "paid": "13200.00",
        "outstanding": "0.00",
    }

    # The CRM: a note per issue, payment and credit note, sent after commit through the outbox.
    jobs()
    with rt.db.transaction() as s:
        states = {j.state for j in s.scalars(select(OutboxJob))}
    assert states == {"done"}
    notes = crm.notes_for(DEAL)
    assert len(notes) == 6  # three invoices, two payments, one credit note
    assert notes[0] == (
        "Выставлен счёт СК-2025-000001 на 1\xa0565,75\xa0€ = 146\xa0462,13\xa0₽"
        " по курсу ЦБ РФ 93,5412 на 13.12.2025"
    )
    assert any(text.startswith("Кредит-нота КН-2025-000001") for text in notes)
    company_notes = crm.company_notes_for(insurer_company)
    assert [text.split(" ")[0] for text in company_notes] == ["Оплата", "Кредит-нота"]
    assert set(company_notes) <= set(notes)
