"""Figures for mirroring to amoCRM: `AmoCrmClient` against the stateful v4 fake over real HTTP, under the
real Redis budget, as a ratio of amo's ceiling (7 requests/s; 350 entities/s in batches of 50).

Run: .venv/bin/python bench/amocrm_mirror_bench.py [--updates 10000] [--notes 2000] [--workers 3]
     [--rps 6.5] [--modes sequential,concurrent] [--per-job N] [--gap 11] [--leads 10000]
     quick: --updates 500 --notes 40 --gap 2

Setup (not timed): a private redis-server (the limiter's budget and the client's created-store); the fake
(`bench/fake_amocrm_server.py`) in its own process on 127.0.0.1, counting each request when it arrives and
answering 429 to more than 7 in a 0.99 s window; --leads (10 000) leads created directly in its state.
The client is built as `widget_server.registry` builds it (`amo_limiter(scope="ip", rps=--rps)`,
`amo_http`, `RedisCreatedStore`) except for the session: a `requests` adapter sends its
https://clinic.amocrm.ru traffic to the fake.

Timed, per mode:
  sequential  — one client in this process: one `update_deals` call with all --updates (distinct deals, one
                text field each; the client PATCHes /api/v4/leads in batches of 50), then --notes
                as `add_notes` calls of 50, one after another (distinct idempotency keys), as the outbox
                sends a wake-up's notes.
  concurrent  — --workers processes (as rq workers), each with its own client, all on the SAME
                `amo_limiter` key; they take jobs from one queue: `update_deals` of 50 updates per job,
                then `add_notes` of 50 notes per job.
Each client reads the field definitions once (GET custom_fields) before the clock starts; the budget is
left idle for --gap seconds (> the limiter's 10 s sustained window) before each phase, so every phase
starts from the same state.

Printed per phase: entities/s, requests/s (counted by the fake), the ratio to the ceiling, the fake's 429
count and the most requests it saw in any 1 s (and 0.99 s) window, and client-side failures.
Ceilings: 7 requests/s × 50 entities = 350 entities/s for both (field updates: PATCH /api/v4/leads; notes:
POST /api/v4/leads/notes with `entity_id` per note).
The limiter itself caps the ratio at min(--rps, 7 / its burst window) / 7 (6.5/7 = 92.9 % with the default
AMO_RATE_LIMIT_RPS and a 1 s burst window); the configuration read from `amo_limiter` and that cap are
printed. The floor: ≥ 90 % of the ceiling and zero 429s. A 429 makes `PortalHttp` pause the shared budget
for the fake's `retry_after` (300 s), so every later call of that phase fails fast: the pause is lifted
(and reported) before the next phase.

--per-job N: also N field updates the way the outbox mirrors them (`mirror_outbox_jobs`): 50 jobs per
wake-up, `crm_for()` building a fresh client per wake-up (field definitions from the process's shared
cache, as the registry's), one `update_deals` PATCH per 50 leads. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from decimal import Decimal
from pathlib import Path
from typing import Any

import redis
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import RedisProc, free_port
from fake_amocrm_server import local_session

from connectors.amocrm.client import AmoCrmClient
from connectors.amocrm.fields import FieldDefsCache
from connectors.amocrm.limits import amo_http, amo_limiter
from connectors.created import RedisCreatedStore
from connectors.errors import ReauthRequired, Rejected, RetryLater
from connectors.ratelimit import KEY_PREFIX
from connectors.types import DealUpdate, NewNote, OAuthToken

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]
AMO_BASE = "https://clinic.amocrm.ru"
ACCOUNT_ID = "29876543"
TEXT_FIELD = "1001"  # the fake's "WARD" text field
CEILING_RPS = 7
BATCH = 50
FLOOR = 0.90


class StaticTokens:
    """A TokenSource holding the fake's one valid token; it never expires, so nothing refreshes."""

    def get(self) -> OAuthToken:
        return OAuthToken("access-1", "refresh-1", None)

    def save(self, token: OAuthToken) -> None:
        pass

    def refresh_lock(self) -> Any:
        return nullcontext()

    def mark_reauth_required(self, reason: str) -> None:
        raise RuntimeError(f"unexpected re-auth: {reason}")


def _failure(exc: Exception) -> str:
    """A failure's kind and message with its numbers blanked, so alike failures count together."""
    return f"{type(exc).__name__}: " + re.sub(r"\d+(\.\d+)?", "N", str(exc))[:100]


