"""In-patient fixtures: a rehabilitation hospital on the sandbox CRM with «Корпус 1», its staff in CRM
users and app roles, a tariff, a frozen clock, and a sales deal ready to sign."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from connectors.types import NewDeal, StageRef
from tests.ledger.conftest import clinic, frozen  # noqa: F401 - the ledger's fixtures, reused
from widget_server.models import Portal, PortalUser
from widget_server.sandbox.crm import SandboxCrm
from widget_server.sandbox.hooks import hook_secret, sign


@dataclass
class Staff:
    manager: str
    building_manager: str
    nurse: str
    doctor: str


@pytest.fixture
def hospital(clinic) -> Portal:  # type: ignore[no-untyped-def]  # noqa: F811 - the imported fixture
    """The ledger tests' rehabilitation clinic (Moscow, roubles, purchases above 5 000 ₽ need consent)."""
    return clinic


@pytest.fixture
def crm(rt, hospital) -> SandboxCrm:  # type: ignore[no-untyped-def]
    return SandboxCrm(rt.db, hospital.id, timezone=hospital.timezone)


@pytest.fixture
def staff(rt, crm, hospital) -> Staff:  # type: ignore[no-untyped-def]
    people = Staff(
        manager=crm.seed_user("Анна Смирнова", email="anna@rehab.example").id,
        building_manager=crm.seed_user("Олег Корпусов", email="oleg@rehab.example").id,
        nurse=crm.seed_user("Мария Сестрина", email="maria@rehab.example").id,
        doctor=crm.seed_user("Игорь Врачев", email="igor@rehab.example").id,
    )
    with rt.db.transaction() as s:
        s.add(
            PortalUser(
                portal_id=hospital.id, crm_user_id=people.doctor, name="Игорь Врачев", roles=["doctor"]
            )
        )
        s.add(
            PortalUser(
                portal_id=hospital.id, crm_user_id=people.nurse, name="Мария Сестрина", roles=["nurse"]
            )
        )
    return people


@pytest.fixture
def apis(hospital, make_api):  # type: ignore[no-untyped-def]
    return {
        role: make_api(hospital, role) for role in ("viewer", "staff", "finance", "admin", "nurse", "doctor")
    }


@pytest.fixture
def tariff(apis) -> int:  # type: ignore[no-untyped-def]
    created = apis["admin"].post("/api/v1/tariffs", json={"name": "Стандарт", "daily_rate": "3500.00"})
    assert created.status_code == 201, created.get_json()
    return created.get_json()["id"]


@pytest.fixture
def article(apis) -> int:  # type: ignore[no-untyped-def]
    created = apis["admin"].post("/api/v1/articles", json={"name": "Дополнительные лекарства"})
    return created.get_json()["id"]


@pytest.fixture
def building(apis, staff) -> dict:  # type: ignore[no-untyped-def]
    created = apis["admin"].post(
        "/api/v1/buildings",
        json={
            "name": "Корпус 1",
            "pipeline_id": "corpus-1",
            "admission_stage_id": "in_stay",
            "won_stage_id": "won",
            "manager_user_id": staff.building_manager,
            "nurse_user_id": staff.nurse,
            "profiles": ["neurology", "low_vision"],
            "wards": [{"name": "12", "beds": 2}, {"name": "14", "beds": 1}],
        },
    )
    assert created.status_code == 201, created.get_json()
    return created.get_json()


@pytest.fixture
def deal(crm, staff) -> str:  # type: ignore[no-untyped-def]
    created = crm.create_deal(
        NewDeal(
            name="Петров Пётр", stage=StageRef("sales", "ready_to_sign"), responsible_user_id=staff.manager
        ),
        idempotency_key="deal-petrov",
    )
    return created.id


def admit(apis, building, tariff, deal, *, ward=0, bed=1, consent=True, date="2026-11-24"):  # type: ignore[no-untyped-def]
    response = apis["staff"].post(
        f"/api/v1/deals/{deal}/stay/admission",
        json={
            "profile": "neurology",
            "ward": building["wards"][ward]["id"],
            "bed": bed,
            "tariff": tariff,
            "admission_date": date,
            "representative": {
                "name": "Петрова Ольга",
                "relation": "дочь",
                "phone": "8 (916) 123-45-67",
                "email": "olga@example.ru",
                "consent_to_inform": consent,
            },
        },
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


READY = {"pipeline_id": "sales", "stage_id": "ready_to_sign"}


def map_ready_stage(apis) -> None:  # type: ignore[no-untyped-def]
    """Map «ready to sign» through the settings API (checked against the sandbox CRM's pipelines)."""
    version = apis["admin"].get("/api/v1/settings").get_json()["version"]
    saved = apis["admin"].put(
        "/api/v1/settings", json={"version": version, "stages": {"ready_to_sign": READY}}
    )
    assert saved.status_code == 200, saved.get_json()


def stage_hook(client, rt, portal, deal: str, stage: dict, event_id: str):  # type: ignore[no-untyped-def]
    """A person moved the deal in the sandbox CRM: its signed `deal.stage_changed` hook."""
    body = json.dumps(
        {"event_id": event_id, "event": "deal.stage_changed", "deal_id": deal, **stage}
    ).encode()
    signature = sign(hook_secret(rt.settings.secret_key, portal.external_id), body)
    response = client.post(f"/hooks/sandbox/{portal.slug}", data=body, content_type="application/json",
                           headers={"X-Sandbox-Signature": signature})  # fmt: skip
    assert response.status_code == 200, response.get_json()
    return response
