"""Administration: migrations, portals, API keys and token-key rotation."""

from __future__ import annotations

import json

import click
from sqlalchemy import select

from ..apikeys import issue_api_key, revoke_api_key
from ..journey import install_templates
from ..models import ROLES, ApiKey, Portal
from ..portals import PortalInputError, create_portal, find_portal
from .context import cli_runtime

__all__ = ["apikey", "db", "portal", "tokens"]


@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: head)."""
    from ..migrations import upgrade

    rt = cli_runtime()
    upgrade(rt.settings.database_url, revision)
    click.echo(f"database at {revision} ({rt.db.backend})")


@db.command("current")
def db_current() -> None:
    """Show the applied revision."""
    from alembic import command

    from ..migrations import alembic_config

    command.current(alembic_config(cli_runtime().settings.database_url))


@click.group()
def portal() -> None:
    """Portals (installed CRM accounts)."""


def _portal_or_fail(session, ref: str) -> Portal:  # type: ignore[no-untyped-def]
    found = find_portal(session, ref)
    if found is None:
        raise click.ClickException(f"--portal: no portal with slug or id {ref!r}")
    return found


@portal.command("create")
@click.option(
    "--kind",
    type=click.Choice(["sandbox"]),
    default="sandbox",
    show_default=True,
    help="amoCRM and Bitrix24 portals are created by their install flows.",
)
@click.option("--name", required=True)
@click.option("--slug")
@click.option("--timezone", "timezone_name")
@click.option("--currency")
def portal_create(
    kind: str, name: str, slug: str | None, timezone_name: str | None, currency: str | None
) -> None:
    """Create a portal."""
    rt = cli_runtime()
    try:
        with rt.db.transaction() as session:
            created = create_portal(
                session,
                kind=kind,
                name=name,
                slug=slug,
                timezone=timezone_name or rt.settings.default_timezone,
                currency=currency or rt.settings.default_currency,
            )
            # Seed 002's journey, disabled until an admin maps and enables it.
            install_templates(session, created, "cli")
            click.echo(json.dumps({"id": created.id, "slug": created.slug, "kind": created.kind}))
    except PortalInputError as exc:
        raise click.ClickException(f"--{exc.field}: {exc.reason}") from None


@portal.command("list")
def portal_list() -> None:
    """List portals."""
    with cli_runtime().db.transaction() as session:
        for row in session.scalars(select(Portal).order_by(Portal.id)):
            click.echo(
                f"{row.id}\t{row.slug}\t{row.kind}\t{row.status}\t{row.timezone}\t{row.currency}\t{row.name}"
            )


@portal.command("show")
@click.argument("ref")
def portal_show(ref: str) -> None:
    """Show one portal (by slug or id)."""
    rt = cli_runtime()
    with rt.db.transaction() as session:
        found = _portal_or_fail(session, ref)
        document = {
            "id": found.id,
            "slug": found.slug,
            "kind": found.kind,
            "name": found.name,
            "status": found.status,
            "timezone": found.timezone,
            "currency": found.currency,
            "external_id": found.external_id,
            "domain": found.domain,
            "settings": found.settings,
            "has_token": found.token_ciphertext is not None,
        }
        if found.kind == "sandbox":
            document["hook_url"] = f"{rt.settings.public_base_url}/hooks/sandbox/{found.slug}"
    click.echo(json.dumps(document, ensure_ascii=False, indent=2))


@portal.command("unblock")
@click.argument("ref")
def portal_unblock(ref: str) -> None:
    """Allow CRM calls again after the platform blocked us (amoCRM's nginx 403) and support cleared it."""
    with cli_runtime().db.transaction() as session:
        found = _portal_or_fail(session, ref)
        if found.status != "blocked":
            raise click.ClickException(f"REF: portal {found.slug} is {found.status}, not blocked")
        found.status = "active"
    click.echo(f"unblocked {ref}")


@click.group()
def apikey() -> None:
    """Server-to-server API keys."""


@apikey.command("create")
@click.option("--portal", "portal_ref", required=True, help="Portal slug or id.")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--name", default="integration", show_default=True)
def apikey_create(portal_ref: str, role: str, name: str) -> None:
    """Create a key; it is printed once and stored only as a hash."""
    with cli_runtime().db.transaction() as session:
        issued = issue_api_key(session, _portal_or_fail(session, portal_ref), role=role, name=name)
        click.echo(issued.plaintext)


@apikey.command("list")
@click.option("--portal", "portal_ref", required=True)
def apikey_list(portal_ref: str) -> None:
    """List keys (prefix, role, state); secrets are never shown."""
    with cli_runtime().db.transaction() as session:
        found = _portal_or_fail(session, portal_ref)
        for key in session.scalars(select(ApiKey).where(ApiKey.portal_id == found.id).order_by(ApiKey.id)):
            state = "revoked" if key.revoked_at else "active"
            click.echo(f"{key.prefix}\t{key.role}\t{state}\t{key.name}\t{key.last_used_at or '-'}")


@apikey.command("revoke")
@click.argument("prefix")
def apikey_revoke(prefix: str) -> None:
    """Revoke the key with PREFIX (the 8 characters after `cb_`)."""
    with cli_runtime().db.transaction() as session:
        key = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
        if key is None:
            raise click.ClickException(f"PREFIX: no key {prefix!r}")
        revoke_api_key(session, key)
    click.echo(f"revoked {prefix}")


@click.group()
def tokens() -> None:
    """Stored OAuth tokens."""


@tokens.command("rotate")
def tokens_rotate() -> None:
    """Re-encrypt every stored secret under the first TOKEN_ENCRYPTION_KEY: OAuth tokens and the IDENT
    database connection strings (after this the old key can be dropped)."""
    rt = cli_runtime()
    count = secrets = 0
    with rt.db.transaction() as session:
        for row in session.scalars(select(Portal)):
            if row.token_ciphertext is not None:
                row.token_ciphertext = rt.cipher.rotate(row.token_ciphertext)
                count += 1
            mis = dict((row.settings or {}).get("mis") or {})
            ident_db = dict(mis.get("ident_db") or {})
            if ident_db.get("dsn_ciphertext"):
                ident_db["dsn_ciphertext"] = rt.cipher.rotate(ident_db["dsn_ciphertext"])
                # New dicts all the way up: the JSON column only notices assignment.
                row.settings = {**row.settings, "mis": {**mis, "ident_db": ident_db}}
                secrets += 1
    click.echo(f"re-encrypted {count} token(s) and {secrets} IDENT connection string(s)")
