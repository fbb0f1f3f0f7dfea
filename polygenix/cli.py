"""`flask --app polygenix users ...`: account administration from the shell."""

import csv
import json
import re
import sys
import time
from datetime import date, timedelta

import click
from flask.cli import AppGroup
from marshmallow import ValidationError
from sqlalchemy import select

from . import clock
from .catalog import catalogue
from .chat.export import FORMATS, as_markdown, sessions_of, user_json
from .errors import Conflict
from .extensions import db
from .governance import ledger
from .governance.policy import own_limits, parse_budget, parse_patterns, set_limits
from .keys.service import create_key, live_keys, revoke_all_keys, revoke_key, revoked_notice
from .models import User
from .provider_registry import missing_variable, registry
from .providers import ProviderError
from .user.schemas import ShowUserSchema, UserSchema, validate_password
from .user.service import create_user, delete_account, find_by_email


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
    except Conflict as e:
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
    rows = [("PROVIDER", "CONFIGURED", "DEFAULT MODEL", "BASE URL")]
    for name in registry():
        provider = registry()[name]
        missing = missing_variable(provider)
        rows.append(
            (
                name,
                "yes" if missing is None else f"no (set {missing})",
                provider.settings.default_model or "-",
                provider.settings.base_url or "-",
            )
        )
    _table(rows)


@providers.command("check")
@click.argument("name", required=False)
def check_providers(name: str | None) -> None:
    """Send one tiny request to NAME, or to every configured provider; exit 1 if any fails."""
    providers = registry()
    if name is not None:
        if providers.get(name) is None:
            raise click.ClickException(f"Unknown provider {name!r}: {', '.join(providers)}")
        names = [name.strip().lower()]
    else:
        names = [n for n in providers if missing_variable(providers[n]) is None]
    failed = False
    for provider_name in names:
        provider = providers[provider_name]
        missing = missing_variable(provider)
        if missing:
            click.echo(f"{provider_name}: not configured (set {missing})")
            failed = True
            continue
        model = provider.settings.default_model
        started = time.monotonic()
        try:
            provider.complete([{"role": "user", "content": PING}], model)
        except ProviderError as e:
            click.echo(f"{provider_name}: error: {e.message}")
            failed = True
            continue
        click.echo(f"{provider_name}: ok ({model}, {(time.monotonic() - started) * 1000:.0f} ms)")
    if failed:
        raise SystemExit(1)


@providers.command("models")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
def list_models(name: str | None, as_json: bool) -> None:
    """The models of NAME, or of every provider: configured ones and those it offers."""
    if name is not None and registry().get(name) is None:
        raise click.ClickException(f"Unknown provider {name!r}: {', '.join(registry())}")
    entries = [e for e in catalogue() if name is None or e["provider"] == name.strip().lower()]
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    _table(
        [("MODEL", "AVAILABLE", "DEFAULT", "WHY NOT")]
        + [
            (
                e["id"],
                "yes" if e["available"] else "no",
                "yes" if e["default"] else "",
                e["unavailable_reason"] or "",
            )
            for e in entries
        ]
    )


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@users.command("set-admin")
@click.argument("email")
@click.option("--off", is_flag=True, help="Take admin rights away instead.")
def set_admin(email: str, off: bool) -> None:
    """Give EMAIL admin rights (or take them away); no API can."""
    user = _user_or_fail(email)
    user.is_admin = not off
    db.session.commit()
    click.echo(f"{user.email} is {'no longer' if off else 'now'} an admin")


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
def list_users(as_json: bool) -> None:
    """Every user: id, email, name, admin, created."""
    rows = db.session.scalars(select(User).order_by(User.id)).all()
    if as_json:
        click.echo(json.dumps(ShowUserSchema(many=True).dump(rows), indent=2))
        return
    _table(
        [("ID", "EMAIL", "NAME", "ADMIN", "CREATED")]
        + [
            (str(u.id), u.email, u.name, "yes" if u.is_admin else "", f"{u.created_at:%Y-%m-%d}")
            for u in rows
        ]
    )


