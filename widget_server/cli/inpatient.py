"""In-patient duties by hand: the sweep the scheduler runs every two minutes, and the nurses' list."""

from __future__ import annotations

from datetime import datetime

import click

from .context import cli_runtime

__all__ = ["inpatient"]


@click.group()
def inpatient() -> None:
    """In-patient stay: rounds, escalations, arrivals, relatives."""


@inpatient.command("sweep")
def inpatient_sweep() -> None:
    """Escalate overdue doses, send arrival-day tasks and tell relatives now (each happens once)."""
    from ..jobs.inpatient import run_inpatient_sweep

    cli_runtime()
    click.echo(run_inpatient_sweep())


@inpatient.command("due")
@click.option("--portal", "portal_ref", required=True, help="Portal slug or id.")
@click.option("--building", type=int, help="Only this building (id).")
@click.option("--at", "at_text", help="ISO date-time with offset (default: now).")
def inpatient_due(portal_ref: str, building: int | None, at_text: str | None) -> None:
    """What the nurses must do: one line per unmarked dose, oldest first, overdue ones flagged."""
    from zoneinfo import ZoneInfo

    from .. import clock
    from ..inpatient import due_rounds
    from ..portals import find_portal

    at = clock.now_utc()
    if at_text:
        try:
            at = datetime.fromisoformat(at_text)
        except ValueError:
            raise click.ClickException(f"--at: not an ISO date-time: {at_text!r}") from None
        if at.tzinfo is None:
            raise click.ClickException("--at: needs a UTC offset, e.g. 2026-11-24T09:10+03:00")
    with cli_runtime().db.transaction() as session:
        portal = find_portal(session, portal_ref)
        if portal is None:
            raise click.ClickException(f"--portal: no portal with slug or id {portal_ref!r}")
        zone = ZoneInfo(portal.timezone)
        items = due_rounds(session, portal, at, building)
    for item in items:
        flag = "ПРОСРОЧЕН" if item["overdue"] else "к приёму"
        click.echo(
            f"{item['due_at'].astimezone(zone):%d.%m %H:%M}  {flag:9}  "
            f"палата {item['ward']}, место {item['bed']}  "
            f"{item['drug']} {item['dose']}  сделка {item['deal_id']}  {item['round_id']}"
        )
    click.echo(f"{len(items)} due, {sum(1 for i in items if i['overdue'])} overdue")
