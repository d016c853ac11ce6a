"""Helix uploads and the sync log over HTTP, and seed 004's clinic day end to end into the sandbox CRM."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from widget_server.appointments.settings import SEED004_TEMPLATE
from widget_server.models import MisAppointment, MisSyncRecord, MisSyncRun, OutboxJob
from widget_server.sandbox.models import SandboxDeal

FIXTURES = Path(__file__).parent.parent / "fixtures" / "helix"


@pytest.fixture
def helix(make_portal, make_api):
    portal = make_portal(slug="helix-clinic", settings={"mis": SEED004_TEMPLATE})
    return portal, make_api(portal, "admin")


def _upload(api, name: str, data: bytes | None = None, **headers: str):
    body = data if data is not None else (FIXTURES / name).read_bytes()
    return api.client.post(
        "/api/v1/mis/helix/imports",
        data={"file": (io.BytesIO(body), name)},
        content_type="multipart/form-data",
        headers={"Authorization": f"Bearer {api.key}", **headers},
    )


def _imported(api, response, jobs) -> dict:
    """The upload's sync run once its job has run (the upload itself only queues it)."""
    assert response.status_code == 202
    jobs()
    return api.get(response.get_json()["status_url"]).get_json()


def _counts(rt, model, **where) -> int:
    with rt.db.transaction() as s:
        statement = select(func.count()).select_from(model)
        for key, value in where.items():
            statement = statement.where(getattr(model, key) == value)
        return s.scalar(statement)


def test_seed004_helix_day(rt, helix, jobs):
    portal, api = helix
    assert _upload(api, "visits_history.csv").status_code == 202
    jobs()
    response = _upload(api, "visits_day_120.csv")
    import_id = response.get_json()["import_id"]
    counts = _imported(api, response, jobs)["counts"]
    assert counts == {"created": 118, "rejected": 2, "unmapped": 3}
    run = api.get(f"/api/v1/mis/sync-runs/{import_id}?outcome=rejected").get_json()
    assert [(r["row"], r["field"], r["value"]) for r in run["records"]] == [
        (37, "visit_date", "31.02.2026"),
        (88, "status", "Перенесён"),
    ]
    assert "not a date" in run["records"][0]["reason"] and run["records"][1]["reason"] == "unknown status"
    with rt.db.transaction() as s:
        day = s.scalars(
            select(MisAppointment).where(
                MisAppointment.portal_id == portal.id, MisAppointment.source_id.notlike("HX-H%")
            )
        ).all()
        deals = {d.id: (d.pipeline_id, d.stage_id) for d in s.scalars(select(SandboxDeal)).all()}
        stages = Counter(deals[int(a.deal_id)] for a in day if a.deal_id)
    assert stages == {
        ("Лист ожидания", "Визит состоялся"): 8,
        ("Лист ожидания", "Записался, но не пришёл"): 2,
        ("Повторные пациенты", "Визит состоялся"): 24,
        ("Повторные пациенты", "Записался, но не пришёл"): 6,
        ("Первичные пациенты", "Визит состоялся"): 59,
        ("Первичные пациенты", "Записался, но не пришёл"): 16,
    }
    assert Counter(a.kind for a in day) == {"primary": 88, "repeat": 30}
    assert sum(1 for a in day if a.deal_id is None) == 3  # the cancellations: no stage mapped, no deal


def test_the_same_file_twice_returns_the_first_import_and_touches_nothing(rt, helix, jobs):
    _, api = helix
    first = _upload(api, "visits_sample.csv")
    jobs()
    jobs_before = _counts(rt, OutboxJob)
    records_before = _counts(rt, MisSyncRecord)
    second = _upload(api, "visits_sample.csv")
    assert second.status_code == 202
    assert second.get_json()["import_id"] == first.get_json()["import_id"]
    assert second.get_json()["duplicate"] is True
    assert jobs() == 0
    assert (_counts(rt, OutboxJob), _counts(rt, MisSyncRecord), _counts(rt, MisSyncRun)) == (
        jobs_before,
        records_before,
        1,
    )


def test_the_same_visits_in_another_file_are_all_unchanged_with_no_job(rt, helix, jobs):
    _, api = helix
    _upload(api, "visits_sample.csv")
    jobs()
    jobs_before = _counts(rt, OutboxJob)
    again = _upload(api, "visits_sample.json")  # other bytes, same visits
    assert _imported(api, again, jobs)["counts"] == {"unchanged": 6}
    assert _counts(rt, OutboxJob) == jobs_before


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b"ID;Name\n1;x\n", "visit_id"),
        (b"PK\x03\x04 not a workbook", "file"),
    ],
)
def test_an_unreadable_file_is_422_naming_it_and_nothing_is_imported(rt, helix, data, field):
    _, api = helix
    response = _upload(api, "broken.csv", data)
    assert response.status_code == 422
    error = response.get_json()["error"]
    [reason] = error["fields"][field]
    assert error == {"code": "unreadable_file", "message": f"{field}: {reason}", "fields": {field: [reason]}}
    assert (_counts(rt, MisSyncRun), _counts(rt, MisAppointment)) == (0, 0)
    assert not (rt.settings.instance_path / "mis" / "helix-clinic" / "helix" / "uploads").exists()


