"""Clinic reports: GET /api/v1/reports/{primary|specialisations|sources|conversion|no-shows}[.csv|.png]
?from=YYYY-MM-DD&to=YYYY-MM-DD&group=day|week|month. Admin and finance (finance implies it for admin)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from ..errors import NotFound
from ..reports import REPORTS, build_report, make_period, report_csv, report_png
from .auth import current_portal, current_principal, requires
from .body import load_query
from .lifecycle import db_session
from .openapi import api_doc
from .schemas_reports import ClinicReportQuerySchema

__all__ = ["reports_api"]

reports_api = Blueprint("reports_api", __name__, url_prefix="/api/v1")

TAG = ["reports"]
_FORMATS = {"": "json", "csv": "csv", "png": "png"}


@reports_api.get("/reports/<string:name>")
@api_doc(
    summary="A clinic report as JSON, or as .csv (UTF-8 BOM, ;) or .png (1200×700) with the same numbers",
    tags=TAG, query=ClinicReportQuerySchema, errors=(404, 422),
)  # fmt: skip
@requires("finance")
def get_report(name: str) -> Any:
    base, _, extension = name.partition(".")
    if base not in REPORTS or extension not in _FORMATS:
        known = f"one of {', '.join(REPORTS)}, optionally .csv or .png"
        raise NotFound(f"no report {name!r}", fields={"report": [known]})
    query = load_query(ClinicReportQuerySchema())
    period = make_period(query["from"], query["to"], query["group"], current_portal().timezone)
    report = build_report(db_session(), current_principal().portal_id, base, period)
    filename = f"{base}-{period.start.isoformat()}-{period.end.isoformat()}"
    if extension == "csv":
        return Response(
            report_csv(report), mimetype="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'},
        )  # fmt: skip
    if extension == "png":
        return Response(
            report_png(report), mimetype="image/png",
            headers={"Content-Disposition": f'inline; filename="{filename}.png"'},
        )  # fmt: skip
    return report.document()
