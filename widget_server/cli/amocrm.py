"""amoCRM tooling: build the widget package."""

from __future__ import annotations

from pathlib import Path

import click

__all__ = ["amocrm"]


@click.group()
def amocrm() -> None:
    """amoCRM / Kommo."""


@amocrm.command("widget-zip")
@click.option("--base-url", required=True, help="This deployment's public https address.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("dist/widget.zip"),
    show_default=True,
)
def widget_zip(base_url: str, output: Path) -> None:
    """Build widget.zip for upload in the integration's settings."""
    from ..widget_package import build_widget_zip

    try:
        data = build_widget_zip(base_url)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(data)
    click.echo(f"{output} ({len(data)} bytes)")
