"""MIS appointment import: our side, and mirroring under the CRM's rate limit.

1. Our side: a Helix export of `--appointments` visits (10 000) of `--patients` patients (6 000), 5 % of the
   patients with an invalid phone and 1 % malformed rows, parsed, matched, upserted and queued to the outbox
   in one import, on SQLite and on PostgreSQL (`--pg-url`, default the cb_mis database, whose schema the
   bench drops and recreates; `--no-postgres`);
   prints appointments/s per phase (floor: ≥ 1 000 appointments/s for the whole import). The same file's
   visits again (as another file) are then timed: all `unchanged`, no outbox job.
2. Mirroring: the first `--mirror` (120) queued jobs run through the outbox (`mirror_outbox_jobs`, in the
   wake-up groups the import queued, then the held notes as the sweep sends them) against the sandbox CRM
   behind a proxy that answers 429 above `--limit` (7) requests in any second and, like amoCRM, takes up to
   50 notes in one request; our side paces itself with the production `RedisRateLimiter` (window 1.05 s).
   Prints requests (by verb), requests per appointment (the mirror ratio), 429s (floor 0) and
   duration ÷ (requests ÷ limit) (floor ≤ 1.2). The first jobs of an import are each a new patient, the
   worst case for contacts: a patient's later visits cost no contact request.

    .venv/bin/python bench/mis_import.py [--appointments 10000] [--patients 6000] [--mirror 120]
        [--limit 7] [--pg-url postgresql+psycopg://postgres@127.0.0.1:5433/cb_mis] [--no-postgres]
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import fakeredis
from cryptography.fernet import Fernet
from rq import Queue
from sqlalchemy import create_engine, select, text

from connectors.helix.export import parse_export
from connectors.ratelimit import RedisRateLimiter
from connectors.types import NewNote, NoteRef
from widget_server import runtime as runtime_module
from widget_server.appointments.settings import SEED004_TEMPLATE
from widget_server.appointments.sync import ingest, start_run
from widget_server.config import Settings
from widget_server.crypto import TokenCipher
from widget_server.db import Database
from widget_server.jobs import mirror as mirror_module
from widget_server.jobs.mis.feed import FEED_ORIGIN
from widget_server.migrations import upgrade
from widget_server.models import MisAppointment, OutboxJob, Portal
from widget_server.portals import create_portal
from widget_server.sandbox.crm import SandboxCrm

SURNAMES = ["Иванов", "Смирнов", "Кузнецов", "Попов", "Васильев", "Петров", "Соколов", "Михайлов", "Новиков"]
NAMES = ["Алексей", "Андрей", "Борис", "Виктор", "Глеб", "Денис", "Егор", "Иван", "Кирилл", "Лев", "Марк"]
STATUSES = ["Завершён"] * 6 + ["Неявка", "Отменён", "Записан", "Подтверждён"]
HEADER = (
    "ID визита;ID пациента;ФИО пациента;Телефон;Филиал;ID врача;Врач;Специальность;Дата визита;"
    "Время начала;Время окончания;Статус;Сумма;Изменён;Лист ожидания"
)


def export(appointments: int, patients: int, seed: int = 7) -> bytes:
    rng = random.Random(seed)
    invalid = set(rng.sample(range(patients), patients // 20))
    bad = set(rng.sample(range(appointments), appointments // 100))
    lines = [HEADER]
    for i in range(appointments):
        p = i % patients
        name = f"{SURNAMES[p % 9]}{p} {NAMES[p % 11]} Тестович"
        phone = (
            "+7 (888) 888-88-88"
            if p in invalid
            else f"+7 916 {p // 10000:03d}-{(p // 100) % 100:02d}-{p % 100:02d}"
        )
        day = f"{1 + i % 28:02d}.0{1 + (i // 28) % 9}.2026"
        if i in bad:
            day = "31.02.2026"
        hour = 8 + i % 11
        lines.append(
            f"HX-{i};P{p};{name};{phone};Центральный;D-{i % 12};Врач {i % 12} Врачович;терапия;{day};"
            f"{hour}:00;{hour}:30;{rng.choice(STATUSES)};{1000 + i % 500},00;{day} 21:00;"
            f"{'да' if i % 17 == 0 else 'нет'}"
        )
    return ("\n".join(lines) + "\n").encode()


def install_runtime(url: str, work: Path) -> runtime_module.Runtime:
    settings = Settings(
        database_url=url,
        redis_url="redis://fake",
        secret_key="bench-secret-key-" + "x" * 32,
        token_encryption_keys=(Fernet.generate_key().decode(),),
        public_base_url="http://127.0.0.1:5000",
        default_timezone="Europe/Moscow",
        default_currency="RUB",
        instance_path=work,
    )
    connection = fakeredis.FakeRedis()
    # Jobs are only queued here (nothing consumes them): the bench runs the mirror operation itself.
    rt = runtime_module.Runtime(
        settings=settings,
        db=Database(url),
        redis=connection,
        cipher=TokenCipher(settings.token_encryption_keys),
        queues={name: Queue(name, connection=connection) for name in runtime_module.QUEUE_NAMES},
    )
    return runtime_module.install(rt)


class RateLimitedCrm:
    """The sandbox behind a platform-like limit: more than `limit` calls in any second → a 429 (counted, and
    the call retried after a pause, as the outbox would). The caller paces itself to the same limit."""

    def __init__(self, inner: SandboxCrm, limit: int, redis_client: Any) -> None:
        self._inner = inner
        self._limit = limit
        self._server: collections.deque[float] = collections.deque()
        # Our side is the production limiter (a sliding window in Redis). Its window is 5 % longer than the
        # platform's: the platform stamps a request when it arrives, a moment after we let it go.
        self._limiter = RedisRateLimiter(redis_client, "cb:bench:mis-mirror", limit, window_s=1.05)
        self._lock = threading.Lock()
        self.requests = 0
        self.refused = 0
        self.verbs: collections.Counter[str] = collections.Counter()

    def _pace(self) -> None:
        self._limiter.acquire(timeout=None)

    def _admit(self) -> bool:
        now = time.monotonic()
        while self._server and now - self._server[0] >= 1.0:
            self._server.popleft()
        if len(self._server) >= self._limit:
            return False
        self._server.append(now)
        return True

    def _request(self, verb: str) -> None:
        while True:
            self._pace()
            with self._lock:
                self.requests += 1
                admitted = self._admit()
            if admitted:
                self.verbs[verb] += 1
                return
            self.refused += 1
            time.sleep(1.0)

    def add_notes(self, notes: list[NewNote]) -> list[NoteRef]:
        """amoCRM's `POST /api/v4/leads/notes`: up to 50 notes per request."""
        refs = []
        for start in range(0, len(notes), 50):
            self._request("add_notes")
            refs += [
                self._inner.add_note(n.deal_id, n.text, idempotency_key=n.idempotency_key)
                for n in notes[start : start + 50]
            ]
        return refs

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            self._request(name)
            return target(*args, **kwargs)

        return call


