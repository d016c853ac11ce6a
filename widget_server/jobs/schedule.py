"""The periodic schedule: the only place periodic jobs are registered.

Loaded by `clinicbridge cron` (rq's CronScheduler). Intervals are short on purpose: every job is
idempotent per (portal, period), so a tick that finds nothing to do costs one query.
"""

from __future__ import annotations

from redis import Redis
from rq.cron import CronScheduler

from ..bitrix24_sources import refresh_event_sources
from .amocrm import poll_amo_changes, refresh_amo_tokens
from .bitrix24 import keep_grants_alive, poll_offline_events, reconcile_deals
from .distribution import run_distribution_sweep
from .inpatient import run_inpatient_sweep
from .invoices import refresh_cbr_rates
from .journey import run_journey_sweep
from .ledger import run_daily_charges, run_expire_holds
from .mis.ident import poll_ident_databases, reconcile_ident_databases
from .mis.sync_log import purge_mis_sync_log
from .mis.watch_folder import poll_helix_folders
from .payroll import send_payroll_statements
from .periodic import purge_idempotency_records, sweep_inbox, sweep_outbox

__all__ = ["PERIODIC_JOBS", "SchedulerAlreadyRunning", "SingletonCronScheduler", "build_scheduler"]

SCHEDULER_LOCK = "cb:scheduler:lock"
SCHEDULER_LOCK_TTL_S = 90
"""Longer than the longest sleep between ticks (the shortest interval below), renewed every tick."""

# (function, queue, interval in seconds)
PERIODIC_JOBS = (
    (sweep_outbox, "crm", 30),
    (sweep_inbox, "default", 60),
    (purge_idempotency_records, "default", 3600),
    # Catches up every missed day; cheap when nothing is due, so it can run often.
    (run_daily_charges, "default", 900),
    (run_expire_holds, "default", 300),
    (refresh_amo_tokens, "crm", 300),
    # Only portals whose account refused our webhooks; a no-op elsewhere.
    (poll_amo_changes, "crm", 300),
    # Bitrix24 events are at-most-once: the offline queue every 5 min, a changed-deals sweep every 15.
    (poll_offline_events, "crm", 300),
    (reconcile_deals, "crm", 900),
    (keep_grants_alive, "crm", 86400),
    # Bitrix24's published caller lists: every 10 min, as Bitrix24 recommends (at most once a minute).
    (refresh_event_sources, "crm", 600),
    # Untaken leads move after take_within_min (default 15): a minute's lateness is the precision.
    (run_distribution_sweep, "default", 60),
    # CBR rates: only days the shared cache lacks (last week, today, tomorrow once published).
    (refresh_cbr_rates, "default", 3600),
    # Helix watch folders (a file is taken once it has not changed for 5 s); the MIS sync log keeps 90 days.
    (poll_helix_folders, "mis", 60),
    (purge_mis_sync_log, "default", 3600),
    # IDENT databases: changes every 2 min; the −30…+90-day window once a day voids deleted receptions.
    (poll_ident_databases, "mis", 120),
    (reconcile_ident_databases, "mis", 3600),
    # Last month's payroll to the head from the 1st, 08:00 local; once per (portal, month), catches up.
    (send_payroll_statements, "default", 900),
    # Patient journey: everything due since the last sweep, in each portal's timezone.
    (run_journey_sweep, "default", 300),
    # Overdue doses escalate once each, arrival-day tasks, relatives told of purchases and low balance.
    (run_inpatient_sweep, "default", 120),
)


_RENEW_IF_OURS = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


_DELETE_IF_OURS = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class SchedulerAlreadyRunning(RuntimeError):
    pass


class SingletonCronScheduler(CronScheduler):
    """rq's CronScheduler has no lock: two of them enqueue every job twice. This one holds a Redis lease
    and refuses to start while another holds it."""

    def acquire(self) -> None:
        if not self.connection.set(SCHEDULER_LOCK, self.name, nx=True, ex=SCHEDULER_LOCK_TTL_S):
            holder = self.connection.get(SCHEDULER_LOCK)
            raise SchedulerAlreadyRunning(f"another scheduler is running ({holder!r}); exactly one may run")

    def enqueue_jobs(self) -> list:  # type: ignore[override]
        renewed = self.connection.eval(_RENEW_IF_OURS, 1, SCHEDULER_LOCK, self.name, SCHEDULER_LOCK_TTL_S)
        if not renewed:
            # The lease lapsed (e.g. a long pause): take it back only if nobody else did.
            self.acquire()
        return super().enqueue_jobs()

    def release(self) -> None:
        self.connection.eval(_DELETE_IF_OURS, 1, SCHEDULER_LOCK, self.name)


def build_scheduler(connection: Redis) -> SingletonCronScheduler:
    scheduler = SingletonCronScheduler(connection=connection)
    for func, queue_name, interval in PERIODIC_JOBS:
        scheduler.register(func, queue_name=queue_name, interval=interval, result_ttl=600)
    return scheduler
