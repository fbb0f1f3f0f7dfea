"""`flask --app polygenix attachments sweep`: delete the attachments no message uses."""

import click
from flask.cli import AppGroup

from .store import sweep_orphans


@click.group(cls=AppGroup)
def attachments():
    """Images attached to messages."""


@attachments.command("sweep")
@click.option(
    "--hours",
    type=click.FloatRange(min=0),
    default=None,
    help="Older than this many hours (default: ATTACHMENT_ORPHAN_HOURS).",
)
def sweep(hours: float | None) -> None:
    """Delete the attachments no message uses, older than ATTACHMENT_ORPHAN_HOURS."""
    count = sweep_orphans(hours)
    click.echo(f"Deleted {count} unused attachment{'s' if count != 1 else ''}")
