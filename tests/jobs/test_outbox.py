"""The outbox: the action is committed first, mirrored by a job, retried, and failures stay visible."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from connectors.errors import ReauthRequired, Rejected, RetryLater
from connectors.types import StageRef
from widget_server.jobs import mirror
from widget_server.jobs.mirror import mirror_outbox_job
from widget_server.jobs.periodic import sweep_outbox
from widget_server.models import OutboxJob, Portal, utcnow
from widget_server.sandbox.crm import SandboxCrm


@pytest.fixture
def crm(rt, portal) -> SandboxCrm:
    return SandboxCrm(rt.db, portal.id, timezone=portal.timezone)


@pytest.fixture
def deal_id(crm) -> str:
    from connectors.types import NewDeal

    return crm.create_deal(
        NewDeal(name="Иванов И. И.", stage=StageRef("1", "in_stay")), idempotency_key="d1"
    ).id


def _job(rt, job_id: int) -> OutboxJob:
    with rt.db.transaction() as s:
        return s.get(OutboxJob, job_id)


def test_note_is_committed_before_the_crm_sees_it_and_mirrored_by_the_worker(
    make_api, portal, crm, deal_id, rt, jobs
):
    staff = make_api(portal, "staff")
    response = staff.post(f"/api/v1/deals/{deal_id}/notes", json={"text": "Пациент принят"}, key="n-1")
    assert response.status_code == 202
    job_id = response.get_json()["id"]
    assert response.get_json()["state"] == "pending"
    assert crm.notes_for(deal_id) == []  # nothing reached the CRM inside the request
    assert jobs() >= 1
    assert crm.notes_for(deal_id) == ["Пациент принят"]
    job = _job(rt, job_id)
    assert (job.state, job.attempts, job.last_error) == ("done", 1, None)
    assert staff.get(f"/api/v1/outbox/{job_id}").get_json()["state"] == "done"


def test_running_a_job_twice_mirrors_once(admin, crm, deal_id, rt, jobs):
    job_id = admin.post(f"/api/v1/deals/{deal_id}/notes", json={"text": "x"}).get_json()["id"]
    jobs()
    with rt.db.transaction() as s:  # as if a second wake-up arrived after a worker crash
        s.get(OutboxJob, job_id).state = "pending"
    mirror_outbox_job(job_id)
    assert crm.notes_for(deal_id) == ["x"]


def test_a_lost_wakeup_is_recovered_by_the_sweep(admin, crm, deal_id, rt, jobs):
    job_id = admin.post(f"/api/v1/deals/{deal_id}/notes", json={"text": "after outage"}).get_json()["id"]
    for queue in rt.queues.values():
        queue.empty()  # Redis lost the wake-up
    assert jobs() == 0
    assert sweep_outbox() == "woke 1"
    jobs()
    assert crm.notes_for(deal_id) == ["after outage"]
    assert _job(rt, job_id).state == "done"


def _failing(monkeypatch, error: Exception) -> None:
    def boom(*_args, **_kwargs):
        raise error

    monkeypatch.setattr(mirror, "run_operation", boom)


def test_transient_failure_is_rescheduled_with_backoff(admin, deal_id, rt, jobs, monkeypatch):
    _failing(monkeypatch, RetryLater("429 from CRM", retry_after=120))
    job_id = admin.post(f"/api/v1/deals/{deal_id}/notes", json={"text": "x"}).get_json()["id"]
    before = utcnow()
    jobs()
    job = _job(rt, job_id)
    assert job.state == "pending"
    assert job.attempts == 1
    assert job.last_error == "RetryLater: 429 from CRM"
    assert job.next_attempt_at >= before + timedelta(seconds=120)
    assert sweep_outbox() == "woke 0"  # not due yet


def test_permanent_rejection_fails_and_is_visible_to_the_admin(admin, deal_id, rt, jobs, monkeypatch, crm):
    _failing(monkeypatch, Rejected("deal 999 not found", status=404))
    job_id = admin.post(f"/api/v1/deals/{deal_id}/notes", json={"text": "x"}).get_json()["id"]
    jobs()
    failed = admin.get("/api/v1/outbox?state=failed").get_json()
    assert [j["id"] for j in failed] == [job_id]
    assert failed[0]["last_error"] == "Rejected: deal 999 not found"

    monkeypatch.undo()
    retried = admin.post(f"/api/v1/outbox/{job_id}/retry")
    assert retried.status_code == 200 and retried.get_json()["state"] == "pending"
    jobs()
    assert _job(rt, job_id).state == "done"
    assert crm.notes_for(deal_id) == ["x"]
    assert admin.post(f"/api/v1/outbox/{job_id}/retry").status_code == 409  # done jobs are not retried


def test_attempts_are_bounded(admin, deal_id, rt, monkeypatch):
    _failing(monkeypatch, RetryLater("still down", retry_after=0))
    job_id = admin.post(f"/api/v1/deals/{deal_id}/notes", json={"text": "x"}).get_json()["id"]
    outcomes = []
    for _ in range(20):
        with rt.db.transaction() as s:
            s.get(OutboxJob, job_id).next_attempt_at = utcnow() - timedelta(seconds=1)
        outcomes.append(mirror_outbox_job(job_id))
    job = _job(rt, job_id)
    assert job.state == "failed"
    assert job.attempts == job.max_attempts
    assert outcomes.count("retry_scheduled") == job.max_attempts - 1


def test_lost_grant_marks_portal_and_keeps_the_job(admin, deal_id, rt, jobs, monkeypatch, portal):
    _failing(monkeypatch, ReauthRequired("invalid_grant"))
    job_id = admin.post(f"/api/v1/deals/{deal_id}/notes", json={"text": "x"}).get_json()["id"]
    jobs()
    job = _job(rt, job_id)
    assert job.state == "pending" and job.attempts == 0
    with rt.db.transaction() as s:
        assert s.get(Portal, portal.id).status == "needs_reauth"


def test_a_leased_job_is_not_run_twice_concurrently(admin, deal_id, rt, crm):
    job_id = admin.post(f"/api/v1/deals/{deal_id}/notes", json={"text": "x"}).get_json()["id"]
    with rt.db.transaction() as s:
        s.get(OutboxJob, job_id).lease_until = utcnow() + timedelta(minutes=1)
    assert mirror_outbox_job(job_id) == "skipped"
    assert crm.notes_for(deal_id) == []


def test_outbox_rows_survive_when_redis_is_down(admin, deal_id, rt, monkeypatch):
    import widget_server.outbox as outbox

    def redis_down(_job_id):
        raise ConnectionError("redis unreachable")

    monkeypatch.setattr(outbox, "wake_outbox_job", redis_down)
    response = admin.post(f"/api/v1/deals/{deal_id}/notes", json={"text": "kept"})
    assert response.status_code == 202
    with rt.db.transaction() as s:
        assert [j.payload["text"] for j in s.scalars(select(OutboxJob))] == ["kept"]


class _NoteBatches:
    """The sandbox with a note batch (`NoteBatching`), as amoCRM has it: what each batch carried."""

    def __init__(self, inner: SandboxCrm) -> None:
        self._inner = inner
        self.batches: list[list[str]] = []

    def add_notes(self, notes):  # type: ignore[no-untyped-def]
        self.batches.append([n.text for n in notes])
        return [self._inner.add_note(n.deal_id, n.text, idempotency_key=n.idempotency_key) for n in notes]

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._inner, name)


@pytest.mark.parametrize("batched", [False, True], ids=["one-by-one", "note-batch"])
def test_ledger_notes_are_worded_when_sent_and_old_worded_jobs_still_send(
    rt, portal, crm, deal_id, monkeypatch, batched
):
    from widget_server.outbox import enqueue_outbox_id

    facts = {
        "kind": "charge", "amount_minor": 150_000, "currency": "RUB", "locale": "ru_RU",
        "article": "Перевязочный материал", "service_date": None, "method": None, "payer": None,
        "reason": "перевязка", "reversed_seq": None, "balance_after_minor": 1_230_000,
        "paid_through": "2026-12-14",
    }  # fmt: skip
    queued = [
        # Queued before notes were kept as facts: worded at the time, sent as it is.
        {"deal_id": deal_id, "text": "Пополнение 5 000,00 ₽. Баланс: 13 800,00 ₽"},
        {"deal_id": deal_id, "ledger_note": facts},
    ]
    with rt.db.transaction() as s:
        ids = [
            enqueue_outbox_id(
                s, portal_id=portal.id, operation="add_note", payload=payload,
                idempotency_key=f"ledger-note:{n}", deal_id=deal_id,
            )
            for n, payload in enumerate(queued)
        ]  # fmt: skip
    if batched:
        wrapped = _NoteBatches(crm)
        monkeypatch.setattr(mirror, "crm_for", lambda _portal, _rt=None: wrapped)
        assert mirror.mirror_outbox_jobs(ids) == "done,done"
        assert len(wrapped.batches) == 1
    else:
        assert [mirror_outbox_job(job_id) for job_id in ids] == ["done", "done"]
    assert [n.replace("\xa0", " ") for n in crm.notes_for(deal_id)] == [
        "Пополнение 5 000,00 ₽. Баланс: 13 800,00 ₽",
        "Списание 1 500,00 ₽ — Перевязочный материал. Основание: перевязка. Баланс: 12 300,00 ₽. "
        "Оплачено по 14.12.2026",
    ]
