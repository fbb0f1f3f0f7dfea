"""Background work that is never lost: jobs recorded in the database, done once across every
worker and host, retried with backoff, and still done after a restart or a crash.

A kind of job is a function of its payload (ids and values, never a user's text), registered per
app with `register`; `enqueue` records one (a request that enqueues waits for an INSERT, never
for the work). A periodic job (`register(..., every=seconds)`) is enqueued once per period
across all hosts. runner.py does the work; `polygenix jobs` lists what waits and what failed.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from flask import Flask, current_app

from . import models  # noqa: F401  (the tables, for create_all and migrations)
from .store import enqueue as _record

EXTENSION = "polygenix.jobs"


class JobError(Exception):
    """An attempt failed for a reason worth recording as said (no user's text in it); the job
    is tried again, up to its attempts."""


@dataclass
class Kind:
    run: Callable[[dict], None]
    max_attempts: int


@dataclass
class Jobs:
    """An app's kinds of job, its periodic ones (name -> seconds), and how to wake this
    process's runner."""

    kinds: dict[str, Kind] = field(default_factory=dict)
    periodic: dict[str, float] = field(default_factory=dict)
    wake: Callable[[], None] = lambda: None


def init_jobs(app: Flask) -> None:
    app.extensions[EXTENSION] = Jobs()


def registry(app: Flask | None = None) -> Jobs:
    return (app or current_app).extensions[EXTENSION]


def register(
    app: Flask,
    name: str,
    run: Callable[[dict], None],
    *,
    every: float | None = None,
    max_attempts: int | None = None,
) -> None:
    """Make `name` a kind of job that `run(payload)` does. With `every`, it is also enqueued
    once per `every` seconds, tried once (the next period is its retry)."""
    jobs = registry(app)
    attempts = 1 if every is not None else max_attempts or app.config["JOBS_MAX_ATTEMPTS"]
    jobs.kinds[name] = Kind(run, attempts)
    if every is not None:
        jobs.periodic[name] = every


def enqueue(name: str, payload: dict) -> int:
    """Record a job of kind `name` (committed) and wake this process's runner; its id."""
    jobs = registry()
    job_id = _record(name, payload, jobs.kinds[name].max_attempts)
    jobs.wake()
    return job_id
