"""Patient journey administration: install the seed templates, sweep now, list recent firings."""

from __future__ import annotations

import click

from .context import cli_runtime

__all__ = ["journey"]


def _portal_id(ref: str) -> int:
    from ..portals import find_portal

    with cli_runtime().db.transaction() as session:
        portal = find_portal(session, ref)
        if portal is None:
            raise click.ClickException(f"--portal: no portal with slug or id {ref!r}")
        return portal.id


@click.group()
def journey() -> None:
    """Patient journey automation."""


@journey.command("install-templates")
@click.option("--portal", "portal_ref", required=True, help="Portal slug or id.")
def install(portal_ref: str) -> None:
    """Add the seed 002 rules the portal lacks, disabled until an admin maps and enables them."""
    from ..journey import install_templates
    from ..models import Portal

    portal_id = _portal_id(portal_ref)
    with cli_runtime().db.transaction() as session:
        added = install_templates(session, session.get(Portal, portal_id), "cli")
    click.echo(f"{added} template rule(s) installed, disabled")


@journey.command("upgrade-templates")
@click.option("--portal", "portal_ref", help="Only this portal (slug or id); default every portal.")
@click.option("--dry-run", is_flag=True, help="Say what would change, change nothing.")
def upgrade_templates(portal_ref: str | None, dry_run: bool) -> None:
    """Replace rules still exactly as an earlier template installed them by today's templates (a new
    version each); rules the clinic edited are listed and left alone. Safe to run again."""
    from sqlalchemy import select

    from ..journey.templates import upgrade_templates as upgrade
    from ..models import Portal

    db = cli_runtime().db
    if portal_ref:
        ids = [_portal_id(portal_ref)]
    else:
        with db.transaction() as session:
            ids = list(session.scalars(select(Portal.id).order_by(Portal.id)))
    verb = "would upgrade" if dry_run else "upgraded"
    for portal_id in ids:
        with db.transaction() as session:
            portal = session.get(Portal, portal_id)
            result = upgrade(session, portal, "cli", dry_run=dry_run)
            click.echo(
                f"{portal.slug}: {verb} {', '.join(result.upgraded) or 'nothing'}; "
                f"edited, left alone: {', '.join(result.edited) or 'none'}"
            )


@journey.command("sweep")
@click.option("--portal", "portal_ref", help="Only this portal (slug or id); default every portal.")
def sweep(portal_ref: str | None) -> None:
    """Decide everything due now (what the 5-minute sweep does), and print the counts."""
    from ..jobs.journey import run_journey_sweep, sweep_portal

    cli_runtime()
    if portal_ref:
        click.echo(str(sweep_portal(_portal_id(portal_ref)).as_dict()))
    else:
        click.echo(run_journey_sweep())


@journey.command("firings")
@click.option("--portal", "portal_ref", required=True, help="Portal slug or id.")
@click.option("--outcome", type=click.Choice(["scheduled", "fired", "expired", "skipped", "cancelled"]))
@click.option("--limit", type=int, default=20, show_default=True)
def firings(portal_ref: str, outcome: str | None, limit: int) -> None:
    """The latest occurrences: when, which rule and deal, the outcome and why."""
    from sqlalchemy import select

    from ..models import JourneyRule, RuleFiring

    portal_id = _portal_id(portal_ref)
    with cli_runtime().db.transaction() as session:
        query = (
            select(RuleFiring, JourneyRule.name)
            .join(JourneyRule, JourneyRule.id == RuleFiring.rule_id)
            .where(RuleFiring.portal_id == portal_id)
        )
        if outcome:
            query = query.where(RuleFiring.state == outcome)
        for firing, name in session.execute(query.order_by(RuleFiring.id.desc()).limit(limit)):
            click.echo(
                f"{firing.due_at:%Y-%m-%d %H:%M}Z  {firing.state:<9}  deal {firing.deal_id or '—'}  «{name}»"
                + (f"  ({firing.reason})" if firing.reason else "")
            )
