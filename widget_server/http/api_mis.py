"""The admin's side of MIS sync: Helix file uploads and the sync log (runs and per-record outcomes)."""

from __future__ import annotations

import csv
import io
from typing import Any

from flask import Blueprint, Response, request
from sqlalchemy import select

from ..errors import NotFound, ValidationFailed
from ..jobs.mis import HelixImportRefused, import_helix_file
from ..models import MisAppointment, MisSyncRecord, MisSyncRun
from .auth import current_portal, current_principal, requires
from .body import load_query
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
    summary="Import a Helix visits export (multipart `file`); the same file again returns its first import",
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
    try:
        run, new = import_helix_file(db_session(), current_portal(), data, upload.filename or "upload")
    except HelixImportRefused as refused:
        raise ValidationFailed(
            f"{refused.field}: {refused.reason}",
            code="unreadable_file",
            fields={refused.field: [refused.reason]},
        ) from None
    body = ImportAcceptedSchema().dump({"import_id": run.id, "duplicate": not new, "counts": run.counts})
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