def run(label: str, url: str, data: bytes, mirror: int, limit: int) -> None:
    upgrade(url)
    with tempfile.TemporaryDirectory() as work:
        rt = install_runtime(url, Path(work))
        with rt.db.transaction() as s:
            portal = create_portal(
                s, kind="sandbox", name="Bench clinic", timezone="Europe/Moscow", currency="RUB",
                settings={"mis": SEED004_TEMPLATE},
            )  # fmt: skip
            portal_id = portal.id
        tz = ZoneInfo("Europe/Moscow")
        started, cpu_started = time.perf_counter(), time.process_time()
        batch = parse_export(data, tz=tz)
        parsed = time.perf_counter()
        with rt.db.transaction() as s:
            p = s.get(Portal, portal_id)
            result = ingest(s, p, start_run(s, p, "helix_export", file_name="bench.csv"), batch)
        done, cpu = time.perf_counter(), time.process_time() - cpu_started
        total = len(batch.appointments) + len(batch.rejects)
        print(
            f"{label}: {total} rows → {dict(result.counts)}, {result.jobs} outbox jobs\n"
            f"  parse {parsed - started:.2f} s, match+upsert+outbox {done - parsed:.2f} s, "
            f"whole import {done - started:.2f} s = {total / (done - started):,.0f} appointments/s "
            f"(floor ≥ 1 000); this process's CPU {cpu:.2f} s = {total / cpu:,.0f} per CPU-second "
            "(the wall figure on a busy machine shares the cores)"
        )
        again_started = time.perf_counter()
        with rt.db.transaction() as s:
            p = s.get(Portal, portal_id)
            again = ingest(s, p, start_run(s, p, "helix_export", file_name="bench-again.csv"), batch)
        again_done = time.perf_counter()
        print(
            f"  same visits again: {dict(again.counts)}, {again.jobs} outbox jobs, "
            f"{total / (again_done - again_started):,.0f} appointments/s"
        )
        if mirror:
            with rt.db.transaction() as s:
                ids = list(
                    s.scalars(
                        select(OutboxJob.id)
                        .where(OutboxJob.portal_id == portal_id)
                        .order_by(OutboxJob.id)
                        .limit(mirror)
                    )
                )
            crm = RateLimitedCrm(SandboxCrm(rt.db, portal_id, timezone="Europe/Moscow"), limit, rt.redis)
            mirror_module.crm_for = lambda portal, rt=None: crm  # type: ignore[assignment]
            mirror_jobs(rt, crm, ids, limit, "appointments (each a new patient)")
            # The same patients' other visits of the import: their contacts are known now.
            with rt.db.transaction() as s:
                patients = select(MisAppointment.patient_id).where(MisAppointment.deal_id.is_not(None))
                others = [
                    f"mis:{row_id}"
                    for row_id in s.scalars(
                        select(MisAppointment.id).where(
                            MisAppointment.patient_id.in_(patients), MisAppointment.deal_id.is_(None)
                        )
                    )
                ]
                later = list(
                    s.scalars(
                        select(OutboxJob.id)
                        .where(OutboxJob.origin.in_(others), OutboxJob.state == "pending")
                        .order_by(OutboxJob.id)
                    )
                )
            crm.requests = crm.refused = 0
            crm.verbs.clear()
            mirror_jobs(rt, crm, later, limit, "later visits of the same patients")
        rt.db.dispose()


