"""`clinicbridge mis`: the IDENT key printed once and working, a Helix file imported by hand, the runs."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from widget_server.cli import cli

FIXTURES = Path(__file__).parent.parent / "fixtures" / "helix"


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_ident_key_works_against_the_http_contract(clinic, client):
    result = invoke("mis", "ident-key", "dental")
    assert result.exit_code == 0, result.output
    key = result.output.strip().rsplit(" ", 1)[-1]
    assert "/mis/ident/dental" in result.output
    response = client.get(
        "/mis/ident/dental/GetOngoingCalls",
        query_string={"dateTimeFrom": "2026-03-01T00:00:00+03:00", "dateTimeTo": "2026-03-02T00:00:00+03:00"},
        headers={"IDENT-Integration-Key": key},
    )
    assert response.status_code == 200


def test_import_helix_then_again_then_runs(clinic):
    path = str(FIXTURES / "visits_sample.csv")
    first = invoke("mis", "import-helix", "dental", path)
    assert first.exit_code == 0 and "created 6" in first.output
    again = invoke("mis", "import-helix", "dental", path)
    assert again.output.startswith("already imported as")
    runs = invoke("mis", "runs", "dental")
    assert "visits_sample.csv" in runs.output and len(runs.output.strip().splitlines()) == 1


def test_a_refused_file_and_an_unknown_portal_are_named(clinic, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"ID;Name\n1;x\n")
    result = CliRunner().invoke(cli, ["mis", "import-helix", "dental", str(bad)])
    assert result.exit_code != 0 and "visit_id" in result.output
    result = CliRunner().invoke(cli, ["mis", "runs", "nowhere"])
    assert result.exit_code != 0 and "nowhere" in result.output
