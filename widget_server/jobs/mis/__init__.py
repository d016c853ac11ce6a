"""MIS jobs, one module per concern:

- `appointment_mirror`: the outbox operation that mirrors one appointment into the CRM, with
  `notes` (how a visit reads there), `feed` (its notes in the CRM's batches) and `duplicates` (the
  patient's one contact);
- `intake`: deals in the intake pipeline become tickets IDENT pulls;
- `helix_import`, `helix_uploads`, `watch_folder`: Helix exports by CLI, upload and watch folder;
- `ident`: the IDENT database's poll and daily reconciliation; `sync_log`: the sync log's retention.
"""

from __future__ import annotations

# rq stores a queued job by its function's dotted path, and these jobs were queued as
# `widget_server.jobs.mis.<name>` before this package was split: jobs waiting in Redis across a deploy must
# still resolve. New jobs are queued under the modules' own paths; the aliases can go a release later.
from .helix_uploads import run_helix_upload
from .ident import poll_ident_databases, reconcile_ident_databases
from .sync_log import purge_mis_sync_log
from .watch_folder import poll_helix_folders

__all__ = [
    "poll_helix_folders",
    "poll_ident_databases",
    "purge_mis_sync_log",
    "reconcile_ident_databases",
    "run_helix_upload",
]
