"""Caller lookup (GET /api/v1/callers?phone=) under 16 concurrent clients on gunicorn, over 100 000
patients and 300 000 visits, then a 12-month report of each kind over the same data.

Run: .venv/bin/python bench/callers_lookup_bench.py [--postgres] [--patients 100000] [--visits 300000]
     [--seconds 10] [--clients 16] [--workers 2] [--no-reports] [--baseline] [--profile [N]] [--top N]
     [--pg-stats]

Setup (not timed): a fresh database (a temp SQLite file, or with --postgres a throw-away PostgreSQL 15
cluster with fsync=off), migrated; one clinic portal (Europe/Moscow) with a staff and a finance API key;
--patients MIS patients on about 0.9 × as many phones (every tenth number is a family of two or three,
as families share phones), every fifth patient with a second, other phone (mis_patient_phones),
--visits visits spread over two years back and two months ahead (70 % completed, 10 % no-show,
5 % cancelled, 5 % waiting list, the future ones booked) with doctor, specialty, branch, card number,
booked_by and a deal whose stage the sync chose; 20 000 intake leads. Bulk-inserted
with the sync's own document shape (`appointment_doc`) and its columns (`doc_columns`). A private
redis-server backs the rate limiter.

Timed: gunicorn with the Procfile's web options (as the charge bench runs it; --workers as
WEB_CONCURRENCY) serves --clients threads, each GETting a random
known phone (one in ten: a number nobody has; of the known ones, one in four a patient's other phone)
with the staff key, after a one-second warm-up. Latency is
from sending the request to having read the whole response. Clients share the machine's cores.

Printed: p50/p95/p99 ms, requests/s, errors, the p95 against the issue's floor (≤ 20 ms), and the SQL
statements one lookup issues (in-process, counted), and the CPU each process group (gunicorn, redis-server,
the PostgreSQL backends, the bench's own clients) used per lookup in the timed phase, from /proc;
--baseline: the same clients on GET /healthz, the floor any request has on this server and machine.
Then, unless --no-reports: each report (primary, specialisations, sources, conversion, no-shows) for the
last 12 months grouped by month through the same gunicorn (JSON, and the primary report as CSV and PNG), 3
times each: the slowest of the 3 against the floor (≤ 1 s). --profile N: N lookups in-process through
Flask's test client, one at a time: service time without and with cProfile, the lookup's own share and the
costliest functions (--top). --pg-stats (with --postgres): the cluster loads pg_stat_statements with
planning tracked, and each statement the server ran during the timed phase is listed with its calls and mean
planning and execution time: a statement psycopg runs prepared (after `prepare_threshold` runs on a
connection) plans rarely.
Nothing is asserted.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import http.client
import os
import pstats
import random
import sys
import tempfile
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _support import PgCluster, RedisProc, free_port, percentile
from charge_latency_bench import (
    _cpu_snapshot,
    _deployed_args,
    _descendants,
    _report_cpu,
    _start_gunicorn,
    _stop,
    _test_client,
)
from charge_latency_bench import _load as _charge_load

from connectors.types import Appointment
from widget_server.apikeys import issue_api_key
from widget_server.appointments.sync import appointment_doc
from widget_server.db import Database
from widget_server.migrations import upgrade
from widget_server.models import MisAppointment, MisLead, MisPatient, doc_columns
from widget_server.models.appointments import MisPatientPhone
from widget_server.portals import create_portal

__all__ = ["build_clinic", "main"]

FLOOR_LOOKUP_P95_MS = 20.0
FLOOR_REPORT_S = 1.0
REPORTS = ("primary", "specialisations", "sources", "conversion", "no-shows")
SPECIALTIES = ("терапия", "хирургия", "детство", "пародонтология", "имплантация", "ортодонтия", None)
BRANCHES = ("Центр", "Север", "Левый берег")
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
CHUNK = 5000


def _phone(n: int) -> str:
    return f"+7916{n:07d}"


def _other_phone(n: int) -> str:
    return f"+7903{n:07d}"


def build_clinic(url: str, patients: int, visits: int, seed: int = 7) -> dict:
    """Migrate `url` and fill one portal; returns its id, keys and the phones in use."""
    rng = random.Random(seed)
    upgrade(url)
    db = Database(url)
    try:
        with db.transaction() as s:
            portal = create_portal(
                s, kind="sandbox", name="Bench dental", timezone="Europe/Moscow", currency="RUB",
                slug="bench-callers",
            )  # fmt: skip
            staff_key = issue_api_key(s, portal, role="staff", name="bench staff").plaintext
            finance_key = issue_api_key(s, portal, role="finance", name="bench finance").plaintext
            portal_id = portal.id
        phones: list[str] = []
        rows: list[dict] = []
        phone_no = 0
        while len(rows) < patients:
            phone = _phone(phone_no)
            phone_no += 1
            phones.append(phone)
            family = rng.choice((2, 3)) if phone_no % 10 == 0 else 1
            for _ in range(min(family, patients - len(rows))):
                n = len(rows)
                rows.append({
                    "portal_id": portal_id, "source": "helix", "source_patient_id": f"P{n}",
                    "name": f"Пациент {n} Бенчевич", "name_key": f"пациент {n}", "phone_raw": phone,
                    "phone_e164": phone, "other_phones": [_other_phone(n)] if n % 5 == 0 else [],
                    "flags": ["shared_phone"] if family > 1 else [],
                    "created_at": NOW, "updated_at": NOW,
                })  # fmt: skip
        with db.transaction() as s:
            for start in range(0, len(rows), CHUNK):
                s.execute(insert(MisPatient), rows[start : start + CHUNK])
        with db.transaction() as s:
            first_id = (
                s.query(MisPatient.id)
                .filter(MisPatient.portal_id == portal_id)
                .order_by(MisPatient.id)
                .first()[0]
            )
            # Core inserts bypass the model's other_phones hook: their rows go in as the sync's would.
            others = [
                {"portal_id": portal_id, "patient_id": first_id + n, "phone_e164": row["other_phones"][0]}
                for n, row in enumerate(rows)
                if row["other_phones"]
            ]
            for start in range(0, len(others), CHUNK):
                s.execute(insert(MisPatientPhone), others[start : start + CHUNK])
        doctors = [f"Врач {i}" for i in range(30)]
        operators = [f"Оператор {i}" for i in range(10)]
        start_day = NOW - timedelta(days=730)
        batch: list[dict] = []
        with db.transaction() as s:
            for n in range(visits):
                patient = first_id + rng.randrange(patients)
                at = start_day + timedelta(days=rng.randrange(730 + 60), hours=rng.randrange(9, 20))
                roll = rng.random()
                if at > NOW:
                    status = "booked"
                elif roll < 0.70:
                    status = "completed"
                elif roll < 0.80:
                    status = "no_show"
                elif roll < 0.85:
                    status = "cancelled"
                else:
                    status = "completed"
                doctor = rng.randrange(len(doctors))
                appointment = Appointment(
                    source="helix", source_id=f"V{n}", status=status, starts_at=at, ends_at=None,
                    patient_id=str(patient), patient_name="", patient_phone=None, doctor_id=str(doctor),
                    doctor_name=doctors[doctor], specialty=SPECIALTIES[doctor % len(SPECIALTIES)],
                    branch=BRANCHES[doctor % len(BRANCHES)], card_number=f"К-{patient}",
                    booked_by=rng.choice(operators), waiting_list=rng.random() < 0.05,
                    channel=rng.choice(("сайт", "звонок", "Яндекс", None)),
                )  # fmt: skip
                stage = (
                    "Визит состоялся"
                    if status == "completed"
                    else ("lost" if status != "booked" else "Записан")
                )
                doc = appointment_doc(appointment)
                batch.append({
                    "portal_id": portal_id, "source": "helix", "source_id": f"V{n}", "patient_id": patient,
                    "status": status, "starts_at": at, "ends_at": None, "changed_at": None, "version": None,
                    "content_hash": f"{n:064d}", "doc": doc, **doc_columns(doc), "kind": "primary",
                    "flags": [], "target": {"pipeline_id": "Первичные пациенты", "stage_id": stage},
                    "deal_id": f"D{n}", "mirrored_hash": None, "mirrored_target": None,
                    "created_at": NOW, "updated_at": NOW,
                })  # fmt: skip
                if len(batch) == CHUNK:
                    s.execute(insert(MisAppointment), batch)
                    batch = []
            if batch:
                s.execute(insert(MisAppointment), batch)
            leads = [
                {"portal_id": portal_id, "deal_id": f"L{n}", "name": "Заявка",
                 "lead_created_at": NOW - timedelta(hours=rng.randrange(9000)),
                 "phone_raw": phones[n % len(phones)], "phone_e164": phones[n % len(phones)],
                 "attribution": {"utm_source": rng.choice(("yandex", "google", "vk"))}, "created_at": NOW}
                for n in range(20_000)
            ]  # fmt: skip
            for start in range(0, len(leads), CHUNK):
                s.execute(insert(MisLead), leads[start : start + CHUNK])
        if db.engine.dialect.name == "postgresql":
            # As autovacuum would after a bulk load: statistics, and the visibility map index-only scans use.
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE")
        else:
            with db.engine.connect() as conn:
                conn.exec_driver_sql("ANALYZE")
    finally:
        db.dispose()
    return {
        "portal_id": portal_id, "staff_key": staff_key, "finance_key": finance_key, "phones": phones,
        "other_phones": [row["other_phones"][0] for row in rows if row["other_phones"]],
    }  # fmt: skip


def _load(port: int, fixture: dict, clients: int, seconds: float) -> tuple[list[tuple[float, object]], float]:
    phones, others = fixture["phones"], fixture["other_phones"]
    results: list[tuple[float, object]] = []
    started = time.perf_counter()
    deadline = started + seconds

    def client(seed: int) -> None:
        rng = random.Random(seed)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine = []
        headers = {"Authorization": f"Bearer {fixture['staff_key']}"}
        while time.perf_counter() < deadline:
            roll = rng.random()
            if roll < 0.675:
                phone = rng.choice(phones)
            elif roll < 0.9:
                phone = rng.choice(others)
            else:
                phone = _phone(9_000_000 + rng.randrange(99_999))
            sent = time.perf_counter()
            try:
                conn.request("GET", f"/api/v1/callers?phone={phone.replace('+', '%2B')}", headers=headers)
                response = conn.getresponse()
                response.read()
                status: object = response.status
                if response.will_close:
                    conn.close()
            except (OSError, http.client.HTTPException) as exc:
                status = type(exc).__name__
                conn.close()
            mine.append((time.perf_counter() - sent, status))
        conn.close()
        results.extend(mine)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, time.perf_counter() - started


def _statements_per_lookup(url: str, fixture: dict) -> int:
    from widget_server.callers import lookup_callers
    from widget_server.models import Portal

    db = Database(url)
    seen: list[str] = []
    try:
        with db.transaction() as s:
            portal = s.get(Portal, fixture["portal_id"])
            family = fixture["phones"][9]  # every tenth number is a family
            event.listen(db.engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
            found = lookup_callers(s, portal, family, now=NOW)
            family_statements = len(seen)
            seen.clear()
            other = lookup_callers(s, portal, fixture["other_phones"][3], now=NOW)
    finally:
        db.dispose()
    print(f"  one lookup of a family number: {len(found['matches'])} people, {family_statements} queries")
    matched = [m["matched_phone"] for m in other["matches"]]
    print(f"  one lookup of an other phone: matched {matched}, {len(seen)} SQL statements")
    return family_statements


def _in_process_lookups(env: dict, fixture: dict) -> tuple[Any, Any]:
    """The app in this process on the served database, and one lookup per call through its test client
    (the load's mix: a main number, an other phone, a number nobody has)."""
    client = _test_client(env)
    headers = {"Authorization": f"Bearer {fixture['staff_key']}"}
    phones, others = fixture["phones"], fixture["other_phones"]

    def lookup(n: int) -> None:
        phone = (phones[n % len(phones)], others[n % len(others)], _phone(9_000_000 + n))[n % 3]
        response = client.get(f"/api/v1/callers?phone={phone.replace('+', '%2B')}", headers=headers)
        assert response.status_code == 200, response.get_data(as_text=True)

    return client, lookup


def _profile(env: dict, fixture: dict, count: int, top: int) -> None:
    """Service time of one lookup, in-process, one at a time, and where it goes."""
    _client, lookup = _in_process_lookups(env, fixture)
    for n in range(50):  # imports, compiled statements, pooled connections, psycopg's prepared statements
        lookup(n)
    plain = []
    cpu_started = time.process_time()
    for n in range(count):
        started = time.perf_counter()
        lookup(n)
        plain.append((time.perf_counter() - started) * 1000)
    cpu = (time.process_time() - cpu_started) * 1000 / count
    profiler = cProfile.Profile()
    profiler.enable()
    for n in range(count):
        lookup(n)
    profiler.disable()
    print(
        f"  in-process lookup, one at a time, {count} requests (Flask test client, no HTTP server): "
        f"p50 {percentile(plain, 0.5):.2f} ms, p95 {percentile(plain, 0.95):.2f} ms, "
        f"this process's CPU {cpu:.2f} ms/request"
    )
    stats = pstats.Stats(profiler)
    per = 1000 / count
    print(f"  under cProfile {stats.total_tt * per:.2f} ms/request; cumulative ms/request:")  # type: ignore[attr-defined]
    phases = [
        ("auth.py", "_authenticate", "authenticate the API key (+ portal row)"),
        ("auth.py", "_throttle", "rate limiter (Redis)"),
        ("auth.py", "_touch", "last_used_at"),
        ("callers.py", "lookup_callers", "lookup_callers (statement and documents)"),
        ("fast_sql.py", "run", "fast_sql.run, all statements (incl. the driver's wait)"),
        ("provider.py", "response", "Flask JSON response"),
    ]
    # By file name and function; the largest where names repeat (nested functions of one name).
    cumulative: dict[tuple[str, str], float] = collections.defaultdict(float)
    for (filename, _line, name), entry in stats.stats.items():  # type: ignore[attr-defined]
        key = (Path(filename).name, name)
        cumulative[key] = max(cumulative[key], entry[3])
    for key in phases:
        if key[:2] in cumulative:
            print(f"    {key[2]:58s} {cumulative[key[:2]] * per:6.3f}")
    if top:
        stats.sort_stats("tottime").print_stats(top)


def _pg_stats(url: str, calls_at_least: int) -> None:
    """The statements the server ran since the last reset, costliest first (pg_stat_statements)."""
    db = Database(url)
    try:
        with db.engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT calls, plans, mean_plan_time, mean_exec_time, "
                "left(regexp_replace(query, '\\s+', ' ', 'g'), 100) FROM pg_stat_statements "
                "WHERE calls >= %(least)s "
                "ORDER BY (total_plan_time + total_exec_time) DESC LIMIT 12",
                {"least": calls_at_least},
            ).all()
    finally:
        db.dispose()
    print("  pg_stat_statements, timed phase: calls, plans, mean plan ms, mean exec ms, statement")
    for calls, plans, plan_ms, exec_ms, text in rows:
        print(f"    {calls:7d} {plans:7d} {plan_ms:8.3f} {exec_ms:8.3f}  {text}")