def _clear_pause(redis_url: str) -> None:
    """A 429 makes PortalHttp pause the shared budget (300 s with the fake's answer): say so, and lift it
    so the next phase is measured on its own."""
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(f"{KEY_PREFIX}amo:*:pause"):
        left = client.pttl(key)
        if left > 0:
            print(f"  (budget still paused {left / 1000:.0f} s after a 429: lifted for the next phase)")
        client.delete(key)
    client.close()


FIELD_DEFS = FieldDefsCache(ttl_s=300.0)
"""As `widget_server.registry` shares one per process."""


def make_client(redis_client: redis.Redis, target: str, rps: Decimal) -> AmoCrmClient:
    limiter = amo_limiter(redis_client, account_id=ACCOUNT_ID, rps=rps, scope="ip")
    return AmoCrmClient(
        field_cache=FIELD_DEFS,
        base_url=AMO_BASE,
        tokens=StaticTokens(),
        refresh=None,
        http=amo_http(name="amocrm:bench", limiter=limiter, session=local_session(target)),
        timezone="Europe/Moscow",
        created=RedisCreatedStore(redis_client, "cb:amo:created:bench:"),
    )


# --- the fake -------------------------------------------------------------------------------------------


class Fake:
    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "fake_amocrm_server.py"), "--port", str(self.port)],
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{self.url}/__fake/stats", timeout=2)
                return
            except requests.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the fake did not start; see {log}") from None
                time.sleep(0.1)

    def control(self, method: str, path: str, body: Any = None) -> Any:
        response = requests.request(method, f"{self.url}/__fake/{path}", json=body, timeout=300)
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


# --- workers (processes, as rq workers) -----------------------------------------------------------------


def _worker(redis_url: str, target: str, rps: str, tasks: Any, ready: Any, results: Any) -> None:
    redis_client = redis.Redis.from_url(redis_url)
    client = make_client(redis_client, target, Decimal(rps))
    done, failures = 0, collections.Counter()
    try:
        client.field_defs()  # once per client lifetime, before the clock
    except (RetryLater, Rejected, ReauthRequired) as exc:
        failures[_failure(exc)] += 1
    ready.put(os.getpid())
    while True:
        task = tasks.get()
        if task is None:
            break
        kind, payload = task
        try:
            if kind == "updates":
                client.update_deals([DealUpdate(deal, {TEXT_FIELD: value}) for deal, value in payload])
                done += len(payload)
            else:
                client.add_notes([NewNote(deal, text, key) for deal, text, key in payload])
                done += len(payload)
        except (RetryLater, Rejected, ReauthRequired) as exc:
            failures[_failure(exc)] += 1
    results.put((os.getpid(), done, dict(failures), time.monotonic()))


class Pool:
    """--workers spawned processes sharing one queue of jobs and one Redis budget; one pool per phase."""

    def __init__(self, workers: int, redis_url: str, target: str, rps: Decimal) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.tasks = ctx.Queue()
        self.results = ctx.Queue()
        ready = ctx.Queue()
        self.procs = [
            ctx.Process(target=_worker, args=(redis_url, target, str(rps), self.tasks, ready, self.results))
            for _ in range(workers)
        ]
        for proc in self.procs:
            proc.start()
        for _ in self.procs:
            ready.get(timeout=120)

    def run(self, jobs: list[tuple[str, Any]]) -> tuple[int, dict[str, int], float]:
        """Queue the jobs; (entities done, failures, wall s from the first job queued to the last done)."""
        started = time.monotonic()
        for job in jobs:
            self.tasks.put(job)
        for _ in self.procs:
            self.tasks.put(None)
        done, failures, ended = 0, collections.Counter(), started
        for _ in self.procs:
            _pid, count, failed, finished = self.results.get()
            done += count
            failures.update(failed)
            ended = max(ended, finished)
        for proc in self.procs:
            proc.join(timeout=30)
        return done, dict(failures), ended - started


# --- phases ---------------------------------------------------------------------------------------------


