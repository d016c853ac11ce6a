"""The admin's side of MIS sync: Helix file uploads and the sync log (runs and per-record outcomes)."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict
from typing import Any

from flask import Blueprint, Response, request, url_for
from sqlalchemy import select

from .. import runtime
from ..appointments.settings import EDITABLE, TEMPLATES, validate_mis_settings
from ..appointments.timetable import issue_ident_key, timetable_status
from ..errors import NotFound, ValidationFailed
from ..jobs.mis.helix_uploads import accept_helix_upload
from ..models import MisAppointment, MisSyncRecord, MisSyncRun, MisTimetable, Portal
from ..registry import crm_for
from .auth import current_portal, current_principal, requires
from .body import load_query, read_json_object
from .crm_errors import crm_errors_as_api_errors
from .idempotency import mutation
from .lifecycle import db_session
from .openapi import api_doc
from .schemas_mis import (
    ImportAcceptedSchema,
    SyncRecordSchema,
    SyncRecordsQuerySchema,
    SyncRunSchema,
    SyncRunsQuerySchema,
)

__all__ = ["mis_api"]

mis_api = Blueprint("mis_api", __name__, url_prefix="/api/v1/mis")

MAX_FILE_BYTES = 20 * 1024 * 1024


@mis_api.post("/helix/imports")
@api_doc(
    summary="Queue a Helix visits export (multipart `file`) for import; the same file again returns its "
    "first import. Poll `status_url` (the sync run) for its state and counts",
    tags=["mis"],
    response=ImportAcceptedSchema,
    status=202,
    errors=(422,),
)
@requires("admin")
@mutation
def import_helix() -> Any:
    upload = request.files.get("file")
    if upload is None:
        raise ValidationFailed("file: a multipart file is required", fields={"file": ["required"]})
    data = upload.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise ValidationFailed("file: larger than 20 MB", fields={"file": ["larger than 20 MB"]})
    run, new = accept_helix_upload(db_session(), current_portal(), data, upload.filename or "upload")
    body = ImportAcceptedSchema().dump(
        {
            "import_id": run.id,
            "duplicate": not new,
            "state": run.state,
            "status_url": url_for("mis_api.get_run", run_id=run.id),
            "counts": run.counts,
        }
    )
    return body, 202


@mis_api.get("/sync-runs")
@api_doc(
    summary="MIS sync runs, newest first",
    tags=["mis"],
    query=SyncRunsQuerySchema,
    response=SyncRunSchema(many=True),
)
@requires("admin")
def list_runs() -> Any:
    query = load_query(SyncRunsQuerySchema())
    runs = db_session().scalars(
        select(MisSyncRun)
        .where(MisSyncRun.portal_id == current_principal().portal_id)
        .order_by(MisSyncRun.id.desc())
        .limit(query["limit"])
    )
    return SyncRunSchema(many=True).dump(runs)


def _run(run_id: int) -> MisSyncRun:
    run = db_session().get(MisSyncRun, run_id)
    if run is None or run.portal_id != current_principal().portal_id:
        raise NotFound(f"no sync run {run_id} in this portal")
    return run


def _records(run: MisSyncRun) -> list[dict[str, Any]]:
    query = load_query(SyncRecordsQuerySchema())
    statement = (
        select(MisSyncRecord, MisAppointment.deal_id)
        .outerjoin(MisAppointment, MisAppointment.id == MisSyncRecord.appointment_id)
        .where(MisSyncRecord.run_id == run.id)
        .order_by(MisSyncRecord.id)
    )
    if "outcome" in query:
        statement = statement.where(MisSyncRecord.outcome == query["outcome"])
    return [
        {
            "row": r.row,
            "source_id": r.source_id,
            "outcome": r.outcome,
            "field": r.field,
            "reason": r.reason,
            "value": r.value,
            "deal_id": deal_id,
        }
        for r, deal_id in db_session().execute(statement)
    ]


@mis_api.get("/sync-runs/<int:run_id>")
@api_doc(
    summary="One sync run with its records (?outcome=…)",
    tags=["mis"],
    query=SyncRecordsQuerySchema,
    response=SyncRunSchema,
    errors=(404,),
)
@requires("admin")
def get_run(run_id: int) -> Any:
    run = _run(run_id)
    return {**SyncRunSchema().dump(run), "records": SyncRecordSchema(many=True).dump(_records(run))}


@mis_api.get("/sync-runs/<int:run_id>.csv")
@api_doc(
    summary="One sync run's records as CSV (?outcome=…)",
    tags=["mis"],
    query=SyncRecordsQuerySchema,
    errors=(404,),
)
@requires("admin")
def get_run_csv(run_id: int) -> Any:
    run = _run(run_id)
    out = io.StringIO()
    columns = ["row", "source_id", "outcome", "field", "reason", "value", "deal_id"]
    writer = csv.DictWriter(out, fieldnames=columns, delimiter=";")
    writer.writeheader()
    writer.writerows(_records(run))
    # A BOM so Excel, which clinics open these in, reads the Cyrillic as UTF-8.
    return Response(
        "\ufeff" + out.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="mis-sync-run-{run.id}.csv"'},
    )


def _mis_doc(portal: Portal) -> dict[str, Any]:
    return dict((portal.settings or {}).get("mis") or {})


def _settings_view(portal: Portal, key: str | None = None) -> dict[str, Any]:
    doc = _mis_doc(portal)
    session = db_session()
    snapshot = session.scalar(
        select(MisTimetable).where(MisTimetable.portal_id == portal.id, MisTimetable.source == "ident")
    )
    specialties = doc.get("doctor_map") or {}
    doctors = [
        {
            "id": str(d["Id"]),
            "name": d["Name"],
            "specialty": (specialties.get(str(d["Id"])) or {}).get("specialty"),
        }
        for d in (snapshot.doc.get("Doctors", []) if snapshot else [])
    ]
    body: dict[str, Any] = {
        "settings": {k: doc.get(k) for k in EDITABLE},
        "ident_key_set": bool(doc.get("ident_key_sha256")),
        "timetable": timetable_status(session, portal),
        "doctors": doctors,
    }
    if key is not None:
        body["ident_key"] = key
    return body


def _pipelines(portal: Portal) -> list[dict[str, Any]] | None:
    if portal.kind == "sandbox":
        return None  # free-form pipelines: any id is one
    crm: Any = crm_for(portal, runtime.current())
    if not hasattr(crm, "list_pipelines"):
        return None
    with crm_errors_as_api_errors("pipelines"):
        return [asdict(p) for p in crm.list_pipelines()]


@mis_api.get("/settings")
@api_doc(summary="MIS settings: stage map, no-show reasons, doctor map, IDENT key state", tags=["mis"])
@requires("admin")
def get_settings() -> Any:
    return _settings_view(current_portal())


@mis_api.put("/settings")
@api_doc(
    summary="Replace MIS settings (optionally from a template: seed002, seed004); rotate_ident_key shows the "
    "new IDENT-Integration-Key once",
    tags=["mis"],
    errors=(422,),
)
@requires("admin")
@mutation
def put_settings() -> Any:
    body = read_json_object()
    portal = current_portal()
    template = body.pop("template", None)
    rotate = body.pop("rotate_ident_key", False)
    if template is not None and template not in TEMPLATES:
        raise ValidationFailed(
            "template: one of seed002, seed004", fields={"template": [f"one of {', '.join(TEMPLATES)}"]}
        )
    unknown = sorted(set(body) - set(EDITABLE))
    if unknown:
        raise ValidationFailed(f"{unknown[0]}: not a MIS setting", fields={unknown[0]: ["not a MIS setting"]})
    current = _mis_doc(portal)
    merged = {**(TEMPLATES[template] if template else current), **body}
    clean = validate_mis_settings(merged, _pipelines(portal))
    settings = dict(portal.settings or {})
    # What the admin does not edit here stays: the IDENT key's hash, the encrypted IDENT database DSN and
    # its sync cursor (dropping those stopped the reception sync without a word).
    settings["mis"] = {**{k: v for k, v in current.items() if k not in EDITABLE}, **clean}
    portal.settings = settings
    key = issue_ident_key(portal) if rotate else None
    db_session().flush()
    return _settings_view(portal, key)
