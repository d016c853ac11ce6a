"""Seed 000's whole stay, step by step through the API and the sandbox CRM: a sales deal moved to «ready to
sign» in the CRM asking for the arrival date and budget, the arrival-day tasks, admission into «Корпус 1»
with a tariff, the first examination, three days of medication rounds with one dose not given (out of
stock) becoming a purchase task, the purchase approved by the representative, the discharge documents, the
won stage. Each step asserts the ledger, the rounds, the tasks, the notes and the stage."""

from __future__ import annotations

from sqlalchemy import func, select

from connectors.types import StageRef
from widget_server.inpatient.arrivals import ASK_FOR_ARRIVAL
from widget_server.jobs.inpatient import run_inpatient_sweep
from widget_server.models import LedgerEntry, Portal, RoundRecord

from .conftest import READY, admit, map_ready_stage, stage_hook


def _texts(tasks):  # type: ignore[no-untyped-def]
    return [(t.responsible_user_id, t.text) for t in tasks]


def _due(api, building, frozen):  # type: ignore[no-untyped-def]
    response = api.get(
        f"/api/v1/rounds/due?building={building['id']}&at={frozen.now.isoformat().replace('+', '%2B')}"
    )
    assert response.status_code == 200, response.get_json()
    return response.get_json()["rounds"]


