"""Portal settings as one versioned document: read, validate against the CRM's real catalogue, save.

The document gathers what lives in several places (portal columns, `portal.settings`, user roles) so an
admin edits it on one screen and every save is one `PortalSettingsVersion` row: who, when, which setting
went from what to what, and the whole result. A refusal names the setting (`deal_fields.balance`, …).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .errors import DomainError
from .ledger.settings import LedgerSettings, ledger_settings
from .models import ROLES, Portal, PortalSettingsVersion, PortalUser, StayAccount
from .money import AmountError, minor_to_decimal, parse_amount

__all__ = [
    "DEAL_FIELD_KEYS",
    "PIPELINE_FEATURES",
    "STAGE_FEATURES",
    "Catalogue",
    "SettingsConflict",
    "SettingsError",
    "apply_settings",
    "current_version",
    "record_version",
    "settings_document",
]

DEAL_FIELD_KEYS = ("balance", "daily_rate", "paid_through")
STAGE_FEATURES = ("admission", "in_stay", "discharge", "ready_to_sign")
"""Deal stages the ledger reacts to: admission opens the account, discharge closes it; the in-patient
workflow asks for the arrival date and budget when a sales deal enters «ready to sign»."""
PIPELINE_FEATURES = ("ledger", "invoices", "distribution")


class SettingsError(DomainError):
    status = 422
    code = "invalid_setting"


class SettingsConflict(DomainError):
    status = 409
    code = "settings_changed"


@dataclass(frozen=True)
class Catalogue:
    """What the portal's CRM really has, from `CrmClient`: the only ids a setting may point at."""

    deal_fields: list[dict[str, str]] = field(default_factory=list)
    pipelines: list[dict[str, Any]] = field(default_factory=list)
    users: list[dict[str, Any]] = field(default_factory=list)

    def field_ids(self) -> set[str]:
        return {f["id"] for f in self.deal_fields}

    def stages_of(self, pipeline_id: str) -> set[str] | None:
        for pipeline in self.pipelines:
            if pipeline["id"] == pipeline_id:
                return {s["id"] for s in pipeline.get("stages", [])}
        return None


def current_version(session: Session, portal_id: int) -> int:
    return session.scalar(
        select(func.coalesce(func.max(PortalSettingsVersion.version), 0)).where(
            PortalSettingsVersion.portal_id == portal_id
        )
    )


def _money(minor: int, currency: str) -> str:
    return str(minor_to_decimal(minor, currency))


def settings_document(session: Session, portal: Portal) -> dict[str, Any]:
    stored = portal.settings or {}
    ledger = ledger_settings(portal)
    roles = {
        u.crm_user_id: sorted(u.roles or [])
        for u in session.scalars(
            select(PortalUser).where(PortalUser.portal_id == portal.id, PortalUser.active.is_(True))
        )
    }
    fields = stored.get("deal_fields") or {}
    return {
        "timezone": portal.timezone,
        "currency": portal.currency,
        "locale": portal.locale,
        "ledger": {
            "overdraft": _money(ledger.overdraft_minor, portal.currency),
            "purchase_threshold": _money(ledger.purchase_threshold_minor, portal.currency),
            "purchase_hold_hours": ledger.purchase_hold_hours,
            "low_balance_days": ledger.low_balance_days,
            "charge_discharge_day": ledger.charge_discharge_day,
        },
        "deal_fields": {key: fields.get(key) for key in DEAL_FIELD_KEYS},
        "stages": {k: (stored.get("stages") or {}).get(k) for k in STAGE_FEATURES},
        "pipelines": {k: (stored.get("pipelines") or {}).get(k) for k in PIPELINE_FEATURES},
        "roles": roles,
    }


