"""The fixed world the method fixtures were recorded against (tests/fixtures/bitrix24/methods/*.json)."""

from __future__ import annotations

from tests.support.fake_bitrix24 import FakeBitrix24

DOCS = "https://apidocs.bitrix24.com/"


def standard_world(fake: FakeBitrix24) -> dict[str, int]:
    """Ids are deterministic: the fake numbers everything from 101 in creation order."""
    user = int(fake.new_user("Мария Козлова", online=True, email="m.kozlova@example.ru")["ID"])
    deal = int(fake.new_deal("Орлов В. Н.", UF_CRM_TEXT="Палата 3")["id"])
    contact = int(fake.new_contact("Елена Орлова", ("8 (916) 123-45-67",))["ID"])
    folder = int(fake.m_disk_storage_addfolder({"id": "17", "data": {"NAME": f"Пациент {deal}"}})["ID"])
    fake.valid_event_tokens.add("55c1dc1c3f0d75.78875596|A51601_82584_96831_81132|hash")
    fake.handlers.append(
        {
            "event": "ONCRMDEALUPDATE",
            "handler": "",
            "event_type": "offline",
            "auth_connector": "clinicbridge",
            "options": None,
        }
    )
    fake.dispatch("crm.item.update", {"entityTypeId": 2, "id": deal, "fields": {"UF_CRM_NUMBER": 5}})
    # Made last, so that the ids above stay those the older fixtures were recorded with.
    company = int(fake.new_company("ООО «Ромашка»", responsible=user)["id"])
    fake.link(deal, contact, company)
    task = fake.m_tasks_task_add(
        {
            "fields": {
                "TITLE": "Перезвонить",
                "RESPONSIBLE_ID": user,
                "DEADLINE": "2030-05-06T15:00:00+03:00",
                "UF_CRM_TASK": [f"D_{deal}"],
            }
        }
    )["task"]["id"]
    fake.work_days[user] = "OPENED"
    fake.log.clear()
    return {
        "user": user,
        "deal": deal,
        "contact": contact,
        "folder": folder,
        "company": company,
        "task": int(task),
    }
