"""Helix uploads: stored at once, imported by a job."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.helix.export import SOURCE as HELIX_SOURCE
from connectors.helix.export import HelixFileError, parse_export, read_rows

from ... import runtime
from ...appointments.sync import ingest, start_run
from ...clock import now_utc
from ...models import MisSyncRun, Portal
from ...outbox import after_commit
from ..joblog import logged_job
from .helix_import import HelixImportRefused, first_import, helix_folder

__all__ = ["accept_helix_upload", "helix_upload_path", "run_helix_upload", "wake_lost_uploads"]


UPLOAD_QUEUED = "queued"
UPLOAD_LOST_AFTER = timedelta(minutes=2)
"""A queued upload older than this lost its wake-up (Redis down at commit): the folder poll re-sends it."""


def helix_upload_path(instance_path: Path, portal: Portal, sha256: str) -> Path:
    return helix_folder(instance_path, portal) / "uploads" / sha256


def accept_helix_upload(
    session: Session, portal: Portal, data: bytes, file_name: str
) -> tuple[MisSyncRun, bool]:
    """(run, True) for a new file: stored on disk, its run `queued` and a job woken after commit; (the first
    run, False) when the same bytes came before. An unreadable file (format, encoding, a required column) is
    `HelixImportRefused` with nothing stored: reading it is cheap next to importing it."""
    digest, first = first_import(session, portal, data)
    if first is not None:
        return first, False
    try:
        read_rows(data, filename=file_name)
    except HelixFileError as exc:
        raise HelixImportRefused(exc.field, exc.reason) from None
    path = helix_upload_path(runtime.current().settings.instance_path, portal, digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole before the run commits, so a queued run always has its file.
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(data)
    partial.replace(path)
    run = start_run(session, portal, HELIX_SOURCE, file_name=file_name, file_sha256=digest)
    run.state = UPLOAD_QUEUED
    run_id = run.id
    after_commit(session, lambda: _wake_upload(run_id))
    return run, True


def _wake_upload(run_id: int) -> None:
    runtime.current().queue("mis").enqueue(
        run_helix_upload, run_id, job_id=f"helix-upload-{run_id}-{time.time_ns()}"
    )


@logged_job("run_helix_upload")
def run_helix_upload(run_id: int) -> str:
    """Import a stored upload into its run, in one transaction: a crash leaves it `queued` for a retry, and
    the run's row lock keeps a second wake-up from importing it twice."""
    rt = runtime.current()
    with rt.db.transaction() as s:
        run = s.scalar(select(MisSyncRun).where(MisSyncRun.id == run_id).with_for_update())
        if run is None or run.state != UPLOAD_QUEUED:
            return "skipped"
        portal = s.get(Portal, run.portal_id)
        assert portal is not None and run.file_sha256 is not None
        path = helix_upload_path(rt.settings.instance_path, portal, run.file_sha256)
        try:
            data = path.read_bytes()
            batch = parse_export(data, tz=ZoneInfo(portal.timezone), filename=run.file_name or "")
        except (HelixFileError, OSError) as exc:
            reason = f"{exc.field}: {exc.reason}" if isinstance(exc, HelixFileError) else f"file: {exc}"
            run.state, run.error, run.finished_at = "failed", reason, now_utc()
            return "failed"
        if batch.period is not None:
            run.period_from, run.period_to = batch.period
        ingest(s, portal, run, batch)
        run.state, run.finished_at = "done", now_utc()
    path.unlink(missing_ok=True)
    return "done"


def wake_lost_uploads(portal_id: int) -> int:
    with runtime.current().db.transaction() as s:
        lost = list(
            s.scalars(
                select(MisSyncRun.id).where(
                    MisSyncRun.portal_id == portal_id,
                    MisSyncRun.state == UPLOAD_QUEUED,
                    MisSyncRun.created_at < now_utc() - UPLOAD_LOST_AFTER,
                )
            )
        )
    for run_id in lost:
        _wake_upload(run_id)
    return len(lost)
