"""`flask --app polygenix users ...`: account administration from the shell."""

import sys

import click
from flask.cli import AppGroup
from marshmallow import ValidationError

from .user.schemas import UserSchema
from .user.service import EmailTakenError, create_user


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
