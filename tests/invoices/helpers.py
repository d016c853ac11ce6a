"""Counterparties and invoice bodies shaped like seed 001's: a Russian insurer, an assistance company
abroad, a partner clinic, and a patient paying in roubles."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

_I18N = Path(__file__).resolve().parents[2] / "static" / "widget" / "common" / "i18n" / "ru.json"

INSURER = {
    "kind": "insurer",
    "name": "АО «СК Медстрах»",
    "currency": "RUB",
    "payment_terms_days": 30,
    "crm_company_id": "501",
    "requisites": {
        "legal_name": "Акционерное общество «Страховая компания Медстрах»",
        "address": "115035, г. Москва, ул. Садовническая, д. 5",
        "inn": "7710030411",
        "kpp": "770501001",
        "ogrn": "1027700132195",
        "bik": "044525225",
        "corr_account": "30101810400000000225",
        "account": "40702810938000000001",
    },
}

ASSISTANCE = {
    "kind": "assistance",
    "name": "EuroCross Assistance GmbH",
    "language": "en",
    "currency": "EUR",
    "payment_terms_days": 45,
    "requisites": {
        "legal_name": "EuroCross Assistance GmbH",
        "address": "Taunusanlage 12, 60325 Frankfurt am Main",
        "country": "DE",
        "iban": "DE89370400440532013000",
        "swift": "DEUTDEFF",
    },
}

PARTNER = {
    "kind": "partner_clinic",
    "name": "ООО «Лаборатория Гемотест-Партнёр»",
    "currency": "RUB",
    "payment_terms_days": 10,
    "requisites": {
        "legal_name": "ООО «Лаборатория Гемотест-Партнёр»",
        "address": "129090, г. Москва, пр. Мира, д. 10",
        "inn": "7702070139",
        "kpp": "770201001",
        "bik": "044525225",
        "account": "40702810938000000001",
    },
}

PATIENT_PAYER = {"kind": "payer", "name": "Иванова Мария Петровна", "currency": "RUB"}

INSURER_DETAILS = {
    "policy_no": "ДМС-77-0042135",
    "gop_no": "GOP-2025-1187",
    "gop_date": "2025-12-07",
    "insured_name": "Ахмедов Рустам Каримович",
    "case_no": "MS-25-3310",
    "period_from": "2025-12-08",
    "period_to": "2025-12-10",
}

INSURER_LINES = [
    {
        "name": "Консультация кардиолога",
        "code": "B01.015.001",
        "service_date": "2025-12-08",
        "quantity": "1",
        "unit_price": "150.00",
    },
    {
        "name": "Электрокардиография",
        "code": "A05.10.006",
        "service_date": "2025-12-08",
        "quantity": "1",
        "unit_price": "45.50",
    },
    {
        "name": "Пребывание в стационаре, койко-день",
        "code": "B03.015.001",
        "service_date": "2025-12-09",
        "quantity": "3",
        "unit_price": "320.00",
    },
    {
        "name": "МРТ головного мозга",
        "code": "A05.23.009",
        "service_date": "2025-12-10",
        "quantity": "1",
        "unit_price": "410.25",
    },
]


def create(api, body: dict[str, Any]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    response = api.post("/api/v1/counterparties", json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def insurer_invoice(counterparty_id: int, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "insurer",
        "counterparty_id": counterparty_id,
        "price_currency": "EUR",
        "invoice_currency": "RUB",
        "issue_date": "2025-12-14",
        "details": dict(INSURER_DETAILS),
        "lines": [dict(line) for line in INSURER_LINES],
    }
    body.update(overrides)
    return body


def russian(reason: str) -> str | None:
    """The panel's Russian for a server refusal reason, as core.js's `t.reason` words it (the first of the
    i18n file's `reasons` patterns that matches; None when none does and the panel would show English)."""
    for pattern, text in json.loads(_I18N.read_text("utf-8"))["reasons"]:
        found = re.search(pattern, reason)
        if found:
            for n, group in enumerate(found.groups(), start=1):
                text = text.replace(f"{{{n}}}", group or "")
            return text
    return None