def _report(
    label: str,
    entities: int,
    done: int,
    wall: float,
    stats: dict,
    failures: dict,
    ceiling: float,
    *,
    rps: Decimal,
) -> bool:
    rate = done / wall if wall > 0 else 0.0
    req_rate = stats["requests"] / wall if wall > 0 else 0.0
    ratio = rate / ceiling
    ok = ratio >= FLOOR and stats["throttled"] == 0 and done == entities
    print(
        f"  {label:34s} {done}/{entities} in {wall:7.1f} s: {rate:7.1f} entities/s, "
        f"{stats['requests']} requests = {req_rate:.2f} req/s; ratio to the ceiling "
        f"({ceiling:g}/s) {ratio:6.1%}  [req/s vs the limiter's {rps} rps: {req_rate / float(rps):.1%}]"
    )
    print(
        f"  {'':34s} 429s: {stats['throttled']}; max requests in any 1 s window: {stats['max_in_1s']} "
        f"(0.99 s: {stats['max_in_0_99s']}); routes {stats['routes']}; client failures {failures or '{}'}"
    )
    if stats["min_span_of_8_s"] is not None:
        print(
            f"  {'':34s} arrivals at the fake: tightest 8 consecutive requests span "
            f"{stats['min_span_of_8_s'] * 1000:.1f} ms; {stats['spans_of_8_under_1s']} runs of 8 within < 1 s"
        )
    if stats["requests"] < 30 * float(rps):
        print(
            f"  {'':34s} (short phase: under 30 s of budget, where the idle budget's first burst and the "
            "fence-post count inflate the rate; use the full sizes for figures)"
        )
    print(
        f"  {'':34s} floor ≥ {FLOOR:.0%} and zero 429s: {'MET' if ok else 'NOT MET'}",
        flush=True,
    )
    return ok


def _idle(seconds: float) -> None:
    if seconds > 0:
        time.sleep(seconds)


def run_mode(
    mode: str, args: argparse.Namespace, fake: Fake, redis_url: str, deals: list[str], rps: Decimal
) -> dict[str, bool]:
    verdicts = {}
    tag = f"{mode}-{rps}-{time.monotonic_ns()}"
    updates = [(deals[i], f"{tag}:{i}") for i in range(args.updates)]
    notes = [
        (deals[i % len(deals)], f"Bench note {i} ({tag})", f"bench-note-{tag}-{i}") for i in range(args.notes)
    ]
    client = None
    if mode == "sequential":
        _clear_pause(redis_url)
        client = make_client(redis.Redis.from_url(redis_url), fake.url, rps)
        client.field_defs()
    label_mode = "sequential" if mode == "sequential" else f"{args.workers} worker processes"

    if updates:
        _clear_pause(redis_url)
        pool = Pool(args.workers, redis_url, fake.url, rps) if client is None else None
        _idle(args.gap)
        fake.control("POST", "reset")
        failures: dict[str, int] = {}
        if pool is None:
            assert client is not None
            started = time.monotonic()
            try:
                client.update_deals([DealUpdate(deal, {TEXT_FIELD: value}) for deal, value in updates])
                done = len(updates)
            except (RetryLater, Rejected, ReauthRequired) as exc:
                failures[_failure(exc)] = 1
                done = 0
            wall = time.monotonic() - started
        else:
            jobs = [("updates", updates[i : i + BATCH]) for i in range(0, len(updates), BATCH)]
            done, failures, wall = pool.run(jobs)
        stats = fake.control("GET", "stats")
        landed = fake.control("GET", f"count?field_id={TEXT_FIELD}&prefix={tag}:")["leads"]
        verdicts[f"{label_mode}: updates"] = _report(
            f"[{label_mode}] field updates",
            len(updates),
            min(done, landed),
            wall,
            stats,
            failures,
            CEILING_RPS * BATCH,
            rps=rps,
        )
        print(f"  {'':34s} (the fake holds the new value on {landed} of {len(updates)} deals)")

    if notes:
        _clear_pause(redis_url)
        pool = Pool(args.workers, redis_url, fake.url, rps) if client is None else None
        _idle(args.gap)
        fake.control("POST", "reset")
        before = fake.control("GET", "stats")["notes"]
        failures = collections.Counter()
        if pool is None:
            assert client is not None
            started = time.monotonic()
            done = 0
            for start in range(0, len(notes), BATCH):  # as the outbox sends a wake-up's notes
                chunk = notes[start : start + BATCH]
                try:
                    client.add_notes([NewNote(deal, text, key) for deal, text, key in chunk])
                    done += len(chunk)
                except (RetryLater, Rejected, ReauthRequired) as exc:
                    failures[_failure(exc)] += 1
            wall = time.monotonic() - started
        else:
            chunks = [("notes", notes[i : i + BATCH]) for i in range(0, len(notes), BATCH)]
            done, failures, wall = pool.run(chunks)
        stats = fake.control("GET", "stats")
        created = stats["notes"] - before
        verdicts[f"{label_mode}: notes"] = _report(
            f"[{label_mode}] notes (50 per request)",
            len(notes),
            min(done, created),
            wall,
            stats,
            dict(failures),
            CEILING_RPS * BATCH,
            rps=rps,
        )
        print(f"  {'':34s} (the fake holds {created} new notes)")
    return verdicts


