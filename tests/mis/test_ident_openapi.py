"""IDENT's four contract methods are served by one catch-all route; the OpenAPI document still lists each
with its key header, parameters and the plain-text 400/401/403 refusals."""

from __future__ import annotations

from flask import Flask

from widget_server.http.mis import mis_ident
from widget_server.http.openapi import build_spec


def test_the_spec_lists_idents_methods_with_their_refusals():
    app = Flask(__name__)
    app.register_blueprint(mis_ident)
    spec = build_spec(app)
    scheme = spec["components"]["securitySchemes"]["identIntegrationKey"]
    assert scheme == {"type": "apiKey", "in": "header", "name": "IDENT-Integration-Key"}
    methods = {
        "GetTickets": "get",
        "PostTimeTable": "post",
        "GetFinishedCalls": "get",
        "GetOngoingCalls": "get",
    }
    for method, verb in methods.items():
        operation = spec["paths"][f"/mis/ident/{{slug}}/{method}"][verb]
        assert operation["security"] == [{"identIntegrationKey": []}]
        for code in ("401", "403"):
            assert "text/plain" in operation["responses"][code]["content"]
    tickets = spec["paths"]["/mis/ident/{slug}/GetTickets"]["get"]
    params = {p["name"]: p for p in tickets["parameters"]}
    assert params["dateTimeFrom"]["required"] and params["dateTimeTo"]["required"]
    assert params["limit"]["schema"]["maximum"] == 1000 and params["limit"]["schema"]["default"] == 500
    assert "text/plain" in tickets["responses"]["400"]["content"]
    timetable = spec["paths"]["/mis/ident/{slug}/PostTimeTable"]["post"]
    assert "400" in timetable["responses"]
    assert set(timetable["requestBody"]["content"]) == {"application/json", "application/xml"}
    # The catch-all itself is not listed as an operation of its own.
    assert "/mis/ident/{slug}/{method}" not in spec["paths"]


def test_the_apps_document_lists_them(client):
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    for method in ("GetTickets", "PostTimeTable", "GetFinishedCalls", "GetOngoingCalls"):
        assert f"/mis/ident/{{slug}}/{method}" in paths
    assert "/api/v1/mis/helix/imports" in paths
