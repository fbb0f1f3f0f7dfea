"""`flask --app polygenix users ...`: account administration from the shell."""

import sys
import time

import click
from flask import current_app
from flask.cli import AppGroup
from marshmallow import ValidationError

from .extensions import db
from .providers import PROVIDERS, ProviderError
from .user.schemas import UserSchema
from .user.service import EmailTakenError, create_user, find_by_email


@click.group(cls=AppGroup)
def users():
    """Manage user accounts."""


@users.command("create")
@click.option("--email", required=True, help="The new account's email (its login).")
@click.option("--name", required=True, help="Display name.")
@click.option("--admin", is_flag=True, help="Give the account admin rights.")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from standard input, not a prompt."
)
def create(email: str, name: str, admin: bool, password_stdin: bool) -> None:
    """Create a user; the only way to make an admin."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        data = UserSchema().load({"email": email, "name": name, "password": password})
        user = create_user(**data, is_admin=admin)
    except ValidationError as e:
        problems = "; ".join(f"{k}: {' '.join(v)}" for k, v in e.messages.items())
        raise click.ClickException(problems) from None
    except EmailTakenError as e:
        raise click.ClickException(str(e)) from None
    role = "admin" if user.is_admin else "user"
    click.echo(f"Created {role} {user.email} (id {user.id})")


PING = "Reply with the word OK."


@click.group(cls=AppGroup)
def providers():
    """Inspect and try the model providers."""


@providers.command("list")
def list_providers() -> None:
    """Each provider: configured or not, default model, base URL."""
    config = current_app.config
    rows = [("PROVIDER", "CONFIGURED", "DEFAULT MODEL", "BASE URL")]
    for name, provider in PROVIDERS.items():
        missing = provider.missing_setting(config)
        rows.append(
            (
                name,
                "yes" if missing is None else f"no (set {missing})",
                provider.default_model(config) or "-",
                provider.base_url(config) or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@providers.command("check")
@click.argument("name", required=False)
def check_providers(name: str | None) -> None:
    """Send one tiny request to NAME, or to every configured provider; exit 1 if any fails."""
    config = current_app.config
    if name is not None:
        if name.lower() not in PROVIDERS:
            raise click.ClickException(f"Unknown provider {name!r}: {', '.join(PROVIDERS)}")
        names = [name.lower()]
    else:
        names = [n for n, p in PROVIDERS.items() if p.missing_setting(config) is None]
    failed = False
    for provider_name in names:
        provider = PROVIDERS[provider_name]
        missing = provider.missing_setting(config)
        if missing:
            click.echo(f"{provider_name}: not configured (set {missing})")
            failed = True
            continue
        model = provider.default_model(config)
        started = time.monotonic()
        try:
            provider.complete(
                [{"role": "user", "content": "Reply with the word OK."}], model, config
            )
        except ProviderError as e:
            click.echo(f"{provider_name}: error: {e.message}")
            failed = True
            continue
        click.echo(f"{provider_name}: ok ({model}, {(time.monotonic() - started) * 1000:.0f} ms)")
    if failed:
        raise SystemExit(1)


@users.command("set-admin")
@click.argument("email")
@click.option("--off", is_flag=True, help="Take admin rights away instead.")
def set_admin(email: str, off: bool) -> None:
    """Give EMAIL admin rights (or take them away); no API can."""
    user = find_by_email(email)
    if user is None:
        raise click.ClickException(f"No user with email {email}")
    user.is_admin = not off
    db.session.commit()
    click.echo(f"{user.email} is {'no longer' if off else 'now'} an admin")
