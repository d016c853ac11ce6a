"""Every trigger from real-shaped amoCRM bodies (DP hooks as JSON and form, add_lead, status_lead and a
person's reassignment webhooks) through the inbox parsers to one decision per lead."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from connectors.types import Deal, StageRef
from widget_server.distribution import create_rule
from widget_server.distribution.operators import set_status
from widget_server.jobs import distribution as jobs_distribution
from widget_server.jobs.inbox import EVENT_REACTIONS, PARSERS
from widget_server.models import (
    DistributionAssignment,
    DistributionDecision,
    OutboxJob,
    Portal,
    PortalUser,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ACCOUNT = "29842716"


@pytest.fixture
def amo_rule(rt, clinic, operators):  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        portal = s.get(Portal, clinic.id)
        portal.settings = {**portal.settings, "pipelines": {"8572511": ["67548607", "67548619"]}}
        s.flush()
        doc = {
            "name": "Первичный приём",
            "members": [{"user_id": u} for u in operators[:2]],
            "match": {"pipelines": ["8572511"], "stages": ["67548607"]},
        }
        rule = create_rule(s, portal, doc, "t")
        for user in operators[:2]:
            set_status(s, portal, s.get(PortalUser, user), "on_shift", source="test", actor="t")
        return rule.id


def _react(clinic, source: str, raw: str) -> int:  # type: ignore[no-untyped-def]
    parsed = PARSERS[source](ACCOUNT, raw)
    if parsed is None:
        return 0
    items = getattr(parsed, "events", None) or (parsed,)
    for item in items:
        for reaction in EVENT_REACTIONS.get(type(item), []):
            reaction(clinic.id, item)
    return len(items)


def _assignments(rt) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        rows = s.scalars(select(DistributionAssignment).order_by(DistributionAssignment.id)).all()
        return [(r.deal_id, r.state, r.trigger) for r in rows]


def _count(rt, model) -> int:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        return s.scalar(select(func.count()).select_from(model))


@pytest.mark.parametrize(
    ("fixture", "deal", "trigger"),
    [
        ("lead_added__distribute.json", "15320001", "dp_lead_added"),
        ("lead_status_changed__distribute.form", "15320003", "dp_lead_status_changed"),
        ("lead_appeared_in_status__distribute.json", "15320002", "dp_lead_appeared_in_status"),
    ],
)
def test_dp_hook_assigns_the_lead(rt, clinic, amo_rule, fixture, deal, trigger):
    raw = (FIXTURES / "amocrm_distribution" / "dp" / fixture).read_text()
    assert _react(clinic, "amocrm_dp", raw) == 1
    assert _assignments(rt) == [(deal, "assigned", trigger)]


def test_dp_went_from_trigger_is_ignored(rt, clinic, amo_rule):
    raw = (
        FIXTURES / "amocrm_distribution" / "dp" / "lead_appeared_in_status__went_from_trigger.json"
    ).read_text()
    assert _react(clinic, "amocrm_dp", raw) == 0
    assert _assignments(rt) == []


def test_another_features_dp_action_is_not_a_distribution(rt, clinic, amo_rule):
    raw = (FIXTURES / "amocrm" / "dp" / "lead_added__json.json").read_text()  # action create_visit_request
    _react(clinic, "amocrm_dp", raw)
    assert _assignments(rt) == []


@pytest.fixture
def amo_deal(monkeypatch):  # type: ignore[no-untyped-def]
    """add_lead carries the id; the job reads the deal (the amo client itself is tested in its own suite)."""

    class Reader:
        def get_deal(self, deal_id: str) -> Deal:
            return Deal(id=deal_id, name="Новая заявка с сайта", stage=StageRef("8572511", "67548607"))

    monkeypatch.setattr(jobs_distribution, "crm_for", lambda portal, rt: Reader())


def test_add_lead_webhook_and_dp_make_one_decision(rt, clinic, amo_rule, amo_deal):
    webhook = (FIXTURES / "amocrm" / "hooks" / "leads_add__with_custom_fields.form").read_text()
    dp = (FIXTURES / "amocrm_distribution" / "dp" / "lead_added__distribute.json").read_text()
    _react(clinic, "amocrm", webhook)
    _react(clinic, "amocrm_dp", dp)
    assert _assignments(rt) == [("15320001", "assigned", "webhook")]
    assert _count(rt, DistributionDecision) == 1


def test_a_hundred_replays_of_one_webhook_change_the_responsible_once(rt, clinic, amo_rule, amo_deal):
    webhook = (FIXTURES / "amocrm" / "hooks" / "leads_add__with_custom_fields.form").read_text()
    for _ in range(100):
        _react(clinic, "amocrm", webhook)
    assert _count(rt, DistributionDecision) == 1
    with rt.db.transaction() as s:
        assert s.scalar(select(func.count()).where(OutboxJob.operation == "set_responsible")) == 1


def test_status_lead_leaving_the_trigger_stage_marks_it_taken(rt, clinic, amo_rule):
    dp = (FIXTURES / "amocrm_distribution" / "dp" / "lead_status_changed__distribute.form").read_text()
    _react(clinic, "amocrm_dp", dp)
    with rt.db.transaction() as s:
        s.scalar(select(DistributionAssignment)).deal_id = "15318175"  # the lead the status fixture moves
    moved = (FIXTURES / "amocrm" / "hooks" / "leads_status__moved.form").read_text()
    _react(clinic, "amocrm", moved)
    assert _assignments(rt) == [("15318175", "taken", "dp_lead_status_changed")]


def test_a_persons_reassignment_is_recorded_as_manual(rt, clinic, amo_rule):
    dp = (FIXTURES / "amocrm_distribution" / "dp" / "lead_status_changed__distribute.form").read_text()
    _react(clinic, "amocrm_dp", dp)
    with rt.db.transaction() as s:
        s.scalar(select(DistributionAssignment)).deal_id = "15318175"
        s.add(PortalUser(portal_id=clinic.id, crm_user_id="8123405", name="Кузьмина Вера", roles=["staff"]))
    webhook = (FIXTURES / "amocrm" / "hooks" / "leads_responsible__changed.form").read_text()
    _react(clinic, "amocrm", webhook)
    with rt.db.transaction() as s:
        last = s.scalar(select(DistributionDecision).order_by(DistributionDecision.id.desc()))
        assert (last.reason, last.trigger) == ("manual", "crm")
        assert s.scalar(select(DistributionAssignment.state)) == "taken"


def test_the_bitrix24_robot_entry_returns_user_decision_and_queue_flag(rt, clinic, amo_rule, operators):
    from connectors.types import RobotCall

    class Client:
        def get_deal(self, deal_id: str) -> Deal:
            return Deal(id=deal_id, name="Заявка", stage=StageRef("8572511", "67548607"))

    call = RobotCall(
        portal_external_id="b24", occurred_at=None, deal_id="77", action="clinicbridge_distribute",
        params={"event_token": "t"},
    )  # fmt: skip
    with rt.db.transaction() as s:
        portal = s.get(Portal, clinic.id)
        s.expunge(portal)
    first = jobs_distribution.distribute_robot(portal, Client(), call)
    again = jobs_distribution.distribute_robot(portal, Client(), call)
    with rt.db.transaction() as s:
        crm_id = s.get(PortalUser, operators[0]).crm_user_id
    assert first == again == {"user_id": crm_id, "decision_id": first["decision_id"], "queued": "N"}


def test_a_lead_no_rule_matched_is_distributed_when_it_reaches_a_rules_stage(rt, clinic, amo_rule):
    from connectors.types import DealStageChanged

    def moved(stage: str) -> DealStageChanged:
        return DealStageChanged(
            portal_external_id=ACCOUNT, occurred_at=None, deal_id="555", stage=StageRef("8572511", stage)
        )

    jobs_distribution.distribute_on_stage_change(clinic.id, moved("67548619"))  # no rule for this stage
    jobs_distribution.distribute_on_stage_change(clinic.id, moved("67548619"))  # a repeat adds nothing
    assert _assignments(rt) == [("555", "unmatched", "webhook_status")]
    assert _count(rt, DistributionDecision) == 1
    jobs_distribution.distribute_on_stage_change(clinic.id, moved("67548607"))
    assert _assignments(rt) == [("555", "assigned", "webhook_status")]


def test_a_portal_without_rules_costs_no_crm_read(rt, clinic, monkeypatch):
    from connectors.types import DealCreated

    def no_read(portal, runtime):  # type: ignore[no-untyped-def]
        raise AssertionError("the CRM was read for a portal that does not distribute")

    monkeypatch.setattr(jobs_distribution, "crm_for", no_read)
    jobs_distribution.distribute_on_new_deal(clinic.id, DealCreated(ACCOUNT, None, "556"))
    assert _assignments(rt) == []
