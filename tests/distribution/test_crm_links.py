"""What distribution reads from and writes to the CRM around a lead, on the sandbox: the sticky owner looked
up from the lead's contact (its responsible, its company's, its other open deal's) when a trigger brings
only the deal, and the contact, company and open tasks handed to the new responsible."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from connectors.types import DealCreated, NewContact, NewTask
from tests.distribution.test_seed002 import _assign, _crm_id, _deal, _rule, _status
from widget_server.jobs.distribution import distribute_on_new_deal
from widget_server.models import DistributionAssignment, OutboxJob

DUE = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def _contact(crm, name: str, responsible: str | None, n: int) -> str:  # type: ignore[no-untyped-def]
    new = NewContact(name=name, phones=(f"+7916123450{n}",), responsible_user_id=responsible)
    return crm.create_contact(new, idempotency_key=f"contact-{n}").id


def _webhook(rt, clinic, deal_id: str):  # type: ignore[no-untyped-def]
    distribute_on_new_deal(clinic.id, DealCreated(str(clinic.external_id), None, deal_id))
    with rt.db.transaction() as s:
        row = s.scalar(select(DistributionAssignment).where(DistributionAssignment.deal_id == deal_id))
        return row.user_id, row.decision_id


def _reason(rt, decision_id: int) -> str:  # type: ignore[no-untyped-def]
    from widget_server.models import DistributionDecision

    with rt.db.transaction() as s:
        return s.get(DistributionDecision, decision_id).reason


@pytest.fixture
def on_shift(rt, clinic, operators):  # type: ignore[no-untyped-def]
    ivanova, petrova, sidorova = operators[:3]
    _rule(rt, clinic, [{"user_id": u} for u in (ivanova, petrova, sidorova)])
    for user in (ivanova, petrova, sidorova):
        _status(rt, clinic, user, "on_shift")
    return ivanova, petrova, sidorova


def test_a_new_lead_goes_to_its_contacts_responsible_read_from_the_crm(rt, clinic, crm, on_shift, frozen):
    _, _, sidorova = on_shift
    contact = _contact(crm, "Елена Орлова", _crm_id(rt, sidorova), 1)
    deal = _deal(crm, 1, contact_ids=(contact,))

    user, decision = _webhook(rt, clinic, deal)

    assert (user, _reason(rt, decision)) == (sidorova, "sticky")


def test_then_its_companys_then_its_other_open_deals_responsible(rt, clinic, crm, on_shift, frozen):
    _, petrova, sidorova = on_shift
    outsider = crm.seed_user("Бухгалтер Клиники", email="acc@example.ru").id  # no member of the rule
    company = crm.seed_company("ООО «Нефтемаш»", responsible_user_id=_crm_id(rt, petrova))
    with_company = _contact(crm, "Елена Орлова", outsider, 1)
    crm.link_contact(_deal(crm, 1), with_company, company)
    assert _webhook(rt, clinic, _deal(crm, 2, contact_ids=(with_company,)))[0] == petrova

    other_deal = _contact(crm, "Пётр Орлов", outsider, 2)
    earlier = _deal(crm, 3, contact_ids=(other_deal,))
    crm.set_responsible(earlier, _crm_id(rt, sidorova))
    user, decision = _webhook(rt, clinic, _deal(crm, 4, contact_ids=(other_deal,)))
    assert (user, _reason(rt, decision)) == (sidorova, "sticky")


def test_a_lead_without_a_contact_goes_by_the_rule(rt, clinic, crm, on_shift, frozen):
    ivanova, _, _ = on_shift
    user, decision = _webhook(rt, clinic, _deal(crm, 1))
    assert (user, _reason(rt, decision)) == (ivanova, "round_robin")


def test_contact_company_and_open_tasks_follow_the_new_responsible(rt, clinic, crm, on_shift, frozen, jobs):
    ivanova, _, _ = on_shift
    outsider = crm.seed_user("Бухгалтер Клиники", email="acc@example.ru").id
    company = crm.seed_company("ООО «Нефтемаш»", responsible_user_id=outsider)
    contact = _contact(crm, "Елена Орлова", outsider, 1)
    deal = _deal(crm, 1)
    crm.link_contact(deal, contact, company)
    open_task = crm.create_task(NewTask(deal, outsider, "Перезвонить", DUE), idempotency_key="t1").id
    done = crm.create_task(NewTask(deal, outsider, "Уже сделано", DUE), idempotency_key="t2").id
    crm.complete_task(done)

    assert _assign(rt, clinic, deal)[1] == ivanova
    jobs()

    chosen = _crm_id(rt, ivanova)
    assert crm.get_contact(contact).responsible_user_id == chosen
    assert crm.get_company(company).responsible_user_id == chosen
    tasks = {t.id: t.responsible_user_id for t in crm.tasks_for(deal)}
    assert (tasks[open_task], tasks[done]) == (chosen, outsider)
    with rt.db.transaction() as s:
        states = {
            j.state
            for j in s.scalars(select(OutboxJob).where(OutboxJob.operation == "distribution_hand_over"))
        }
    assert states == {"done"}


def test_a_rule_may_leave_contact_company_and_tasks_alone(rt, clinic, crm, operators, frozen, jobs):
    ivanova = operators[0]
    mirror = {"contact": False, "company": False, "open_tasks": False}
    _rule(rt, clinic, [{"user_id": ivanova}], mirror=mirror)
    _status(rt, clinic, ivanova, "on_shift")
    outsider = crm.seed_user("Бухгалтер Клиники", email="acc@example.ru").id
    contact = _contact(crm, "Елена Орлова", outsider, 1)
    deal = _deal(crm, 1, contact_ids=(contact,))

    assert _assign(rt, clinic, deal)[1] == ivanova
    jobs()

    assert crm.get_deal(deal).responsible_user_id == _crm_id(rt, ivanova)
    assert crm.get_contact(contact).responsible_user_id == outsider
    with rt.db.transaction() as s:
        assert s.scalars(select(OutboxJob).where(OutboxJob.operation == "distribution_hand_over")).all() == []


class WorkDays:
    """A CRM whose users open and close their day in it (as Bitrix24's timeman.status reports)."""

    def __init__(self, states: dict[str, str]) -> None:
        self.states = states
        self.asked: list[list[str]] = []

    def work_day_states(self, user_ids: list[str]) -> dict[str, str]:
        self.asked.append(list(user_ids))
        return {uid: self.states[uid] for uid in user_ids if uid in self.states}


def test_operators_shifts_follow_the_crm_work_day_when_the_portal_says_so(
    rt, clinic, crm, operators, frozen, monkeypatch
):
    from widget_server.jobs import distribution as jobs_distribution
    from widget_server.models import OperatorState, OperatorStatusEvent, Portal

    ivanova, petrova, sidorova = operators[:3]
    _rule(rt, clinic, [{"user_id": u} for u in (ivanova, petrova)])  # Sidorova distributes nothing
    _status(rt, clinic, petrova, "on_shift")
    day = WorkDays(
        {
            _crm_id(rt, ivanova): "on_shift",
            _crm_id(rt, petrova): "paused",
            _crm_id(rt, sidorova): "on_shift",
        }
    )
    monkeypatch.setattr(jobs_distribution, "crm_for", lambda portal, rt: day)

    assert jobs_distribution.run_distribution_sweep()["work_day"] == 0  # the portal has not opted in
    with rt.db.transaction() as s:
        portal = s.get(Portal, clinic.id)
        portal.settings = {
            **portal.settings,
            "distribution": {**portal.settings["distribution"], "work_day_source": "timeman"},
        }
    assert jobs_distribution.run_distribution_sweep()["work_day"] == 2
    frozen.advance(minutes=45)  # past auto-off: the open day in the CRM is the sign of life
    assert jobs_distribution.run_distribution_sweep()["work_day"] == 0

    with rt.db.transaction() as s:
        states = dict(s.execute(select(OperatorState.user_id, OperatorState.state)).all())
        sources = {
            e.user_id: e.source for e in s.scalars(select(OperatorStatusEvent)) if e.source == "timeman"
        }
    assert (states[ivanova], states[petrova], states.get(sidorova)) == ("on_shift", "paused", None)
    assert sources == {ivanova: "timeman", petrova: "timeman"}
    assert sorted(day.asked[0]) == sorted([_crm_id(rt, ivanova), _crm_id(rt, petrova)])


def test_the_api_reads_the_sticky_owner_when_the_caller_names_none(
    rt, clinic, crm, on_shift, frozen, make_api
):
    _, _, sidorova = on_shift
    staff = make_api(clinic, "staff")
    contact = _contact(crm, "Елена Орлова", _crm_id(rt, sidorova), 1)
    first, second = _deal(crm, 1, contact_ids=(contact,)), _deal(crm, 2, contact_ids=(contact,))

    where = {"pipeline_id": "primary", "stage_id": "new"}
    looked_up = staff.post(f"/api/v1/deals/{first}/assign", json=where).get_json()
    named_none = staff.post(
        f"/api/v1/deals/{second}/assign", json={**where, "sticky_crm_user_ids": []}
    ).get_json()

    assert (looked_up["user_id"], looked_up["decision"]["reason"]) == (sidorova, "sticky")
    assert named_none["decision"]["reason"] == "round_robin"


def test_leads_decided_together_are_handed_over_by_one_job(rt, clinic, crm, operators, frozen, jobs):
    ivanova = operators[0]
    _rule(rt, clinic, [{"user_id": ivanova}])
    outsider = crm.seed_user("Бухгалтер Клиники", email="acc@example.ru").id
    contacts = [_contact(crm, f"Пациент {n}", outsider, n) for n in range(3)]
    deals = [_deal(crm, n, contact_ids=(contact,)) for n, contact in enumerate(contacts)]
    for deal in deals:
        assert _assign(rt, clinic, deal)[0] == "queued"  # nobody on shift yet

    _status(rt, clinic, ivanova, "on_shift")  # the queue drains in this one transaction
    jobs()

    with rt.db.transaction() as s:
        [job] = s.scalars(select(OutboxJob).where(OutboxJob.operation == "distribution_hand_over")).all()
        assert (job.state, [h["deal_id"] for h in job.payload["handovers"]]) == ("done", deals)
    assert {crm.get_contact(c).responsible_user_id for c in contacts} == {_crm_id(rt, ivanova)}


def test_one_refused_lead_does_not_hold_back_the_others() -> None:
    from connectors.errors import Rejected
    from widget_server.jobs.distribution import hand_over

    class Crm:
        def __init__(self) -> None:
            self.done: list[str] = []

        def hand_over(self, handovers):  # type: ignore[no-untyped-def]
            if any(h.deal_id == "13" for h in handovers):
                raise Rejected("no such deal", status=404, code="NotFound")
            self.done += [h.deal_id for h in handovers]

    crm = Crm()
    payload = {"handovers": [{"deal_id": d, "user_id": "7"} for d in ("11", "13", "15")]}

    result = hand_over(crm, payload, "k")  # type: ignore[arg-type]

    assert crm.done == ["11", "15"]
    assert (result["handed_over"], [r["deal_id"] for r in result["refused"]]) == (2, ["13"])
    with pytest.raises(Rejected):
        hand_over(crm, {"handovers": [{"deal_id": "13", "user_id": "7"}]}, "k")  # type: ignore[arg-type]
