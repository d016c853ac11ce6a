"""Counterparty requisites (реквизиты): check digits on the way in, completeness at issue.

Russian: INN (10 digits for an organisation, 12 for an individual entrepreneur) and OGRN check digits via
python-stdnum; KPP goes with a 10-digit INN and never with a 12-digit one; BIK is 9 digits; settlement and
correspondent accounts carry the Bank of Russia control key (weights 7-1-3 over 23 digits, with the BIK).
Foreign: ISO country code, IBAN and SWIFT/BIC via python-stdnum. Values are stored normalised (digits only,
upper case) so that a snapshot prints them the same way everywhere.
"""

from __future__ import annotations

import re
from typing import Any

from stdnum import bic as stdnum_bic
from stdnum import iban as stdnum_iban
from stdnum.exceptions import ValidationError as StdnumError
from stdnum.ru import inn as stdnum_inn
from stdnum.ru import ogrn as stdnum_ogrn

from .errors import InvoiceError
from .kinds import InvoiceKind

__all__ = ["REQUISITE_FIELDS", "account_key_ok", "missing_for_issue", "validate_requisites"]

REQUISITE_FIELDS = (
    "legal_name",
    "address",
    "country",
    "inn",
    "kpp",
    "ogrn",
    "bank_name",
    "bik",
    "account",
    "corr_account",
    "iban",
    "swift",
    "bank_address",
)

_WEIGHTS = ((7, 1, 3) * 8)[:23]


def account_key_ok(bik: str, account: str, *, correspondent: bool = False) -> bool:
    """The control key of a 20-digit account: Σ(digit × 7,1,3,…) over 23 digits ≡ 0 (mod 10). A
    settlement account is prefixed with the BIK's last 3 digits, a correspondent one with "0" and the
    BIK's 5th–6th digits (Bank of Russia rules, положение 579-П)."""
    prefix = "0" + bik[4:6] if correspondent else bik[-3:]
    digits = prefix + account
    return sum(int(d) * w for d, w in zip(digits, _WEIGHTS, strict=True)) % 10 == 0


def _refuse(name: str, reason: str) -> InvoiceError:
    return InvoiceError(f"requisites.{name}", reason)


def _digits(data: dict[str, Any], name: str, lengths: tuple[int, ...]) -> str | None:
    raw = data.get(name)
    if raw in (None, ""):
        return None
    text = re.sub(r"[\s-]", "", str(raw))
    if not text.isdigit() or len(text) not in lengths:
        raise _refuse(name, f"must be {' or '.join(map(str, lengths))} digits")
    return text


def validate_requisites(data: dict[str, Any]) -> dict[str, Any]:
    """Check what is given; return the normalised requisites. Missing values are allowed here (a draft
    counterparty may lack them); `missing_for_issue` decides what issuing needs."""
    unknown = set(data) - set(REQUISITE_FIELDS)
    if unknown:
        raise _refuse(sorted(unknown)[0], "unknown requisite")
    clean: dict[str, Any] = {k: str(v).strip() for k, v in data.items() if v not in (None, "")}
    country = clean.get("country", "RU").upper()
    if not re.fullmatch(r"[A-Z]{2}", country):
        raise _refuse("country", "must be a two-letter ISO 3166 code, e.g. RU, DE")
    clean["country"] = country

    inn = _digits(clean, "inn", (10, 12))
    if inn is not None:
        if not stdnum_inn.is_valid(inn):
            raise _refuse("inn", "invalid INN: check digit does not match")
        clean["inn"] = inn
    kpp = clean.get("kpp")
    if kpp is not None:
        if inn is not None and len(inn) == 12:
            raise _refuse("kpp", "an individual entrepreneur (12-digit INN) has no KPP")
        if not re.fullmatch(r"\d{4}[\dA-Z]{2}\d{3}", kpp.upper()):
            raise _refuse("kpp", "must be 9 characters: 4 digits, 2 digits or letters, 3 digits")
        clean["kpp"] = kpp.upper()
    ogrn = _digits(clean, "ogrn", (13, 15))
    if ogrn is not None:
        if not stdnum_ogrn.is_valid(ogrn):
            raise _refuse("ogrn", "invalid OGRN: check digit does not match")
        clean["ogrn"] = ogrn
    bik = _digits(clean, "bik", (9,))
    if bik is not None:
        if not bik.startswith("04"):
            raise _refuse("bik", "a Russian BIK starts with 04")
        clean["bik"] = bik
    for name, correspondent in (("account", False), ("corr_account", True)):
        account = _digits(clean, name, (20,))
        if account is None:
            continue
        if bik is None:
            raise _refuse(name, "needs the bank's BIK to check the control key")
        if not account_key_ok(bik, account, correspondent=correspondent):
            raise _refuse(name, "control key does not match the BIK")
        clean[name] = account
    if "iban" in clean:
        try:
            clean["iban"] = stdnum_iban.validate(clean["iban"])
        except StdnumError as exc:
            raise _refuse("iban", f"invalid IBAN: {exc.message}") from None
    if "swift" in clean:
        try:
            clean["swift"] = stdnum_bic.validate(clean["swift"])
        except StdnumError as exc:
            raise _refuse("swift", f"invalid SWIFT/BIC: {exc.message}") from None
    return clean


def missing_for_issue(kind: InvoiceKind, requisites: dict[str, Any]) -> str | None:
    """The first requisite this kind needs that the counterparty lacks, or None. KPP is needed only with
    a 10-digit INN."""
    foreign = requisites.get("country", "RU") != "RU"
    for name in kind.required_requisites_foreign if foreign else kind.required_requisites_ru:
        if name == "kpp" and len(requisites.get("inn", "")) == 12:
            continue
        if not requisites.get(name):
            return name
    return None
