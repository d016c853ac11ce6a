"""Deal-field jobs reach the CRM in batches: one request per 50, and a bad one fails only itself."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from connectors.errors import RetryLater
from connectors.types import NewDeal, StageRef
from widget_server.jobs import mirror
from widget_server.jobs.periodic import sweep_outbox
from widget_server.models import OutboxJob, utcnow
from widget_server.outbox import enqueue_outbox
from widget_server.sandbox.crm import SandboxCrm


class CountingCrm:
    """The sandbox CRM, counting the calls the mirror makes."""

    def __init__(self, inner: SandboxCrm) -> None:
        self.inner = inner
        self.batches: list[int] = []
        self.singles = 0
        self.fail_batches_with: Exception | None = None

    def update_deals(self, updates):  # type: ignore[no-untyped-def]
        self.batches.append(len(updates))
        if self.fail_batches_with is not None:
            raise self.fail_batches_with
        return self.inner.update_deals(updates)

    def update_deal_fields(self, deal_id, fields):  # type: ignore[no-untyped-def]
        self.singles += 1
        return self.inner.update_deal_fields(deal_id, fields)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)


@pytest.fixture
def crm(rt, portal, monkeypatch) -> CountingCrm:
    counting = CountingCrm(SandboxCrm(rt.db, portal.id, timezone=portal.timezone))
    monkeypatch.setattr(mirror, "crm_for", lambda _portal, _rt: counting)
    return counting


def _deals(crm: CountingCrm, n: int) -> list[str]:
    stage = StageRef("1", "in_stay")
    return [
        crm.inner.create_deal(NewDeal(name=f"Пациент {i}", stage=stage), idempotency_key=f"d{i}").id
        for i in range(n)
    ]


def _queue(rt, portal, deal_ids: list[str], value: str = "1") -> list[int]:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as session:
        jobs = [
            enqueue_outbox(
                session,
                portal_id=portal.id,
                operation="update_deal_fields",
                payload={"deal_id": deal_id, "fields": {"F-BAL": f"{value}.{i:02d}"}},
                idempotency_key=f"f-{deal_id}-{value}",
                deal_id=deal_id,
            )
            for i, deal_id in enumerate(deal_ids)
        ]
        session.flush()
        return [job.id for job in jobs]


def _states(rt, ids: list[int]) -> list[str]:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as session:
        rows = dict(session.execute(select(OutboxJob.id, OutboxJob.state).where(OutboxJob.id.in_(ids))).all())
    return [rows[i] for i in ids]


def test_120_field_jobs_from_one_transaction_are_three_requests(rt, portal, crm, jobs):
    deals = _deals(crm, 120)
    ids = _queue(rt, portal, deals)
    jobs()
    assert crm.batches == [50, 50, 20]
    assert crm.singles == 0
    assert _states(rt, ids) == ["done"] * 120
    assert crm.inner.get_deal(deals[0]).fields["F-BAL"] == "1.00"
    assert crm.inner.get_deal(deals[119]).fields["F-BAL"] == "1.119"


def test_a_refused_batch_is_retried_job_by_job_so_only_the_bad_one_fails(rt, portal, crm, jobs):
    deals = _deals(crm, 3)
    ids = _queue(rt, portal, [deals[0], "999999", deals[2]])  # no deal 999999 in this CRM
    jobs()
    assert crm.batches == [3]  # the batch was refused as a whole…
    assert crm.singles == 3  # …then each job went alone
    assert _states(rt, ids) == ["done", "failed", "done"]
    assert crm.inner.get_deal(deals[2]).fields["F-BAL"] == "1.02"


def test_a_rate_limited_batch_leaves_every_job_for_a_retry_after_the_pause(rt, portal, crm, jobs):
    deals = _deals(crm, 4)
    crm.fail_batches_with = RetryLater("amoCRM: PATCH /api/v4/leads answered 429", retry_after=300)
    ids = _queue(rt, portal, deals)
    jobs()
    assert _states(rt, ids) == ["pending"] * 4
    with rt.db.transaction() as session:
        due = [j.next_attempt_at for j in session.scalars(select(OutboxJob).where(OutboxJob.id.in_(ids)))]
    assert all((when - utcnow()).total_seconds() > 290 for when in due)
    assert crm.singles == 0


def test_the_sweep_wakes_waiting_field_jobs_together(rt, portal, crm, jobs):
    deals = _deals(crm, 7)
    ids = _queue(rt, portal, deals)
    with rt.db.transaction() as session:  # as if every wake-up had been lost
        for job in session.scalars(select(OutboxJob).where(OutboxJob.id.in_(ids))):
            job.next_attempt_at = utcnow()
    rt.queues["crm"].empty()
    assert sweep_outbox() == "woke 7"
    assert rt.queues["crm"].count == 1
    jobs()
    assert crm.batches == [7]
    assert _states(rt, ids) == ["done"] * 7


def test_notes_still_go_one_by_one_before_the_field_batch(rt, portal, crm, jobs):
    deals = _deals(crm, 2)
    with rt.db.transaction() as session:
        enqueue_outbox(
            session,
            portal_id=portal.id,
            operation="add_note",
            payload={"deal_id": deals[0], "text": "Пополнение"},
            idempotency_key="note-1",
            deal_id=deals[0],
        )
        for i, deal_id in enumerate(deals):
            enqueue_outbox(
                session,
                portal_id=portal.id,
                operation="update_deal_fields",
                payload={"deal_id": deal_id, "fields": {"F-BAL": "5.00"}},
                idempotency_key=f"field-{i}",
                deal_id=deal_id,
            )
    jobs()
    assert crm.inner.notes_for(deals[0]) == ["Пополнение"]
    assert crm.batches == [2]


def test_reassignments_from_one_run_go_in_one_batch(rt, portal, crm, jobs):
    deals = _deals(crm, 3)
    operator = crm.inner.seed_user("Ольга Смирнова", email="olga@example.ru")
    with rt.db.transaction() as session:
        for i, deal_id in enumerate(deals):
            enqueue_outbox(
                session,
                portal_id=portal.id,
                operation="set_responsible",
                payload={"deal_id": deal_id, "user_id": operator.id},
                idempotency_key=f"assign-{i}",
                deal_id=deal_id,
            )
    jobs()
    assert crm.batches == [3]
    assert {crm.inner.get_deal(d).responsible_user_id for d in deals} == {operator.id}
