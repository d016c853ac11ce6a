"""Periodic jobs are idempotent per (portal, period), and exactly one scheduler runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from widget_server.jobs.periodic import (
    claim_period,
    portal_today,
    purge_idempotency_records,
    run_once_per_portal_day,
)
from widget_server.jobs.schedule import PERIODIC_JOBS, SchedulerAlreadyRunning, build_scheduler
from widget_server.models import IdempotencyRecord, PeriodicRun, utcnow


def test_a_period_is_claimed_once(rt):
    assert claim_period("daily_thing", "portal:1", "2026-11-23") is True
    assert claim_period("daily_thing", "portal:1", "2026-11-23") is False
    assert claim_period("daily_thing", "portal:2", "2026-11-23") is True
    assert claim_period("daily_thing", "portal:1", "2026-11-24") is True


def test_work_runs_once_per_portal_day_even_when_called_twice(rt, make_portal):
    make_portal(slug="moscow-clinic", timezone="Europe/Moscow")
    make_portal(slug="novosibirsk-clinic", timezone="Asia/Novosibirsk")
    calls = []
    first = run_once_per_portal_day("count", lambda pid, day: calls.append((pid, day)) or {})
    second = run_once_per_portal_day("count", lambda pid, day: calls.append((pid, day)) or {})
    assert first == {"done": 2, "skipped": 0}
    assert second == {"done": 0, "skipped": 2}
    assert len(calls) == 2


def test_the_portals_timezone_decides_today(rt, make_portal):
    moscow = make_portal(slug="moscow-clinic", timezone="Europe/Moscow")
    novosibirsk = make_portal(slug="novosibirsk-clinic", timezone="Asia/Novosibirsk")
    # 18:30 UTC on 23 Nov: 21:30 in Moscow, already 01:30 on 24 Nov in Novosibirsk.
    now = datetime(2026, 11, 23, 18, 30, tzinfo=UTC)
    assert portal_today(moscow, now).isoformat() == "2026-11-23"
    assert portal_today(novosibirsk, now).isoformat() == "2026-11-24"
    days = {}
    run_once_per_portal_day("tz", lambda pid, day: days.__setitem__(pid, day) or {}, now=now)
    assert days == {moscow.id: portal_today(moscow, now), novosibirsk.id: portal_today(novosibirsk, now)}


def test_idempotency_purge_drops_only_expired_records_once_a_day(rt, portal):
    with rt.db.transaction() as s:
        for key, age in (("old", timedelta(days=8)), ("fresh", timedelta(hours=1))):
            s.add(
                IdempotencyRecord(
                    portal_id=portal.id,
                    key=key,
                    method="POST",
                    path="/x",
                    request_hash="h",
                    principal="t",
                    state="completed",
                    created_at=utcnow() - age,
                )
            )
    assert purge_idempotency_records() == "done 1 skipped 0"
    assert purge_idempotency_records() == "done 0 skipped 1"
    with rt.db.transaction() as s:
        assert s.scalars(select(IdempotencyRecord.key)).all() == ["fresh"]
        run = s.scalar(select(PeriodicRun))
        assert (run.outcome, run.detail["deleted"]) == ("done", 1)


def test_schedule_registers_every_periodic_job(redis_client):
    scheduler = build_scheduler(redis_client)
    registered = {job.func for job in scheduler.get_jobs()}
    assert registered == {func for func, _queue, _interval in PERIODIC_JOBS}
    enqueued = scheduler.enqueue_jobs()  # the first tick enqueues every interval job once
    assert len(enqueued) == len(PERIODIC_JOBS)


def test_only_one_scheduler_may_run(redis_client):
    first, second = build_scheduler(redis_client), build_scheduler(redis_client)
    first.acquire()
    with pytest.raises(SchedulerAlreadyRunning):
        second.acquire()
    with pytest.raises(SchedulerAlreadyRunning):
        second.enqueue_jobs()
    first.release()
    second.acquire()
    second.release()


def test_periodic_runs_are_unique_in_the_database(rt):
    from sqlalchemy.exc import IntegrityError

    with rt.db.transaction() as s:
        s.add(PeriodicRun(job_name="j", scope="global", period="p"))
    with pytest.raises(IntegrityError), rt.db.transaction() as s:
        s.add(PeriodicRun(job_name="j", scope="global", period="p"))
    with rt.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(PeriodicRun)) == 1