def _merge(base: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict) and key != "stages":
            merged[key] = _merge(merged[key], value)
        elif key == "stages" and isinstance(value, Mapping):
            merged[key] = {**merged.get(key, {}), **copy.deepcopy(dict(value))}
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _flat(document: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in document.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and not (prefix.startswith("stages.") or path.startswith("stages.")):
            out |= _flat(value, f"{path}.")
        else:
            out[path] = value
    return out


UNREACHABLE = "the CRM cannot be reached to check this value; save it again when it answers"


def _check_references(
    session: Session, portal: Portal, new: dict[str, Any], old: dict[str, Any], catalogue: Catalogue | None
) -> None:
    """Only what changed is checked against the CRM, so a CRM that lost a field does not block an
    unrelated save; the refusal names the first bad setting. Without a catalogue (the CRM is down) the
    settings that point into the CRM cannot change, the others can."""
    if catalogue is None:
        for group in ("deal_fields", "pipelines", "stages"):
            for key, value in new[group].items():
                if value and value != old[group].get(key):
                    raise SettingsError(f"{group}.{key}", UNREACHABLE)
        catalogue = Catalogue()
    for key in DEAL_FIELD_KEYS:
        value = new["deal_fields"].get(key)
        if value and value != old["deal_fields"].get(key) and value not in catalogue.field_ids():
            raise SettingsError(f"deal_fields.{key}", f"the CRM has no deal field {value!r}")
    for feature in PIPELINE_FEATURES:
        value = new["pipelines"].get(feature)
        if value and value != old["pipelines"].get(feature) and catalogue.stages_of(value) is None:
            raise SettingsError(f"pipelines.{feature}", f"the CRM has no pipeline {value!r}")
    for feature in STAGE_FEATURES:
        ref = new["stages"].get(feature)
        if not ref or ref == old["stages"].get(feature):
            continue
        stages = catalogue.stages_of(str(ref.get("pipeline_id")))
        if stages is None:
            raise SettingsError(f"stages.{feature}", f"the CRM has no pipeline {ref.get('pipeline_id')!r}")
        if str(ref.get("stage_id")) not in stages:
            raise SettingsError(
                f"stages.{feature}", f"pipeline {ref['pipeline_id']!r} has no stage {ref.get('stage_id')!r}"
            )
    known_users = {
        u.crm_user_id for u in session.scalars(select(PortalUser).where(PortalUser.portal_id == portal.id))
    }
    for user_id, roles in new["roles"].items():
        if user_id not in known_users:
            raise SettingsError(
                f"roles.{user_id}", f"no CRM user {user_id!r} in this portal; sync users first"
            )
        unknown = sorted(set(roles) - set(ROLES))
        if unknown:
            raise SettingsError(f"roles.{user_id}", f"unknown roles {unknown}; allowed: {', '.join(ROLES)}")
    if new["currency"] != old["currency"]:
        held = session.scalar(
            select(func.count())
            .select_from(StayAccount)
            .where(StayAccount.portal_id == portal.id, StayAccount.currency != new["currency"])
        )
        if held:
            raise SettingsError(
                "currency",
                f"{held} stay account(s) are kept in {old['currency']}; the currency cannot change",
            )


def _ledger_minor(new: dict[str, Any], name: str, currency: str) -> int:
    try:
        return parse_amount(str(new["ledger"][name]), currency, allow_zero=True)
    except AmountError as exc:
        raise SettingsError(f"ledger.{name}", exc.reason) from None


def apply_settings(
    session: Session,
    portal: Portal,
    changes: Mapping[str, Any],
    *,
    expected_version: int,
    actor: str,
    catalogue: Catalogue | None,
) -> PortalSettingsVersion:
    """Merge `changes` (already shape-checked) into the current document, check it, write it, version it."""
    version = current_version(session, portal.id)
    if expected_version != version:
        raise SettingsConflict(
            "version", f"settings are at version {version}, not {expected_version}: reload and apply again"
        )
    old = settings_document(session, portal)
    new = _merge(old, changes)
    _check_references(session, portal, new, old, catalogue)
    overdraft = _ledger_minor(new, "overdraft", new["currency"])
    threshold = _ledger_minor(new, "purchase_threshold", new["currency"])

    portal.timezone, portal.currency, portal.locale = new["timezone"], new["currency"], new["locale"]
    stored = dict(portal.settings or {})
    ledger = {
        k: v for k, v in (stored.get("ledger") or {}).items() if k in LedgerSettings.__dataclass_fields__
    }
    ledger.update(
        overdraft_minor=overdraft,
        purchase_threshold_minor=threshold,
        purchase_hold_hours=new["ledger"]["purchase_hold_hours"],
        low_balance_days=new["ledger"]["low_balance_days"],
        charge_discharge_day=new["ledger"]["charge_discharge_day"],
    )
    stored.update(
        ledger=ledger,
        deal_fields={k: v for k, v in new["deal_fields"].items() if v},
        stages={k: v for k, v in new["stages"].items() if v},
        pipelines={k: v for k, v in new["pipelines"].items() if v},
    )
    portal.settings = stored
    for user in session.scalars(select(PortalUser).where(PortalUser.portal_id == portal.id)):
        if user.crm_user_id in new["roles"]:
            user.roles = sorted(set(new["roles"][user.crm_user_id]))

    return record_version(session, portal, old, actor=actor, version=version)


def record_version(
    session: Session, portal: Portal, before: dict[str, Any], *, actor: str, version: int | None = None
) -> PortalSettingsVersion:
    """Version what changed since `before` (a `settings_document` taken before the change); every path
    that writes settings calls this in its own transaction, so the history misses nothing."""
    session.flush()
    version = current_version(session, portal.id) if version is None else version
    saved = settings_document(session, portal)
    old, new = _flat(before), _flat(saved)
    diff = {
        path: {"from": old.get(path), "to": new.get(path)}
        for path in sorted(set(old) | set(new))
        if old.get(path) != new.get(path)
    }
    row = PortalSettingsVersion(
        portal_id=portal.id, version=version + 1, changed_by=actor, changes=diff, snapshot=saved
    )
    session.add(row)
    session.flush()
    return row
