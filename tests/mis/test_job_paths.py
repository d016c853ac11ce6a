"""rq finds a queued job's function by the dotted path stored with it: the MIS jobs queued before the MIS job
module became a package (`widget_server.jobs.mis.<name>`) still resolve after a deploy."""

from __future__ import annotations

import pytest
from rq.utils import import_attribute

from widget_server.jobs.mis import helix_uploads, ident, sync_log, watch_folder
from widget_server.jobs.schedule import PERIODIC_JOBS


@pytest.mark.parametrize(
    "job",
    [
        helix_uploads.run_helix_upload,
        watch_folder.poll_helix_folders,
        sync_log.purge_mis_sync_log,
        ident.poll_ident_databases,
        ident.reconcile_ident_databases,
    ],
)
def test_a_job_queued_under_the_old_module_path_still_resolves(job):
    assert import_attribute(f"widget_server.jobs.mis.{job.__name__}") is job
    # New jobs are queued under the module that defines them.
    assert import_attribute(f"{job.__module__}.{job.__qualname__}") is job


def test_every_scheduled_mis_job_is_one_of_them():
    scheduled = {
        f.__name__
        for f, _queue, _interval in PERIODIC_JOBS
        if f.__module__.startswith("widget_server.jobs.mis.")
    }
    assert scheduled == {
        "poll_helix_folders",
        "purge_mis_sync_log",
        "poll_ident_databases",
        "reconcile_ident_databases",
    }
