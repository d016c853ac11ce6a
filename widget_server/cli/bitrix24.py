"""Bitrix24 tooling: re-register our placement, events, robots and fields on installed portals."""

from __future__ import annotations

import click

__all__ = ["bitrix24"]


@click.group()
def bitrix24() -> None:
    """Bitrix24."""


@bitrix24.command("rebind")
@click.argument("portal_ref", required=False)
def rebind_command(portal_ref: str | None) -> None:
    """Sync registrations to this version on PORTAL_REF (slug or id), or on every active Bitrix24 portal:
    missing ones added, changed ones updated, obsolete ones of ours removed, nothing doubled."""
    from sqlalchemy import select

    from ..bitrix24_install import rebind
    from ..models import Portal
    from ..portals import find_portal
    from .context import cli_runtime

    rt = cli_runtime()
    with rt.db.transaction() as session:
        if portal_ref:
            found = find_portal(session, portal_ref)
            if found is None or found.kind != "bitrix24":
                raise click.ClickException(f"no Bitrix24 portal {portal_ref!r}")
            ids = [found.id]
        else:
            ids = list(
                session.scalars(select(Portal.id).where(Portal.kind == "bitrix24", Portal.status == "active"))
            )
    failures = 0
    for portal_id in ids:
        try:
            report = rebind(rt, portal_id)
        except Exception as exc:  # one portal's refusal must not stop the others
            failures += 1
            click.echo(f"portal {portal_id}: failed: {exc}", err=True)
            continue
        click.echo(
            f"portal {portal_id}: added {len(report.added)}, updated {len(report.updated)}, "
            f"removed {len(report.removed)}"
        )
    if failures:
        raise click.ClickException(f"{failures} portal(s) failed")