def test_seed_000_whole_stay_from_sales_deal_to_won_stage(
    rt, client, apis, crm, staff, hospital, building, tariff, article, deal, frozen, jobs
):
    nurse, doctor, finance, staff_api = apis["nurse"], apis["doctor"], apis["finance"], apis["staff"]
    with rt.db.transaction() as s:
        portal = s.get(Portal, hospital.id)
        portal.settings = {
            **portal.settings,
            "inpatient": {"message_field_id": "F-MSG", "message_bot_id": "77"},
        }

    # 23 Nov: a manager moves the sales deal to «ready to sign» in the CRM: the hook asks him (once) for
    # the arrival date and the budget.
    frozen.set_local("2026-11-23 15:00")
    map_ready_stage(apis)
    crm.move_deal(deal, StageRef(READY["pipeline_id"], READY["stage_id"]))
    stage_hook(client, rt, hospital, deal, READY, "evt-ready")
    stage_hook(client, rt, hospital, deal, READY, "evt-ready-again")
    jobs()
    asked = (staff.manager, ASK_FOR_ARRIVAL)
    assert _texts(crm.tasks_for(deal)) == [asked]
    assert staff_api.get(f"/api/v1/deals/{deal}/stay/arrival").get_json()["arrival"] is None

    # He fills the tab's arrival form: tomorrow, budget 150 000 ₽, neurology (→ Корпус 1).
    arrival = staff_api.post(f"/api/v1/deals/{deal}/stay/arrival", json={
        "arrival_date": "2026-11-24", "budget": "150000.00", "profile": "neurology"})  # fmt: skip
    assert arrival.status_code == 201, arrival.get_json()
    assert arrival.get_json()["building_id"] == building["id"]
    run_inpatient_sweep(now=frozen.now)
    jobs()
    assert _texts(crm.tasks_for(deal)) == [asked]  # not the arrival day yet
    given = "Готов подписать договор. Дата прибытия: 24.11.2026, бюджет 150"
    assert any(n.startswith(given) for n in crm.notes_for(deal))

    # 24 Nov, 08:00: the arrival-day tasks, once however often the sweep runs.
    frozen.set_local("2026-11-24 08:00")
    run_inpatient_sweep(now=frozen.now)
    run_inpatient_sweep(now=frozen.now)
    jobs()
    assert _texts(crm.tasks_for(deal)) == [
        asked,
        (staff.manager, "Сегодня прибывает пациент: свяжитесь с ним и выделите палату в Корпус 1"),
        (staff.building_manager, "Сегодня в Корпус 1 прибывает пациент: подготовьте палату"),
    ]

    # 11:00: admission into Корпус 1 (from the profile), ward 12, bed 1, tariff Стандарт.
    frozen.set_local("2026-11-24 11:00")
    stay = admit(apis, building, tariff, deal)
    assert (stay["building"], stay["ward"], stay["bed"], stay["status"]) == ("Корпус 1", "12", 1, "admitted")
    assert stay["representative"]["phone"] == "+79161234567"
    top_up = {"amount": "50000.00", "method": "cash", "payer": "Петрова Ольга"}
    deposit = finance.post(f"/api/v1/deals/{deal}/stay/deposits", json=top_up)
    assert deposit.status_code == 201
    jobs()
    assert crm.get_deal(deal).stage.pipeline_id == "corpus-1"
    assert crm.get_deal(deal).stage.stage_id == "in_stay"
    ledger = finance.get(f"/api/v1/deals/{deal}/stay").get_json()
    assert (ledger["balance"], ledger["daily_rate"], ledger["status"]) == ("50000.00", "3500.00", "open")
    contacts = crm.find_contacts_by_phone("+79161234567")
    assert [c.name for c in contacts] == ["Петрова Ольга"]
    assert crm.get_deal(deal).contact_ids == (contacts[0].id,)  # the representative is on the deal's card
    assert (
        apis["staff"].get(f"/api/v1/deals/{deal}/stay/inpatient").get_json()["representative"]["contact_id"]
        == contacts[0].id
    )
    assert crm.messages_for(deal) == ["Пациент размещён: Корпус 1, палата 12. Дата поступления 24.11.2026."]
    notes = crm.notes_for(deal)
    assert any(n.startswith("Пациент поступил 24.11.2026: Корпус 1, палата 12, место 1. Тариф «Стандарт»")
               for n in notes)  # fmt: skip
    assert any(n.startswith("Представителю Петрова Ольга (дочь) отправлено сообщение") for n in notes)

    # 12:00: the first examination; its next step is a task for the doctor.
    frozen.set_local("2026-11-24 12:00")
    exam = doctor.post(f"/api/v1/deals/{deal}/stay/examinations", json={
        "kind": "first", "doctor_user_id": staff.doctor, "examined_on": "2026-11-24",
        "results": "Состояние удовлетворительное, ограничение подвижности левой руки",
        "links": ["https://disk.example.ru/petrov/exam-1.pdf"],
        "next_steps": [{"text": "Назначить ЛФК", "role": "doctor", "due_date": "2026-11-25"}]})  # fmt: skip
    assert exam.status_code == 201, exam.get_json()
    jobs()
    assert (staff.doctor, "Назначить ЛФК") in _texts(crm.tasks_for(deal))
    assert any("Первичный осмотр 24.11.2026, врач Игорь Врачев" in n and "exam-1.pdf" in n
               for n in crm.notes_for(deal))  # fmt: skip

    # The doctor prescribes a drug at 09:00 and 21:00 for three days.
    prescribed = doctor.post(f"/api/v1/deals/{deal}/stay/prescriptions", json={
        "drug": "Мексидол", "dose": "125 мг", "times": ["21:00", "09:00"],
        "start_date": "2026-11-25", "end_date": "2026-11-27", "doctor_user_id": staff.doctor})  # fmt: skip
    assert prescribed.status_code == 201, prescribed.get_json()
    assert prescribed.get_json()["times"] == ["09:00", "21:00"]

    # Three days of rounds; on 26 Nov at 09:00 the drug is out of stock.
    records: dict[str, int] = {}
    for day in ("25", "26", "27"):
        for hour in ("09", "21"):
            frozen.set_local(f"2026-11-{day} {hour}:05")
            due = _due(nurse, building, frozen)
            assert [(r["drug"], r["ward"], r["bed"], r["overdue"]) for r in due] == [
                ("Мексидол", "12", 1, False)
            ]
            round_id = due[0]["round_id"]
            if (day, hour) == ("26", "09"):
                missed = {"reason": "out_of_stock", "note": "в аптеке корпуса нет"}
                marked = nurse.post(f"/api/v1/rounds/{round_id}/not-given", json=missed)
            else:
                marked = nurse.post(f"/api/v1/rounds/{round_id}/given", json={})
            assert marked.status_code == 201, marked.get_json()
            records[f"{day} {hour}"] = marked.get_json()["id"]
            assert _due(nurse, building, frozen) == []
            if (day, hour) == ("26", "09"):
                jobs()
                assert (
                    staff.manager,
                    "Купить препарат Мексидол (125 мг): согласуйте закупку с представителем",
                ) in (_texts(crm.tasks_for(deal)))
                expected = (
                    "приём Мексидол 125 мг в 26.11.2026 09:00 не выдан: закончились таблетки "
                    "(в аптеке корпуса нет). Следующий шаг: Купить препарат"
                )
                assert expected in crm.notes_for(deal)

                # The purchase: a hold above the threshold, the representative is told, then consents.
                buy = {"amount": "12000.00", "article_id": article, "description": "Мексидол, курс"}
                requested = finance.post(f"/api/v1/deals/{deal}/stay/purchases", json=buy)
                assert requested.status_code == 201
                purchase = requested.get_json()["purchase"]
                assert purchase["status"] == "pending"
                run_inpatient_sweep(now=frozen.now)
                run_inpatient_sweep(now=frozen.now)
                jobs()
                asked = [m for m in crm.messages_for(deal) if m.startswith("Нужна закупка")]
                assert [m.replace("\xa0", " ") for m in asked] == [
                    "Нужна закупка: Мексидол, курс, 12 000,00 ₽. Просим вашего согласия."
                ]
                consent = {
                    "given_by": "Петрова Ольга (дочь)",
                    "channel": "phone",
                    "given_at": frozen.now.isoformat(),
                }
                approved = finance.post(
                    f"/api/v1/deals/{deal}/stay/purchases/{purchase['id']}/approve", json={"consent": consent}
                )
                assert approved.status_code == 201, approved.get_json()
                assert approved.get_json()["stay"]["balance"] == "38000.00"

                # The dose is given once the drug arrived: a correction pointing at the "not given".
                frozen.set_local("2026-11-26 13:00")
                fix = {"corrects": records["26 09"], "note": "выдан после закупки"}
                corrected = nurse.post(f"/api/v1/rounds/{round_id}/given", json=fix)
                assert corrected.status_code == 201, corrected.get_json()
                assert corrected.get_json()["corrects_id"] == records["26 09"]

    history = nurse.get(f"/api/v1/deals/{deal}/stay/rounds").get_json()["records"]
    assert [(r["outcome"], r["reason"], r["corrects_id"]) for r in history] == [
        ("given", None, None),
        ("given", None, None),
        ("not_given", "out_of_stock", None),
        ("given", None, records["26 09"]),
        ("given", None, None),
        ("given", None, None),
        ("given", None, None),
    ]
    with rt.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(RoundRecord)) == 7

    # 27 Nov: «Завершение пребывания в центре» for 28 Nov: the documents task.
    frozen.set_local("2026-11-27 22:00")
    requested = staff_api.post(
        f"/api/v1/deals/{deal}/stay/discharge-request", json={"discharge_date": "2026-11-28"}
    )
    assert requested.status_code == 200, requested.get_json()
    assert requested.get_json()["status"] == "discharge_requested"
    jobs()
    assert (staff.manager, "Подготовить документы для выписки пациента 28.11.2026") in _texts(
        crm.tasks_for(deal)
    )
    assert crm.get_deal(deal).stage.stage_id == "in_stay"

    # 28 Nov: the documents are done: the ledger discharges (4 days charged, the rest refunded), won stage.
    frozen.set_local("2026-11-28 10:00")
    done = finance.post(f"/api/v1/deals/{deal}/stay/discharge-documents", json={"refund_method": "cash"})
    assert done.status_code == 200, done.get_json()
    assert done.get_json()["status"] == "discharged"
    jobs()
    ledger = finance.get(f"/api/v1/deals/{deal}/stay").get_json()
    assert (ledger["status"], ledger["balance"], ledger["discharge_date"]) == ("closed", "0.00", "2026-11-28")
    with rt.db.transaction() as s:
        kinds = s.execute(select(LedgerEntry.kind, LedgerEntry.amount_minor).order_by(LedgerEntry.seq)).all()
    assert [tuple(k) for k in kinds] == [
        ("deposit", 5_000_000),
        ("purchase", 1_200_000),
        ("daily_charge", 350_000),
        ("daily_charge", 350_000),
        ("daily_charge", 350_000),
        ("daily_charge", 350_000),
        ("refund", 2_400_000),
    ]
    final = crm.get_deal(deal)
    assert (final.stage.pipeline_id, final.stage.stage_id, final.is_closed) == ("corpus-1", "won", True)
    assert crm.messages_for(deal)[-1] == "Пациент выписывается 28.11.2026. Документы для выписки готовы."
    assert any(
        n.startswith("Документы для выписки готовы. Пациент выписан 28.11.2026") for n in crm.notes_for(deal)
    )
    occupancy = staff_api.get("/api/v1/buildings/occupancy?date=2026-11-27&days=2").get_json()
    assert [(d["date"], d["taken"], d["free"]) for d in occupancy["buildings"][0]["days"]] == [
        ("2026-11-27", 1, 2),
        ("2026-11-28", 0, 3),
    ]
