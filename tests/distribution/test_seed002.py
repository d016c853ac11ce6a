"""Seed 002's stories on the sandbox CRM: a new lead goes to an operator on shift with a task and a note,
an untaken lead moves on and the supervisor hears of it, nobody on shift means the lead waits."""

from __future__ import annotations

from sqlalchemy import func, select

from connectors.types import NewDeal, StageRef
from widget_server.distribution import (
    DEFAULT_TASK_TEXT,
    DealContext,
    assign_deal,
    create_rule,
    redistribute_due,
)
from widget_server.distribution.engine import as_dicts
from widget_server.distribution.operators import add_shift, set_status
from widget_server.models import DistributionAssignment, DistributionDecision, Portal, PortalUser


def _rule(rt, clinic, members, **extra):  # type: ignore[no-untyped-def]
    doc = {"name": "Первичный приём", "strategy": "round_robin", "members": members,
           "match": {"pipelines": ["primary"]}, **extra}  # fmt: skip
    with rt.db.transaction() as s:
        return create_rule(s, s.get(Portal, clinic.id), doc, "test").id


def _status(rt, clinic, user_id, state, **kw):  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        set_status(
            s, s.get(Portal, clinic.id), s.get(PortalUser, user_id), state, source="test", actor="t", **kw
        )


def _deal(crm, n: int, contact_ids=()) -> str:  # type: ignore[no-untyped-def]
    return crm.create_deal(
        NewDeal(name=f"Заявка {n}", stage=StageRef("primary", "new"), contact_ids=tuple(contact_ids)),
        idempotency_key=f"deal-{n}",
    ).id


def _assign(rt, clinic, deal_id, **kw):  # type: ignore[no-untyped-def]
    kw.setdefault("context", DealContext(pipeline_id="primary", stage_id="new"))
    with rt.db.transaction() as s:
        result = assign_deal(s, s.get(Portal, clinic.id), deal_id, trigger="api", **kw)
        return (
            result.assignment.state,
            result.assignment.user_id,
            result.decision.id if result.decision else None,
        )


def _crm_id(rt, user_id) -> str:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        return s.get(PortalUser, user_id).crm_user_id


def test_seed002_new_lead_to_operator_on_shift(rt, clinic, crm, operators, frozen, jobs):
    ivanova, petrova, sidorova = operators[:3]
    _rule(rt, clinic, [{"user_id": u} for u in (ivanova, petrova, sidorova)])
    _status(rt, clinic, ivanova, "on_shift")
    _status(rt, clinic, petrova, "paused", minutes=20, reason="обед")
    _status(rt, clinic, sidorova, "on_shift")
    deal = _deal(crm, 1)

    state, user, _ = _assign(rt, clinic, deal)
    jobs()

    assert (state, user) == ("assigned", ivanova)
    assert crm.get_deal(deal).responsible_user_id == _crm_id(rt, ivanova)
    tasks = crm.tasks_for(deal)
    assert [(t.text, t.responsible_user_id) for t in tasks] == [(DEFAULT_TASK_TEXT, _crm_id(rt, ivanova))]
    assert (tasks[0].due_at - frozen.now).total_seconds() == 15 * 60
    assert crm.notes_for(deal) == [
        "Назначено: Иванова А. (правило «Первичный приём», "
        "причина: по очереди, 2 на смене, Петрова М. на паузе)"
    ]


