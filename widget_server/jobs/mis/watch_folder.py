"""The Helix watch folder: `incoming/` → `done/` or `failed/`, each file with a report beside it."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from sqlalchemy import select

from ... import runtime
from ...models import MisSyncRecord, Portal
from ..joblog import logged_job
from .helix_import import HelixImportRefused, helix_folder, import_helix_file
from .helix_uploads import wake_lost_uploads

__all__ = ["poll_helix_folders"]


SETTLE_S = 5.0
"""A file modified more recently than this may still be being copied in: the next poll takes it."""


def _move(path: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    if target.exists():
        target = folder / f"{path.stem}-{int(time.time())}{path.suffix}"
    return Path(shutil.move(str(path), target))


def _write_report(path: Path, lines: list[str]) -> None:
    path.with_name(path.name + ".report.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _poll_portal_folder(portal_id: int, instance_path: Path) -> dict[str, int]:
    db = runtime.current().db
    with db.transaction() as s:
        portal = s.get(Portal, portal_id)
        if portal is None:
            return {}
        base = helix_folder(instance_path, portal)
    incoming = base / "incoming"
    if not incoming.is_dir():
        return {}
    counts = {"imported": 0, "failed": 0, "duplicate": 0}
    now = time.time()
    for path in sorted(incoming.iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.suffix in (".part", ".tmp"):
            continue
        if now - path.stat().st_mtime < SETTLE_S:
            continue
        data = path.read_bytes()
        try:
            with db.transaction() as s:
                portal = s.get(Portal, portal_id)
                assert portal is not None
                run, new = import_helix_file(s, portal, data, path.name)
                run_id, run_counts = run.id, dict(run.counts)
                rejects = [
                    f"строка {r.row}, {r.field}: {r.reason} ({r.value})"
                    for r in s.scalars(
                        select(MisSyncRecord)
                        .where(MisSyncRecord.run_id == run.id, MisSyncRecord.outcome == "rejected")
                        .order_by(MisSyncRecord.id)
                    )
                ]
        except HelixImportRefused as refused:
            moved = _move(path, base / "failed")
            _write_report(moved, [f"Файл не импортирован / not imported: {refused.field}: {refused.reason}"])
            counts["failed"] += 1
            continue
        moved = _move(path, base / "done")
        summary = ", ".join(f"{k} {v}" for k, v in sorted(run_counts.items()))
        head = (
            f"Импорт / import {run_id}: {summary}"
            if new
            else f"Уже импортирован / already imported: {run_id}"
        )
        _write_report(moved, [head, *rejects])
        counts["imported" if new else "duplicate"] += 1
    return counts


@logged_job("poll_helix_folders")
def poll_helix_folders() -> str:
    """Every active portal's Helix watch folder: `incoming/` → `done/` or `failed/`, each with a report; and
    uploads whose wake-up was lost are woken again."""
    rt = runtime.current()
    with rt.db.transaction() as s:
        portal_ids = list(s.scalars(select(Portal.id).where(Portal.status == "active").order_by(Portal.id)))
    totals: dict[str, int] = {}
    for portal_id in portal_ids:
        for key, value in _poll_portal_folder(portal_id, rt.settings.instance_path).items():
            totals[key] = totals.get(key, 0) + value
        if woken := wake_lost_uploads(portal_id):
            totals["uploads_rewoken"] = totals.get("uploads_rewoken", 0) + woken
    return " ".join(f"{k} {v}" for k, v in sorted(totals.items())) or "nothing"
