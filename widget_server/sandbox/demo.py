"""Demo data for a sandbox portal: a small rehabilitation clinic with an inpatient pipeline, in Russian.

`seed_demo` is idempotent. Users are matched by e-mail and everything else is created under a fixed
idempotency key, so a second run creates nothing and returns the same ids.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from connectors.types import NewContact, NewDeal, NewTask, StageRef

from .crm import LOST_STAGE, WON_STAGE, SandboxCrm

__all__ = ["DEMO_PIPELINE", "seed_demo"]

DEMO_PIPELINE: dict[str, Any] = {
    "id": "inpatient",
    "name": "Стационар",
    "stages": {
        "admission": "Поступление",
        "in_stay": "На лечении",
        WON_STAGE: "Выписан",
        LOST_STAGE: "Отказ",
    },
}

# (name, e-mail, CRM admin, app role hint, on shift)
_USERS = (
    ("Анна Смирнова", "anna.smirnova@demo-clinic.ru", True, "admin", True),
    ("Игорь Петров", "igor.petrov@demo-clinic.ru", False, "finance", False),
    ("Мария Козлова", "maria.kozlova@demo-clinic.ru", False, "staff", True),
    ("Олег Сидоров", "oleg.sidorov@demo-clinic.ru", False, "viewer", False),
)

_DAILY_RATE_MINOR = 650_000  # 6 500,00 ₽ a day


def _stage(stage_id: str) -> StageRef:
    return StageRef(pipeline_id=DEMO_PIPELINE["id"], stage_id=stage_id)


def seed_demo(crm: SandboxCrm, *, today: date) -> dict[str, Any]:
    """Fill `crm` with the demo clinic; returns the ids of what is there, created now or by an earlier run."""
    users = {}
    for name, email, is_admin, role, on_shift in _USERS:
        users[role] = crm.seed_user(name, email, is_admin, is_online=on_shift)
    nurse, admin = users["staff"].id, users["admin"].id

    # (key, deal name, payer contact, phone as typed, stage, days since admission, birth date, ward, ICD-10)
    patients = (
        (
            "orlov",
            "Орлов Виктор Николаевич",
            "Елена Орлова (дочь)",
            "+7 916 123-45-67",
            "in_stay",
            12,
            date(1948, 3, 14),
            "Палата 3",
            ("I63.9",),
        ),
        (
            "sergeeva",
            "Сергеева Галина Петровна",
            "Дмитрий Сергеев (сын)",
            "8 (903) 555-12-34",
            "admission",
            -2,
            date(1951, 11, 2),
            None,
            ("S72.0",),
        ),
        (
            "kuznetsov",
            "Кузнецов Борис Ильич",
            "Кузнецова Нина (жена)",
            "+79267008090",
            WON_STAGE,
            30,
            date(1944, 7, 21),
            "Палата 5",
            ("I69.3", "G81.9"),
        ),
        (
            "volkova",
            "Волкова Людмила Андреевна",
            "Андрей Волков (сын)",
            "8 985 234 56 78",
            LOST_STAGE,
            -5,
            date(1956, 1, 30),
            None,
            (),
        ),
    )
    contacts: list[str] = []
    deals: list[dict[str, str]] = []
    for key, patient, payer, phone, stage_id, days_in, birth_date, ward, icd in patients:
        contact = crm.create_contact(
            NewContact(name=payer, phones=(phone,), responsible_user_id=admin),
            idempotency_key=f"demo:contact:{key}",
        )
        contacts.append(contact.id)
        fields: dict[str, Any] = {
            "admission_date": today - timedelta(days=days_in),
            "birth_date": birth_date,
            "daily_rate_minor": _DAILY_RATE_MINOR,
            "insured": key == "kuznetsov",
            "diagnosis_codes": icd,
        }
        if ward is not None:
            fields["ward"] = ward
        deal = crm.create_deal(
            NewDeal(
                name=patient,
                stage=_stage(stage_id),
                responsible_user_id=nurse,
                price_minor=21 * _DAILY_RATE_MINOR,  # the standard three-week course
                fields=fields,
                contact_ids=(contact.id,),
            ),
            idempotency_key=f"demo:deal:{key}",
        )
        deals.append({"id": deal.id, "name": deal.name, "stage_id": deal.stage.stage_id})

    orlov, _sergeeva, _kuznetsov, volkova = (d["id"] for d in deals)
    # move_deal is the only way to give a reason; skip it once set so a re-run leaves the deal untouched.
    if crm.get_deal(volkova).stage.stage_id == LOST_STAGE and crm.loss_reason_for(volkova) is None:
        crm.move_deal(volkova, _stage(LOST_STAGE), loss_reason="Выбрали другую клинику")
    crm.add_note(
        orlov,
        "Пациент поступил в отделение, состояние стабильное. ЛФК с понедельника.",
        idempotency_key="demo:note:orlov:admitted",
    )
    crm.create_task(
        NewTask(
            deal_id=orlov,
            responsible_user_id=nurse,
            text="Позвонить дочери: согласовать продление курса",
            due_at=datetime.combine(today, time(15, 0), tzinfo=crm.timezone),
        ),
        idempotency_key="demo:task:orlov:extend",
    )
    crm.notify_user(
        users["finance"].id,
        "Орлов В. Н.: оплаченных дней осталось меньше трёх",
        idempotency_key="demo:notify:orlov:low-balance",
    )
    return {
        "pipeline": DEMO_PIPELINE,
        "users": [{"id": u.id, "name": u.name, "email": u.email, "role": role} for role, u in users.items()],
        "contacts": contacts,
        "deals": deals,
    }
