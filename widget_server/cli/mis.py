"""MIS sync administration: the IDENT key and database, Helix imports by hand, and the sync log."""

from __future__ import annotations

from pathlib import Path

import click

from .context import cli_runtime

__all__ = ["mis"]


def _portal(session, ref: str):  # type: ignore[no-untyped-def]
    from ..portals import find_portal

    portal = find_portal(session, ref)
    if portal is None:
        raise click.ClickException(f"PORTAL: no portal with slug or id {ref!r}")
    return portal


@click.group()
def mis() -> None:
    """Appointment sync from dental MIS (IDENT, Helix)."""


@mis.command("ident-key")
@click.argument("portal_ref", metavar="PORTAL")
def ident_key(portal_ref: str) -> None:
    """Issue a new IDENT-Integration-Key (the old one stops working); printed once, stored hashed."""
    from ..appointments.timetable import issue_ident_key

    rt = cli_runtime()
    with rt.db.transaction() as session:
        portal = _portal(session, portal_ref)
        key = issue_ident_key(portal)
        base = f"{rt.settings.public_base_url.rstrip('/')}/mis/ident/{portal.slug}"
    click.echo(f"IDENT → Настройки → Интеграции → HTTP: адрес {base}, ключ {key}")


@mis.command("ident-db")
@click.argument("portal_ref", metavar="PORTAL")
@click.option("--dsn", help="ODBC connection string of a read-only SQL login; omit to stop reading.")
def ident_db(portal_ref: str, dsn: str | None) -> None:
    """Set (encrypted) or clear the IDENT database the scheduler reads receptions from."""
    from ..jobs.mis.ident import set_ident_dsn

    rt = cli_runtime()
    with rt.db.transaction() as session:
        set_ident_dsn(_portal(session, portal_ref), dsn)
    click.echo("IDENT database set" if dsn else "IDENT database cleared")


@mis.command("import-helix")
@click.argument("portal_ref", metavar="PORTAL")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def import_helix(portal_ref: str, file: Path) -> None:
    """Import one Helix export (CSV, XLSX or JSON); the same file again reports its first import."""
    from ..jobs.mis.helix_import import HelixImportRefused, import_helix_file

    rt = cli_runtime()
    try:
        with rt.db.transaction() as session:
            run, new = import_helix_file(session, _portal(session, portal_ref), file.read_bytes(), file.name)
            run_id, counts = run.id, dict(run.counts)
    except HelixImportRefused as refused:
        raise click.ClickException(f"{file.name} not imported: {refused.field}: {refused.reason}") from None
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    click.echo(f"import {run_id}: {summary}" if new else f"already imported as {run_id}: {summary}")


@mis.command("runs")
@click.argument("portal_ref", metavar="PORTAL")
@click.option("--limit", default=20, show_default=True)
def runs(portal_ref: str, limit: int) -> None:
    """The latest sync runs with their counts."""
    from sqlalchemy import select

    from ..models import MisSyncRun

    rt = cli_runtime()
    with rt.db.transaction() as session:
        portal = _portal(session, portal_ref)
        for run in session.scalars(
            select(MisSyncRun)
            .where(MisSyncRun.portal_id == portal.id)
            .order_by(MisSyncRun.id.desc())
            .limit(limit)
        ):
            summary = ", ".join(f"{k} {v}" for k, v in sorted(run.counts.items()))
            click.echo(
                f"{run.id}\t{run.created_at:%Y-%m-%d %H:%M}\t{run.source}\t{run.file_name or '—'}\t{summary}"
            )