@users.command("delete")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete_user(email: str, yes: bool) -> None:
    """Delete EMAIL's account with all their sessions and messages."""
    user = _user_or_fail(email)
    if not yes:
        click.confirm(f"Delete {user.email} and all their sessions?", abort=True)
    user_id, email = user.id, user.email  # a retried deletion's rollback expires `user`
    delete_account(user_id)
    click.echo(f"Deleted {email}")


@users.command("reset-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def reset_password(email: str, password_stdin: bool) -> None:
    """Set EMAIL's password; every token they hold stops working."""
    user = _user_or_fail(email)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    try:
        validate_password(password)
    except ValidationError as e:
        raise click.ClickException(" ".join(e.messages)) from None
    user.change_password(password)
    db.session.commit()
    click.echo(f"Password of {user.email} changed; their earlier tokens no longer work")


def _user_or_fail(email: str) -> User:
    user = find_by_email(email)
    if user is None:
        raise click.ClickException(f"No user with email {email}")
    return user


@click.group(cls=AppGroup)
def chats():
    """Chat data."""


@chats.command("export")
@click.argument("email")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="json", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, writable=True), help="File to write.")
def export_chats(email: str, fmt: str, out: str | None) -> None:
    """Every session of EMAIL, with their messages (for data requests)."""
    user = _user_or_fail(email)
    sessions = sessions_of(user)
    text = user_json(user, sessions) if fmt == "json" else as_markdown(sessions)
    if out:
        with open(out, "w", encoding="utf-8") as f:
            f.write(text)
        click.echo(f"Wrote {len(sessions)} sessions of {user.email} to {out}", err=True)
    else:
        click.echo(text, nl=False)


@click.group(cls=AppGroup)
def keys():
    """Personal API keys."""


def _key_row(api_key) -> dict:
    return {
        "id": api_key.id,
        "email": api_key.user.email,
        "name": api_key.name,
        "prefix": api_key.prefix,
        "created_at": api_key.created_at.isoformat(),
        "last_used_at": api_key.last_used_at.isoformat() if api_key.last_used_at else None,
        "expires_at": api_key.expires_at.isoformat() if api_key.expires_at else None,
    }


@keys.command("create")
@click.argument("email")
@click.option("--name", required=True, help="What the key is for (1 to 100 characters).")
@click.option("--expires-days", type=click.IntRange(1, 3650), help="Days until it expires.")
def create_key_command(email: str, name: str, expires_days: int | None) -> None:
    """Make an API key for EMAIL and print it (it is shown this once)."""
    user = _user_or_fail(email)
    if not name.strip() or len(name.strip()) > 100:
        raise click.ClickException("--name must be 1 to 100 characters")
    try:
        api_key, secret = create_key(user, name.strip(), expires_days)
    except Conflict as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"Created API key {api_key.id} ({api_key.prefix}...) for {user.email}:", err=True)
    click.echo(secret)


