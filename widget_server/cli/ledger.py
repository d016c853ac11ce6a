"""Ledger maintenance: verify the hash chains and running balances, run the daily charges by hand."""

from __future__ import annotations

import sys

import click

from .context import cli_runtime

__all__ = ["ledger"]


@click.group()
def ledger() -> None:
    """Stay ledger."""


@ledger.command("verify")
@click.option("--portal", "portal_ref", help="Only this portal (slug or id).")
def ledger_verify(portal_ref: str | None) -> None:
    """Recompute every account's hash chain and running balance; exit 1 naming the first broken entry of
    each account."""
    from ..ledger.verify import verify_chains
    from ..portals import find_portal

    rt = cli_runtime()
    with rt.db.transaction() as session:
        portal_id = None
        if portal_ref:
            portal = find_portal(session, portal_ref)
            if portal is None:
                raise click.ClickException(f"--portal: no portal with slug or id {portal_ref!r}")
            portal_id = portal.id
        checked, breaks = verify_chains(session, portal_id)
    if breaks:
        for item in breaks:
            click.echo(f"BROKEN {item}", err=True)
        click.echo(f"{checked} entries checked, {len(breaks)} account chain(s) broken", err=True)
        sys.exit(1)
    click.echo(f"{checked} entries checked, all chains intact")


@ledger.command("charge-daily")
def ledger_charge_daily() -> None:
    """Post due daily charges now (the scheduler does this every 15 minutes)."""
    from ..jobs.ledger import run_daily_charges

    cli_runtime()
    click.echo(run_daily_charges())
