"""The quick start's demo: a sandbox portal with a rehabilitation clinic's patients and staff."""

from __future__ import annotations

import json

import click
from sqlalchemy import select

from ..apikeys import issue_api_key, revoke_api_key
from ..inpatient.demo import seed_demo_hospital
from ..journey import install_templates
from ..models import ApiKey, Portal, PortalUser
from ..portals import create_portal
from ..runtime import Runtime
from .context import cli_runtime

__all__ = ["demo", "ensure_demo"]

DEMO_SLUG = "demo-clinic"
QUICKSTART_KEY_NAME = "quickstart"


def ensure_demo(rt: Runtime) -> dict:
    """Create (or reuse) the demo portal and its data, map demo roles, and issue a fresh admin key.

    Re-running revokes the previous quick-start key, so only the last printed key works.
    """
    from ..jobs.periodic import portal_today
    from ..sandbox.crm import SandboxCrm
    from ..sandbox.demo import seed_demo
    from ..users import sync_users

    with rt.db.transaction() as session:
        portal = session.scalar(select(Portal).where(Portal.slug == DEMO_SLUG))
        if portal is None:
            portal = create_portal(
                session,
                kind="sandbox",
                slug=DEMO_SLUG,
                name="Реабилитационный центр «Демо»",
                timezone=rt.settings.default_timezone,
                currency=rt.settings.default_currency,
            )
        # Seed 002's journey, disabled until mapped; a rerun adds only the templates the portal lacks.
        install_templates(session, portal, "demo")
        portal_id, timezone, today = portal.id, portal.timezone, portal_today(portal)

    crm = SandboxCrm(rt.db, portal_id, timezone=timezone)
    summary = seed_demo(crm, today=today)
    crm_users = crm.list_users()

    with rt.db.transaction() as session:
        portal = session.get(Portal, portal_id)
        assert portal is not None
        sync_users(session, portal, crm_users)
        roles_by_user = {str(u["id"]): u["role"] for u in summary.get("users", []) if u.get("role")}
        for user in session.scalars(select(PortalUser).where(PortalUser.portal_id == portal_id)):
            if user.crm_user_id in roles_by_user and not user.roles:
                user.roles = [roles_by_user[user.crm_user_id]]
        for old in session.scalars(
            select(ApiKey).where(ApiKey.portal_id == portal_id, ApiKey.name == QUICKSTART_KEY_NAME)
        ):
            revoke_api_key(session, old)
        issued = issue_api_key(session, portal, role="admin", name=QUICKSTART_KEY_NAME)
        portal.settings = {
            **(portal.settings or {}),
            "deal_fields": {
                "balance": "balance",
                "daily_rate": "daily_rate_display",
                "paid_through": "paid_through",
            },
            "ledger": {"purchase_threshold_minor": 500_000, "overdraft_minor": 0, "low_balance_days": 3},
        }
        stays = _seed_ledger(session, portal, summary, today)
        # «Корпус 1» with wards, profiles, the in-stay patient in a bed: the «Стационар» tab works at once.
        seed_demo_hospital(session, portal, summary, today)
        return {
            "portal_id": portal_id,
            "slug": DEMO_SLUG,
            "deals": len(summary.get("deals", [])),
            "users": len(crm_users),
            "api_key": issued.plaintext,
            "stays": stays,
        }


def _seed_ledger(session, portal: Portal, summary: dict, today) -> int:  # type: ignore[no-untyped-def]
    """Tariffs, articles and an admitted in-stay patient with a deposit and a few debits."""
    from datetime import timedelta

    from ..ledger import Actor, Admission, admit, charge
    from ..ledger.operations import post_daily_charges_for
    from ..models import ExpenseArticle, StayAccount, Tariff

    def ensure(model, **values):  # type: ignore[no-untyped-def]
        row = session.scalar(select(model).where(model.portal_id == portal.id, model.name == values["name"]))
        if row is None:
            row = model(portal_id=portal.id, **values)
            session.add(row)
            session.flush()
        return row

    standard = ensure(Tariff, name="Стандарт", daily_rate_minor=350_000)
    ensure(Tariff, name="Комфорт", daily_rate_minor=500_000)
    dressing = ensure(ExpenseArticle, name="Перевязочный материал", code="DR")
    ensure(ExpenseArticle, name="Дополнительные лекарства", code="MED")
    ensure(ExpenseArticle, name="Процедуры", code="PRC")
    in_stay = [d for d in summary.get("deals", []) if d.get("stage_id") == "in_stay"]
    actor = Actor(label="demo", source="api", roles=frozenset({"viewer", "staff", "finance", "admin"}))
    for deal in in_stay:
        exists = session.scalar(
            select(StayAccount.id).where(
                StayAccount.portal_id == portal.id, StayAccount.deal_id == deal["id"]
            )
        )
        if exists is not None:
            continue
        account = admit(
            session,
            portal,
            Admission(
                deal_id=deal["id"],
                admission_date=today - timedelta(days=12),
                tariff_id=standard.id,
                representative_name="Елена Орлова (дочь)",
                representative_phone="+79161234567",
                deposit_minor=6_000_000,
                deposit_method="transfer",
                deposit_payer="Елена Орлова",
            ),
            actor,
            f"demo:admit:{deal['id']}",
        )
        post_daily_charges_for(session, account, today, actor)
        charge(
            session, portal, deal["id"], 150_000, dressing.id, "перевязка", actor, f"demo:charge:{deal['id']}"
        )
    return len(in_stay)


@click.group()
def demo() -> None:
    """Demo data."""


@demo.command("seed")
def demo_seed() -> None:
    """Create the demo sandbox portal and print a fresh admin API key."""
    click.echo(json.dumps(ensure_demo(cli_runtime()), ensure_ascii=False, indent=2))