def test_seed002_untaken_lead_redistributed_supervisor_alerted(
    rt, clinic, crm, operators, frozen, jobs, supervisor_crm_id
):
    members = operators[:4]
    _rule(rt, clinic, [{"user_id": u} for u in members], take_within_min=15)
    for user in members:
        _status(rt, clinic, user, "on_shift")
    deal = _deal(crm, 1)
    _, first, _ = _assign(rt, clinic, deal)
    holders = [first]
    for _hop in range(2):
        frozen.advance(minutes=16)
        for user in members:  # operators stay active (heartbeat) while the lead waits untaken
            _status(rt, clinic, user, "on_shift")
        with rt.db.transaction() as s:
            assert redistribute_due(s, s.get(Portal, clinic.id))["redistributed"] == 1
            holders.append(s.scalar(select(DistributionAssignment.user_id)))
    assert len(set(holders)) == 3  # never back to someone who had it
    frozen.advance(minutes=16)
    for user in members:
        _status(rt, clinic, user, "on_shift")
    with rt.db.transaction() as s:
        assert redistribute_due(s, s.get(Portal, clinic.id))["queued"] == 1
        assignment = s.scalar(select(DistributionAssignment))
        assert assignment.state == "queued" and assignment.earlier_user_ids == holders
    jobs()
    supervisor_tasks = [t for t in crm.tasks_for(deal) if t.responsible_user_id == supervisor_crm_id]
    assert [t.text for t in supervisor_tasks] == ["Заявку никто не взял в работу: назначьте ответственного"]
    notes = crm.notes_for(deal)
    assert len(notes) == 3 and "не взята в работу вовремя" in notes[1]
    with rt.db.transaction() as s:
        from widget_server.distribution.decisions import verify_pools

        assert list(verify_pools(s)) == [4]  # first choice, two hops, the wait: all re-derived


def test_seed002_on_leave_gets_none_tasks_handed_over(rt, clinic, crm, operators, frozen, jobs):
    ivanova, petrova = operators[:2]
    _rule(rt, clinic, [{"user_id": ivanova}, {"user_id": petrova}], strategy="priority_order")
    _status(rt, clinic, ivanova, "on_shift")
    _status(rt, clinic, petrova, "on_shift")
    first = _deal(crm, 1)
    assert _assign(rt, clinic, first)[1] == ivanova
    # Ivanova goes on leave: her untaken lead moves to Petrova and she gets nothing new.
    with rt.db.transaction() as s:
        add_shift(s, s.get(Portal, clinic.id), s.get(PortalUser, ivanova), "absence", {"reason": "отпуск"},
                  starts_at=frozen.now, ends_at=frozen.now.replace(year=2027), actor="t")  # fmt: skip
        assert redistribute_due(s, s.get(Portal, clinic.id))["handed_over"] == 1
    second = _deal(crm, 2)
    assert _assign(rt, clinic, second)[1] == petrova
    jobs()
    assert crm.get_deal(first).responsible_user_id == _crm_id(rt, petrova)
    assert crm.get_deal(second).responsible_user_id == _crm_id(rt, petrova)
    # Her open task on the lead went with it (the rule's mirror `open_tasks`, on by default), beside the
    # new one for Petrova.
    assert [t.responsible_user_id for t in crm.tasks_for(first)] == [_crm_id(rt, petrova)] * 2
    with rt.db.transaction() as s:
        decision = s.scalar(select(DistributionDecision).order_by(DistributionDecision.id.desc()))
        ivanova_row = next(c for c in as_dicts(decision.record["candidates"]) if c["user_id"] == ivanova)
        assert ivanova_row["excluded"] == "absent"


def test_nobody_on_shift_queues_then_assigns_on_start(
    rt, clinic, crm, operators, frozen, jobs, supervisor_crm_id
):
    ivanova, petrova = operators[:2]
    _rule(rt, clinic, [{"user_id": ivanova}, {"user_id": petrova}])
    deals = [_deal(crm, n) for n in range(3)]
    for deal in deals:
        state, user, _ = _assign(rt, clinic, deal)
        assert (state, user) == ("queued", None)
    jobs()
    # One alert for the queue, not one per lead.
    assert len(crm.notifications_for(supervisor_crm_id)) == 1
    frozen.advance(minutes=5)
    _status(rt, clinic, petrova, "on_shift")
    with rt.db.transaction() as s:
        rows = s.scalars(select(DistributionAssignment).order_by(DistributionAssignment.queued_at)).all()
        assert [(r.deal_id, r.state, r.user_id) for r in rows] == [(d, "assigned", petrova) for d in deals]
    jobs()
    assert crm.get_deal(deals[0]).responsible_user_id == _crm_id(rt, petrova)