def test_only_an_admin_imports(rt, helix, make_api):
    portal, _ = helix
    staff = make_api(portal, "staff")
    assert _upload(staff, "visits_sample.csv").status_code == 403
    assert _counts(rt, MisSyncRun) == 0


def test_sync_runs_list_and_csv(rt, helix, jobs):
    _, api = helix
    _upload(api, "visits_sample.csv")
    jobs()
    runs = api.get("/api/v1/mis/sync-runs").get_json()
    assert [r["file_name"] for r in runs] == ["visits_sample.csv"]
    assert runs[0]["counts"]["created"] == 6
    csv_response = api.get(f"/api/v1/mis/sync-runs/{runs[0]['id']}.csv?outcome=created")
    assert csv_response.mimetype == "text/csv"
    lines = csv_response.get_data(as_text=True).lstrip("\ufeff").splitlines()
    assert lines[0] == "row;source_id;outcome;field;reason;value;deal_id"
    assert len(lines) == 7 and lines[1].split(";")[1:3] == ["HX-1001", "created"]
    assert api.get("/api/v1/mis/sync-runs/999.csv").status_code == 404
    assert api.get(f"/api/v1/mis/sync-runs/{runs[0]['id']}?outcome=bogus").status_code == 422


def test_a_refused_row_does_not_void_its_visit(rt, helix, jobs):
    _, api = helix
    _upload(api, "visits_sample.csv")
    jobs()
    text = (FIXTURES / "visits_sample.csv").read_bytes().decode("utf-8-sig")
    line = next(x for x in text.splitlines() if x.startswith("HX-1002;"))
    broken = text.replace(line, line.replace(";12.03.2026;11:00;", ";31.02.2026;11:00;"))
    assert broken != text
    counts = _imported(api, _upload(api, "visits_sample_fixed.csv", broken.encode()), jobs)["counts"]
    assert counts == {"rejected": 1, "unchanged": 5}
    with rt.db.transaction() as s:
        status = s.scalar(select(MisAppointment.status).where(MisAppointment.source_id == "HX-1002"))
    assert status == "booked"


def test_an_upload_is_stored_and_queued_then_imported_by_a_job(rt, helix, jobs):
    portal, api = helix
    response = _upload(api, "visits_sample.xlsx")
    assert response.status_code == 202
    body = response.get_json()
    assert body["state"] == "queued" and body["duplicate"] is False and body["counts"] == {}
    assert body["status_url"] == f"/api/v1/mis/sync-runs/{body['import_id']}"
    # Nothing imported inside the request; the file is on disk before the run commits.
    assert _counts(rt, MisAppointment) == 0
    assert api.get(body["status_url"]).get_json()["state"] == "queued"
    stored = list((rt.settings.instance_path / "mis" / portal.slug / "helix" / "uploads").iterdir())
    assert len(stored) == 1 and stored[0].read_bytes() == (FIXTURES / "visits_sample.xlsx").read_bytes()
    run = _imported(api, response, jobs)
    assert run["state"] == "done" and run["counts"]["created"] == 6 and run["finished_at"]
    assert _counts(rt, MisAppointment) == 6
    assert not stored[0].exists()  # imported: the run and its records are the record now
    again = _upload(api, "visits_sample.xlsx").get_json()
    assert (again["import_id"], again["duplicate"], again["state"]) == (body["import_id"], True, "done")
    assert again["counts"]["created"] == 6


def test_an_upload_whose_wake_up_was_lost_is_imported_by_the_folder_poll(rt, helix, jobs):
    from datetime import timedelta

    from widget_server import clock
    from widget_server.jobs.mis.watch_folder import poll_helix_folders

    _, api = helix
    response = _upload(api, "visits_sample.csv")
    rt.queue("mis").empty()  # Redis lost the wake-up; the run and the file are committed
    assert jobs() == 0
    poll_helix_folders()
    jobs()
    # Too young to be lost: its job may be about to run.
    assert api.get(response.get_json()["status_url"]).get_json()["state"] == "queued"
    later = clock.now_utc() + timedelta(minutes=3)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(clock, "now_utc", lambda: later)
        mp.setattr("widget_server.jobs.mis.helix_uploads.now_utc", lambda: later)
        poll_helix_folders()
    run = _imported(api, response, jobs)
    assert run["state"] == "done" and run["counts"]["created"] == 6


def test_an_upload_whose_rows_cannot_be_imported_fails_its_run_with_the_reason(rt, helix, jobs):
    _, api = helix
    response = _upload(api, "visits_sample.csv")
    path = next((rt.settings.instance_path / "mis" / "helix-clinic" / "helix" / "uploads").iterdir())
    path.unlink()  # the disk lost it between the upload and the job
    run = _imported(api, response, jobs)
    assert run["state"] == "failed" and run["error"].startswith("file:")
    assert _counts(rt, MisAppointment) == 0
