"""`clinicbridge journey`: templates installed disabled, a sweep by hand, the firings listed."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from click.testing import CliRunner

from connectors.types import DealUpdated, StageRef
from widget_server.cli import cli
from widget_server.jobs.journey import journey_on_deal_event

from .conftest import enable_templates, make_clinic

MSK = ZoneInfo("Europe/Moscow")


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_install_sweep_and_list(rt, make_portal, crm_users, frozen):
    clinic = make_clinic(make_portal, rt, "cli-clinic", "Europe/Moscow")
    crm_users(clinic)
    first = invoke("journey", "install-templates", "--portal", "cli-clinic")
    assert first.exit_code == 0 and "disabled" in first.output
    assert invoke("journey", "install-templates", "--portal", "cli-clinic").output.startswith("0 ")
    enable_templates(rt, clinic, "welcome")
    frozen.set(datetime(2026, 3, 2, 22, 0, tzinfo=MSK))
    journey_on_deal_event(
        clinic.id,
        DealUpdated(clinic.external_id, None, "5", stage=StageRef("Первичный приём", "Новая заявка")),
    )
    frozen.set(datetime(2026, 3, 3, 9, 0, tzinfo=MSK))
    assert "'fired': 1" in invoke("journey", "sweep", "--portal", "cli-clinic").output
    listed = invoke("journey", "firings", "--portal", "cli-clinic").output
    assert "fired" in listed and "«Приветствие новой заявки»" in listed and "deal 5" in listed
    assert invoke("journey", "firings", "--portal", "nowhere").exit_code != 0
