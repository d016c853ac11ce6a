"""`clinicbridge inpatient due` lists the nurses' doses; `sweep` escalates an overdue one once."""

from __future__ import annotations

from click.testing import CliRunner

from widget_server.cli import cli

from .conftest import admit


def test_due_lists_the_doses_and_sweep_escalates_once(apis, crm, staff, building, tariff, deal, frozen, jobs):
    frozen.set_local("2026-11-24 07:00")
    admit(apis, building, tariff, deal)
    apis["doctor"].post(f"/api/v1/deals/{deal}/stay/prescriptions", json={
        "drug": "Мексидол", "dose": "125 мг", "times": ["08:00"], "start_date": "2026-11-24",
        "doctor_user_id": staff.doctor})  # fmt: skip
    runner = CliRunner()
    listed = runner.invoke(
        cli, ["inpatient", "due", "--portal", "rehab-center", "--at", "2026-11-24T08:45+03:00"]
    )
    assert listed.exit_code == 0, listed.output
    assert "24.11 08:00  ПРОСРОЧЕН  палата 12, место 1  Мексидол 125 мг" in listed.output
    assert listed.output.rstrip().endswith("1 due, 1 overdue")
    frozen.set_local("2026-11-24 08:45")
    assert runner.invoke(cli, ["inpatient", "sweep"]).output.startswith("escalated 1 ")
    assert runner.invoke(cli, ["inpatient", "sweep"]).output.startswith("escalated 0 ")
    bad = runner.invoke(cli, ["inpatient", "due", "--portal", "nowhere"])
    assert bad.exit_code != 0 and "--portal" in bad.output