def _pg_stats_reset(url: str) -> None:
    db = Database(url)
    try:
        with db.engine.connect() as conn:
            conn.exec_driver_sql("SELECT pg_stat_statements_reset()")
    finally:
        db.dispose()


def _reports(port: int, fixture: dict, label: str) -> None:
    to = NOW.date()
    since = date(to.year - 1, to.month, to.day) + timedelta(days=1)
    query = f"from={since.isoformat()}&to={to.isoformat()}&group=month"
    headers = {"Authorization": f"Bearer {fixture['finance_key']}"}
    worst = 0.0
    for path in [*(f"/api/v1/reports/{name}" for name in REPORTS), "/api/v1/reports/primary.csv",
                 "/api/v1/reports/primary.png"]:  # fmt: skip
        times, size, status = [], 0, None
        for _ in range(3):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            sent = time.perf_counter()
            conn.request("GET", f"{path}?{query}", headers=headers)
            response = conn.getresponse()
            body = response.read()
            times.append(time.perf_counter() - sent)
            size, status = len(body), response.status
            conn.close()
        worst = max(worst, max(times))
        print(
            f"[{label}] 12 months {path}: {status}, {size} bytes, "
            f"min {min(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms"
        )
    verdict = "meets" if worst <= FLOOR_REPORT_S else "MISSES"
    print(
        f"[{label}] slowest 12-month report {worst * 1000:.0f} ms {verdict} the ≤ {FLOOR_REPORT_S:g} s floor"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--visits", type=int, default=300_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-reports", action="store_true")
    parser.add_argument(
        "--baseline", action="store_true", help="also GET /healthz with the same clients: the server's floor"
    )
    parser.add_argument(
        "--profile", type=int, nargs="?", const=500, default=0, help="also profile N in-process lookups"
    )
    parser.add_argument("--top", type=int, default=0, help="with --profile: the N costliest functions")
    parser.add_argument(
        "--pg-stats", action="store_true", help="with --postgres: per-statement planning and execution time"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-callers-") as workdir:
        work = Path(workdir)
        redis_proc = RedisProc(work)
        pg_settings = (
            {"shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track_planning": "on"}
            if args.pg_stats
            else {}
        )
        cluster = PgCluster(settings=pg_settings) if args.postgres else None
        gunicorn = None
        try:
            url = cluster.url if cluster else f"sqlite:///{work / 'bench.sqlite3'}"
            label = "postgresql" if cluster else "sqlite"
            print(f"[{label}] setup: {args.patients} patients, {args.visits} visits ...", flush=True)
            started = time.perf_counter()
            fixture = build_clinic(url, args.patients, args.visits)
            if args.pg_stats and cluster is not None:
                with Database(url).engine.connect() as conn:
                    conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                    conn.commit()
            print(
                f"[{label}] setup took {time.perf_counter() - started:.0f} s; {len(fixture['phones'])} phones"
            )
            _statements_per_lookup(url, fixture)
            env = dict(os.environ)
            env.update(
                DATABASE_URL=url, REDIS_URL=redis_proc.url, CLINICBRIDGE_INSTANCE_PATH=str(work / "instance"),
                API_RATE_LIMIT="100000",
            )  # fmt: skip
            port = free_port()
            served = _deployed_args(args.workers)
            gunicorn = _start_gunicorn(env, port, served, work / "gunicorn.log")
            print(f"[{label}] gunicorn {' '.join(served)}; {args.clients} clients; GET /api/v1/callers")
            _load(port, fixture, args.clients, 1.0)
            groups = {"gunicorn": _descendants(gunicorn.pid), "redis-server": [redis_proc.process.pid]}
            if cluster is not None:
                groups["postgres"] = _descendants(cluster.postmaster_pid())
                if args.pg_stats:
                    _pg_stats_reset(url)
            before = _cpu_snapshot(groups)
            results, wall = _load(port, fixture, args.clients, args.seconds)
            after = _cpu_snapshot(groups)
            if cluster is not None and args.pg_stats:
                _pg_stats(url, 100)
            ok = [latency * 1000 for latency, status in results if status == 200]
            errors = collections.Counter(str(status) for _, status in results if status != 200)
            print(
                f"[{label}] {len(results)} lookups in {wall:.1f} s: {len(ok)} × 200, "
                f"errors {dict(errors) or '{}'}"
            )
            if ok:
                p50, p95, p99 = (percentile(ok, q) for q in (0.5, 0.95, 0.99))
                print(
                    f"[{label}] latency p50 {p50:.1f} ms   p95 {p95:.1f} ms   p99 {p99:.1f} ms   "
                    f"max {max(ok):.1f} ms"
                )
                print(f"[{label}] throughput {len(ok) / wall:.0f} req/s")
                verdict = "meets" if p95 <= FLOOR_LOOKUP_P95_MS else "MISSES"
                print(f"[{label}] p95 {p95:.1f} ms {verdict} the ≤ {FLOOR_LOOKUP_P95_MS:g} ms floor")
            _report_cpu(label, before, after, len(ok), wall, "200")
            if args.baseline:
                # The charge bench's client loop in its /healthz mode: no auth, database or Redis.
                dummy = {"article_id": 0, "deals": ["0"], "key": ""}
                base, base_wall = _charge_load(
                    port, dummy, args.clients, args.seconds, None, "base", baseline=True
                )
                fine = [latency * 1000 for _, latency, status in base if status == 200]
                if fine:
                    print(
                        f"[{label}] baseline GET /healthz, same clients: "
                        f"p50 {percentile(fine, 0.5):.1f} ms   "
                        f"p95 {percentile(fine, 0.95):.1f} ms   {len(fine) / base_wall:.0f} req/s"
                    )
            if not args.no_reports:
                _reports(port, fixture, label)
            if args.profile:
                _profile(env, fixture, args.profile, args.top)
        finally:
            if gunicorn is not None:
                _stop(gunicorn)
            if cluster is not None:
                cluster.stop()
            redis_proc.stop()


if __name__ == "__main__":
    main()