@keys.command("list")
@click.argument("email", required=False)
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
def list_keys_command(email: str | None, as_json: bool) -> None:
    """The live API keys of EMAIL, or of every user (never their secrets)."""
    user_id = _user_or_fail(email).id if email else None
    rows = [_key_row(k) for k in live_keys(user_id)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    _table(
        [("ID", "EMAIL", "NAME", "PREFIX", "LAST USED", "EXPIRES")]
        + [
            (
                str(r["id"]),
                r["email"],
                r["name"],
                r["prefix"],
                (r["last_used_at"] or "-")[:19],
                (r["expires_at"] or "never")[:19],
            )
            for r in rows
        ]
    )


@keys.command("revoke")
@click.argument("key_id", type=int)
def revoke_key_command(key_id: int) -> None:
    """Revoke the API key KEY_ID (its `id`): it stops working at once."""
    if not revoke_key(key_id):
        raise click.ClickException(f"No API key {key_id}")
    click.echo(f"Revoked API key {key_id}")


@keys.command("revoke-all")
@click.argument("email")
def revoke_all_keys_command(email: str) -> None:
    """Revoke every API key of EMAIL (a password change or logout leaves them working)."""
    user = _user_or_fail(email)
    click.echo(f"{revoked_notice(revoke_all_keys(user.id))} of {user.email}")


DEFAULT = "default"


def _limit_option(name: str, given: str):
    """An option of `users limits` as stored: None for `default`; ValueError if invalid."""
    if given.strip() == DEFAULT:
        return None
    if name == "models":
        return list(parse_patterns([p.strip() for p in given.split(",") if p.strip()]))
    parse_budget(given, dollars=name == "cost_budget")
    return given


@users.command("limits")
@click.argument("email")
@click.option("--models", help="Comma-separated model patterns ('' allows none), or 'default'.")
@click.option("--token-budget", help="N/day, N/week or N/month tokens, 'unlimited' or 'default'.")
@click.option("--cost-budget", help="N/day, N/week or N/month dollars, 'unlimited' or 'default'.")
@click.option("--reset", is_flag=True, help="Back to the defaults (then apply any other option).")
def user_limits(
    email: str,
    models: str | None,
    token_budget: str | None,
    cost_budget: str | None,
    reset: bool,
) -> None:
    """Show EMAIL's models and budgets, or change them; what is not given stays."""
    user = _user_or_fail(email)
    own = own_limits(user)
    changes = {"models": models, "token_budget": token_budget, "cost_budget": cost_budget}
    if reset or any(v is not None for v in changes.values()):
        new = {k: None if reset else own[k] for k in changes}
        for name, given in changes.items():
            if given is None:
                continue
            try:
                new[name] = _limit_option(name, given)
            except ValueError as e:
                hint = "--" + name.replace("_", "-")
                raise click.BadParameter(str(e), param_hint=hint) from None
        set_limits(user.id, new["models"], new["token_budget"], new["cost_budget"])
        own = own_limits(user)
    applied = own["effective"]
    for label, key in (
        ("models", "models"),
        ("token budget", "token_budget"),
        ("cost budget", "cost_budget"),
    ):
        value = applied[key]
        shown = ", ".join(value) if isinstance(value, list) else value
        source = "own" if own[key] is not None else "default"
        click.echo(f"{label}: {shown or '(none)'} ({source})")


@click.group(cls=AppGroup)
def usage():
    """Usage and cost reports."""


@usage.command("report")
@click.option(
    "--since", default="30d", show_default=True, help="Nd (the last N days) or YYYY-MM-DD."
)
@click.option(
    "--by", "group_by", type=click.Choice(ledger.GROUPS), default="user", show_default=True
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(("table", "csv", "json")),
    default="table",
    show_default=True,
)
def usage_report(since: str, group_by: str, fmt: str) -> None:
    """Everyone's usage from --since to today (UTC), per user, model or day."""
    today = clock.now().date()
    days = re.fullmatch(r"(\d{1,5})d", since.strip())
    try:
        first = today - timedelta(days=int(days[1]) - 1) if days else date.fromisoformat(since)
    except ValueError:
        raise click.BadParameter("Nd (e.g. 30d) or YYYY-MM-DD", param_hint="--since") from None
    rows = ledger.report(first, today, group_by)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    keys = {"day": ["day"], "model": ["model"], "user": ["user_id", "email"]}[group_by]
    columns = keys + ["calls", "prompt_tokens", "completion_tokens", "cost_usd"]
    cells = [tuple("" if row[c] is None else str(row[c]) for c in columns) for row in rows]
    if fmt == "csv":
        out = csv.writer(sys.stdout, lineterminator="\n")
        out.writerow(columns)
        out.writerows(cells)
        return
    _table([tuple(c.upper() for c in columns)] + cells)
