"""Document registry maintenance: `clinicbridge documents verify` re-hashes every registered file."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .context import cli_runtime

__all__ = ["documents"]


@click.group()
def documents() -> None:
    """Invoice documents (the patient folders)."""


@documents.command("verify")
def documents_verify() -> None:
    """Re-hash every registered document; exit 1 naming each file that changed or vanished."""
    from ..invoices.documents import verify_documents
    from ..invoices.render import ensure_cyrillic_font

    rt = cli_runtime()
    root = Path(rt.settings.instance_path) / "documents"
    with rt.db.transaction() as session:
        checked, problems = verify_documents(session, root)
    for problem in problems:
        where = f"{root / problem.path} (document {problem.document_id})"
        click.echo(f"CHANGED {where}: {problem.reason}", err=True)
    if problems:
        click.echo(f"{checked} documents checked, {len(problems)} changed or missing", err=True)
        sys.exit(1)
    click.echo(f"{checked} documents checked, all intact (font for rendering: {ensure_cyrillic_font()})")
