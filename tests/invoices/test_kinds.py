"""Kinds are a registry: a fifth kind is registered, issued and rendered with no migration."""

from __future__ import annotations

import pytest

from tests.invoices.helpers import create
from widget_server.invoices.kinds import KINDS, InvoiceKind, register_kind
from widget_server.invoices.render import template_for


def test_a_fifth_kind_needs_no_migration(roles, frozen, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    fifth = InvoiceKind(
        code="corporate_act",
        series="КА",
        title_ru="Счёт корпоративному клиенту",
        title_en="Invoice to a corporate client",
        direction="in",
        counterparty_kinds=("corporate",),
        vat_mode="on_top",
        required_details=("contract_no",),
    )
    monkeypatch.setitem(KINDS, fifth.code, fifth)
    assert template_for("corporate_act") == "base.html"
    finance = roles["finance"]
    company = create(finance, {"kind": "corporate", "name": "ООО «Ромашка»", "currency": "RUB"})
    body = {
        "kind": "corporate_act",
        "counterparty_id": company["id"],
        "details": {"contract_no": "12/25"},
        "lines": [
            {
                "name": "Медосмотр сотрудников",
                "quantity": "10",
                "unit_price": "1000.00",
                "vat_category": "taxed",
            }
        ],
        "issue": True,
    }
    invoice = finance.post("/api/v1/deals/9/invoices", json=body)
    assert invoice.status_code == 201, invoice.get_json()
    assert (invoice.get_json()["number"], invoice.get_json()["total"]) == ("КА-2025-000001", "12000.00")
    assert finance.get(f"/api/v1/invoices/{invoice.get_json()['id']}.pdf").status_code == 200


def test_registry_refuses_a_taken_series() -> None:
    with pytest.raises(ValueError):
        register_kind(
            InvoiceKind(
                code="other",
                series="СК",
                title_ru="x",
                title_en="x",
                direction="in",
                counterparty_kinds=("payer",),
                vat_mode="included",
            )
        )
