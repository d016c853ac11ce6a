"""The reports API: roles, formats and the refusals that name their field."""

from __future__ import annotations

import pytest

from .clinic_data import msk


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("from=2026-03-31&to=2026-03-01", "from"),
        ("from=2024-01-01&to=2026-01-01", "to"),  # 732 days
        ("from=2026-03-01&to=2026-03-31&group=year", "group"),
        ("from=2026-03-01", "to"),
        ("from=01.03.2026&to=2026-03-31", "from"),
        ("from=2026-03-01&to=2026-03-31&pool=x", "pool"),
    ],
)
def test_a_bad_period_is_a_422_naming_the_field(make_api, portal, query, field) -> None:  # type: ignore[no-untyped-def]
    response = make_api(portal, "admin").get(f"/api/v1/reports/primary.csv?{query}")
    assert response.status_code == 422, response.json
    assert field in response.json["error"]["fields"]


def test_731_days_is_the_longest_period(make_api, portal) -> None:  # type: ignore[no-untyped-def]
    response = make_api(portal, "admin").get("/api/v1/reports/conversion?from=2024-01-01&to=2025-12-31")
    assert response.status_code == 200
    assert len(response.json["rows"]) == 24


@pytest.mark.parametrize(("role", "status"), [("viewer", 403), ("staff", 403), ("supervisor", 403),
                                              ("finance", 200), ("admin", 200)])  # fmt: skip
def test_reports_are_for_admin_and_finance(make_api, portal, role, status) -> None:  # type: ignore[no-untyped-def]
    response = make_api(portal, role).get("/api/v1/reports/no-shows?from=2026-03-01&to=2026-03-31")
    assert response.status_code == status


def test_every_report_in_every_format(make_api, portal, clinic) -> None:  # type: ignore[no-untyped-def]
    clinic.visit(clinic.patient("Андреева Анна"), msk(2026, 3, 12, 10), specialty="терапия", branch="Центр")
    api = make_api(portal, "finance")
    for name in ("primary", "specialisations", "sources", "conversion", "no-shows"):
        doc = api.get(f"/api/v1/reports/{name}?from=2026-03-01&to=2026-03-31&group=day")
        assert doc.status_code == 200, (name, doc.json)
        assert doc.json["report"] == name
        csv_body = api.get(f"/api/v1/reports/{name}.csv?from=2026-03-01&to=2026-03-31").data.decode(
            "utf-8-sig"
        )
        assert csv_body.splitlines()[0].split(";")[0] == "Период"
        assert (
            api.get(f"/api/v1/reports/{name}.png?from=2026-03-01&to=2026-03-31").data[:8]
            == b"\x89PNG\r\n\x1a\n"
        )
    assert api.get("/api/v1/reports/salary?from=2026-03-01&to=2026-03-31").status_code == 404
    assert api.get("/api/v1/reports/primary.xlsx?from=2026-03-01&to=2026-03-31").status_code == 404
