"""Requisites: check digits from python-stdnum, KPP with the INN's length, the BIK control key."""

from __future__ import annotations

import pytest

from widget_server.invoices.errors import InvoiceError
from widget_server.invoices.kinds import KINDS
from widget_server.invoices.requisites import account_key_ok, missing_for_issue, validate_requisites

# Sberbank's published requisites: INN 7707083893, KPP 773601001, OGRN 1027700132195,
# BIK 044525225, correspondent account 30101810400000000225.
SBER = {
    "inn": "7707083893",
    "kpp": "773601001",
    "ogrn": "1027700132195",
    "bik": "044525225",
    "corr_account": "30101810400000000225",
    "account": "40702810938000000001",
}


def _field(data: dict) -> str:
    with pytest.raises(InvoiceError) as caught:
        validate_requisites(data)
    return caught.value.field


def test_valid_russian_requisites_are_normalised() -> None:
    clean = validate_requisites({**SBER, "inn": " 7707 083893 ", "kpp": "773601001"})
    assert clean["inn"] == "7707083893"
    assert clean["country"] == "RU"


def test_bank_of_russia_control_key() -> None:
    assert account_key_ok("044525225", "30101810400000000225", correspondent=True)
    assert account_key_ok("044525225", "40702810938000000001")
    assert not account_key_ok("044525225", "40702810938000000002")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"inn": "7707083894"}, "requisites.inn"),
        ({"inn": "77070838"}, "requisites.inn"),
        ({"ogrn": "1027700132196"}, "requisites.ogrn"),
        ({"bik": "144525225"}, "requisites.bik"),
        ({"account": "40702810938000000002"}, "requisites.account"),
        ({"corr_account": "30101810400000000226"}, "requisites.corr_account"),
        ({"kpp": "77360100"}, "requisites.kpp"),
        ({"iban": "DE89370400440532013001"}, "requisites.iban"),
        ({"swift": "DEUTDEF"}, "requisites.swift"),
        ({"colour": "red"}, "requisites.colour"),
    ],
)
def test_each_bad_value_names_its_field(change: dict, field: str) -> None:
    assert _field({**SBER, **change}) == field


def test_kpp_is_refused_with_a_twelve_digit_inn() -> None:
    # 500100732259: a valid 12-digit INN (python-stdnum's own example).
    assert _field({"inn": "500100732259", "kpp": "773601001"}) == "requisites.kpp"
    assert validate_requisites({"inn": "500100732259"})["inn"] == "500100732259"


def test_foreign_iban_and_swift() -> None:
    clean = validate_requisites({"country": "de", "iban": "DE89 3704 0044 0532 0130 00", "swift": "deutdeff"})
    assert clean == {"country": "DE", "iban": "DE89370400440532013000", "swift": "DEUTDEFF"}


def test_kpp_needed_for_issue_only_with_a_ten_digit_inn() -> None:
    insurer = KINDS["insurer"]
    assert missing_for_issue(insurer, {"inn": "7707083893", "address": "Москва"}) == "kpp"
    assert missing_for_issue(insurer, {"inn": "500100732259", "address": "Москва"}) is None
    assert missing_for_issue(insurer, {"country": "DE"}) == "address"
    assert missing_for_issue(KINDS["patient"], {}) is None
