"""The threads that do the jobs: one polls the database, a few run what it claims.

A runner lives in each gunicorn worker (unless JOBS_IN_WEB_WORKERS is off) or in a `polygenix
worker` process. Its poll renews the claims of the jobs it runs, enqueues the periodic jobs whose
period has come, fails jobs abandoned on their last attempt, and claims what is due for its free
threads. A database that fails while it polls costs a logged warning and a slower poll, never
the thread: polling resumes by itself once the database answers.
"""

import logging
import os
import secrets
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import timedelta

from flask import Flask
from prometheus_client import Counter, Gauge

from .. import clock
from ..extensions import db
from ..schema import NOT_MIGRATED, is_missing_schema
from . import EXTENSION, JobError, registry, store

log = logging.getLogger(__name__)
RUNNER = "polygenix.jobs.runner"
# The longest pause between two polls while the database keeps failing.
MAX_POLL_BACKOFF = 30.0
# How often a runner counts the jobs table for its gauge.
COUNT_EVERY = 15.0

FINISHED = Counter(
    "polygenix_jobs_total",
    "Background job attempts, by outcome: done, retried, failed",
    ["kind", "outcome"],
)
QUEUED = Gauge(
    "polygenix_jobs_queued",
    "Background jobs in the database by state, as last counted (every 15 s) by a runner",
    ["kind", "state"],
    multiprocess_mode="mostrecent",
)


class Runner:
    """Polls for due jobs and runs them on JOBS_THREADS threads."""

    def __init__(self, app: Flask):
        config = app.config
        self.app = app
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.threads = config["JOBS_THREADS"]
        self.poll = config["JOBS_POLL_SECONDS"]
        self.lease = timedelta(seconds=config["JOBS_LEASE_SECONDS"])
        self.retry_seconds = config["JOBS_RETRY_SECONDS"]
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="jobs")
        self._running: set[int] = set()
        self._futures: set[Future] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="jobs-poll", daemon=True)
        self._renewed = self._counted = 0.0
        self.failing = False

    def start(self) -> "Runner":
        self._thread.start()
        return self

    def wake(self) -> None:
        """Poll now (a job was just enqueued in this process)."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop polling, and hand back the jobs still running so that another worker takes them
        at once; then wait up to `timeout` seconds for them to end (one that ends after being
        handed back finds its row no longer its own, and leaves it)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        with self._lock:
            running, futures = list(self._running), list(self._futures)
        if running:
            with self.app.app_context():
                try:
                    store.give_back(running, self.worker)
                except Exception as e:  # their leases lapse instead
                    log.warning("jobs under way could not be handed back: %s", _reason(e))
        wait(futures, timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                with self.app.app_context():
                    self._tick()
                if self.failing:
                    log.warning("background jobs: the database answers again")
                failures, self.failing = 0, False
                # Often enough to renew the claims of the jobs it runs in time.
                pause = min(self.poll, self.lease.total_seconds() / 3)
            except Exception as e:
                failures += 1
                if not self.failing:
                    why = NOT_MIGRATED if is_missing_schema(e) else _reason(e)
                    log.warning("background jobs: polling failed (%s); retrying", why)
                self.failing = True
                pause = min(self.poll * 2**failures, MAX_POLL_BACKOFF)
            self._wake.wait(pause)
            self._wake.clear()

    def _tick(self) -> None:
        jobs = registry(self.app)
        now = time.monotonic()
        with self._lock:
            running = list(self._running)
        if running and now - self._renewed >= self.lease.total_seconds() / 3:
            store.renew(running, self.worker, self.lease)
            self._renewed = now
        if jobs.periodic:
            store.schedule_periodic(jobs.periodic)
        if now - self._counted >= COUNT_EVERY:
            self._count(list(jobs.kinds))
            self._counted = now
        free = self.threads - len(running)
        if free <= 0:
            return
        due = store.next_due(list(jobs.kinds))
        if due is None or due > clock.now():
            return
        store.fail_abandoned(list(jobs.kinds))
        claimed = store.claim(list(jobs.kinds), self.worker, free, self.lease)
        if claimed and not running:
            self._renewed = now  # leases are renewed a third of a lease after they were taken
        for job in claimed:
            with self._lock:
                self._running.add(job.id)
                future = self._pool.submit(self._run, job)
                self._futures.add(future)
            future.add_done_callback(self._forget)

    def _forget(self, future: Future) -> None:
        with self._lock:
            self._futures.discard(future)

    def _count(self, kinds: list[str]) -> None:
        counts = store.counts()
        for kind in kinds:
            for state in ("waiting", "running", "failed"):
                QUEUED.labels(kind, state).set(counts.get((kind, state), 0))

    def _run(self, job: store.Claimed) -> None:
        jobs = registry(self.app)
        try:
            with self.app.app_context():
                self._attempt(jobs, job)
        finally:
            with self._lock:
                self._running.discard(job.id)
            self._wake.set()

    def _attempt(self, jobs, job: store.Claimed) -> None:
        kind = jobs.kinds[job.kind]
        try:
            kind.run(job.payload)
        except Exception as e:
            db.session.rollback()
            reason = _reason(e)
            final = store.fail(job, self.worker, reason, self.retry_seconds)
            if job.kind in jobs.periodic:  # one failure of a periodic job is listed, the latest
                store.clear_failures(job.kind, but=job.id)
            FINISHED.labels(job.kind, "failed" if final else "retried").inc()
            log.log(
                logging.ERROR if final else logging.WARNING,
                "job %s (%s) failed, attempt %s of %s: %s%s",
                job.id,
                job.kind,
                job.attempts,
                job.max_attempts,
                reason,
                "" if final else "; it will be tried again",
            )
            return
        store.finish(job, self.worker)
        if job.kind in jobs.periodic:
            store.clear_failures(job.kind)
        FINISHED.labels(job.kind, "done").inc()


def _reason(error: Exception) -> str:
    """What an attempt's failure is recorded as: a JobError's own words, else the exception's
    type alone (its message may hold what a user wrote)."""
    if isinstance(error, JobError):
        return str(error)
    cause = getattr(error, "orig", None) or error
    return type(cause).__name__


def start_in_web_worker(app) -> Runner | None:
    """gunicorn's post_worker_init: a runner in this web worker, unless JOBS_IN_WEB_WORKERS is
    off (or the app served is not PolyGenix, as bench/bare_app.py under gunicorn.conf.py)."""
    if not isinstance(app, Flask) or not app.config.get("JOBS_IN_WEB_WORKERS"):
        return None
    return start(app)


def stop_in_web_worker(app) -> None:
    runner = app.extensions.get(RUNNER) if isinstance(app, Flask) else None
    if runner is not None:
        runner.stop()


def start(app: Flask) -> Runner:
    """Start a runner for `app` (one per app); jobs enqueued by this process wake it."""
    runner = Runner(app)
    app.extensions[RUNNER] = runner
    app.extensions[EXTENSION].wake = runner.wake
    return runner.start()
