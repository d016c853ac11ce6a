"""Patient journey sweep: `--due` (100 000) occurrences all due at once — a confirmation request a day before
each booked visit, as after a long stop of the scheduler — decided by `sweep_portal` in chunks of 1 000:
conditions read from the visits, a message, a task and the rule's note queued per firing in the same
transaction. Prints firings/s (floor ≥ 1 000) on SQLite and, with `--postgres`, on a throw-away PostgreSQL
15 cluster; then a second sweep of the same moment (must fire nothing).

    .venv/bin/python bench/journey_sweep.py [--due 100000] [--postgres]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _support import PgCluster
from mis_import import install_runtime
from sqlalchemy import func, select

from widget_server import clock
from widget_server.jobs.journey import sweep_portal
from widget_server.journey import Catalogue, create_rule
from widget_server.migrations import upgrade
from widget_server.models import JourneyRuleVersion, MisAppointment, MisPatient, OutboxJob, RuleFiring
from widget_server.portals import create_portal

NOW = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)  # 12:00 in Moscow: outside quiet hours
RULE = {
    "name": "Подтверждение записи",
    "enabled": True,
    "trigger": {"type": "offset", "anchor": "visit", "days": -1, "at": "10:00"},
    "conditions": {"statuses": ["booked"]},
    "actions": [
        {"type": "message", "text": "{{ФИО}}, ждём Вас {{дата}} в {{время}}, врач: {{врач}}. {{Бренд}}"},
        {"type": "task", "user_id": "1", "text": "Проверить подтверждение"},
    ],
}


def _rows(model: type, rows: list[dict]) -> None:
    from widget_server import runtime

    with runtime.current().db.transaction() as s:
        for start in range(0, len(rows), 5000):
            s.execute(model.__table__.insert(), rows[start : start + 5000])


def seed(due: int) -> int:
    from widget_server import runtime

    rt = runtime.current()
    with rt.db.transaction() as s:
        portal = create_portal(s, kind="sandbox", name="Bench", timezone="Europe/Moscow", currency="RUB")
        portal.settings = {
            **(portal.settings or {}),
            "journey": {"brand": "Улыбка", "message_field_id": "Сообщение пациенту"},
        }
        s.flush()
        rule = create_rule(s, portal, RULE, "bench", Catalogue())
        portal_id, rule_id = portal.id, rule.id
        version_id = s.scalar(select(JourneyRuleVersion.id).where(JourneyRuleVersion.rule_id == rule_id))
    _rows(
        MisPatient,
        [
            {
                "portal_id": portal_id,
                "source": "helix",
                "source_patient_id": f"P{i}",
                "name": f"Пациент {i} Тестович",
                "name_key": f"пациент {i}",
                "other_phones": [],
                "flags": [],
                "created_at": NOW,
                "updated_at": NOW,
            }
            for i in range(due)
        ],
    )
    with rt.db.transaction() as s:
        first = s.scalar(select(func.min(MisPatient.id)).where(MisPatient.portal_id == portal_id))
    starts = [NOW + timedelta(days=1, minutes=i % 600) for i in range(due)]
    _rows(
        MisAppointment,
        [
            {
                "portal_id": portal_id,
                "source": "helix",
                "source_id": f"V{i}",
                "patient_id": first + i,
                "status": "booked",
                "starts_at": starts[i],
                "content_hash": f"{i:064d}",
                "doc": {"doctor_name": f"Врач {i % 12}", "specialty": "терапия"},
                "kind": "primary",
                "flags": [],
                "deal_id": str(100_000 + i),
                "created_at": NOW,
                "updated_at": NOW,
            }
            for i in range(due)
        ],
    )
    with rt.db.transaction() as s:
        first_visit = s.scalar(
            select(func.min(MisAppointment.id)).where(MisAppointment.portal_id == portal_id)
        )
    planned = NOW - timedelta(hours=2)
    _rows(
        RuleFiring,
        [
            {
                "portal_id": portal_id,
                "rule_id": rule_id,
                "rule_version_id": version_id,
                "occurrence": f"visit:{first_visit + i}:{i}",
                "deal_id": str(100_000 + i),
                "appointment_id": first_visit + i,
                "patient_id": first + i,
                "anchor_at": starts[i],
                "planned_at": planned,
                "due_at": planned,
                "expires_at": planned + timedelta(hours=12),
                "state": "scheduled",
                "context": {},
                "created_at": planned,
            }
            for i in range(due)
        ],
    )
    return portal_id


def run(label: str, url: str, due: int, work: Path) -> None:
    upgrade(url)
    rt = install_runtime(url, work)
    started = time.perf_counter()
    portal_id = seed(due)
    seeded = time.perf_counter() - started
    started = time.perf_counter()
    result = sweep_portal(portal_id)
    seconds = time.perf_counter() - started
    again = sweep_portal(portal_id)
    with rt.db.transaction() as s:
        fired = s.scalar(select(func.count()).where(RuleFiring.state == "fired")) or 0
        jobs = s.scalar(select(func.count()).select_from(OutboxJob)) or 0
    print(
        f"{label}: seeded {due} due occurrences in {seeded:.1f} s; sweep fired {result.fired} "
        f"(expired {result.expired}, skipped {result.skipped}), {result.jobs} jobs, in {seconds:.1f} s "
        f"= {result.fired / seconds:,.0f} firings/s (floor ≥ 1,000); rows fired {fired}, outbox {jobs}; "
        f"second sweep fired {again.fired}"
    )
    rt.db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--due", type=int, default=100_000)
    parser.add_argument("--postgres", action="store_true", help="also on a throw-away PostgreSQL 15 cluster")
    args = parser.parse_args()
    clock.now_utc = lambda: NOW  # type: ignore[assignment]
    with tempfile.TemporaryDirectory() as tmp:
        run("SQLite", f"sqlite:///{tmp}/bench.sqlite3", args.due, Path(tmp))
        if args.postgres:
            with PgCluster() as cluster:
                run("PostgreSQL", cluster.url, args.due, Path(tmp))


if __name__ == "__main__":
    main()
