"""Lead distribution maintenance: re-derive every decision and check the hash chains."""

from __future__ import annotations

import sys

import click

from .context import cli_runtime

__all__ = ["distribution"]


@click.group()
def distribution() -> None:
    """Lead distribution."""


@distribution.command("verify")
@click.option("--portal", "portal_ref", help="Only this portal (slug or id).")
def distribution_verify(portal_ref: str | None) -> None:
    """Re-run each decision from its record and check each pool's hash chain; exit 1 naming the first
    mismatch of each pool."""
    from ..distribution.decisions import Mismatch, verify_pools
    from ..portals import find_portal

    rt = cli_runtime()
    checked = 0
    broken: list[Mismatch] = []
    with rt.db.transaction() as session:
        portal_id = None
        if portal_ref:
            portal = find_portal(session, portal_ref)
            if portal is None:
                raise click.ClickException(f"--portal: no portal with slug or id {portal_ref!r}")
            portal_id = portal.id
        for result in verify_pools(session, portal_id):
            if isinstance(result, Mismatch):
                broken.append(result)
            else:
                checked += result
    if broken:
        for item in broken:
            click.echo(
                f"MISMATCH pool {item.pool_id} decision {item.decision_id} (seq {item.seq}): {item.problem}",
                err=True,
            )
        click.echo(f"{checked} decisions verified, {len(broken)} pool(s) with a mismatch", err=True)
        sys.exit(1)
    click.echo(f"{checked} decisions verified, every pool re-derives and chains")
