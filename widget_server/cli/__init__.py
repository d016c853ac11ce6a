"""The `clinicbridge` command: run the service, its workers and scheduler, and administer portals."""

from __future__ import annotations

import sys

import click

from ..config import ConfigError
from .admin import apikey, db, portal, tokens
from .amocrm import amocrm
from .bitrix24 import bitrix24
from .demo import demo
from .distribution import distribution
from .documents import documents
from .inpatient import inpatient
from .journey import journey
from .ledger import ledger
from .mis import mis
from .processes import cron, run, up, worker

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """ClinicBridge: deal-card widgets, robots and MIS sync for clinics on amoCRM and Bitrix24."""


for command in (
    run, worker, cron, up, db, portal, apikey, tokens, demo, ledger, amocrm, distribution, documents
):
    cli.add_command(command)
cli.add_command(bitrix24)
cli.add_command(mis)
cli.add_command(journey)
cli.add_command(inpatient)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except ConfigError as exc:
        click.echo(f"configuration error — {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