def mirror_jobs(
    rt: runtime_module.Runtime, crm: RateLimitedCrm, ids: list[int], limit: int, what: str
) -> None:
    """The jobs through the outbox in the import's wake-up groups, then the held notes as the sweep sends
    them (the rest of the import's visit jobs are still queued, so the last notes wait for a full batch)."""
    if not ids:
        return
    started = time.perf_counter()
    for start in range(0, len(ids), 50):
        mirror_module.mirror_outbox_jobs(ids[start : start + 50])
    with rt.db.transaction() as s:
        held = list(
            s.scalars(
                select(OutboxJob.id)
                .where(OutboxJob.state == "pending", OutboxJob.origin.like(f"{FEED_ORIGIN}%"))
                .order_by(OutboxJob.id)
            )
        )
    if held:
        mirror_module.mirror_outbox_jobs(held)
    seconds = time.perf_counter() - started
    with rt.db.transaction() as s:
        states = collections.Counter(s.scalars(select(OutboxJob.state).where(OutboxJob.id.in_(ids))))
    print(
        f"  mirror {len(ids)} {what} at {limit} req/s: {crm.requests} requests "
        f"({crm.requests / len(ids):.2f} per appointment: {dict(crm.verbs)}), "
        f"429s {crm.refused} (floor 0), {seconds:.1f} s, duration ÷ (requests ÷ limit) = "
        f"{seconds / (crm.requests / limit):.2f} (floor ≤ 1.2); visit jobs {dict(states)}"
    )


def reset_postgres(url: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--appointments", type=int, default=10_000)
    parser.add_argument("--patients", type=int, default=6_000)
    parser.add_argument("--mirror", type=int, default=120)
    parser.add_argument("--limit", type=int, default=7)
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5433/cb_mis")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    data = export(args.appointments, args.patients)
    with tempfile.TemporaryDirectory() as tmp:
        run("SQLite", f"sqlite:///{tmp}/bench.sqlite3", data, args.mirror, args.limit)
    if not args.no_postgres:
        reset_postgres(args.pg_url)
        run("PostgreSQL", args.pg_url, data, args.mirror, args.limit)


if __name__ == "__main__":
    main()