def run_per_job(
    count: int, args: argparse.Namespace, fake: Fake, redis_url: str, deals: list[str], rps: Decimal
) -> None:
    """Field updates the way the outbox mirrors them: one wake-up per `FIELD_BATCH` jobs, `crm_for()`
    building a fresh client for it (so the field definitions are fetched once per batch), one
    `update_deals` per batch."""
    from widget_server.jobs.mirror import FIELD_BATCH

    redis_client = redis.Redis.from_url(redis_url)
    tag = f"perjob-{time.monotonic_ns()}"
    _clear_pause(redis_url)
    _idle(args.gap)
    fake.control("POST", "reset")
    started = time.monotonic()
    done = 0
    failures: collections.Counter[str] = collections.Counter()
    for start in range(0, count, FIELD_BATCH):
        client = make_client(redis_client, fake.url, rps)  # what crm_for() does for every wake-up
        chunk = range(start, min(count, start + FIELD_BATCH))
        try:
            client.update_deals([DealUpdate(deals[i], {TEXT_FIELD: f"{tag}:{i}"}) for i in chunk])
            done += len(chunk)
        except (RetryLater, Rejected, ReauthRequired) as exc:
            failures[_failure(exc)] += 1  # the outbox would retry these jobs later
        finally:
            client.transport._http.session.close()
    wall = time.monotonic() - started
    stats = fake.control("GET", "stats")
    rate = done / wall
    print(
        f"  [outbox path: {FIELD_BATCH} jobs per wake-up] {done} field updates in {wall:.1f} s: "
        f"{rate:.2f} entities/s, {stats['requests']} requests ({stats['requests'] / max(done, 1):.2f} per "
        f"update: {stats['routes']}); ratio to the 350/s ceiling {rate / (CEILING_RPS * BATCH):.2%}; "
        f"429s {stats['throttled']}; client failures {dict(failures) or '{}'}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=10_000, help="field updates on distinct deals")
    parser.add_argument("--notes", type=int, default=2_000)
    parser.add_argument("--workers", type=int, default=3, help="processes in the concurrent mode (2-4)")
    parser.add_argument(
        "--rps",
        action="append",
        help="AMO_RATE_LIMIT_RPS for the limiter (repeatable; default 6.5, the production default)",
    )
    parser.add_argument("--modes", default="sequential,concurrent")
    parser.add_argument("--gap", type=float, default=11.0, help="idle seconds before each timed phase")
    parser.add_argument("--per-job", type=int, default=0, help="also N updates as the outbox job does them")
    parser.add_argument("--leads", type=int, default=10_000, help="leads in the fake (at least the updates)")
    args = parser.parse_args()
    rates = [Decimal(r) for r in (args.rps or ["6.5"])]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]

    with tempfile.TemporaryDirectory(prefix="bench-amo-mirror-") as workdir:
        work = Path(workdir)
        redis_proc = RedisProc(work)
        fake = Fake(work / "fake.log")
        try:
            count = max(args.leads, args.updates, args.notes, args.per_job, 1)
            made = fake.control("POST", "leads", {"count": count})
            deals = [str(i) for i in range(made["first"], made["last"] + 1)]
            print(
                f"setup: fake amoCRM at {fake.url} (as {AMO_BASE}) with {len(deals)} leads; private redis "
                f"{redis_proc.url}; {os.cpu_count()} CPUs",
                flush=True,
            )
            verdicts: dict[str, bool] = {}
            for rps in rates:
                probe = amo_limiter(
                    redis.Redis.from_url(redis_proc.url), account_id=ACCOUNT_ID, rps=rps, scope="ip"
                )
                burst, sustained = probe.burst, probe.sustained
                cap = min(float(rps), burst.limit / burst.window_s)
                print(
                    f"AMO_RATE_LIMIT_RPS={rps}: amo_limiter admits ≤ {burst.limit} per {burst.window_s:g} s "
                    f"and ≤ {sustained.limit} per {sustained.window_s:g} s (scope ip), i.e. at most "
                    f"{cap:.2f} req/s = {cap / CEILING_RPS:.1%} of the 7/s ceiling:"
                )
                for mode in modes:
                    for key, ok in run_mode(mode, args, fake, redis_proc.url, deals, rps).items():
                        verdicts[f"rps {rps}, {key}"] = ok
                if args.per_job:
                    run_per_job(args.per_job, args, fake, redis_proc.url, deals, rps)
            if verdicts:
                print("summary (floor ≥ 90 % of the ceiling, zero 429s):")
                for key, ok in verdicts.items():
                    print(f"  {key}: {'MET' if ok else 'NOT MET'}")
        finally:
            fake.stop()
            redis_proc.stop()


if __name__ == "__main__":
    main()
