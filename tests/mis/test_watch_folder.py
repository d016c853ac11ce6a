"""The Helix watch folder (incoming → done or failed, with a report) and the sync log's 90-day retention."""

from __future__ import annotations

import os
import shutil
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from widget_server.appointments.settings import SEED004_TEMPLATE
from widget_server.jobs.mis import sync_log
from widget_server.jobs.mis.helix_import import helix_folder
from widget_server.jobs.mis.watch_folder import poll_helix_folders
from widget_server.models import MisAppointment, MisSyncRecord, MisSyncRun

FIXTURES = Path(__file__).parent.parent / "fixtures" / "helix"


def _drop(folder: Path, name: str, data: bytes | None = None, age_s: float = 60) -> Path:
    incoming = folder / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    path = incoming / name
    if data is None:
        shutil.copy(FIXTURES / name, path)
    else:
        path.write_bytes(data)
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def _count(rt, model) -> int:
    with rt.db.transaction() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_a_dropped_file_is_imported_and_moved_with_its_report(rt, make_portal):
    portal = make_portal(slug="helix-watch", settings={"mis": SEED004_TEMPLATE})
    folder = helix_folder(rt.settings.instance_path, portal)
    _drop(folder, "visits_day_120.csv")
    assert poll_helix_folders() == "duplicate 0 failed 0 imported 1"
    assert list((folder / "incoming").iterdir()) == []
    report = (folder / "done" / "visits_day_120.csv.report.txt").read_text(encoding="utf-8").splitlines()
    assert report[0].startswith("Импорт / import ") and "created 118" in report[0]
    assert report[1:] == [
        "строка 37, visit_date: not a date (ДД.ММ.ГГГГ or YYYY-MM-DD) (31.02.2026)",
        "строка 88, status: unknown status (Перенесён)",
    ]
    assert _count(rt, MisAppointment) == 118


def test_an_unreadable_file_goes_to_failed_and_nothing_is_imported(rt, make_portal):
    portal = make_portal(slug="helix-watch", settings={"mis": SEED004_TEMPLATE})
    folder = helix_folder(rt.settings.instance_path, portal)
    _drop(folder, "broken.csv", b"ID;Name\n1;x\n")
    assert poll_helix_folders() == "duplicate 0 failed 1 imported 0"
    report = (folder / "failed" / "broken.csv.report.txt").read_text(encoding="utf-8")
    assert "visit_id" in report
    assert (_count(rt, MisSyncRun), _count(rt, MisAppointment)) == (0, 0)


def test_a_file_still_being_written_waits_and_the_same_file_again_is_a_duplicate(rt, make_portal):
    portal = make_portal(slug="helix-watch", settings={"mis": SEED004_TEMPLATE})
    folder = helix_folder(rt.settings.instance_path, portal)
    fresh = _drop(folder, "visits_sample.csv", age_s=0)
    assert poll_helix_folders() == "duplicate 0 failed 0 imported 0"
    assert fresh.exists()
    os.utime(fresh, (time.time() - 60, time.time() - 60))
    poll_helix_folders()
    _drop(folder, "visits_sample.csv")
    assert poll_helix_folders() == "duplicate 1 failed 0 imported 0"
    assert len(list((folder / "done").glob("visits_sample*.csv"))) == 2
    assert _count(rt, MisSyncRun) == 1


def test_the_sync_log_keeps_ninety_days(rt, make_portal, monkeypatch):
    portal = make_portal(slug="helix-watch", settings={"mis": SEED004_TEMPLATE})
    folder = helix_folder(rt.settings.instance_path, portal)
    _drop(folder, "visits_sample.csv")
    poll_helix_folders()
    assert _count(rt, MisSyncRecord) == 11  # 6 created, 4 unmapped, 1 invalid_phone
    later = sync_log.now_utc() + timedelta(days=91)
    monkeypatch.setattr(sync_log, "now_utc", lambda: later)
    sync_log.purge_mis_sync_log()
    assert (_count(rt, MisSyncRecord), _count(rt, MisSyncRun)) == (0, 0)
    assert _count(rt, MisAppointment) == 6  # the visits themselves stay