def test_sticky_to_contact_owner(rt, clinic, crm, operators, frozen, jobs):
    ivanova, petrova, sidorova = operators[:3]
    _rule(rt, clinic, [{"user_id": u} for u in (ivanova, petrova, sidorova)])
    for user in (ivanova, petrova, sidorova):
        _status(rt, clinic, user, "on_shift")
    deal = _deal(crm, 1)
    sticky = DealContext(pipeline_id="primary", stage_id="new", sticky_crm_user_ids=(_crm_id(rt, sidorova),))
    assert _assign(rt, clinic, deal, context=sticky)[1] == sidorova
    # Sticky leads do not move the round-robin pointer: the next lead still goes to the first in line.
    assert _assign(rt, clinic, _deal(crm, 2))[1] == ivanova
    # A sticky owner who is not eligible is skipped.
    _status(rt, clinic, sidorova, "off")
    assert _assign(rt, clinic, _deal(crm, 3), context=sticky)[1] == petrova
    jobs()
    assert "ответственный за контакт" in crm.notes_for(deal)[0]


def test_retried_trigger_returns_the_same_decision(rt, clinic, crm, operators, frozen):
    _rule(rt, clinic, [{"user_id": u} for u in operators[:3]])
    for user in operators[:3]:
        _status(rt, clinic, user, "on_shift")
    deal = _deal(crm, 1)
    first = _assign(rt, clinic, deal)
    assert all(_assign(rt, clinic, deal) == first for _ in range(5))
    with rt.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(DistributionDecision)) == 1
    forced = _assign(rt, clinic, deal, force=True)
    assert forced[1] != first[1]
    with rt.db.transaction() as s:
        last = s.get(DistributionDecision, forced[2])
        assert last.previous_decision_id == first[2] and last.trigger == "force"


def test_a_closed_deal_frees_a_cap_and_the_oldest_waiting_lead_follows(rt, clinic, crm, operators, frozen):
    from connectors.types import DealStageChanged
    from widget_server.jobs.distribution import distribute_on_stage_change

    ivanova, petrova = operators[:2]
    _rule(rt, clinic, [{"user_id": ivanova, "max_open": 1}, {"user_id": petrova, "max_open": 1}])
    _status(rt, clinic, ivanova, "on_shift")
    _status(rt, clinic, petrova, "on_shift")
    deals = [_deal(crm, n) for n in range(4)]
    states = [_assign(rt, clinic, d)[:2] for d in deals]
    assert states == [("assigned", ivanova), ("assigned", petrova), ("queued", None), ("queued", None)]
    frozen.advance(minutes=3)
    distribute_on_stage_change(
        clinic.id,
        DealStageChanged(
            portal_external_id="x", occurred_at=None, deal_id=deals[1], stage=StageRef("primary", "won")
        ),
    )
    with rt.db.transaction() as s:
        rows = {r.deal_id: (r.state, r.user_id) for r in s.scalars(select(DistributionAssignment))}
    assert rows[deals[1]] == ("closed", petrova)
    assert rows[deals[2]] == ("assigned", petrova)  # the oldest waiting lead, not the newest
    assert rows[deals[3]] == ("queued", None)


def test_the_minute_sweep_ends_silent_days_and_moves_their_leads(rt, clinic, crm, operators, frozen):
    from widget_server.jobs.distribution import run_distribution_sweep
    from widget_server.models import OperatorStatusEvent

    ivanova, petrova = operators[:2]
    _rule(rt, clinic, [{"user_id": ivanova}, {"user_id": petrova}], take_within_min=60)
    _status(rt, clinic, ivanova, "on_shift")
    deal = _deal(crm, 1)
    assert _assign(rt, clinic, deal)[1] == ivanova
    frozen.advance(minutes=20)
    _status(rt, clinic, petrova, "on_shift")
    frozen.advance(minutes=15)  # Ivanova silent for 35 min, Petrova for 15
    assert run_distribution_sweep()["ended"] == 1
    with rt.db.transaction() as s:
        last = s.scalars(select(OperatorStatusEvent).order_by(OperatorStatusEvent.id.desc())).first()
        assert (last.user_id, last.state, last.source) == (ivanova, "off", "auto")
        assignment = s.scalar(select(DistributionAssignment))
        assert (assignment.user_id, assignment.earlier_user_ids) == (petrova, [ivanova])
    again = run_distribution_sweep()
    assert again["ended"] == again["handed_over"] == again["redistributed"] == 0
