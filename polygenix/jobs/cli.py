"""`polygenix jobs`: what waits and what failed; `polygenix worker`: a process for jobs alone."""

import json
import signal
import threading

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from . import store
from .models import FAILED, RUNNING, WAITING


@click.group(cls=AppGroup, invoke_without_command=True)
@click.pass_context
def jobs(ctx: click.Context):
    """Background jobs: what waits, runs and failed (the default), retry, delete."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_jobs)


@jobs.command("list")
@click.option("--failed", "failed_only", is_flag=True, help="Only the failed jobs.")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
def list_jobs(failed_only: bool = False, as_json: bool = False) -> None:
    """Jobs waiting, running and failed, the next due first."""
    rows = store.listing((FAILED,) if failed_only else (WAITING, RUNNING, FAILED))
    entries = [
        {
            "id": job.id,
            "kind": job.kind,
            "state": job.state,
            "attempts": job.attempts,
            "max_attempts": job.max_attempts,
            "run_at": job.run_at.isoformat(),
            "created_at": job.created_at.isoformat(),
            "last_error": job.last_error,
        }
        for job in rows
    ]
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    if not entries:
        click.echo("No jobs wait, run or failed.")
        return
    header = ("ID", "KIND", "STATE", "ATTEMPTS", "AT", "LAST ERROR")
    table = [header] + [
        (
            str(e["id"]),
            e["kind"],
            e["state"],
            f"{e['attempts']}/{e['max_attempts']}",
            e["run_at"][:19],
            e["last_error"] or "",
        )
        for e in entries
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _ids(job_ids: tuple[int, ...], every_failed: bool) -> list[int] | None:
    if bool(job_ids) == every_failed:
        raise click.UsageError("Give job ids or --all-failed (not both).")
    return None if every_failed else list(job_ids)


@jobs.command("retry")
@click.argument("job_ids", type=int, nargs=-1)
@click.option("--all-failed", "every_failed", is_flag=True, help="Every failed job.")
def retry_jobs(job_ids: tuple[int, ...], every_failed: bool) -> None:
    """Failed jobs wait again, with their attempts counted afresh."""
    count = store.retry(_ids(job_ids, every_failed))
    click.echo(f"{count} failed job{'s' if count != 1 else ''} will be tried again")


@jobs.command("delete")
@click.argument("job_ids", type=int, nargs=-1)
@click.option("--all-failed", "every_failed", is_flag=True, help="Every failed job.")
def delete_jobs(job_ids: tuple[int, ...], every_failed: bool) -> None:
    """Delete failed jobs, or waiting ones by id (a running job is never deleted)."""
    ids = _ids(job_ids, every_failed)
    count = store.remove(ids, failed_only=ids is None)
    click.echo(f"Deleted {count} job{'s' if count != 1 else ''}")


@click.command("worker")
@with_appcontext
def worker() -> None:
    """Run background jobs in this process until stopped (SIGTERM or Ctrl-C)."""
    from .runner import start

    app = current_app._get_current_object()
    runner = start(app)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    click.echo(f"PolyGenix worker {runner.worker}: running jobs; stop with Ctrl-C", err=True)
    stop.wait()
    runner.stop()
