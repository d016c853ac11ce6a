"""Importing one Helix export (upload, watch folder or CLI), and where a portal's Helix files live."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.helix.export import SOURCE as HELIX_SOURCE
from connectors.helix.export import HelixFileError, parse_export

from ...appointments.sync import ingest, start_run
from ...clock import now_utc
from ...errors import DomainError
from ...models import MisSyncRun, Portal

__all__ = ["HelixImportRefused", "first_import", "helix_folder", "import_helix_file"]


class HelixImportRefused(DomainError):
    """The file cannot be imported at all: nothing of it was written. `field` names what is wrong."""

    code = "unreadable_file"


def first_import(session: Session, portal: Portal, data: bytes) -> tuple[str, MisSyncRun | None]:
    """The file's SHA-256, and the run that first took the same bytes (upload, folder or CLI), if any."""
    digest = hashlib.sha256(data).hexdigest()
    first = session.scalar(
        select(MisSyncRun).where(MisSyncRun.portal_id == portal.id, MisSyncRun.file_sha256 == digest)
    )
    return digest, first


def import_helix_file(session: Any, portal: Portal, data: bytes, file_name: str) -> tuple[MisSyncRun, bool]:
    """(run, True) for a new file; (the first run, False) when the same bytes were imported before."""
    digest, first = first_import(session, portal, data)
    if first is not None:
        return first, False
    try:
        batch = parse_export(data, tz=ZoneInfo(portal.timezone), filename=file_name)
    except HelixFileError as exc:
        raise HelixImportRefused(exc.field, exc.reason) from None
    run = start_run(
        session, portal, HELIX_SOURCE, file_name=file_name, file_sha256=digest, period=batch.period
    )
    ingest(session, portal, run, batch)
    run.state = "done"
    run.finished_at = now_utc()
    return run, True


def helix_folder(instance_path: Path, portal: Portal) -> Path:
    """`<instance>/mis/<slug>/helix`, unless the admin set `mis.helix_watch_dir`."""
    configured = ((portal.settings or {}).get("mis") or {}).get("helix_watch_dir")
    return Path(configured) if configured else instance_path / "mis" / portal.slug / "helix"
