"""In-patient rounds and occupancy at hospital scale.

`--patients` (2 000) in-patients in `--buildings` (10) buildings, `--prescriptions` (6) prescriptions each
with one to three times of day (12 000 prescriptions), the morning round already marked; on SQLite and on
PostgreSQL (`--pg-url`, default the cb_inpatient database; `--no-postgres`). Prints, as median / p95 of
`--runs` (20):

Wall time and this process's CPU time are both printed, median and p95 each (the machine may be shared: a
wall p95 far above the CPU p95 is time spent waiting for a core; a CPU p95 far above the CPU median is
our own work, e.g. the garbage collector's full collections).

1. `due_rounds` for the whole hospital at 09:10 (what every nurse must do now; floor ≤ 50 ms), and for one
   building (what the panel asks for);
2. the schedule arithmetic alone (`slots_between`, no database);
3. the occupancy view for 30 days (`occupancy`, all buildings), with 600 discharged stays in the window.

    .venv/bin/python bench/inpatient_due_rounds.py [--patients 2000] [--prescriptions 6] [--buildings 10]
        [--runs 20] [--pg-url postgresql+psycopg://postgres@127.0.0.1:5433/cb_inpatient] [--no-postgres]
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert, select, text

from widget_server.db import Database
from widget_server.inpatient import due_rounds, occupancy
from widget_server.inpatient.rounds import ScheduledDose, slots_between
from widget_server.migrations import upgrade
from widget_server.models import Building, InpatientStay, Portal, Prescription, RoundRecord, Ward
from widget_server.portals import create_portal

TZ = "Europe/Moscow"
TODAY = date(2026, 11, 24)
TIMES = ["08:00", "09:00", "13:00", "14:00", "18:00", "21:00"]
BEDS_PER_WARD = 4


def _percentiles(samples: list[tuple[float, float]]) -> str:
    """Wall time and this process's CPU time: on a shared machine the wall clock also counts the time
    spent waiting for a core, which says nothing about the code (PostgreSQL's own CPU is not in it)."""
    walls = sorted(w for w, _c in samples)
    cpus = sorted(c for _w, c in samples)
    at95 = min(len(walls) - 1, int(0.95 * len(walls)))
    return (
        f"median {statistics.median(walls):7.2f} ms   p95 {walls[at95]:7.2f} ms   "
        f"cpu median {statistics.median(cpus):6.2f} ms   cpu p95 {cpus[at95]:6.2f} ms"
    )


def _time(runs: int, work: Callable[[], object]) -> tuple[list[tuple[float, float]], object]:
    work()  # warm caches and the statement cache once
    # The set-up's garbage is collected before timing, not charged to whichever sample the collector's
    # full pass would have fallen on (timeit goes further and turns the collector off; here it stays on,
    # so what the code itself leaves for the collector still shows in the p95).
    gc.collect()
    samples, result = [], None
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        result = work()
        samples.append(((time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000))
    return samples, result


def populate(db: Database, patients: int, per_patient: int, buildings: int) -> int:
    rng = random.Random(12)
    with db.transaction() as s:
        portal = create_portal(s, kind="sandbox", name="Бенч-стационар", timezone=TZ, currency="RUB")
        portal_id = portal.id
        per_building = -(-patients // buildings)
        wards_per_building = -(-per_building // BEDS_PER_WARD)
        building_ids, ward_ids = [], []
        for b in range(buildings):
            building = Building(
                portal_id=portal_id,
                name=f"Корпус {b + 1}",
                pipeline_id=str(1000 + b),
                admission_stage_id="1",
                won_stage_id="142",
                manager_user_id="1",
                profiles=[],
            )
            s.add(building)
            s.flush()
            building_ids.append(building.id)
            rows = [
                {
                    "portal_id": portal_id,
                    "building_id": building.id,
                    "name": str(w + 1),
                    "beds": BEDS_PER_WARD,
                }
                for w in range(wards_per_building)
            ]
            s.execute(insert(Ward), rows)
            ward_ids.append(
                list(s.scalars(select(Ward.id).where(Ward.building_id == building.id).order_by(Ward.id)))
            )
        stays = []
        for n in range(patients):
            b = n % buildings
            slot = n // buildings
            stays.append(
                {
                    "portal_id": portal_id,
                    "deal_id": str(100000 + n),
                    "building_id": building_ids[b],
                    "ward_id": ward_ids[b][slot // BEDS_PER_WARD],
                    "bed": slot % BEDS_PER_WARD + 1,
                    "status": "admitted",
                    "admission_date": TODAY - timedelta(days=rng.randint(0, 20)),
                    "representative_name": "Представитель",
                    "representative_consent": True,
                    "admitted_by": "bench",
                    "admitted_at": datetime(2026, 11, 1, tzinfo=UTC),
                }
            )
        s.execute(insert(InpatientStay), stays)
        # History: discharged stays in the occupancy window (their beds are not unique any more).
        s.execute(
            insert(InpatientStay),
            [
                {
                    **stays[n % patients],
                    "deal_id": str(900000 + n),
                    "status": "discharged",
                    "admission_date": TODAY - timedelta(days=40),
                    "discharge_date": TODAY + timedelta(days=rng.randint(-10, -1)),
                }
                for n in range(600)
            ],
        )
        stay_ids = list(s.scalars(select(InpatientStay.id).where(InpatientStay.status == "admitted")))
        prescriptions = []
        for stay_id in stay_ids:
            for _ in range(per_patient):
                times = sorted(rng.sample(TIMES, rng.randint(1, 3)))
                prescriptions.append(
                    {
                        "portal_id": portal_id,
                        "stay_id": stay_id,
                        "drug": "Препарат",
                        "dose": "10 мг",
                        "times": times,
                        "start_date": TODAY - timedelta(days=3),
                        "end_date": TODAY + timedelta(days=7),
                        "doctor_name": "Врач",
                        "created_by": "bench",
                        "created_at": datetime(2026, 11, 1, tzinfo=UTC),
                    }
                )
        for start in range(0, len(prescriptions), 2000):
            s.execute(insert(Prescription), prescriptions[start : start + 2000])
        # The 08:00 round is done: one record per 08:00 dose today.
        morning = datetime(2026, 11, 24, 8, 0, tzinfo=ZoneInfo(TZ)).astimezone(UTC)
        records = [
            {
                "portal_id": portal_id,
                "stay_id": stay_id,
                "prescription_id": pid,
                "due_at": morning,
                "outcome": "given",
                "actor": "bench",
                "recorded_at": morning,
            }
            for pid, stay_id, times in s.execute(
                select(Prescription.id, Prescription.stay_id, Prescription.times)
            )
            if "08:00" in times
        ]
        for start in range(0, len(records), 2000):
            s.execute(insert(RoundRecord), records[start : start + 2000])
    return portal_id


def measure(label: str, url: str, args: argparse.Namespace) -> None:
    db = Database(url)
    started = time.perf_counter()
    portal_id = populate(db, args.patients, args.prescriptions, args.buildings)
    if not db.is_sqlite:
        with db.engine.connect() as conn:  # as autovacuum would have by now in production
            conn.execute(text("ANALYZE"))
            conn.commit()
    print(
        f"\n[{label}] {args.patients} in-patients × {args.prescriptions} prescriptions "
        f"in {args.buildings} buildings, set up in {time.perf_counter() - started:.1f} s"
    )
    at = datetime(2026, 11, 24, 9, 10, tzinfo=ZoneInfo(TZ)).astimezone(UTC)
    with db.transaction() as s:
        portal = s.get(Portal, portal_id)
        assert portal is not None
        first_building = s.scalar(
            select(Building.id).where(Building.portal_id == portal_id).order_by(Building.id)
        )
        samples, items = _time(args.runs, lambda: due_rounds(s, portal, at))
        overdue = sum(1 for i in items if i["overdue"])  # type: ignore[index]
        print(
            f"  due_rounds, whole hospital at 09:10:  {_percentiles(samples)}   "
            f"({len(items)} due, {overdue} overdue)   floor ≤ 50 ms"
        )  # type: ignore[arg-type]
        samples, items = _time(args.runs, lambda: due_rounds(s, portal, at, first_building))
        print(f"  due_rounds, one building:             {_percentiles(samples)}   ({len(items)} due)")  # type: ignore[arg-type]
        doses = [
            ScheduledDose(pid, tuple(times), start, end, None)
            for pid, times, start, end in s.execute(
                select(Prescription.id, Prescription.times, Prescription.start_date, Prescription.end_date)
            )
        ]
        window = (at - timedelta(hours=12), at + timedelta(minutes=30))
        samples, slots = _time(args.runs, lambda: slots_between(doses, TZ, *window))
        print(
            f"  slots_between alone ({len(doses)} prescriptions): {_percentiles(samples)}   "
            f"({len(slots)} slots)"
        )  # type: ignore[arg-type]
        samples, view = _time(args.runs, lambda: occupancy(s, portal, TODAY - timedelta(days=15), 30))
        taken = view[0]["days"][15]["taken"]  # type: ignore[index]
        print(
            f"  occupancy, 30 days × {args.buildings} buildings: {_percentiles(samples)}   "
            f"(Корпус 1 today: {taken} taken)"
        )
    db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--prescriptions", type=int, default=6)
    parser.add_argument("--buildings", type=int, default=10)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5433/cb_inpatient")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.sqlite3"
        upgrade(url)
        measure("SQLite", url, args)
    if not args.no_postgres:
        db = Database(args.pg_url)
        with db.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        db.dispose()
        upgrade(args.pg_url)
        measure("PostgreSQL", args.pg_url, args)


if __name__ == "__main__":
    main()
